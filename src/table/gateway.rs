//! Routes from the Gateway API (HTTPRoute rules), in the same table as the
//! Ingress rules.
//!
//! A Gateway API match is more than a path: a method, headers and query
//! parameters too, and the listeners (plain HTTP, HTTPS) its route is
//! attached to. The matches of a host are kept in the spec's precedence
//! order (translate sorts them) and tried in turn before the host's Ingress
//! rules; hosts have tens of matches, not thousands, so a scan is enough.

use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use regex::Regex;

use super::{Backend, RequestFacts, Route};
use crate::cluster::ObjectKey;
use crate::connection::{query_value, strip_port};

/// What one HTTPRoute rule does with the requests it matches, shared by
/// the routes of its matches.
#[derive(Debug, Default)]
pub struct GatewayRule {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: &'static str,
    /// The route, and the rule's index in it.
    pub origin: ObjectKey,
    pub rule: usize,
    /// `RequestHeaderModifier`.
    pub request_headers: Option<HeaderEdits>,
    /// `ResponseHeaderModifier`.
    pub response_headers: Option<HeaderEdits>,
    /// `RequestRedirect`: answered here, nothing forwarded.
    pub redirect: Option<GatewayRedirect>,
    /// `URLRewrite`'s path.
    pub rewrite: Option<PathModifier>,
    /// `URLRewrite`'s hostname (carried out as the policy's upstream host).
    pub upstream_host: Option<HeaderValue>,
    /// `RequestMirror`: backends that get a copy of the request, each for
    /// a share of requests (in millionths).
    pub mirrors: Vec<(Arc<Backend>, u32)>,
    /// `timeouts`: the response's head must arrive within this time, or
    /// the request is answered 504 (the shorter of `request` and
    /// `backendRequest`; Gatehouse sends a request again only when nothing
    /// of it reached the first endpoint).
    pub deadline: Option<std::time::Duration>,
    /// The weighted backends; a share whose reference cannot be resolved
    /// is answered 500, as the spec asks.
    pub backends: Split,
}

/// One match of an HTTPRoute rule.
#[derive(Debug)]
pub struct GatewayMatch {
    pub path: PathMatch,
    pub method: Option<Method>,
    pub headers: Vec<(HeaderName, ValueMatch)>,
    pub query: Vec<(String, ValueMatch)>,
    pub listeners: Listeners,
    pub route: Arc<Route>,
}

impl GatewayRule {
    /// The filters and backends, as `gatehouse routes` shows them.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.redirect {
            let mut target = String::new();
            if let Some(s) = &r.scheme {
                target.push_str(&format!("{s}://"));
            }
            if let Some(h) = &r.hostname {
                target.push_str(h);
            }
            if let Some(p) = r.port {
                target.push_str(&format!(":{p}"));
            }
            if let Some(p) = &r.path {
                target.push_str(&p.to_string());
            }
            parts.push(format!("redirect {} {target}", r.status.as_u16()));
        }
        if let Some(p) = &self.rewrite {
            parts.push(format!("rewrite path {p}"));
        }
        if let Some(h) = &self.upstream_host {
            parts.push(format!("rewrite host {}", h.to_str().unwrap_or("?")));
        }
        if self.request_headers.is_some() {
            parts.push("request headers modified".to_owned());
        }
        if self.response_headers.is_some() {
            parts.push("response headers modified".to_owned());
        }
        parts.join(", ")
    }
}

impl std::fmt::Display for PathModifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathModifier::Full(p) => write!(f, "{p} (full path)"),
            PathModifier::Prefix(p) => write!(f, "{p} (prefix)"),
        }
    }
}

impl GatewayMatch {
    pub fn matches(&self, req: &RequestFacts<'_>) -> bool {
        let listener = if req.tls {
            self.listeners.tls
        } else {
            self.listeners.plain
        };
        listener
            && self.path.matches(req.path)
            && self.method.as_ref().is_none_or(|m| m == req.method)
            && self.headers.iter().all(|(name, want)| {
                req.headers
                    .get_all(name)
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|v| want.matches(v)))
            })
            && self
                .query
                .iter()
                .all(|(name, want)| query_value(req.query, name).is_some_and(|v| want.matches(v)))
    }
}

/// Which of Gatehouse's listeners a route is served on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Listeners {
    pub plain: bool,
    pub tls: bool,
}

impl Listeners {
    pub fn union(self, other: Listeners) -> Listeners {
        Listeners {
            plain: self.plain || other.plain,
            tls: self.tls || other.tls,
        }
    }
}

#[derive(Debug)]
pub enum PathMatch {
    Exact(String),
    /// Element-wise, like an Ingress `Prefix`; stored without a trailing
    /// slash (`/` is stored empty).
    Prefix(String),
    /// Anchored at both ends.
    Regex(Regex),
}

impl PathMatch {
    pub fn prefix(value: &str) -> PathMatch {
        PathMatch::Prefix(value.trim_end_matches('/').to_owned())
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => {
                path.strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                    && path.starts_with('/')
            }
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

#[derive(Clone, Debug)]
pub enum ValueMatch {
    Exact(String),
    /// Anchored at both ends.
    Regex(Regex),
}

impl ValueMatch {
    fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(want) => value == want,
            ValueMatch::Regex(r) => r.is_match(value),
        }
    }
}

