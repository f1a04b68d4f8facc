//! CORS: `enable-cors` and the `cors-*` annotations, with ingress-nginx's
//! defaults and meaning.
//!
//! A preflight (`OPTIONS` with an allowed `Origin`) is answered `204` by
//! Gatehouse with the CORS headers, without reaching the backend; other
//! responses to an allowed origin get the headers added (replacing any the
//! backend sent). An origin not in the list gets no CORS headers at all.
//!
//! Two deliberate differences from ingress-nginx: origin patterns are
//! anchored at both ends (ingress-nginx anchors only the end, so
//! `https://a.com` there also admits `https://evil.example/https://a.com`),
//! and only an `OPTIONS` request that carries an allowed `Origin` is
//! answered by Gatehouse (under `*`, ingress-nginx answers every `OPTIONS`).

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Method;

use super::parse_bool;
use super::Annotations;

const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const DEFAULT_HEADERS: &str =
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
const DEFAULT_MAX_AGE: u64 = 1_728_000;

#[derive(Debug)]
pub struct Cors {
    origins: Origins,
    credentials: bool,
    methods: HeaderValue,
    headers: HeaderValue,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
}

#[derive(Debug)]
enum Origins {
    /// `*`: every origin, answered with `*`.
    Any,
    /// Listed origins, answered with the request's own `Origin`.
    Listed(regex::RegexSet),
}

impl Cors {
    /// The CORS policy of an Ingress with `enable-cors: "true"`. A value
    /// that does not parse falls back to the default, with a note.
    pub fn compile(annotations: &Annotations<'_>, notes: &mut Vec<String>) -> Option<Cors> {
        let (key, enabled) = annotations.get("enable-cors")?;
        match parse_bool(enabled) {
            Some(true) => {}
            Some(false) => return None,
            None => {
                notes.push(format!(
                    "annotation {key}: {enabled:?} is not a boolean; CORS stays off"
                ));
                return None;
            }
        }
        let mut value = |name: &str, valid: fn(&str) -> bool, default: &str| -> HeaderValue {
            let text = match annotations.get(name) {
                Some((key, v)) if !valid(v) => {
                    notes.push(format!(
                        "annotation {key}: {v:?} is not valid; the default {default:?} applies"
                    ));
                    default
                }
                Some((_, v)) => v,
                None => default,
            };
            HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
        };
        let methods = value("cors-allow-methods", valid_methods, DEFAULT_METHODS);
        let headers = value("cors-allow-headers", valid_tokens, DEFAULT_HEADERS);
        let expose = value("cors-expose-headers", valid_tokens, "");
        let credentials = match annotations.get("cors-allow-credentials") {
            None => true,
            Some((key, v)) => parse_bool(v).unwrap_or_else(|| {
                notes.push(format!(
                    "annotation {key}: {v:?} is not a boolean; true applies"
                ));
                true
            }),
        };
        let max_age = match annotations.get("cors-max-age") {
            None => DEFAULT_MAX_AGE,
            Some((key, v)) => v.parse::<u64>().unwrap_or_else(|_| {
                notes.push(format!(
                    "annotation {key}: {v:?} is not a number of seconds; {DEFAULT_MAX_AGE} applies"
                ));
                DEFAULT_MAX_AGE
            }),
        };
        let origins = match annotations.get("cors-allow-origin") {
            None => Origins::Any,
            Some((key, v)) => origins(v, &key, notes),
        };
        Some(Cors {
            origins,
            credentials,
            methods,
            headers,
            expose: (!expose.is_empty()).then_some(expose),
            max_age: HeaderValue::from(max_age),
        })
    }

