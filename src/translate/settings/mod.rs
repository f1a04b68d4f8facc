//! The controller ConfigMap (`--configmap NS/NAME`): ingress-nginx's global
//! settings, compiled like annotations into typed values.
//!
//! Precedence is ingress-nginx's: an Ingress's annotation, else the
//! ConfigMap, else the built-in default, which the flags set. A key that
//! is unknown, not implemented or has a bad value is a warning naming it;
//! the rest of the ConfigMap applies. Settings that protect routes fail
//! closed instead: a bad `whitelist-source-range` or `block-*` list, or a
//! switched-on `global-auth-url` or `enable-modsecurity`, closes every
//! route it would protect (503).

pub mod keys;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use k8s_openapi::api::core::v1::ConfigMap;

use super::annotations::parse_bool;
use crate::policy::error_pages::ErrorPages;
use crate::policy::external_auth::proxy_set_headers;
use crate::policy::hsts::HstsOptions;
use crate::policy::log_format::{AccessLogSettings, LogFormat};
use crate::policy::objects::ObjectLookup;
use crate::policy::protection::{GlobalClosure, RiskLevel};
use crate::policy::proxy_settings::ProxySettings;
use crate::policy::proxy_settings::{parse_count, parse_load_balance, parse_seconds, parse_size};
use crate::policy::rate_limit::Statuses;
use crate::policy::snippet;
use crate::policy::source_range::parse_cidrs;
use crate::policy::AccessOptions;
use crate::table::{GlobalSettings, Match};
use keys::KeyStatus;

/// What routes start from before their annotations apply.
#[derive(Clone, Debug)]
pub struct RouteDefaults {
    /// `ssl-redirect`: hosts with TLS redirect plain HTTP.
    pub ssl_redirect: bool,
    /// `force-ssl-redirect`, `proxy-*-timeout`, `proxy-body-size`,
    /// `load-balance`, `proxy-next-upstream*`.
    pub policy: ProxySettings,
    pub hsts: HstsOptions,
    pub limit_statuses: Statuses,
    /// `custom-http-errors`.
    pub custom_errors: Option<Vec<u16>>,
    pub service_upstream: bool,
    /// `--unsupported-protection`, cross-namespace references, and the
    /// ConfigMap's source ranges and closures.
    pub access: AccessOptions,
}

/// The flags and the controller ConfigMap, compiled.
#[derive(Clone, Debug)]
pub struct Settings {
    pub routes: RouteDefaults,
    pub edge: GlobalSettings,
    /// `worker-processes` (0: one per core); read at start only.
    pub workers: Option<usize>,
}

/// What a key's value did besides applying.
enum Outcome {
    Applied,
    /// Applied, with something worth saying.
    Note(String),
}

impl Settings {
    /// Applies the ConfigMap's keys in order; each problem comes back as a
    /// message naming its key. `lookup` serves the ConfigMaps that
    /// `add-headers` and `proxy-set-headers` name (in the controller
    /// ConfigMap's namespace unless `namespace/name`).
    pub fn apply(&mut self, map: &ConfigMap, lookup: &ObjectLookup<'_>) -> Vec<String> {
        let mut problems = Vec::new();
        let mut tls = (*self.edge.tls).clone();
        for (key, value) in map.data.iter().flatten() {
            let value = value.trim();
            match self.apply_key(key, value, lookup, &mut tls) {
                Ok(Outcome::Applied) => {}
                Ok(Outcome::Note(note)) => problems.push(format!("{key}: {note}")),
                Err(why) => problems.push(format!("{key}: {value:?} {why}; ignored")),
            }
        }
        self.edge.tls = Arc::new(tls);
        problems
    }

