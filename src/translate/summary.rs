//! The migration summary: for each Ingress, what became of every
//! annotation under our prefix and ingress-nginx's — enforced, accepted
//! without effect, or refused, and whether a refusal leaves the Ingress
//! served (without that behaviour) or closed.

use crate::cluster::ObjectKey;

/// What became of one Ingress's annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngressSummary {
    pub ingress: ObjectKey,
    /// Annotations Gatehouse carries out, with ingress-nginx's meaning.
    pub enforced: Vec<String>,
    /// Annotations accepted without effect (nothing to do here).
    pub accepted: Vec<String>,
    /// Annotations refused (not implemented, snippets, ignored on a canary),
    /// the Ingress still served without them.
    pub refused_served: Vec<String>,
    /// Refused protective annotations: the Ingress's routes answer 503.
    pub refused_denied: Vec<String>,
    /// What each snippet annotation held, directive by directive.
    pub snippets: Vec<SnippetSummary>,
}

/// One snippet annotation's directives: enforced when the snippet is
/// applied (all of them, or none), refused with the reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SnippetSummary {
    pub annotation: String,
    pub enforced: Vec<String>,
    pub refused: Vec<String>,
}

impl IngressSummary {
    /// Whether the Ingress behaves as under ingress-nginx.
    pub fn same(&self) -> bool {
        self.refused_served.is_empty() && self.refused_denied.is_empty()
    }

    pub fn denied(&self) -> bool {
        !self.refused_denied.is_empty()
    }

    /// One line for `gatehouse routes`.
    pub fn line(&self) -> String {
        let mut text = format!(
            "{}: {} enforced, {} accepted without effect, {} refused",
            self.ingress,
            self.enforced.len(),
            self.accepted.len(),
            self.refused_served.len() + self.refused_denied.len()
        );
        if !self.refused_denied.is_empty() {
            text.push_str(&format!(
                " — DENIED (503): {}",
                self.refused_denied.join(", ")
            ));
        }
        if !self.refused_served.is_empty() {
            text.push_str(&format!(
                " — served without: {}",
                self.refused_served.join(", ")
            ));
        }
        if self.same() {
            text.push_str(" — behaves as under ingress-nginx");
        }
        // Each snippet on a line of its own, under the Ingress's.
        for snippet in &self.snippets {
            text.push_str(&format!("\n  {}:", snippet.annotation));
            if !snippet.enforced.is_empty() {
                text.push_str(&format!(" enforced {}", snippet.enforced.join(", ")));
            }
            if !snippet.refused.is_empty() {
                text.push_str(&format!(" refused {}", snippet.refused.join("; ")));
            }
        }
        text
    }
}

/// Totals over every Ingress, for the summary's last line.
pub fn totals(summaries: &[IngressSummary]) -> String {
    let same = summaries.iter().filter(|s| s.same()).count();
    let denied = summaries.iter().filter(|s| s.denied()).count();
    let differ = summaries.len() - same - denied;
    format!(
        "{} Ingresses: {same} behave as under ingress-nginx, {differ} are served with differences, {denied} are closed (503)",
        summaries.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str, served: &[&str], denied: &[&str]) -> IngressSummary {
        IngressSummary {
            ingress: ObjectKey::new("shop", name),
            enforced: vec!["nginx.ingress.kubernetes.io/ssl-redirect".into()],
            accepted: vec![],
            refused_served: served.iter().map(|s| s.to_string()).collect(),
            refused_denied: denied.iter().map(|s| s.to_string()).collect(),
            snippets: vec![],
        }
    }

    #[test]
    fn each_snippet_lists_its_enforced_and_refused_directives() {
        let mut served = summary("d", &["x/configuration-snippet"], &[]);
        served.snippets.push(SnippetSummary {
            annotation: "x/configuration-snippet".into(),
            enforced: vec![],
            refused: vec!["unsupported directive gzip".into()],
        });
        served.snippets.push(SnippetSummary {
            annotation: "x/server-snippet".into(),
            enforced: vec!["more_set_headers".into(), "return 301".into()],
            refused: vec![],
        });
        let line = served.line();
        assert!(
            line.contains("\n  x/configuration-snippet: refused unsupported directive gzip"),
            "{line}"
        );
        assert!(
            line.contains("\n  x/server-snippet: enforced more_set_headers, return 301"),
            "{line}"
        );
    }

    #[test]
    fn each_ingress_is_same_served_with_differences_or_closed() {
        let all = [
            summary("a", &[], &[]),
            summary("b", &["x/mirror-target"], &[]),
            summary("c", &["x/mirror-target"], &["x/enable-modsecurity"]),
        ];
        assert!(all[0].line().ends_with("behaves as under ingress-nginx"));
        assert!(all[1].line().contains("served without: x/mirror-target"));
        assert!(all[2].line().contains("DENIED (503): x/enable-modsecurity"));
        assert_eq!(
            totals(&all),
            "3 Ingresses: 1 behave as under ingress-nginx, 1 are served with differences, 1 are closed (503)"
        );
    }
}
