//! Canary Ingresses: read before the others, then attached to the main
//! route of the same host and path. A canary never makes a route of its
//! own; one that finds no main route is a warning and serves nothing.

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};
use k8s_openapi::api::networking::v1::Ingress;

use super::{Build, IngressSummary, PathContext, WarningKind};
use crate::cluster::ObjectKey;
use crate::policy::canary::{honoured, Canary, CanaryRule};
use crate::policy::Annotations;
use crate::table::HostPattern;
use crate::upstream::Action;

/// The canaries of the cluster by the host and path they join.
#[derive(Default)]
pub struct Canaries {
    by_route: HashMap<(HostPattern, String), Waiting>,
}

struct Waiting {
    canary: Arc<Canary>,
    taken: bool,
}

impl Canaries {
    /// Whether an Ingress is a canary, to be read by `add`.
    pub fn is_canary(ingress: &Ingress, our_prefix: &str) -> bool {
        CanaryRule::is_canary(&Annotations::new(
            ingress.metadata.annotations.as_ref(),
            our_prefix,
        ))
    }

    /// Reads a canary Ingress: its rule, and a backend for each of its
    /// host+path rules. Older canaries keep a contested host+path.
    pub fn add(
        &mut self,
        build: &mut Build<'_>,
        key: &ObjectKey,
        ingress: &Ingress,
        our_prefix: &str,
    ) -> IngressSummary {
        let annotations = Annotations::new(ingress.metadata.annotations.as_ref(), our_prefix);
        let mut notes = Vec::new();
        let rule = Arc::new(CanaryRule::compile(&annotations, &mut notes));
        for note in notes {
            build.warn(key, WarningKind::InvalidAnnotation, note);
        }
        let mut summary = IngressSummary {
            ingress: key.clone(),
            ..IngressSummary::default()
        };
        let mut ignored = Vec::new();
        for (name_key, name) in annotations.ours_and_nginx() {
            if honoured(name) {
                summary.enforced.push(name_key.to_owned());
            } else {
                summary.refused_served.push(name_key.to_owned());
                ignored.push(name_key);
            }
        }
        if !ignored.is_empty() {
            let message = format!(
                "annotations ignored on a canary Ingress (the main Ingress's apply): {}",
                ignored.join(", ")
            );
            build.warn(key, WarningKind::UnsupportedAnnotation, message);
        }
        let load_balance = annotations
            .get("load-balance")
            .and_then(|(_, v)| crate::policy::proxy_settings::parse_load_balance(v).ok())
            .unwrap_or_default();
        let rules = ingress.spec.as_ref().and_then(|s| s.rules.as_ref());
        for rule_of_host in rules.into_iter().flatten() {
            let host = HostPattern::parse(rule_of_host.host.as_deref());
            let paths = rule_of_host.http.as_ref().map(|h| h.paths.as_slice());
            for path in paths.unwrap_or_default() {
                let path_text = path.path.as_deref().unwrap_or("/");
                let context = PathContext {
                    host: &host,
                    path: path_text,
                };
                let action = build.action(key, &path.backend, &context);
                if matches!(action, Action::Unavailable) {
                    continue; // warned; the main route keeps all traffic
                }
                let slot = (host.clone(), path_text.to_owned());
                if let Some(present) = self.by_route.get(&slot) {
                    let message = format!(
                        "{context}: already has a canary from the older Ingress {}; one canary per route, this one is ignored",
                        present.canary.ingress
                    );
                    build.warn(key, WarningKind::RouteConflict, message);
                    continue;
                }
                let canary = Canary::new(rule.clone(), action, key.clone(), load_balance);
                self.by_route.insert(
                    slot,
                    Waiting {
                        canary,
                        taken: false,
                    },
                );
            }
        }
        summary
    }

    /// The canary for a main route's host and path, if any.
    pub fn take(&mut self, host: &HostPattern, path: &str) -> Option<Arc<Canary>> {
        // Most clusters have no canary: no key to build for every route.
        if self.by_route.is_empty() {
            return None;
        }
        let waiting = self.by_route.get_mut(&(host.clone(), path.to_owned()))?;
        waiting.taken = true;
        Some(waiting.canary.clone())
    }

    /// Warns about every canary that found no main route.
    pub fn warn_unmatched(self, build: &mut Build<'_>) {
        let mut unmatched: Vec<_> = self
            .by_route
            .into_iter()
            .filter(|(_, w)| !w.taken)
            .collect();
        unmatched
            .sort_by(|a, b| (&a.1.canary.ingress, &a.0 .1).cmp(&(&b.1.canary.ingress, &b.0 .1)));
        for ((host, path), waiting) in unmatched {
            let message = format!(
                "host {host}: path {path}: no main Ingress routes this host and path; the canary serves nothing"
            );
            build.warn(
                &waiting.canary.ingress,
                WarningKind::CanaryUnmatched,
                message,
            );
        }
    }

    pub fn with_capacity(n: usize) -> Self {
        Canaries {
            by_route: HashMap::with_capacity(n),
        }
    }
}
