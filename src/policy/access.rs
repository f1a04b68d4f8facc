//! Access: who may reach a route. The families (source ranges, basic and
//! external authentication) compile here into one `AccessPolicy` per
//! Ingress, and its phase runs in two steps: `admit` while the table
//! decides (no I/O), `authenticate` in the handler when a credential must
//! be checked.
//!
//! Fail closed: a protective annotation Gatehouse does not implement, one
//! whose value does not parse, or one that names a missing or malformed
//! Secret closes every route of the Ingress (503, ingress-nginx's "denied
//! location"). `--unsupported-protection warn` serves them without that
//! protection instead, with the same warnings.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

use super::basic_auth::BasicAuth;
use super::client_cert::ClientAuth;
use super::external_auth::ExternalAuth;
use super::objects::ObjectLookup;
use super::protection::{is_enforced, is_protective, AccessOptions, Problems, ProtectionMode};
use super::snippet;
use super::source_range::{SourceRanges, Verdict};
use super::template::Facts;
use super::{parse_bool, Annotations};
use crate::connection::ConnInfo;
use crate::upstream::{Timeouts, Upstreams};

/// How source ranges and authentication combine (`satisfy`), as nginx's
/// directive of that name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Satisfy {
    /// Every check present must pass.
    #[default]
    All,
    /// One passing check is enough.
    Any,
}

/// Who may reach an Ingress's routes.
#[derive(Debug, Default)]
pub struct AccessPolicy {
    /// Why the routes are closed; `None` when they are served.
    pub denied: Option<String>,
    pub sources: Option<SourceRanges>,
    pub basic: Option<Arc<BasicAuth>>,
    pub external: Option<Arc<ExternalAuth>>,
    /// Client certificates, for every route of the Ingress's hosts.
    pub client_cert: Option<Arc<ClientAuth>>,
    pub satisfy: Satisfy,
}

/// What the access phase decides before any credential is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Closed: what protects the route cannot be enforced (503).
    Closed,
    /// The client's address is refused (403).
    Refused,
    /// Go on.
    Open,
    /// Go on once `authenticate` says yes.
    Authenticate,
}

/// An answer of the access phase instead of the backend's.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub status: StatusCode,
    /// `WWW-Authenticate` for a 401, `Location` for a sign-in redirect,
    /// `Set-Cookie` from an auth service.
    pub headers: HeaderMap,
}

impl Refusal {
    pub fn status(status: StatusCode) -> Self {
        Refusal {
            status,
            headers: HeaderMap::new(),
        }
    }
}

/// What the access phase hands back on success.
#[derive(Debug, Default)]
pub struct Granted {
    /// Headers an auth service sent, to replace the client's copies in the
    /// upstream request (`auth-response-headers`).
    pub upstream_headers: Vec<(HeaderName, Vec<HeaderValue>)>,
    /// Basic credentials were checked: they do not go upstream.
    pub remove_authorization: bool,
    /// The auth service's `Set-Cookie`s, for the response to the client.
    pub set_cookies: Vec<HeaderValue>,
    /// Add them whatever the response status (`auth-always-set-cookie`);
    /// otherwise only on nginx's `add_header` statuses.
    pub always: bool,
}

impl Granted {
    /// The upstream request phase.
    pub fn apply_to_request(&self, headers: &mut HeaderMap) {
        if self.remove_authorization {
            headers.remove(header::AUTHORIZATION);
        }
        for (name, values) in &self.upstream_headers {
            headers.remove(name);
            for value in values {
                headers.append(name.clone(), value.clone());
            }
        }
    }

    /// The response phase: the auth service's cookies reach the client.
    pub fn apply_to_response(&self, status: StatusCode, headers: &mut HeaderMap) {
        let success = matches!(
            status.as_u16(),
            200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
        );
        if self.always || success {
            for cookie in &self.set_cookies {
                headers.append(header::SET_COOKIE, cookie.clone());
            }
        }
    }
}

/// The request the access phase checks, and its connection.
pub struct Subject<'a> {
    pub facts: Facts<'a>,
    pub conn: &'a ConnInfo,
    /// The route's timeouts, which bound a subrequest too.
    pub timeouts: Timeouts,
}

