//! Annotations into typed values.
//!
//! Read under our prefix (`gatehouse.dev/`, `--annotations-prefix`) and under
//! `nginx.ingress.kubernetes.io/`; ours wins when both are set. A value that
//! does not parse is ignored with a warning and the default applies, except
//! for protective annotations (access control), which the `policy` module
//! compiles and which fail closed. Nothing is ever passed on as text: there
//! is no configuration to inject into. ingress-nginx annotations Gatehouse
//! does not implement are named in one warning per Ingress; snippet
//! annotations are refused by design.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::settings::RouteDefaults;
use super::summary::{IngressSummary, SnippetSummary};
use super::WarningKind;
use crate::policy::affinity::Stickiness;
use crate::policy::cors::Cors;
use crate::policy::error_pages::ErrorPages;
use crate::policy::objects::ObjectLookup;
use crate::policy::protection::is_protective;
use crate::policy::proxy_settings::ProxySettings;
use crate::policy::rate_limit::LimitConfig;
use crate::policy::redirect;
use crate::policy::rewrite::{self, has_captures};
use crate::policy::snippet::{self, Snippet, Timeout};
use crate::policy::{AccessOptions, AccessPolicy, Annotations, ProtectionMode};
use crate::table::HostPattern;

/// What one Ingress's annotations decide.
#[derive(Clone, Debug, Default)]
pub struct IngressAnnotations {
    pub policy: ProxySettings,
    /// Who may reach the routes.
    pub access: Arc<AccessPolicy>,
    /// `enable-cors` and `cors-*`.
    pub cors: Option<Arc<Cors>>,
    /// `limit-*`, compiled by translate (which keeps their counters from
    /// one build to the next).
    pub limits: Option<LimitConfig>,
    /// `affinity` or `upstream-hash-by`.
    pub stickiness: Option<Arc<Stickiness>>,
    /// `server-alias`: more host names for the Ingress's rules.
    pub server_alias: Vec<HostPattern>,
    /// `from-to-www-redirect`.
    pub from_to_www: bool,
    /// Client certificates are asked for (`auth-tls-secret`) and cannot
    /// be enforced, and the Ingress is closed for it: the HTTPRoutes of
    /// its hosts are closed too.
    pub client_cert_denied: bool,
    /// `service-upstream`: the Service's ClusterIP instead of endpoints.
    pub service_upstream: bool,
    /// `custom-http-errors`.
    pub custom_errors: Option<Vec<u16>>,
    /// `default-backend`: a Service of the Ingress's namespace.
    pub default_backend: Option<String>,
    /// `ssl-passthrough`.
    pub ssl_passthrough: bool,
    /// What became of each annotation (the migration summary).
    pub summary: IngressSummary,
    /// `ssl-redirect`; `None` means "when the Ingress has TLS for the host".
    pub ssl_redirect: Option<bool>,
    pub use_regex: bool,
    pub rewrite_target: Option<String>,
    /// The configuration-snippet, when snippets are allowed and it is
    /// applied.
    pub snippet: Option<Arc<Snippet>>,
}

impl IngressAnnotations {
    /// Paths of this Ingress are regular expressions: `use-regex`, or a
    /// `rewrite-target` with capture groups.
    pub fn regex_paths(&self) -> bool {
        self.use_regex || self.rewrite_target.as_deref().is_some_and(has_captures)
    }
}

/// Annotations we read, by name without prefix.
const IMPLEMENTED: &[&str] = &[
    "ssl-redirect",
    "force-ssl-redirect",
    "rewrite-target",
    "use-regex",
    "app-root",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "temporal-redirect-code",
    "backend-protocol",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "proxy-body-size",
    "upstream-vhost",
    "x-forwarded-prefix",
    "load-balance",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
    "limit-rps",
    "limit-rpm",
    "limit-connections",
    "limit-burst-multiplier",
    "limit-allowlist",
    "limit-whitelist",
    "server-alias",
    "from-to-www-redirect",
    "service-upstream",
    "proxy-next-upstream",
    "custom-http-errors",
    "default-backend",
    "ssl-passthrough",
    "proxy-next-upstream-tries",
    "proxy-next-upstream-timeout",
    "enable-opentelemetry",
    "opentelemetry-trust-incoming-span",
    // `--host-ownership namespace`; read under our prefix only.
    "allow-namespaces",
    // ACME certificates (translate::acme); read under our prefix only.
    "acme-issuer",
];