    fn apply_key(
        &mut self,
        key: &str,
        value: &str,
        lookup: &ObjectLookup<'_>,
        tls: &mut crate::tls::TlsSettings,
    ) -> Result<Outcome, String> {
        let (routes, edge) = (&mut self.routes, &mut self.edge);
        let forwarded = &mut edge.forwarded;
        let timeouts = &mut routes.policy.timeouts;
        match key {
            "ssl-redirect" => routes.ssl_redirect = parse_bool(value)?,
            "force-ssl-redirect" => routes.policy.force_ssl_redirect = parse_bool(value)?,
            "hsts" => routes.hsts.enabled = parse_bool(value)?,
            "hsts-max-age" => {
                routes.hsts.max_age = value.parse().map_err(|_| "is not a number of seconds")?
            }
            "hsts-include-subdomains" => routes.hsts.include_subdomains = parse_bool(value)?,
            "hsts-preload" => routes.hsts.preload = parse_bool(value)?,
            "proxy-body-size" => {
                let limit = parse_size(value)?;
                routes.policy.body_limit = (limit > 0).then_some(limit);
            }
            "proxy-connect-timeout" => timeouts.connect = parse_seconds(value)?,
            "proxy-read-timeout" => timeouts.read = parse_seconds(value)?,
            "proxy-send-timeout" => timeouts.send = parse_seconds(value)?,
            "load-balance" => routes.policy.load_balance = parse_load_balance(value)?,
            "proxy-next-upstream" => {
                let next = &mut routes.policy.next_upstream;
                *next = next.clone().with_conditions(value)?;
            }
            "proxy-next-upstream-tries" => {
                let next = &mut routes.policy.next_upstream;
                *next = next.clone().with_tries(parse_count(value)?);
            }
            "proxy-next-upstream-timeout" => {
                let next = &mut routes.policy.next_upstream;
                *next = next.clone().with_total(u64::from(parse_count(value)?));
            }
            "custom-http-errors" => routes.custom_errors = Some(ErrorPages::parse_codes(value)?),
            "service-upstream" => routes.service_upstream = parse_bool(value)?,
            "limit-req-status-code" => routes.limit_statuses.rate = parse_status(value)?,
            "limit-conn-status-code" => routes.limit_statuses.connections = parse_status(value)?,
            "allow-cross-namespace-resources" => {
                routes.access.cross_namespace_secrets = parse_bool(value)?
            }
            "whitelist-source-range" | "denylist-source-range" => {
                return self.source_range(key, value)
            }
            "use-forwarded-headers" => forwarded.use_forwarded_headers = parse_bool(value)?,
            "enable-real-ip" => forwarded.real_ip = parse_bool(value)?,
            "forwarded-for-header" => {
                forwarded.header =
                    HeaderName::from_bytes(value.as_bytes()).map_err(|_| "is not a header name")?
            }
            "compute-full-forwarded-for" => forwarded.compute_full = parse_bool(value)?,
            "proxy-real-ip-cidr" => forwarded.trusted = non_empty(parse_cidrs(value)?)?,
            "use-proxy-protocol" => edge.proxy_protocol = parse_bool(value)?,
            "keep-alive" => {
                let seconds: u64 = value.parse().map_err(|_| "is not a number of seconds")?;
                edge.keep_alive.timeout = (seconds > 0).then(|| Duration::from_secs(seconds));
            }
            "keep-alive-requests" => edge.keep_alive.requests = positive(value)?,
            "upstream-keepalive-connections" => {
                edge.upstream.connections = value.parse().map_err(|_| "is not a count")?
            }
            "upstream-keepalive-timeout" => edge.upstream.timeout = parse_seconds(value)?,
            "upstream-keepalive-requests" => edge.upstream.requests = positive(value)?,
            "client-header-timeout" => edge.header_timeout = Some(parse_seconds(value)?),
            "client-body-timeout" => edge.client_body_timeout = Some(parse_seconds(value)?),
            "http2-max-concurrent-streams" => {
                edge.h2_max_concurrent_streams = Some(positive(value)?)
            }
            "ssl-protocols" => return note(tls::protocols(value, tls)?),
            "ssl-ciphers" => return note(tls::ciphers(value, tls)?),
            "server-tokens" => edge.server_tokens = parse_bool(value)?,
            "allow-backend-server-header" => edge.backend_server_header = parse_bool(value)?,
            "block-cidrs" | "block-user-agents" | "block-referers" => {
                return self.block_list(key, value)
            }
            "log-format-upstream" => return log_format_upstream(value, &mut edge.access_log),
            "log-format-escape-json" => edge.access_log.escape_json = parse_bool(value)?,
            "log-format-escape-none" => edge.access_log.escape_none = parse_bool(value)?,
            "enable-opentelemetry" | "opentelemetry-trust-incoming-span" => {
                let on = parse_bool(value)?;
                match key {
                    "enable-opentelemetry" => routes.policy.traces.enabled = on,
                    _ => routes.policy.traces.trust_incoming = on,
                }
                edge.traces.apply_key(key, value);
            }
            "hide-headers" => edge.hide_headers = header_names(value)?,
            "add-headers" => edge.add_headers = add_headers(lookup, value, &routes.access)?,
            "proxy-set-headers" => {
                let access = operators(&routes.access);
                edge.proxy_set_headers = proxy_set_headers(lookup, value, &access)?
            }
            "worker-processes" => {
                self.workers = Some(match value {
                    "auto" => 0,
                    n => n.parse().map_err(|_| "is neither auto nor a count")?,
                })
            }
            "allow-snippet-annotations" => routes.access.allow_snippets = parse_bool(value)?,
            "annotations-risk-level" => routes.access.risk_level = Some(RiskLevel::parse(value)?),
            _ => match edge.traces.apply_key(key, value) {
                Some(applied) => applied?,
                None => return self.other_key(key, value),
            },
        }
        Ok(Outcome::Applied)
    }