/// The result of compiling one Ingress's access annotations.
#[derive(Debug)]
pub struct Compiled {
    pub policy: AccessPolicy,
    /// What cannot be enforced.
    pub problems: Problems,
    /// Worth a warning, but nothing is left unprotected.
    pub notes: Vec<String>,
}

impl AccessPolicy {
    pub fn compile(
        annotations: &Annotations<'_>,
        secrets: &ObjectLookup<'_>,
        options: &AccessOptions,
    ) -> Compiled {
        let mut problems = Problems::default();
        let mut notes = Vec::new();
        let sources = SourceRanges::compile(annotations, options, &mut problems);
        for closure in &options.closed {
            let opted_out = closure.global_auth
                && annotations
                    .get("enable-global-auth")
                    .is_some_and(|(_, v)| parse_bool(v) == Some(false));
            let replaced = closure
                .replaced_by
                .iter()
                .any(|name| annotations.get(name).is_some());
            if !opted_out && !replaced {
                problems.add("(controller ConfigMap)", closure.reason.clone());
            }
        }
        let basic = BasicAuth::compile(annotations, secrets, options, &mut problems, &mut notes);
        let external =
            ExternalAuth::compile(annotations, secrets, options, &mut problems).map(Arc::new);
        let client_cert = ClientAuth::compile(annotations, secrets, options, &mut problems);
        let satisfy = match annotations.get("satisfy") {
            None => Satisfy::All,
            Some((_, "all")) => Satisfy::All,
            Some((_, "any")) => Satisfy::Any,
            Some((key, other)) => {
                problems.add(&key, format!("{other:?} is not any or all"));
                Satisfy::All
            }
        };
        for (key, name, len) in annotations.oversized() {
            // A snippet too long to be read may restrict access: it closes.
            if is_protective(name) || snippet::SNIPPETS.contains(&name) {
                let limit = super::annotations::MAX_VALUE_BYTES;
                problems.add(key, format!("is {len} bytes, over the {limit}-byte limit"));
            }
        }
        let mut from_snippet = None;
        for (key, name) in annotations.ours_and_nginx() {
            if snippet::SNIPPETS.contains(&name) {
                let text = annotations.value(key).unwrap_or_default();
                match snippet::access_of(name, text, options) {
                    Ok(found) => from_snippet = from_snippet.or(found.map(|f| (key, f))),
                    Err(problem) => problems.add(key, problem),
                }
            } else if name == "auth-snippet" {
                problems.add(
                    key,
                    "is a snippet, which Gatehouse refuses by design".into(),
                );
            } else if is_protective(name) && !is_enforced(name) && !asks_nothing(annotations, name)
            {
                problems.add(key, "is not implemented by Gatehouse".into());
            }
        }
        let satisfy_annotated = annotations.get("satisfy").is_some();
        let annotated = (sources, satisfy, satisfy_annotated);
        let (sources, satisfy) = with_snippet(annotated, from_snippet, &mut problems);
        let denied = match options.unsupported_protection {
            ProtectionMode::Deny if !problems.is_empty() => Some(
                problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            _ => None,
        };
        Compiled {
            policy: AccessPolicy {
                denied,
                sources,
                basic,
                external,
                client_cert,
                satisfy,
            },
            problems,
            notes,
        }
    }

    /// The phase's first step, from the table alone. nginx's rule: under
    /// `satisfy any`, an allowed address skips authentication, and a
    /// refused one may still authenticate; under `all`, both must pass.
    pub fn admit(&self, client: IpAddr) -> Admission {
        if self.denied.is_some() {
            return Admission::Closed;
        }
        let verdict = self
            .sources
            .as_ref()
            .map_or(Verdict::NoMatch, |s| s.verdict(client));
        let auth = self.basic.is_some() || self.external.is_some();
        match (self.satisfy, verdict, auth) {
            (Satisfy::All, Verdict::Refused, _) => Admission::Refused,
            (Satisfy::Any, Verdict::Allowed, _) => Admission::Open,
            (_, _, true) => Admission::Authenticate,
            (_, Verdict::Refused, false) => Admission::Refused,
            (_, _, false) => Admission::Open,
        }
    }

    /// The phase's second step: basic credentials (removed from what goes
    /// upstream on success, as ingress-nginx clears `Authorization`), then
    /// the external auth service.
    pub async fn authenticate(
        &self,
        subject: &Subject<'_>,
        upstreams: &Upstreams,
    ) -> Result<Granted, Refusal> {
        let basic_checked = match &self.basic {
            Some(basic) if basic.admits(subject.facts.headers).await => true,
            Some(basic) => {
                let mut refusal = Refusal::status(StatusCode::UNAUTHORIZED);
                refusal
                    .headers
                    .insert(header::WWW_AUTHENTICATE, basic.challenge().clone());
                return Err(refusal);
            }
            None => false,
        };
        let mut granted = match &self.external {
            Some(external) => {
                let (facts, conn) = (&subject.facts, subject.conn);
                external
                    .check(facts, conn, upstreams, subject.timeouts)
                    .await?
            }
            None => Granted::default(),
        };
        granted.remove_authorization = basic_checked;
        Ok(granted)
    }

    /// One line for operators: `public`, `denied: <reason>`, or the checks
    /// in force (`allowlist+basic`; `|` between them under `satisfy any`).
    pub fn describe(&self) -> String {
        if let Some(reason) = &self.denied {
            return format!("denied: {reason}");
        }
        let mut kinds: Vec<&str> = Vec::new();
        if self.client_cert.is_some() {
            kinds.push("mtls");
        }
        kinds.extend(self.sources.as_ref().map(|s| s.kinds()).unwrap_or_default());
        if self.basic.is_some() {
            kinds.push("basic");
        }
        if self.external.is_some() {
            kinds.push("external");
        }
        if kinds.is_empty() {
            return "public".into();
        }
        let joiner = match self.satisfy {
            Satisfy::All => "+",
            Satisfy::Any => "|",
        };
        kinds.join(joiner)
    }
}

/// A configuration-snippet's `allow`/`deny` and `satisfy` where no
/// annotation sets them. nginx reads the annotations' rules first (their
/// `deny all` ends the list) and refuses a second `satisfy`: where both
/// set one, Gatehouse cannot say what nginx would, and the routes close.
fn with_snippet(
    (sources, satisfy, satisfy_annotated): (Option<SourceRanges>, Satisfy, bool),
    snippet: Option<(&str, snippet::SnippetAccess)>,
    problems: &mut Problems,
) -> (Option<SourceRanges>, Satisfy) {
    let Some((key, snippet)) = snippet else {
        return (sources, satisfy);
    };
    let sources = match (sources, snippet.sources) {
        (Some(_), Some(_)) => {
            problems.add(
                key,
                "has allow or deny rules beside source-range annotations or ConfigMap keys".into(),
            );
            None
        }
        (annotated, from_snippet) => annotated.or(from_snippet),
    };
    let satisfy = match snippet.satisfy {
        Some(_) if satisfy_annotated => {
            problems.add(key, "has satisfy beside the satisfy annotation".into());
            satisfy
        }
        Some(from_snippet) => from_snippet,
        None => satisfy,
    };
    (sources, satisfy)
}

/// Protective switches set to off ask for no protection.
fn asks_nothing(annotations: &Annotations<'_>, name: &str) -> bool {
    let switch = matches!(name, "enable-modsecurity" | "enable-owasp-core-rules");
    switch
        && annotations
            .get(name)
            .is_some_and(|(_, v)| parse_bool(v) == Some(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ObjectKey;
    use crate::policy::annotations::nginx_annotations;
    use k8s_openapi::api::core::v1::Secret;
    use std::collections::BTreeMap;

    fn compile_with(pairs: &[(&str, &str)], options: &AccessOptions) -> Compiled {
        let map = nginx_annotations(pairs);
        let secrets = crate::cluster::KeyedMap::default();
        let lookup = ObjectLookup {
            namespace: "shop",
            secrets: &secrets,
            config_maps: &crate::cluster::KeyedMap::default(),
        };
        AccessPolicy::compile(
            &Annotations::new(Some(&map), "gatehouse.dev"),
            &lookup,
            options,
        )
    }

    fn compile(pairs: &[(&str, &str)]) -> Compiled {
        compile_with(pairs, &AccessOptions::default())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn no_protective_annotation_is_public() {
        let c = compile(&[("proxy-body-size", "8m")]);
        assert!(c.problems.is_empty());
        assert_eq!(c.policy.describe(), "public");
        assert_eq!(c.policy.admit(ip("192.0.2.1")), Admission::Open);
    }

    #[test]
    fn a_snippet_that_restricts_access_or_is_too_long_to_read_closes_the_routes() {
        let big = format!("proxy_set_header X-A b;\n{}", "# padding\n".repeat(2000));
        for (name, snippet) in [
            ("configuration-snippet", "deny all;"),
            ("server-snippet", "if ($http_x_block) { return 403; }"),
            ("configuration-snippet", big.as_str()),
        ] {
            let c = compile(&[(name, snippet)]);
            assert_eq!(c.policy.admit(ip("192.0.2.1")), Admission::Closed, "{name}");
        }
        let c = compile(&[("configuration-snippet", "more_set_headers \"X-A: b\";")]);
        assert_eq!(c.policy.admit(ip("192.0.2.1")), Admission::Open);
    }

    #[test]
    fn allowed_snippets_enforce_their_access_rules_and_close_on_what_they_cannot() {
        let allowed = AccessOptions {
            allow_snippets: true,
            ..AccessOptions::default()
        };
        let rules = [("configuration-snippet", "allow 10.0.0.0/8;\ndeny all;")];
        let c = compile_with(&rules, &allowed);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.policy.admit(ip("10.1.2.3")), Admission::Open);
        assert_eq!(c.policy.admit(ip("192.0.2.1")), Admission::Refused);
        for closing in [
            // Not applied: gzip is not in the list.
            "allow 10.0.0.0/8; deny all; gzip on;",
            "if (-f /etc/blocked) { return 403; }",
            "auth_basic \"staff\";",
            // nginx decides these by the first rule that matches.
            "allow 10.0.0.0/8; deny 10.1.0.0/16;",
        ] {
            let c = compile_with(&[("configuration-snippet", closing)], &allowed);
            assert_eq!(
                c.policy.admit(ip("10.1.2.3")),
                Admission::Closed,
                "{closing}"
            );
        }
        let beside = [
            ("configuration-snippet", "deny 192.0.2.1;"),
            ("whitelist-source-range", "10.0.0.0/8"),
        ];
        let c = compile_with(&beside, &allowed);
        assert_eq!(c.policy.admit(ip("10.1.2.3")), Admission::Closed);
        let risky = AccessOptions {
            risk_level: Some(crate::policy::protection::RiskLevel::High),
            ..allowed.clone()
        };
        let c = compile_with(&rules, &risky);
        assert_eq!(c.policy.admit(ip("10.1.2.3")), Admission::Closed);
        let warn = AccessOptions {
            unsupported_protection: ProtectionMode::Warn,
            ..allowed
        };
        let c = compile_with(&[("configuration-snippet", "deny all; gzip on;")], &warn);
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
        assert_eq!(
            c.policy.admit(ip("10.1.2.3")),
            Admission::Open,
            "served without it"
        );
    }

    #[test]
    fn unimplemented_protective_annotations_close_the_routes() {
        for name in [
            "enable-owasp-core-rules",
            "modsecurity-transaction-id",
            "enable-modsecurity",
            "auth-snippet",
        ] {
            let c = compile(&[(name, "true")]);
            assert_eq!(c.policy.admit(ip("192.0.2.1")), Admission::Closed, "{name}");
            let reason = c.policy.denied.unwrap();
            assert!(reason.contains(name), "{reason}");
            assert!(reason.contains("not implemented") || reason.contains("snippet"));
        }
    }

    #[test]
    fn switches_turned_off_ask_for_nothing() {
        let c = compile(&[
            ("enable-modsecurity", "false"),
            ("enable-global-auth", "false"),
        ]);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
    }

    #[test]
    fn bad_values_missing_secrets_and_digest_close_the_routes() {
        let cases: &[&[(&str, &str)]] = &[
            &[("whitelist-source-range", "everyone")],
            &[("satisfy", "some")],
            &[("auth-type", "basic"), ("auth-secret", "missing")],
            &[("auth-type", "basic")],
            &[("auth-type", "digest"), ("auth-secret", "s")],
            &[("auth-secret", "s")],
            &[("auth-type", "basic"), ("auth-secret", "other/s")],
            &[
                ("auth-type", "basic"),
                ("auth-secret", "s"),
                ("auth-secret-type", "ldap"),
            ],
        ];
        for annotations in cases {
            let c = compile(annotations);
            assert_eq!(
                c.policy.admit(ip("10.0.0.1")),
                Admission::Closed,
                "{annotations:?}"
            );
        }
    }

    #[test]
    fn cross_namespace_secrets_need_the_flag() {
        let c = compile(&[("auth-type", "basic"), ("auth-secret", "other/s")]);
        assert!(c.policy.denied.unwrap().contains("another namespace"));
        let options = AccessOptions {
            cross_namespace_secrets: true,
            ..AccessOptions::default()
        };
        let c = compile_with(
            &[("auth-type", "basic"), ("auth-secret", "other/s")],
            &options,
        );
        assert!(c
            .policy
            .denied
            .unwrap()
            .contains("Secret other/s not found"));
    }

    #[test]
    fn warn_mode_serves_without_what_cannot_be_enforced() {
        let options = AccessOptions {
            unsupported_protection: ProtectionMode::Warn,
            ..AccessOptions::default()
        };
        let c = compile_with(
            &[
                ("auth-tls-secret", "shop/ca"),
                ("whitelist-source-range", "10.0.0.0/8"),
            ],
            &options,
        );
        assert_eq!(c.problems.len(), 1);
        assert_eq!(c.policy.admit(ip("10.0.0.1")), Admission::Open);
        assert_eq!(c.policy.admit(ip("192.0.2.1")), Admission::Refused);
        assert_eq!(c.policy.describe(), "allowlist");
    }

    #[test]
    fn satisfy_any_lets_an_allowed_address_skip_authentication() {
        let sources = SourceRanges::compile(
            &Annotations::new(
                Some(&BTreeMap::from([(
                    "nginx.ingress.kubernetes.io/allowlist-source-range".to_owned(),
                    "10.0.0.0/8".to_owned(),
                )])),
                "gatehouse.dev",
            ),
            &AccessOptions::default(),
            &mut Problems::default(),
        );
        let mut policy = AccessPolicy {
            sources,
            satisfy: Satisfy::Any,
            ..AccessPolicy::default()
        };
        // Without authentication, satisfy has nothing to combine.
        assert_eq!(policy.admit(ip("192.0.2.1")), Admission::Refused);
        policy.basic = Some(test_basic());
        assert_eq!(policy.admit(ip("10.0.0.1")), Admission::Open);
        assert_eq!(policy.admit(ip("192.0.2.1")), Admission::Authenticate);
        assert_eq!(policy.describe(), "allowlist|basic");
        policy.satisfy = Satisfy::All;
        assert_eq!(policy.admit(ip("10.0.0.1")), Admission::Authenticate);
        assert_eq!(policy.admit(ip("192.0.2.1")), Admission::Refused);
        assert_eq!(policy.describe(), "allowlist+basic");
    }

    fn test_basic() -> Arc<BasicAuth> {
        use k8s_openapi::ByteString;
        let secret = Secret {
            data: Some(BTreeMap::from([(
                "auth".to_owned(),
                ByteString(b"alice:{SHA}F/WZ9PxtuIpP2yyadrWdU4eK0og=".to_vec()),
            )])),
            ..Secret::default()
        };
        let mut secrets = crate::cluster::KeyedMap::default();
        secrets.insert(ObjectKey::new("shop", "users"), Arc::new(secret));
        let map = BTreeMap::from([
            (
                "nginx.ingress.kubernetes.io/auth-type".to_owned(),
                "basic".to_owned(),
            ),
            (
                "nginx.ingress.kubernetes.io/auth-secret".to_owned(),
                "users".to_owned(),
            ),
        ]);
        let lookup = ObjectLookup {
            namespace: "shop",
            secrets: &secrets,
            config_maps: &crate::cluster::KeyedMap::default(),
        };
        let c = AccessPolicy::compile(
            &Annotations::new(Some(&map), "gatehouse.dev"),
            &lookup,
            &AccessOptions::default(),
        );
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        c.policy.basic.expect("basic")
    }
}
