//! Match compilation: each HTTPRoute match's path, method, headers and
//! query parameters compiled once, queued for each of the route's hosts,
//! then added to the table in the spec's order of precedence.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::HashSet;
use http::header::{HeaderName, HeaderValue};

use super::rules::{policy_for, Problems};
use super::Who;
use crate::cluster::ObjectKey;
use crate::gateway::{self, HTTPPathMatch, HTTPRoute, HTTPRouteMatch};
use crate::policy::proxy_settings::ProxySettings;
use crate::policy::AccessPolicy;
use crate::table::{
    Action, GatewayMatch, GatewayRule, HostPattern, Listeners, PathMatch, PathModifier, PathType,
    Route, ValueMatch,
};
use crate::translate::{Build, WarningKind, PATH_REGEX_BYTES};

/// One HTTPRoute match, on one host, before the matches are sorted.
pub(super) struct Pending {
    order: Order,
    host: HostPattern,
    listeners: Listeners,
    matched: Arc<CompiledMatch>,
    rule: Arc<GatewayRule>,
    /// The rule's policy, shared by its matches on every host.
    policy: Arc<ProxySettings>,
    action_backend: Option<Arc<crate::table::Backend>>,
}

/// The spec's precedence, smallest first: an exact path, then the longest
/// path (regular expressions between the exact and the prefix matches,
/// their order being the implementation's), a method, the most headers,
/// the most query parameters; then the oldest route, its name, and the
/// rule's and match's position.
type Order = (
    u8,
    Reverse<usize>,
    bool,
    Reverse<usize>,
    Reverse<usize>,
    Option<k8s_openapi::jiff::Timestamp>,
    ObjectKey,
    usize,
    usize,
);

/// A match's conditions, compiled once for all its hosts.
struct CompiledMatch {
    path: String,
    path_type: PathType,
    regex: Option<regex::Regex>,
    method: Option<http::Method>,
    headers: Vec<(HeaderName, ValueMatch)>,
    query: Vec<(String, ValueMatch)>,
}