    /// The `Access-Control-Allow-Origin` value for this request, when its
    /// origin is allowed.
    pub fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        match &self.origins {
            Origins::Any => Some(HeaderValue::from_static("*")),
            Origins::Listed(set) => {
                let origin = headers.get(header::ORIGIN)?;
                let text = origin.to_str().ok()?;
                set.is_match(text).then(|| origin.clone())
            }
        }
    }

    /// For a request from an allowed origin: its
    /// `Access-Control-Allow-Origin`, and whether it is a preflight that
    /// Gatehouse answers itself (`OPTIONS` that carries an `Origin`).
    pub fn admit(&self, method: &Method, headers: &HeaderMap) -> Option<(HeaderValue, bool)> {
        let origin = self.allowed_origin(headers)?;
        let preflight = method == Method::OPTIONS && headers.contains_key(header::ORIGIN);
        Some((origin, preflight))
    }

    /// The access phase: [`Cors::admit`] for a request, keeping what the
    /// response phase needs. The flag says it is a preflight.
    pub fn admit_request(
        self: &Arc<Self>,
        method: &Method,
        headers: &HeaderMap,
    ) -> Option<(Admitted, bool)> {
        let (origin, preflight) = self.admit(method, headers)?;
        let admitted = Admitted {
            cors: self.clone(),
            origin,
        };
        Some((admitted, preflight))
    }

    /// The response phase: the CORS headers for an allowed origin.
    pub fn apply(&self, allowed: &HeaderValue, response: &mut HeaderMap) {
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed.clone());
        if self.credentials {
            response.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        response.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        response.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
        if let Some(expose) = &self.expose {
            response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
        response.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        if matches!(self.origins, Origins::Listed(_)) {
            response.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }

    /// A short description for `gatehouse routes`.
    pub fn describe(&self) -> String {
        match &self.origins {
            Origins::Any => "cors=*".into(),
            Origins::Listed(set) => format!("cors={} origins", set.len()),
        }
    }
}

/// A request from an allowed origin, remembered for its response.
#[derive(Debug)]
pub struct Admitted {
    cors: Arc<Cors>,
    origin: HeaderValue,
}

impl Admitted {
    /// The response phase: the CORS headers for the admitted origin.
    pub fn apply(&self, response: &mut HeaderMap) {
        self.cors.apply(&self.origin, response);
    }
}

/// `cors-allow-origin`: `*`, or a comma-separated list of origins, each
/// `scheme://host[:port]` with an optional `*.` for one label (the scheme
/// may be left out), or `null`. Invalid entries are skipped with a note.
fn origins(value: &str, key: &str, notes: &mut Vec<String>) -> Origins {
    let mut patterns = Vec::new();
    for origin in value.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if origin == "*" {
            return Origins::Any;
        }
        match origin_pattern(origin) {
            Some(pattern) => patterns.push(pattern),
            None => notes.push(format!(
                "annotation {key}: origin {origin:?} is not valid; skipped"
            )),
        }
    }
    match regex::RegexSet::new(&patterns) {
        // No valid origin leaves none allowed, never everyone.
        Ok(set) => Origins::Listed(set),
        Err(_) => Origins::Listed(regex::RegexSet::empty()),
    }
}

fn origin_pattern(origin: &str) -> Option<String> {
    if origin == "null" {
        return Some("^null$".into());
    }
    let (scheme, rest) = match origin.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, origin),
    };
    if scheme.is_some_and(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_lowercase())) {
        return None;
    }
    let (wildcard, host_port) = match rest.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !host_ok || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let mut pattern = String::from("(?i)^");
    match scheme {
        Some(scheme) => pattern.push_str(&regex::escape(&format!("{scheme}://"))),
        None => pattern.push_str("[a-z]+://"),
    }
    if wildcard {
        pattern.push_str(r"[a-z0-9\-]+\.");
    }
    pattern.push_str(&regex::escape(host));
    if let Some(port) = port {
        pattern.push(':');
        pattern.push_str(port);
    }
    pattern.push('$');
    Some(pattern)
}