/// `RequestHeaderModifier` / `ResponseHeaderModifier`.
#[derive(Debug, Default, Clone)]
pub struct HeaderEdits {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderEdits {
    /// In the spec's order: set, add, remove.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

/// How a redirect or a rewrite changes the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathModifier {
    /// `ReplaceFullPath`.
    Full(String),
    /// `ReplacePrefixMatch`: the part the match's prefix covered is
    /// replaced; the rest is kept.
    Prefix(String),
}

impl PathModifier {
    /// The new path for `path`, matched by a prefix `matched` (stored as
    /// `PathMatch::Prefix` stores it).
    pub fn apply(&self, path: &str, matched: Option<&str>) -> String {
        match (self, matched) {
            (PathModifier::Full(full), _) => full.clone(),
            (PathModifier::Prefix(replacement), Some(prefix)) => {
                let rest = path.get(prefix.len()..).unwrap_or_default();
                let mut out = replacement.trim_end_matches('/').to_owned();
                out.push_str(rest);
                if out.is_empty() {
                    out.push('/');
                }
                out
            }
            // Translate refuses ReplacePrefixMatch on any other match.
            (PathModifier::Prefix(_), None) => path.to_owned(),
        }
    }
}

/// `RequestRedirect`.
#[derive(Debug, Clone)]
pub struct GatewayRedirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathModifier>,
    pub status: StatusCode,
}

impl GatewayRedirect {
    /// The `Location` for a request. Without a port, the scheme's
    /// well-known port, else the listener's (80 or 443); a port that is
    /// the scheme's default is left out.
    pub fn location(&self, req: &RequestFacts<'_>, matched: Option<&str>) -> String {
        let request_scheme = if req.tls { "https" } else { "http" };
        let scheme = self.scheme.as_deref().unwrap_or(request_scheme);
        let host = match &self.hostname {
            Some(h) => h.as_str(),
            None => strip_port(req.host),
        };
        let port = self.port.unwrap_or(match (&self.scheme, req.tls) {
            (Some(s), _) if s == "https" => 443,
            (Some(s), _) if s == "http" => 80,
            (_, true) => 443,
            (_, false) => 80,
        });
        let default_port = matches!((scheme, port), ("http", 80) | ("https", 443));
        let path = match &self.path {
            Some(modifier) => modifier.apply(req.path, matched),
            None => req.path.to_owned(),
        };
        let mut location = format!("{scheme}://{host}");
        if !default_port {
            location.push_str(&format!(":{port}"));
        }
        location.push_str(&path);
        if let Some(query) = req.query {
            location.push('?');
            location.push_str(query);
        }
        location
    }
}

/// Weighted backends. `None` is a reference that could not be resolved.
#[derive(Debug, Default)]
pub struct Split {
    entries: Vec<(u32, Option<Arc<Backend>>)>,
    total: u64,
}

impl Split {
    pub fn push(&mut self, weight: u32, backend: Option<Arc<Backend>>) {
        self.total += u64::from(weight);
        self.entries.push((weight, backend));
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The backends that resolved, for display.
    pub fn iter(&self) -> impl Iterator<Item = (u32, Option<&Arc<Backend>>)> {
        self.entries.iter().map(|(w, b)| (*w, b.as_ref()))
    }

    /// A backend in proportion to the weights; `None` when every weight is
    /// zero (or there are none). The inner `None` is an unresolved share.
    pub fn pick(&self) -> Option<Option<&Arc<Backend>>> {
        if self.total == 0 {
            return None;
        }
        if let [(_, only)] = self.entries.as_slice() {
            return Some(only.as_ref());
        }
        let mut ticket = fastrand::u64(0..self.total);
        for (weight, backend) in &self.entries {
            let weight = u64::from(*weight);
            if ticket < weight {
                return Some(backend.as_ref());
            }
            ticket -= weight;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_path_elements() {
        let p = PathMatch::prefix("/foo/");
        assert!(p.matches("/foo"));
        assert!(p.matches("/foo/"));
        assert!(p.matches("/foo/bar"));
        assert!(!p.matches("/foobar"));
        let root = PathMatch::prefix("/");
        assert!(root.matches("/"));
        assert!(root.matches("/anything"));
    }

    #[test]
    fn replace_prefix_match_keeps_the_rest() {
        let m = PathModifier::Prefix("/xyz".into());
        assert_eq!(m.apply("/foo/bar", Some("/foo")), "/xyz/bar");
        assert_eq!(m.apply("/foo", Some("/foo")), "/xyz");
        assert_eq!(m.apply("/foo/", Some("/foo")), "/xyz/");
        let root = PathModifier::Prefix("/".into());
        assert_eq!(root.apply("/foo/bar", Some("/foo")), "/bar");
        assert_eq!(root.apply("/foo", Some("/foo")), "/");
        let from_root = PathModifier::Prefix("/api".into());
        assert_eq!(from_root.apply("/v1", Some("")), "/api/v1");
    }

    #[test]
    fn a_split_never_picks_a_zero_weight() {
        let mut split = Split::default();
        split.push(0, None);
        split.push(3, None);
        assert!(!split.is_empty());
        for _ in 0..100 {
            assert!(split.pick().is_some());
        }
        assert!(Split::default().pick().is_none());
    }
}