impl CompiledMatch {
    /// The conditions besides the path, for display.
    fn describe(&self) -> Option<String> {
        let value = |v: &ValueMatch| match v {
            ValueMatch::Exact(v) => format!("={v}"),
            ValueMatch::Regex(r) => format!("~{}", r.as_str()),
        };
        let mut parts = Vec::new();
        if let Some(m) = &self.method {
            parts.push(format!("method {m}"));
        }
        for (name, v) in &self.headers {
            parts.push(format!("header {name}{}", value(v)));
        }
        for (name, v) in &self.query {
            parts.push(format!("query {name}{}", value(v)));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    fn path_match(&self) -> PathMatch {
        match (&self.regex, self.path_type) {
            (Some(r), _) => PathMatch::Regex(r.clone()),
            (None, PathType::Exact) => PathMatch::Exact(self.path.clone()),
            (None, _) => PathMatch::prefix(&self.path),
        }
    }
}

impl Build<'_> {
    /// Compiles each rule of a route and queues its matches for each host.
    pub(super) fn route_matches(
        &mut self,
        who: Who<'_>,
        route: &HTTPRoute,
        hosts: &BTreeMap<HostPattern, Listeners>,
        base: &Arc<ProxySettings>,
        pending: &mut Vec<Pending>,
        problems: &mut Problems,
    ) {
        let key = who.key;
        let age = route.metadata.creation_timestamp.as_ref().map(|t| t.0);
        for (index, rule) in route.spec.rules.iter().enumerate() {
            let context = format!("rule {index}");
            let compiled = self.compile_rule(who, index, rule, &context, problems);
            let first_backend = compiled
                .backends
                .iter()
                .find_map(|(w, b)| b.filter(|_| w > 0).cloned());
            let rule_policy = policy_for(base, &compiled);
            let rule_arc = Arc::new(compiled);
            for (m_index, m) in rule.matches.iter().enumerate() {
                let Some(matched) = self.compile_match(who, &context, m) else {
                    continue;
                };
                if let Some(PathModifier::Prefix(_)) = rule_arc
                    .rewrite
                    .as_ref()
                    .or(rule_arc.redirect.as_ref().and_then(|r| r.path.as_ref()))
                {
                    if matched.path_type != PathType::Prefix || matched.regex.is_some() {
                        let message = format!(
                            "{context}: ReplacePrefixMatch needs a PathPrefix match; this match is skipped"
                        );
                        self.warn_object(who.kind, key, WarningKind::RouteRefs, message);
                        continue;
                    }
                }
                let matched = Arc::new(matched);
                let rank = match (&matched.regex, matched.path_type) {
                    (None, PathType::Exact) => 0,
                    (Some(_), _) => 1,
                    _ => 2,
                };
                let length = matched.path.trim_end_matches('/').len();
                for (host, listeners) in hosts {
                    pending.push(Pending {
                        order: (
                            rank,
                            Reverse(length),
                            matched.method.is_none(),
                            Reverse(matched.headers.len()),
                            Reverse(matched.query.len()),
                            age,
                            key.clone(),
                            index,
                            m_index,
                        ),
                        host: host.clone(),
                        listeners: *listeners,
                        matched: matched.clone(),
                        rule: rule_arc.clone(),
                        policy: rule_policy.clone(),
                        action_backend: first_backend.clone(),
                    });
                }
            }
        }
    }

    /// A match's conditions; `None`, with a warning, when one of them
    /// cannot be used.
    fn compile_match(
        &mut self,
        who: Who<'_>,
        context: &str,
        m: &HTTPRouteMatch,
    ) -> Option<CompiledMatch> {
        let (path_type, regex) = self.match_path(who, context, &m.path)?;
        let method = match &m.method {
            None => None,
            Some(text) => match http::Method::from_bytes(text.as_bytes()) {
                Ok(method) => Some(method),
                Err(_) => {
                    let message = format!("{context}: method {text:?} is not valid; match skipped");
                    self.warn_object(who.kind, who.key, WarningKind::InvalidPath, message);
                    return None;
                }
            },
        };
        let headers = self.match_headers(who, context, &m.headers)?;
        let mut query = Vec::new();
        let mut seen = HashSet::default();
        for q in &m.query_params {
            if !seen.insert(q.name.clone()) {
                continue;
            }
            query.push((
                q.name.clone(),
                self.value_match(who, context, &q.type_, &q.value)?,
            ));
        }
        Some(CompiledMatch {
            path: m.path.value.clone(),
            path_type,
            regex,
            method,
            headers,
            query,
        })
    }

    /// A match's path: its type, and its compiled pattern when it is a
    /// regular expression.
    fn match_path(
        &mut self,
        who: Who<'_>,
        context: &str,
        path: &HTTPPathMatch,
    ) -> Option<(PathType, Option<regex::Regex>)> {
        let key = who.key;
        let (path_type, regex) = match path.type_.as_str() {
            "Exact" => (PathType::Exact, None),
            "PathPrefix" => (PathType::Prefix, None),
            "RegularExpression" => match anchored(&path.value) {
                Ok(r) => (PathType::ImplementationSpecific, Some(r)),
                Err(e) => {
                    let message =
                        format!("{context}: path regex {:?}: {e}; match skipped", path.value);
                    self.warn_object(who.kind, key, WarningKind::InvalidPath, message);
                    return None;
                }
            },
            other => {
                let message =
                    format!("{context}: path match type {other} is not supported; match skipped");
                self.warn_object(who.kind, key, WarningKind::InvalidPath, message);
                return None;
            }
        };
        if regex.is_none() && !path.value.starts_with('/') {
            let message = format!(
                "{context}: path {:?} does not start with /; match skipped",
                path.value
            );
            self.warn_object(who.kind, key, WarningKind::InvalidPath, message);
            return None;
        }
        Some((path_type, regex))
    }

    /// A match's header conditions, the first of equal names only.
    fn match_headers(
        &mut self,
        who: Who<'_>,
        context: &str,
        matches: &[gateway::ValueMatch],
    ) -> Option<Vec<(HeaderName, ValueMatch)>> {
        let mut headers = Vec::new();
        let mut seen = HashSet::default();
        for h in matches {
            let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
                let message = format!(
                    "{context}: header name {:?} is not valid; match skipped",
                    h.name
                );
                self.warn_object(who.kind, who.key, WarningKind::InvalidPath, message);
                return None;
            };
            // Only the first of equal names counts (case-insensitive).
            if !seen.insert(name.clone()) {
                continue;
            }
            headers.push((name, self.value_match(who, context, &h.type_, &h.value)?));
        }
        Some(headers)
    }