fn valid_methods(value: &str) -> bool {
    !value.is_empty()
        && value
            .split(',')
            .map(str::trim)
            .all(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// Header names (or `*`), comma-separated.
fn valid_tokens(value: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .all(|t| t == "*" || (!t.is_empty() && HeaderName::from_bytes(t.as_bytes()).is_ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::annotations::nginx_annotations;

    fn compile(pairs: &[(&str, &str)]) -> (Option<Cors>, Vec<String>) {
        let map = nginx_annotations(pairs);
        let mut notes = Vec::new();
        let cors = Cors::compile(&Annotations::new(Some(&map), "gatehouse.dev"), &mut notes);
        (cors, notes)
    }

    fn origin(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn defaults_are_ingress_nginx_defaults() {
        let (cors, notes) = compile(&[("enable-cors", "true")]);
        let cors = cors.unwrap();
        assert!(notes.is_empty());
        let mut h = HeaderMap::new();
        cors.apply(&cors.allowed_origin(&HeaderMap::new()).unwrap(), &mut h);
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-allow-methods"], DEFAULT_METHODS);
        assert_eq!(h["access-control-allow-headers"], DEFAULT_HEADERS);
        assert_eq!(h["access-control-max-age"], "1728000");
        assert!(!h.contains_key("access-control-expose-headers"));
        assert!(!h.contains_key("vary"));
    }

    #[test]
    fn listed_origins_are_anchored_and_wildcards_take_one_label() {
        let (cors, _) = compile(&[
            ("enable-cors", "true"),
            (
                "cors-allow-origin",
                "https://app.example.com, https://*.example.org:8443, shop.test",
            ),
        ]);
        let cors = cors.unwrap();
        let allowed = |o: &'static str| cors.allowed_origin(&origin(o)).is_some();
        assert!(allowed("https://app.example.com"));
        assert!(allowed("HTTPS://APP.EXAMPLE.COM"));
        assert!(!allowed("http://app.example.com"));
        assert!(!allowed("https://evil.test/https://app.example.com"));
        assert!(!allowed("https://app.example.com.evil.test"));
        assert!(allowed("https://a.example.org:8443"));
        assert!(!allowed("https://a.b.example.org:8443"));
        assert!(!allowed("https://example.org:8443"));
        assert!(allowed("http://shop.test"));
        assert!(cors.allowed_origin(&HeaderMap::new()).is_none());
        let mut h = HeaderMap::new();
        cors.apply(&HeaderValue::from_static("https://app.example.com"), &mut h);
        assert_eq!(h["vary"], "Origin");
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    }

    #[test]
    fn bad_values_fall_back_with_a_note_and_bad_origins_are_skipped() {
        let (cors, notes) = compile(&[
            ("enable-cors", "true"),
            ("cors-allow-methods", "GET; rm -rf"),
            ("cors-allow-origin", "https://ok.test, $http_origin"),
            ("cors-max-age", "forever"),
            ("cors-allow-credentials", "false"),
        ]);
        let cors = cors.unwrap();
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(cors.allowed_origin(&origin("https://ok.test")).is_some());
        let mut h = HeaderMap::new();
        cors.apply(&HeaderValue::from_static("https://ok.test"), &mut h);
        assert_eq!(h["access-control-allow-methods"], DEFAULT_METHODS);
        assert!(!h.contains_key("access-control-allow-credentials"));
    }

    #[test]
    fn only_options_with_an_allowed_origin_is_a_preflight() {
        let (cors, _) = compile(&[
            ("enable-cors", "true"),
            ("cors-allow-origin", "https://ok.test"),
        ]);
        let cors = cors.unwrap();
        let preflight = |m: &Method, h: &HeaderMap| cors.admit(m, h).is_some_and(|(_, p)| p);
        assert!(preflight(&Method::OPTIONS, &origin("https://ok.test")));
        assert!(!preflight(&Method::OPTIONS, &origin("https://no.test")));
        assert!(!preflight(&Method::GET, &origin("https://ok.test")));
        assert!(!preflight(&Method::OPTIONS, &HeaderMap::new()));
    }
}