/// Whether Gatehouse reads a (non-protective) annotation: its own list,
/// and the families that keep theirs. Canary annotations are read on
/// canary Ingresses; without `canary: "true"` they do nothing, as in
/// ingress-nginx.
fn implemented(name: &str) -> bool {
    IMPLEMENTED.contains(&name)
        || crate::policy::affinity::ANNOTATIONS.contains(&name)
        || crate::policy::canary::ANNOTATIONS.contains(&name)
}

/// Accepted without effect, and without a warning: Gatehouse streams
/// request and response bodies both ways and speaks HTTP/1.1 to endpoints,
/// so nginx's buffering knobs have nothing to tune, and a migrating user
/// could not act on a warning about them.
pub(crate) const ACCEPTED: &[&str] = &[
    "proxy-buffering",
    "proxy-request-buffering",
    "proxy-buffer-size",
    "proxy-buffers-number",
    "client-body-buffer-size",
    "proxy-http-version",
    "proxy-busy-buffers-size",
    "proxy-max-temp-file-size",
    // Opts an Ingress out of a global auth URL, which Gatehouse has not.
    "enable-global-auth",
];

const SNIPPETS: &[&str] = &[
    "configuration-snippet",
    "server-snippet",
    "auth-snippet",
    "stream-snippet",
    "modsecurity-snippet",
];

/// Parses the annotations of one Ingress; `secrets` serves the Secrets
/// access annotations name. Warnings come back as kind and message; the
/// caller names the Ingress.
pub fn parse(
    annotations: Option<&BTreeMap<String, String>>,
    our_prefix: &str,
    secrets: &ObjectLookup<'_>,
    defaults: &RouteDefaults,
) -> (IngressAnnotations, Vec<(WarningKind, String)>) {
    let mut reader = Reader {
        annotations: Annotations::new(annotations, our_prefix),
        warnings: Vec::new(),
        unenforced: Vec::new(),
        snippets_allowed: defaults.access.snippets_allowed(),
        applied_snippets: Vec::new(),
    };
    let mut policy = defaults.policy.clone();
    let ssl_redirect = reader.parsed("ssl-redirect", parse_bool);
    if let Some(force) = reader.parsed("force-ssl-redirect", parse_bool) {
        policy.force_ssl_redirect = force;
    }
    let use_regex = reader.parsed("use-regex", parse_bool).unwrap_or(false);
    let rewrite_target = reader.parsed("rewrite-target", rewrite::parse_target);
    policy.app_root = reader.parsed("app-root", redirect::parse_app_root);
    policy.redirect = reader.compiled(redirect::compile_fixed);
    reader.compiled(|annotations, notes| policy.read(annotations, notes));
    reader.report_unimplemented();
    reader.report_oversized();
    let access = reader.access(secrets, &defaults.access);
    let (snippet, snippet_summaries) = reader.snippets(&mut policy);
    let client_cert_denied = reader.annotations.get("auth-tls-secret").is_some()
        && access.client_cert.is_none()
        && access.denied.is_some();
    let mut summary = reader.summary(&access);
    summary.snippets = snippet_summaries;
    let mut notes = Vec::new();
    let cors = Cors::compile(&reader.annotations, &mut notes).map(Arc::new);
    let limits = LimitConfig::parse(&reader.annotations, &mut notes);
    let stickiness = Stickiness::compile(&reader.annotations, &mut notes).map(Arc::new);
    let server_alias = reader
        .parsed("server-alias", parse_aliases)
        .unwrap_or_default();
    let from_to_www = reader
        .parsed("from-to-www-redirect", parse_bool)
        .unwrap_or(false);
    let service_upstream = reader
        .parsed("service-upstream", parse_bool)
        .unwrap_or(defaults.service_upstream);
    let custom_errors = reader
        .parsed("custom-http-errors", ErrorPages::parse_codes)
        .or_else(|| defaults.custom_errors.clone());
    let ssl_passthrough = reader
        .parsed("ssl-passthrough", parse_bool)
        .unwrap_or(false);
    let default_backend = reader.parsed("default-backend", parse_service_name);
    let invalid = notes
        .into_iter()
        .map(|n| (WarningKind::InvalidAnnotation, n));
    reader.warnings.extend(invalid);
    let parsed = IngressAnnotations {
        policy,
        access,
        cors,
        limits,
        stickiness,
        server_alias,
        from_to_www,
        client_cert_denied,
        service_upstream,
        custom_errors,
        default_backend,
        ssl_passthrough,
        summary,
        ssl_redirect,
        use_regex,
        rewrite_target,
        snippet,
    };
    (parsed, reader.warnings)
}