    fn value_match(
        &mut self,
        who: Who<'_>,
        context: &str,
        type_: &str,
        value: &str,
    ) -> Option<ValueMatch> {
        let key = who.key;
        match type_ {
            "Exact" => Some(ValueMatch::Exact(value.to_owned())),
            "RegularExpression" => match anchored(value) {
                Ok(r) => Some(ValueMatch::Regex(r)),
                Err(e) => {
                    let message = format!("{context}: regex {value:?}: {e}; match skipped");
                    self.warn_object(who.kind, key, WarningKind::InvalidPath, message);
                    None
                }
            },
            other => {
                let message =
                    format!("{context}: match type {other} is not supported; match skipped");
                self.warn_object(who.kind, key, WarningKind::InvalidPath, message);
                None
            }
        }
    }
    /// Adds the queued matches to the table in the spec's order, but for
    /// hosts another namespace owns; a host Ingress rules have too is
    /// shared, with a warning.
    pub(super) fn add_matches(
        &mut self,
        mut pending: Vec<Pending>,
        access: &Arc<AccessPolicy>,
        hsts: Option<&HeaderValue>,
    ) {
        pending.sort_by(|a, b| a.order.cmp(&b.order));
        // Hosts the Ingress rules have, before any match is added.
        let ingress_hosts: HashSet<HostPattern> = pending
            .iter()
            .filter(|p| self.table.has_host(&p.host))
            .map(|p| p.host.clone())
            .collect();
        let mut shared = HashSet::default();
        let mut refused = HashSet::default();
        for p in pending {
            if self.not_owned_by_route(&p, &mut refused) {
                continue;
            }
            if ingress_hosts.contains(&p.host) && shared.insert(p.host.clone()) {
                let message = format!(
                    "host {} also has Ingress rules: Gateway API matches are tried first, the Ingress rules take the rest",
                    p.host
                );
                self.warn_object(
                    p.rule.kind,
                    &p.rule.origin,
                    WarningKind::HostShared,
                    message,
                );
            }
            self.table.add_gateway_match(gateway_match(p, access, hsts));
        }
    }

    /// `--host-ownership namespace`: whether a host an Ingress of another
    /// namespace owns refuses this match (the owner's `allow-namespaces`
    /// can let it in); said once per route and host.
    fn not_owned_by_route(
        &mut self,
        p: &Pending,
        refused: &mut HashSet<(ObjectKey, HostPattern)>,
    ) -> bool {
        let owner = self
            .owners
            .as_ref()
            .and_then(|o| o.refuses(&p.host, &p.rule.origin.namespace))
            .map(str::to_owned);
        let Some(owner) = owner else {
            return false;
        };
        if refused.insert((p.rule.origin.clone(), p.host.clone())) {
            let message = format!(
                "host {} refused: it belongs to namespace {owner} (--host-ownership namespace), whose Ingresses can allow this one with allow-namespaces",
                p.host
            );
            let (kind, origin) = (p.rule.kind, p.rule.origin.clone());
            self.warn_object(kind, &origin, WarningKind::HostNotOwned, message);
        }
        true
    }
}

/// The table's entry for a queued match: its route (HSTS on the TLS
/// listener only) and its conditions.
fn gateway_match(
    p: Pending,
    access: &Arc<AccessPolicy>,
    hsts: Option<&HeaderValue>,
) -> GatewayMatch {
    let action = match p.action_backend {
        Some(b) => Action::Forward(b),
        None => Action::Unavailable,
    };
    let mut route = Route::bare(
        p.host,
        &p.matched.path,
        p.matched.path_type,
        action,
        p.policy,
    );
    route.regex = p.matched.regex.is_some();
    route.access = access.clone();
    route.hsts = hsts.filter(|_| p.listeners.tls).cloned();
    route.gateway = Some(p.rule.clone());
    route.conditions = p.matched.describe();
    GatewayMatch {
        path: p.matched.path_match(),
        method: p.matched.method.clone(),
        headers: p.matched.headers.clone(),
        query: p.matched.query.clone(),
        listeners: p.listeners,
        route: Arc::new(route),
    }
}

/// A regex anchored at both ends, within the size limit of path regexes.
fn anchored(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(PATH_REGEX_BYTES)
        .build()
}