    /// Keys Gatehouse does not apply: accepted, refused, closing, or named.
    fn other_key(&mut self, key: &str, value: &str) -> Result<Outcome, String> {
        match keys::status(key) {
            Some(KeyStatus::Applied | KeyStatus::Accepted) => Ok(Outcome::Applied),
            Some(KeyStatus::Refused) => self.snippet(key, value),
            Some(KeyStatus::Protective) => {
                let on = match key {
                    "global-auth-url" => !value.is_empty(),
                    _ => parse_bool(value)?,
                };
                if !on {
                    return Ok(Outcome::Applied);
                }
                let reason = format!("ConfigMap {key} is not implemented by Gatehouse");
                self.routes.access.closed.push(GlobalClosure {
                    reason,
                    global_auth: key == "global-auth-url",
                    replaced_by: &[],
                });
                note(Some(
                    "is not implemented by Gatehouse; every route it would protect answers 503 (enable-global-auth: \"false\" opts an Ingress out of global auth)".into(),
                ))
            }
            Some(KeyStatus::NotImplemented) => {
                note(Some("is not implemented by Gatehouse; ignored".into()))
            }
            None => note(Some(
                "is not an ingress-nginx ConfigMap key; ignored".into(),
            )),
        }
    }

    /// A snippet: refused by design. One that restricts access would be
    /// served open if it were only ignored, so it closes every route.
    fn snippet(&mut self, key: &str, value: &str) -> Result<Outcome, String> {
        let found = snippet::access_directives(value);
        if found.is_empty() {
            return note(Some(
                "is a snippet, which Gatehouse refuses by design; ignored".into(),
            ));
        }
        let found = found.join(", ");
        self.routes.access.closed.push(GlobalClosure {
            reason: format!("ConfigMap {key} is a snippet that restricts access ({found})"),
            global_auth: false,
            replaced_by: &[],
        });
        note(Some(format!(
            "is a snippet that restricts access ({found}), which Gatehouse refuses by design; it cannot be enforced, so every route answers 503"
        )))
    }

    /// A source range for every Ingress without its own; one that does not
    /// parse closes them all rather than leave them open.
    fn source_range(&mut self, key: &str, value: &str) -> Result<Outcome, String> {
        let access = &mut self.routes.access;
        match parse_cidrs(value) {
            Ok(nets) if key == "whitelist-source-range" => access.default_allow = Some(nets),
            Ok(nets) => access.default_deny = nets,
            Err(why) => {
                let replaced_by: &[&str] = match key {
                    "whitelist-source-range" => {
                        &["whitelist-source-range", "allowlist-source-range"]
                    }
                    _ => &["denylist-source-range"],
                };
                return self.unenforceable(key, value, &why, replaced_by);
            }
        }
        Ok(Outcome::Applied)
    }