struct Reader<'a> {
    annotations: Annotations<'a>,
    warnings: Vec<(WarningKind, String)>,
    /// Protective annotations that could not be enforced.
    unenforced: Vec<String>,
    /// `--allow-snippet-annotations` (and the risk level) let snippets be
    /// read.
    snippets_allowed: bool,
    /// Snippet annotations read and applied whole.
    applied_snippets: Vec<String>,
}

impl Reader<'_> {
    /// A policy family's compiled value; its notes become warnings now,
    /// in the order the annotations are read.
    fn compiled<T>(&mut self, compile: impl FnOnce(&Annotations<'_>, &mut Vec<String>) -> T) -> T {
        let mut notes = Vec::new();
        let value = compile(&self.annotations, &mut notes);
        let invalid = notes
            .into_iter()
            .map(|n| (WarningKind::InvalidAnnotation, n));
        self.warnings.extend(invalid);
        value
    }

    fn parsed<T>(&mut self, name: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        self.compiled(|annotations, notes| annotations.parsed(name, parse, notes))
    }

    /// The access policy, with a warning for each protection that cannot
    /// be enforced (the routes are closed, or served without it in warn
    /// mode) and for each note (nothing left open).
    fn access(&mut self, secrets: &ObjectLookup<'_>, options: &AccessOptions) -> Arc<AccessPolicy> {
        let compiled = AccessPolicy::compile(&self.annotations, secrets, options);
        let (kind, outcome) = match options.unsupported_protection {
            ProtectionMode::Deny => (
                WarningKind::ProtectionDenied,
                "every route of this Ingress answers 503",
            ),
            ProtectionMode::Warn => (
                WarningKind::ProtectionNotEnforced,
                "served WITHOUT this protection (--unsupported-protection warn)",
            ),
        };
        for problem in compiled.problems.iter() {
            self.unenforced.push(problem.annotation.clone());
            self.warnings
                .push((kind, format!("annotation {problem}; {outcome}")));
        }
        for note in compiled.notes {
            self.warnings.push((WarningKind::InvalidSecret, note));
        }
        Arc::new(compiled.policy)
    }

    /// The snippet annotations, when they may be read: each one's
    /// directives for the summary, a warning for each one not applied,
    /// and the configuration-snippet when it is applied (its timeouts and
    /// body size go into `policy`). The server-snippet is applied host by
    /// host, by the build.
    fn snippets(
        &mut self,
        policy: &mut ProxySettings,
    ) -> (Option<Arc<Snippet>>, Vec<SnippetSummary>) {
        let mut location = None;
        let mut summaries = Vec::new();
        if !self.snippets_allowed {
            return (None, summaries);
        }
        for name in snippet::SNIPPETS {
            let Some((key, text)) = self.annotations.get(name) else {
                continue;
            };
            let read = Snippet::read_as(name, text);
            summaries.push(SnippetSummary {
                annotation: key.clone(),
                enforced: if read.applies() {
                    read.understood.clone()
                } else {
                    Vec::new()
                },
                refused: read.refused.clone(),
            });
            if !read.applies() {
                let refused = read.refused.join("; ");
                let message = format!(
                    "annotation {key} not applied, the Ingress is served without it: {refused}"
                );
                self.warnings.push((WarningKind::SnippetRefused, message));
                continue;
            }
            self.applied_snippets.push(key.clone());
            if *name == "configuration-snippet" {
                self.limits_from(&key, &read, policy);
                location = Some(Arc::new(read));
            } else {
                self.server_limits(&key, &read);
            }
        }
        (location, summaries)
    }

    /// A configuration-snippet's timeouts and body size, where no
    /// annotation sets the same. (ingress-nginx writes its own directive
    /// for each into every location, so nginx refuses a snippet's as a
    /// duplicate; the annotation is the way to say it, and wins here.)
    fn limits_from(&mut self, key: &str, read: &Snippet, policy: &mut ProxySettings) {
        // `grpc_*_timeout` acts only where ingress-nginx writes
        // `grpc_pass`: a GRPC or GRPCS backend, where its `proxy_*`
        // twins do nothing.
        let grpc = policy.protocol.is_http2();
        let (unused, kind) = match grpc {
            true => (&read.timeouts, "proxy"),
            false => (&read.grpc_timeouts, "grpc"),
        };
        if !unused.is_empty() {
            let protocol = if grpc { "is" } else { "is not" };
            self.warnings.push((
                WarningKind::SnippetRefused,
                format!("annotation {key}: its {kind}_*_timeout have no effect, as under ingress-nginx: the backend protocol {protocol} GRPC or GRPCS"),
            ));
        }
        let timeouts = &mut policy.timeouts;
        let chosen = if grpc {
            &read.grpc_timeouts
        } else {
            &read.timeouts
        };
        for (which, time) in chosen {
            let (annotation, slot) = match which {
                Timeout::Connect => ("proxy-connect-timeout", &mut timeouts.connect),
                Timeout::Send => ("proxy-send-timeout", &mut timeouts.send),
                Timeout::Read => ("proxy-read-timeout", &mut timeouts.read),
            };
            match self.annotations.get(annotation) {
                None => *slot = *time,
                Some((winner, _)) => self.warnings.push((
                    WarningKind::SnippetRefused,
                    format!(
                        "annotation {key}: its {} is overridden by {winner}",
                        annotation.replace('-', "_")
                    ),
                )),
            }
        }
        // ingress-nginx writes no `client_body_timeout` of its own: the
        // snippet's holds.
        if read.client_body_timeout.is_some() {
            policy.client_body_timeout = read.client_body_timeout;
        }
        if let Some(size) = read.body_size {
            match self.annotations.get("proxy-body-size") {
                None => policy.body_limit = (size > 0).then_some(size),
                Some((winner, _)) => self.warnings.push((
                    WarningKind::SnippetRefused,
                    format!("annotation {key}: its client_max_body_size is overridden by {winner}"),
                )),
            }
        }
    }

    /// A server-snippet's timeouts and body size do nothing under
    /// ingress-nginx, whose every location sets its own; nor here.
    fn server_limits(&mut self, key: &str, read: &Snippet) {
        let timeouts = !read.timeouts.is_empty() || !read.grpc_timeouts.is_empty();
        if timeouts || read.body_size.is_some() {
            self.warnings.push((
                WarningKind::SnippetRefused,
                format!("annotation {key}: its timeouts and client_max_body_size have no effect, as under ingress-nginx (each location sets its own); use the annotations"),
            ));
        }
    }

    /// Values too long to be read: ignored (protective ones close the
    /// Ingress, said by the access policy).
    fn report_oversized(&mut self) {
        let limit = crate::policy::MAX_VALUE_BYTES;
        let oversized: Vec<(String, usize)> = self
            .annotations
            .oversized()
            .filter(|(_, name, _)| !is_protective(name) && !snippet::SNIPPETS.contains(name))
            .map(|(key, _, len)| (key.to_owned(), len))
            .collect();
        for (key, len) in oversized {
            self.warnings.push((
                WarningKind::InvalidAnnotation,
                format!("annotation {key}: {len} bytes, over the {limit}-byte limit; ignored"),
            ));
        }
    }

    /// Sorts every annotation under our prefixes into enforced, accepted
    /// and refused (served or denied).
    fn summary(&self, access: &AccessPolicy) -> IngressSummary {
        let mut summary = IngressSummary::default();
        for (key, name) in self.annotations.ours_and_nginx() {
            let key = key.to_owned();
            let failed = self.unenforced.contains(&key);
            // A snippet that restricts access counts as protective.
            if is_protective(name) || failed {
                match (failed, access.denied.is_some()) {
                    (true, true) => summary.refused_denied.push(key),
                    (true, false) => summary.refused_served.push(key),
                    (false, _) => summary.enforced.push(key),
                }
            } else if self.applied_snippets.contains(&key) {
                summary.enforced.push(key);
            } else if ACCEPTED.contains(&name) {
                summary.accepted.push(key);
            } else if implemented(name) {
                summary.enforced.push(key);
            } else {
                summary.refused_served.push(key);
            }
        }
        summary
    }

    fn report_unimplemented(&mut self) {
        let mut unsupported = Vec::new();
        for (key, name) in self.annotations.ours_and_nginx() {
            if is_protective(name) {
                continue; // the access policy's, which fails closed
            }
            if self.snippets_allowed && snippet::SNIPPETS.contains(&name) {
                continue; // read, and warned about, by `snippets`
            }
            if SNIPPETS.contains(&name) {
                self.warnings.push((
                    WarningKind::SnippetRefused,
                    format!("annotation {key} refused: snippets are read only with --allow-snippet-annotations (a typed subset of nginx directives); express the need with a typed annotation"),
                ));
            } else if !implemented(name) && !ACCEPTED.contains(&name) {
                unsupported.push(key);
            }
        }
        if !unsupported.is_empty() {
            self.warnings.push((
                WarningKind::UnsupportedAnnotation,
                format!(
                    "annotations not implemented by Gatehouse, without effect: {}",
                    unsupported.join(", ")
                ),
            ));
        }
    }
}

/// Go's `strconv.ParseBool`, which ingress-nginx uses.
pub(super) fn parse_bool(value: &str) -> Result<bool, String> {
    crate::policy::parse_bool(value).ok_or_else(|| "is not a boolean".into())
}

/// A Service name (DNS-1035 label).
fn parse_service_name(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(value.to_owned())
    } else {
        Err("is not a Service name".into())
    }
}

/// Host names (or `*.` wildcards), comma-separated.
fn parse_aliases(value: &str) -> Result<Vec<HostPattern>, String> {
    let names: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Err("lists no host name".into());
    }
    names
        .iter()
        .map(|name| {
            let bare = name.strip_prefix("*.").unwrap_or(name);
            let valid = bare.contains('.')
                && bare
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if valid {
                Ok(HostPattern::parse(Some(name)))
            } else {
                Err(format!("has {name:?}, which is not a host name"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::proxy_settings::parse_size;
    use crate::policy::rewrite::parse_target as parse_rewrite_target;
    use std::time::Duration;

    /// Parses with no Secrets and the default access options.
    fn parse_alone(
        a: &BTreeMap<String, String>,
    ) -> (IngressAnnotations, Vec<(WarningKind, String)>) {
        let secrets = crate::cluster::KeyedMap::default();
        let lookup = ObjectLookup {
            namespace: "default",
            secrets: &secrets,
            config_maps: &crate::cluster::KeyedMap::default(),
        };
        parse(Some(a), "gatehouse.dev", &lookup, &RouteDefaults::default())
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn our_prefix_wins_over_nginx() {
        let a = annotations(&[
            ("nginx.ingress.kubernetes.io/proxy-body-size", "1k"),
            ("gatehouse.dev/proxy-body-size", "2k"),
        ]);
        let (parsed, warnings) = parse_alone(&a);
        assert_eq!(parsed.policy.body_limit, Some(2048));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn sizes_follow_nginx_units_and_zero_is_unlimited() {
        assert_eq!(parse_size("8m"), Ok(8 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("8x").is_err());
        let a = annotations(&[("nginx.ingress.kubernetes.io/proxy-body-size", "0")]);
        assert_eq!(parse_alone(&a).0.policy.body_limit, None);
    }

    #[test]
    fn bad_values_are_ignored_with_a_warning_and_defaults_stay() {
        let a = annotations(&[
            ("nginx.ingress.kubernetes.io/proxy-read-timeout", "soon"),
            (
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "10.0.0.0/8, banana",
            ),
            (
                "nginx.ingress.kubernetes.io/permanent-redirect",
                "https://x.test$request_uri",
            ),
        ]);
        let (parsed, warnings) = parse_alone(&a);
        assert_eq!(parsed.policy, ProxySettings::default());
        let kinds: Vec<_> = warnings.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [
                WarningKind::InvalidAnnotation,
                WarningKind::InvalidAnnotation,
                WarningKind::ProtectionDenied
            ],
            "{warnings:?}"
        );
        assert!(parsed.access.denied.is_some());
    }

    #[test]
    fn grpc_timeouts_of_a_snippet_time_grpc_backends_only() {
        let mut defaults = RouteDefaults::default();
        defaults.access.allow_snippets = true;
        let secrets = crate::cluster::KeyedMap::default();
        let config_maps = crate::cluster::KeyedMap::default();
        let lookup = ObjectLookup {
            namespace: "default",
            secrets: &secrets,
            config_maps: &config_maps,
        };
        let snippet = "grpc_read_timeout 3600s;\nproxy_read_timeout 7s;";
        let read = |protocol: &str| {
            let a = annotations(&[
                ("nginx.ingress.kubernetes.io/configuration-snippet", snippet),
                ("nginx.ingress.kubernetes.io/backend-protocol", protocol),
            ]);
            parse(Some(&a), "gatehouse.dev", &lookup, &defaults)
        };
        let (grpc, warnings) = read("GRPC");
        assert_eq!(grpc.policy.timeouts.read, Duration::from_secs(3600));
        assert!(warnings[0].1.contains("proxy_*_timeout have no effect"));
        let (http, warnings) = read("HTTP");
        assert_eq!(http.policy.timeouts.read, Duration::from_secs(7));
        assert!(warnings[0].1.contains("grpc_*_timeout have no effect"));
    }

    #[test]
    fn snippets_are_refused_and_unknown_annotations_listed_once() {
        let a = annotations(&[
            (
                "nginx.ingress.kubernetes.io/configuration-snippet",
                "more_set_headers x;",
            ),
            (
                "nginx.ingress.kubernetes.io/mirror-target",
                "http://mirror/",
            ),
            ("nginx.ingress.kubernetes.io/enable-access-log", "false"),
            ("cert-manager.io/cluster-issuer", "letsencrypt"),
        ]);
        let (_, warnings) = parse_alone(&a);
        let kinds: Vec<_> = warnings.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [
                WarningKind::SnippetRefused,
                WarningKind::UnsupportedAnnotation
            ]
        );
        assert!(
            warnings[1].1.contains("mirror-target") && warnings[1].1.contains("enable-access-log")
        );
        assert!(!warnings[1].1.contains("cert-manager"));
    }

    #[test]
    fn buffering_annotations_are_accepted_without_a_warning() {
        let a = annotations(&[
            ("nginx.ingress.kubernetes.io/proxy-buffering", "on"),
            ("nginx.ingress.kubernetes.io/proxy-buffer-size", "16k"),
            ("nginx.ingress.kubernetes.io/proxy-http-version", "1.1"),
        ]);
        let (_, warnings) = parse_alone(&a);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn rewrite_targets_allow_capture_groups_only() {
        assert!(parse_rewrite_target("/$2").is_ok());
        assert!(parse_rewrite_target("/api/$1/x$2").is_ok());
        assert!(parse_rewrite_target("/$request_uri").is_err());
        assert!(parse_rewrite_target("/x; return 200").is_err());
    }
}