    /// A block list (`block-cidrs`, `block-user-agents`, `block-referers`):
    /// refused with 403 before anything else. One that does not parse
    /// cannot be enforced, so it closes every route (503) rather than let
    /// through what it lists: an Ingress cannot opt out of a block list.
    fn block_list(&mut self, key: &str, value: &str) -> Result<Outcome, String> {
        let block = &mut self.edge.block;
        let parsed = match key {
            "block-cidrs" => parse_cidrs(value).map(|nets| block.cidrs = nets),
            "block-user-agents" => matches(value).map(|list| block.user_agents = list),
            _ => matches(value).map(|list| block.referers = list),
        };
        match parsed {
            Ok(()) => Ok(Outcome::Applied),
            Err(why) => self.unenforceable(key, value, &why, &[]),
        }
    }

    /// A protection whose value does not parse: it closes every route
    /// (503) but those with an annotation in `replaced_by` of their own.
    fn unenforceable(
        &mut self,
        key: &str,
        value: &str,
        why: &str,
        replaced_by: &'static [&'static str],
    ) -> Result<Outcome, String> {
        self.routes.access.closed.push(GlobalClosure {
            reason: format!("ConfigMap {key}: {value:?} {why}"),
            global_auth: false,
            replaced_by,
        });
        note(Some(if replaced_by.is_empty() {
            format!("{value:?} {why}; it cannot be enforced, so every route answers 503")
        } else {
            format!("{value:?} {why}; every route without its own {key} answers 503")
        }))
    }
}

fn note(note: Option<String>) -> Result<Outcome, String> {
    Ok(note.map_or(Outcome::Applied, Outcome::Note))
}

/// `log-format-upstream`: compiled once here; an unknown variable is
/// named and renders empty, the rest of the line applies.
fn log_format_upstream(value: &str, settings: &mut AccessLogSettings) -> Result<Outcome, String> {
    let (format, unknown) = LogFormat::parse(value)?;
    settings.upstream = Some(Arc::new(format));
    note((!unknown.is_empty()).then(|| {
        let names: Vec<String> = unknown.iter().map(|n| format!("${n}")).collect();
        format!(
            "uses {}, which Gatehouse does not have; rendered empty",
            names.join(", ")
        )
    }))
}

fn parse_status(value: &str) -> Result<http::StatusCode, String> {
    value
        .parse::<u16>()
        .ok()
        .filter(|c| (400..600).contains(c))
        .and_then(|c| http::StatusCode::from_u16(c).ok())
        .ok_or_else(|| "is not an HTTP status between 400 and 599".into())
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(value: &str) -> Result<T, String> {
    value
        .parse::<T>()
        .ok()
        .filter(|n| *n > T::default())
        .ok_or_else(|| "is not a positive whole number".into())
}

fn non_empty<T>(list: Vec<T>) -> Result<Vec<T>, String> {
    if list.is_empty() {
        return Err("lists nothing".into());
    }
    Ok(list)
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn matches(value: &str) -> Result<Vec<Match>, String> {
    list(value).map(Match::parse).collect()
}

fn header_names(value: &str) -> Result<Vec<HeaderName>, String> {
    list(value)
        .map(|name| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("has {name:?}, not a header name"))
        })
        .collect()
}

/// Access options under which the controller ConfigMap names its
/// neighbours: it is the operator's own object, so no cross-namespace
/// restriction applies.
fn operators(access: &AccessOptions) -> AccessOptions {
    AccessOptions {
        cross_namespace_secrets: true,
        ..access.clone()
    }
}

/// `add-headers`: static response headers.
fn add_headers(
    lookup: &ObjectLookup<'_>,
    reference: &str,
    access: &AccessOptions,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let (key, map) = lookup.config_map(reference, &operators(access))?;
    map.data
        .iter()
        .flatten()
        .map(|(name, value)| {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("names ConfigMap {key}, whose {name:?} is not a header name"))?;
            if value.contains('$') {
                return Err(format!("names ConfigMap {key}, whose header {name} uses nginx variables, which response headers do not expand here"));
            }
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("names ConfigMap {key}, whose header {name} has a value that is not a header value"))?;
            Ok((header, value))
        })
        .collect()
}

impl Settings {
    /// The built-in defaults, as the flags set them.
    pub fn from_options(options: &super::TranslateOptions) -> Self {
        Settings {
            routes: RouteDefaults {
                ssl_redirect: true,
                policy: ProxySettings::default(),
                hsts: options.hsts,
                limit_statuses: options.limit_statuses,
                custom_errors: None,
                service_upstream: false,
                access: options.access.clone(),
            },
            edge: options.edge.clone(),
            workers: None,
        }
    }
}

impl Default for RouteDefaults {
    fn default() -> Self {
        Settings::from_options(&super::TranslateOptions::default()).routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterState;

    fn apply(data: &[(&str, &str)]) -> (Settings, Vec<String>) {
        let map = ConfigMap {
            metadata: kube_meta("gatehouse"),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ConfigMap::default()
        };
        let state = ClusterState::default();
        let lookup = ObjectLookup {
            namespace: "ingress",
            secrets: &state.secrets,
            config_maps: &state.config_maps,
        };
        let mut settings = Settings::from_options(&super::super::TranslateOptions::default());
        let problems = settings.apply(&map, &lookup);
        (settings, problems)
    }

    fn kube_meta(name: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ingress".into()),
            ..Default::default()
        }
    }

    #[test]
    fn every_problem_names_its_key_and_the_rest_applies() {
        let (settings, problems) = apply(&[
            ("no-such-key", "1"),
            ("proxy-body-size", "lots"),
            ("use-gzip", "true"),
            ("server-snippet", "return 200;"),
            ("hsts-max-age", "600"),
            ("keep-alive", "5"),
            ("client-body-buffer-size", "64k"),
        ]);
        let named = |key: &str| problems.iter().any(|p| p.starts_with(&format!("{key}:")));
        assert!(named("no-such-key") && named("proxy-body-size") && named("use-gzip"));
        assert!(named("server-snippet"));
        assert!(!named("client-body-buffer-size"), "accepted keys are quiet");
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert_eq!(settings.routes.hsts.max_age, 600);
        assert_eq!(
            settings.edge.keep_alive.timeout,
            Some(Duration::from_secs(5))
        );
        assert_eq!(settings.routes.policy.body_limit, Some(1024 * 1024));
    }

    #[test]
    fn the_configmap_wins_over_the_flags() {
        let mut options = super::super::TranslateOptions::default();
        options.edge.proxy_protocol = true;
        options.hsts.max_age = 60;
        let base = Settings::from_options(&options);
        assert!(base.edge.proxy_protocol);
        assert_eq!(base.routes.hsts.max_age, 60);
        let (settings, problems) = apply(&[
            ("use-proxy-protocol", "false"),
            ("worker-processes", "auto"),
            ("limit-req-status-code", "429"),
            ("upstream-keepalive-connections", "0"),
            ("ssl-redirect", "false"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!settings.edge.proxy_protocol);
        assert_eq!(settings.workers, Some(0));
        assert_eq!(settings.routes.limit_statuses.rate.as_u16(), 429);
        assert_eq!(settings.edge.upstream.connections, 0);
        assert!(!settings.routes.ssl_redirect);
    }

    #[test]
    fn client_body_timeout_is_read_in_seconds_and_defaults_to_60() {
        let (settings, problems) = apply(&[("client-body-timeout", "7")]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(settings.edge.client_body_timeout(), Duration::from_secs(7));
        let (settings, _) = apply(&[]);
        assert_eq!(settings.edge.client_body_timeout(), Duration::from_secs(60));
        let (_, problems) = apply(&[("client-body-timeout", "soon")]);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn connection_and_upstream_keys_are_typed() {
        let (settings, problems) = apply(&[
            ("upstream-keepalive-timeout", "15"),
            ("client-header-timeout", "20"),
            ("http2-max-concurrent-streams", "64"),
            ("log-format-escape-json", "true"),
            ("load-balance", "ewma"),
            ("service-upstream", "true"),
            ("allow-cross-namespace-resources", "true"),
            ("allow-snippet-annotations", "true"),
            ("annotations-risk-level", "Critical"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(settings.routes.access.snippets_allowed());
        let (high, _) = apply(&[
            ("allow-snippet-annotations", "true"),
            ("annotations-risk-level", "High"),
        ]);
        assert!(
            !high.routes.access.snippets_allowed(),
            "snippets are Critical"
        );
        let edge = &settings.edge;
        assert_eq!(edge.upstream.timeout, Duration::from_secs(15));
        assert_eq!(edge.header_timeout, Some(Duration::from_secs(20)));
        assert_eq!(edge.h2_max_concurrent_streams, Some(64));
        let routes = &settings.routes;
        assert_eq!(
            routes.policy.load_balance,
            crate::upstream::LoadBalance::Ewma
        );
        assert!(routes.service_upstream && routes.access.cross_namespace_secrets);
    }

    #[test]
    fn the_opentelemetry_keys_set_the_routes_switch_and_the_exporter() {
        let (settings, problems) = apply(&[
            ("enable-opentelemetry", "true"),
            ("opentelemetry-trust-incoming-span", "false"),
            ("otlp-collector-host", "otel.test"),
            ("otel-sampler-ratio", "half"),
        ]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("otel-sampler-ratio: \"half\""));
        let switch = settings.routes.policy.traces;
        assert!(switch.enabled && !switch.trust_incoming);
        let export = &settings.edge.traces;
        assert_eq!(export.global, switch);
        assert_eq!(export.endpoint(), "http://otel.test:4317");
    }

    #[test]
    fn protective_keys_close_routes_when_they_cannot_be_enforced() {
        let (settings, problems) = apply(&[
            ("enable-modsecurity", "false"),
            ("whitelist-source-range", "10.0.0.0/8"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(settings.routes.access.closed.is_empty());
        assert_eq!(
            settings.routes.access.default_allow.as_ref().map(Vec::len),
            Some(1)
        );
        let (settings, problems) = apply(&[
            ("enable-modsecurity", "true"),
            ("denylist-source-range", "not-a-range"),
        ]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(settings.routes.access.closed.len(), 2);
    }

    #[test]
    fn a_configmap_snippet_that_restricts_access_closes_every_route() {
        let (settings, problems) = apply(&[
            ("server-snippet", "more_set_headers \"X-A: b\";"),
            ("location-snippet", "proxy_set_header X-B c;"),
        ]);
        assert_eq!(problems.len(), 2, "refused, with a warning each");
        assert!(settings.routes.access.closed.is_empty());
        for (key, snippet) in [
            ("server-snippet", "allow 10.0.0.0/8; deny all;"),
            ("location-snippet", "if ($http_x_block) { return 403; }"),
            (
                "http-snippet",
                "limit_req_zone $binary_remote_addr zone=one:10m rate=1r/s;",
            ),
        ] {
            let (settings, problems) = apply(&[(key, snippet)]);
            assert_eq!(settings.routes.access.closed.len(), 1, "{key}");
            assert!(
                problems[0].contains("every route answers 503"),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn log_format_upstream_is_compiled_and_an_unknown_variable_named() {
        let (settings, problems) = apply(&[
            ("log-format-upstream", "$status $geoip_city $http_x_team"),
            ("log-format-escape-json", "true"),
        ]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("log-format-upstream: uses $geoip_city"),
            "{problems:?}"
        );
        let access_log = &settings.edge.access_log;
        let format = access_log.upstream.as_ref().expect("compiled");
        assert_eq!(format.headers, ["x-team"]);
        assert_eq!(access_log.escape(), crate::policy::log_format::Escape::Json);
        let (settings, problems) = apply(&[("log-format-upstream", "${status")]);
        assert!(settings.edge.access_log.upstream.is_none());
        assert!(problems[0].ends_with("; ignored"), "{problems:?}");
    }

    #[test]
    fn a_referenced_configmap_that_is_missing_is_a_problem_not_a_crash() {
        let (settings, problems) = apply(&[("add-headers", "missing")]);
        assert!(settings.edge.add_headers.is_empty());
        assert!(
            problems[0].contains("ConfigMap ingress/missing not found"),
            "{problems:?}"
        );
    }
}
