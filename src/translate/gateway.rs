//! Gateway API → the table: the GatewayClasses of our controller, their
//! Gateways' listeners, and the HTTPRoutes attached to them.
//!
//! Every Gateway of our classes shares Gatehouse's two addresses: a
//! listener on port 80 (`HTTP`) is the plain-HTTP listener, one on 443
//! (`HTTPS`, `Terminate`) the TLS listener. A listener on any other port is
//! refused (`PortUnavailable`): opening ports per Gateway would change what
//! the platform's LoadBalancer Service exposes, which Gatehouse does not
//! own. HTTPRoute matches land in the same table as Ingress rules; on a
//! host that both claim, the HTTPRoute matches are tried first and the
//! Ingress rules take what none of them matches.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use foldhash::{HashMap, HashSet};
use http::header::{HeaderName, HeaderValue};
use http::StatusCode;
use k8s_openapi::api::networking::v1::{IngressBackend, IngressServiceBackend, ServiceBackendPort};

use super::gateway_status::{Condition, GatewayReport, ListenerReport, ParentReport, RouteReport};
use super::{Build, TranslateOptions, WarningKind, PATH_REGEX_BYTES};
use crate::cluster::ObjectKey;
use crate::gateway::{
    self, Gateway, HTTPBackendRef, HTTPRoute, HTTPRouteFilter, HTTPRouteMatch, HeaderModifier,
    Listener, ParentRef,
};
use crate::table::{
    BackendProtocol, GatewayMatch, GatewayRedirect, GatewayRule, HeaderEdits, HostPattern,
    Listeners, PathMatch, PathModifier, PathType, Policy, Route, Split, ValueMatch,
};
use crate::upstream::Action;

/// The route kinds served on HTTP and HTTPS listeners.
const ROUTE_KINDS: [&str; 2] = ["HTTPRoute", "GRPCRoute"];

/// The ports Gateway listeners may use: Gatehouse's HTTP and HTTPS ports,
/// as the LoadBalancer in front of it publishes them.
const HTTP_PORT: i32 = 80;
const HTTPS_PORT: i32 = 443;

/// A listener of one of our Gateways that Gatehouse serves.
struct Open<'a> {
    gateway: &'a ObjectKey,
    /// The listener's place in its Gateway's report.
    index: usize,
    listener: &'a Listener,
    hostname: Option<HostPattern>,
    tls: bool,
    /// The route kinds `allowedRoutes.kinds` admits of those served here.
    kinds: Vec<&'static str>,
}

/// The route being translated: its key and kind (`HTTPRoute`, or a
/// `GRPCRoute` read as one), for warnings, status and grants.
#[derive(Clone, Copy)]
struct Who<'k> {
    key: &'k ObjectKey,
    kind: &'static str,
}

/// One HTTPRoute match, on one host, before the matches are sorted.
struct Pending {
    order: Order,
    host: HostPattern,
    listeners: Listeners,
    matched: Arc<CompiledMatch>,
    rule: Arc<GatewayRule>,
    /// The rule's policy, shared by its matches on every host.
    policy: Arc<Policy>,
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

/// What was wrong with a route's rules, for its status.
#[derive(Default)]
struct Problems {
    /// The first backend that cannot be used: the reason and what.
    unresolved: Option<(&'static str, String)>,
    /// The first filter that is not supported.
    unsupported: Option<String>,
}

impl Problems {
    fn resolved_refs(&self) -> Condition {
        match &self.unresolved {
            None => Condition::yes("ResolvedRefs", "ResolvedRefs"),
            Some((reason, message)) => Condition::no("ResolvedRefs", reason, message.clone()),
        }
    }
}

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
    /// Adds the routes of every HTTPRoute attached to a Gateway of ours.
    pub(super) fn add_gateway_api(
        &mut self,
        options: &TranslateOptions,
        defaults: &super::settings::RouteDefaults,
    ) {
        let base = &defaults.policy;
        let state = self.state;
        let classes: HashSet<&str> = state
            .gateway_classes
            .iter()
            .filter(|(_, c)| c.spec.controller_name == options.gateway_controller)
            .map(|(name, _)| name.as_str())
            .collect();
        if classes.is_empty() {
            return;
        }
        for name in &classes {
            let generation = state.gateway_classes[*name].metadata.generation;
            self.report.classes.insert(name.to_string(), generation);
        }
        let gateways: BTreeMap<&ObjectKey, &Gateway> = state
            .gateways
            .iter()
            .filter(|(_, g)| classes.contains(g.spec.gateway_class_name.as_str()))
            .map(|(k, g)| (k, &**g))
            .collect();
        let mut open = Vec::new();
        for (key, gateway) in &gateways {
            let mut report = GatewayReport {
                generation: gateway.metadata.generation,
                ..GatewayReport::default()
            };
            let parameters = gateway.spec.infrastructure.as_ref();
            if parameters.is_some_and(|i| i.parameters_ref.is_some()) {
                let why = "infrastructure.parametersRef names parameters, and Gatehouse takes none";
                let message = format!("{why} (InvalidParameters); the Gateway is not served");
                self.warn(key, WarningKind::GatewayListener, message);
                report.conditions = vec![
                    Condition::no("Accepted", "InvalidParameters", why),
                    Condition::no("Programmed", "Invalid", why),
                ];
                self.report.refused.insert((*key).clone());
                self.report.gateways.insert((*key).clone(), report);
                continue;
            }
            for (index, listener) in gateway.spec.listeners.iter().enumerate() {
                let mut listener_report = ListenerReport {
                    name: listener.name.clone(),
                    ..ListenerReport::default()
                };
                match self.open_listener(key, index, listener) {
                    Ok((l, kinds)) => {
                        listener_report.conditions = vec![
                            Condition::yes("Accepted", "Accepted"),
                            kinds.unwrap_or_else(|| Condition::yes("ResolvedRefs", "ResolvedRefs")),
                            Condition::yes("Programmed", "Programmed"),
                        ];
                        listener_report.supported_kinds = l.kinds.clone();
                        open.push(l);
                    }
                    Err(refused) => {
                        let message = refused.message.clone();
                        listener_report.conditions = vec![
                            refused,
                            Condition::yes("ResolvedRefs", "ResolvedRefs"),
                            Condition::no("Programmed", "Invalid", message),
                        ];
                    }
                }
                report.listeners.push(listener_report);
            }
            self.report.gateways.insert((*key).clone(), report);
        }
        // GRPCRoutes are read as the HTTPRoutes they amount to.
        let grpc: Vec<(&ObjectKey, HTTPRoute)> = state
            .grpc_routes
            .iter()
            .map(|(k, r)| (k, r.as_http_route()))
            .collect();
        let http = state
            .http_routes
            .iter()
            .map(|(k, r)| (k, &**r, "HTTPRoute"));
        let grpc_refs = grpc.iter().map(|(k, r)| (*k, r, "GRPCRoute"));
        let mut routes: Vec<(&ObjectKey, &HTTPRoute, &'static str)> =
            http.chain(grpc_refs).collect();
        routes.sort_by(|(ka, a, kind_a), (kb, b, kind_b)| {
            let age = |r: &HTTPRoute| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
            age(a)
                .cmp(&age(b))
                .then_with(|| ka.cmp(kb))
                .then_with(|| kind_a.cmp(kind_b))
        });
        let policy = Arc::new(base.clone());
        // Who may reach an HTTPRoute: what the controller ConfigMap says for
        // an Ingress without annotations (its source ranges, its closures).
        let lookup = crate::policy::access::ObjectLookup {
            namespace: "",
            secrets: &state.secrets,
            config_maps: &state.config_maps,
        };
        let (plain, _) =
            super::annotations::parse(None, &options.annotations_prefix, &lookup, defaults);
        let access = plain.access.clone();
        // HSTS on HTTPS answers, as for an Ingress whose `tls` covers its
        // host (the controller's setting, on by default).
        let hsts = defaults.hsts.header();
        let mut pending = Vec::new();
        // Hosts of the routes each listener took, for listeners without a
        // hostname of their own (their certificate covers those).
        let mut listener_hosts: HashMap<(&ObjectKey, &str), Vec<HostPattern>> = HashMap::default();
        for (key, route, kind) in routes {
            let who = Who { key, kind };
            let hosts = self.attach(who, route, &open, &gateways, &mut listener_hosts);
            if !self.report.routes_of(kind).contains_key(key) {
                continue; // no parent of ours
            }
            // Compiled even when no parent took it: its status says whether
            // its references resolve.
            let mut problems = Problems::default();
            self.route_matches(who, route, &hosts, &policy, &mut pending, &mut problems);
            if let Some(report) = self.report.routes_of(kind).get_mut(key) {
                for parent in &mut report.parents {
                    parent.conditions.push(problems.resolved_refs());
                    if let Some(accepted) = &problems.unsupported {
                        if parent.conditions[0].status {
                            parent.conditions[0] =
                                Condition::no("Accepted", "UnsupportedValue", accepted.clone());
                        }
                    }
                }
            }
        }
        self.add_listener_certs(&open, &listener_hosts);
        self.sum_up_gateways();
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
            // `--host-ownership namespace`: a host an Ingress of another
            // namespace owns is not for this route (the owner's
            // `allow-namespaces` can let it in).
            let owner = self
                .owners
                .as_ref()
                .and_then(|o| o.refuses(&p.host, &p.rule.origin.namespace))
                .map(str::to_owned);
            if let Some(owner) = owner {
                if refused.insert((p.rule.origin.clone(), p.host.clone())) {
                    let message = format!(
                        "host {} refused: it belongs to namespace {owner} (--host-ownership namespace), whose Ingresses can allow this one with allow-namespaces",
                        p.host
                    );
                    let (kind, origin) = (p.rule.kind, p.rule.origin.clone());
                    self.warn_object(kind, &origin, WarningKind::HostNotOwned, message);
                }
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
            route.hsts = hsts.clone().filter(|_| p.listeners.tls);
            route.gateway = Some(p.rule.clone());
            route.conditions = p.matched.describe();
            let route = Arc::new(route);
            self.table.add_gateway_match(GatewayMatch {
                path: p.matched.path_match(),
                method: p.matched.method.clone(),
                headers: p.matched.headers.clone(),
                query: p.matched.query.clone(),
                listeners: p.listeners,
                route,
            });
        }
    }

    /// A listener Gatehouse can serve (with a `ResolvedRefs` condition
    /// when its route kinds are wrong), or the `Accepted` condition that
    /// says why not; each problem is a warning too.
    fn open_listener<'a>(
        &mut self,
        gateway: &'a ObjectKey,
        index: usize,
        listener: &'a Listener,
    ) -> Result<(Open<'a>, Option<Condition>), Condition> {
        let name = &listener.name;
        let mut refuse = |reason: &'static str, why: String| {
            let message = format!("listener {name}: {why} ({reason})");
            self.warn(gateway, WarningKind::GatewayListener, message);
            Err(Condition::no("Accepted", reason, why))
        };
        let tls = match (listener.protocol.as_str(), listener.port) {
            ("HTTP", HTTP_PORT) => false,
            ("HTTPS", HTTPS_PORT) => true,
            ("HTTP" | "HTTPS", port) => {
                return refuse("PortUnavailable", format!(
                    "port {port} is not served: every Gateway of this class shares Gatehouse's ports, HTTP {HTTP_PORT} and HTTPS {HTTPS_PORT}"
                ));
            }
            (protocol, _) => {
                return refuse(
                    "UnsupportedProtocol",
                    format!("protocol {protocol} is not supported; HTTP and HTTPS are"),
                );
            }
        };
        if tls {
            let mode = listener
                .tls
                .as_ref()
                .map_or("Terminate", |t| t.mode.as_str());
            if mode != "Terminate" {
                return refuse(
                    "UnsupportedValue",
                    format!("TLS mode {mode} is not supported; Terminate is"),
                );
            }
        }
        let kinds = &listener.allowed_routes.kinds;
        let served: Vec<&'static str> = ROUTE_KINDS
            .into_iter()
            .filter(|served| {
                kinds.is_empty()
                    || kinds
                        .iter()
                        .any(|k| k.group == gateway::GROUP && k.kind == *served)
            })
            .collect();
        let unknown = kinds
            .iter()
            .any(|k| k.group != gateway::GROUP || !ROUTE_KINDS.contains(&k.kind.as_str()));
        let mut kinds_condition = None;
        if unknown {
            let why =
                "allowedRoutes.kinds names a kind not served here; HTTPRoute and GRPCRoute are";
            let message = format!("listener {name}: {why} (InvalidRouteKinds)");
            self.warn(gateway, WarningKind::GatewayListener, message);
            kinds_condition = Some(Condition::no("ResolvedRefs", "InvalidRouteKinds", why));
        }
        let open = Open {
            gateway,
            index,
            listener,
            hostname: listener
                .hostname
                .as_deref()
                .map(|h| HostPattern::parse_gateway(Some(h))),
            tls,
            kinds: served,
        };
        Ok((open, kinds_condition))
    }

    /// Each Gateway's own conditions and its listeners' attached routes.
    fn sum_up_gateways(&mut self) {
        let refused = &self.report.refused;
        let reports = self.report.gateways.iter_mut();
        for (_, report) in reports.filter(|(key, _)| !refused.contains(*key)) {
            let accepted = report
                .listeners
                .iter()
                .filter(|l| {
                    l.conditions
                        .iter()
                        .all(|c| c.type_ != "Accepted" || c.status)
                })
                .count();
            let programmed = report
                .listeners
                .iter()
                .filter(|l| {
                    l.conditions
                        .iter()
                        .any(|c| c.type_ == "Programmed" && c.status)
                })
                .count();
            let all = report.listeners.len();
            let invalid = format!("{} of {all} listeners are not valid", all - accepted);
            report.conditions = vec![
                match accepted {
                    n if n == all => Condition::yes("Accepted", "Accepted"),
                    0 => Condition::no("Accepted", "ListenersNotValid", invalid),
                    _ => Condition {
                        message: invalid,
                        ..Condition::yes("Accepted", "ListenersNotValid")
                    },
                },
                match programmed {
                    0 => Condition::no("Programmed", "Invalid", "no listener is programmed"),
                    _ => Condition::yes("Programmed", "Programmed"),
                },
            ];
        }
    }

    /// The hosts a route is served for, with the listeners of each, from
    /// every parent that accepts it; each parent that does not says why.
    fn attach<'a>(
        &mut self,
        who: Who<'_>,
        route: &HTTPRoute,
        open: &'a [Open<'a>],
        gateways: &BTreeMap<&ObjectKey, &Gateway>,
        listener_hosts: &mut HashMap<(&'a ObjectKey, &'a str), Vec<HostPattern>>,
    ) -> BTreeMap<HostPattern, Listeners> {
        let key = who.key;
        let mut hosts: BTreeMap<HostPattern, Listeners> = BTreeMap::new();
        for parent in &route.spec.parent_refs {
            if parent.group != gateway::GROUP || parent.kind != "Gateway" {
                continue;
            }
            let gateway_key = ObjectKey::new(
                parent.namespace.as_deref().unwrap_or(&key.namespace),
                &parent.name,
            );
            // Another controller's Gateway, or none: not ours to judge.
            let Some(gateway) = gateways.get(&gateway_key) else {
                continue;
            };
            let names_one = gateway
                .spec
                .listeners
                .iter()
                .any(|l| names_listener(parent, l));
            let mut why_not = match names_one {
                true => (
                    "NotAllowedByListeners",
                    "the listener it names is not served",
                ),
                false => ("NoMatchingParent", "no listener matches the parentRef"),
            };
            let mut attached = false;
            for l in open.iter().filter(|l| *l.gateway == gateway_key) {
                if !names_listener(parent, l.listener) {
                    continue;
                }
                if !l.kinds.contains(&who.kind) || !self.namespace_allowed(l, &key.namespace) {
                    why_not = (
                        "NotAllowedByListeners",
                        "the listener does not allow this route",
                    );
                    continue;
                }
                let names = intersect(l.hostname.as_ref(), &route.spec.hostnames);
                if names.is_empty() {
                    why_not = (
                        "NoMatchingListenerHostname",
                        "no hostname of the route is one of the listener's",
                    );
                    continue;
                }
                attached = true;
                if let Some(gw) = self.report.gateways.get_mut(&gateway_key) {
                    gw.listeners[l.index].attached_routes += 1;
                }
                let this = Listeners {
                    plain: !l.tls,
                    tls: l.tls,
                };
                for name in names {
                    if l.hostname.is_none() && name != HostPattern::Any {
                        listener_hosts
                            .entry((l.gateway, l.listener.name.as_str()))
                            .or_default()
                            .push(name.clone());
                    }
                    let entry = hosts.entry(name).or_default();
                    *entry = entry.union(this);
                }
            }
            let accepted = if attached {
                Condition::yes("Accepted", "Accepted")
            } else {
                let (reason, why) = why_not;
                let message =
                    format!("parentRef Gateway {gateway_key}: not accepted: {why} ({reason})");
                self.warn_object(who.kind, key, WarningKind::RouteNotAccepted, message);
                Condition::no("Accepted", reason, why)
            };
            let report = self
                .report
                .routes_of(who.kind)
                .entry(key.clone())
                .or_insert_with(|| RouteReport {
                    generation: route.metadata.generation,
                    parents: Vec::new(),
                });
            report.parents.push(ParentReport {
                parent: parent.clone(),
                conditions: vec![accepted],
            });
        }
        hosts
    }

    /// `allowedRoutes.namespaces`: `Same`, `All`, or a label `Selector`
    /// over the route's Namespace.
    fn namespace_allowed(&self, l: &Open<'_>, namespace: &str) -> bool {
        let rule = &l.listener.allowed_routes.namespaces;
        match rule.from.as_str() {
            "All" => true,
            "Selector" => {
                let Some(selector) = &rule.selector else {
                    return false;
                };
                let mut labels = self
                    .state
                    .namespaces
                    .get(namespace)
                    .and_then(|n| n.metadata.labels.clone())
                    .unwrap_or_default();
                // Set on every Namespace by the API server; applied here
                // for manifests, which may not even hold the Namespace.
                labels
                    .entry("kubernetes.io/metadata.name".to_owned())
                    .or_insert_with(|| namespace.to_owned());
                selector.matches(&labels).unwrap_or(false)
            }
            _ => namespace == l.gateway.namespace,
        }
    }

    /// Compiles each rule of a route and queues its matches for each host.
    fn route_matches(
        &mut self,
        who: Who<'_>,
        route: &HTTPRoute,
        hosts: &BTreeMap<HostPattern, Listeners>,
        base: &Arc<Policy>,
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

    fn compile_match(
        &mut self,
        who: Who<'_>,
        context: &str,
        m: &HTTPRouteMatch,
    ) -> Option<CompiledMatch> {
        let key = who.key;
        let path = &m.path;
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
        let method = match &m.method {
            None => None,
            Some(text) => match http::Method::from_bytes(text.as_bytes()) {
                Ok(method) => Some(method),
                Err(_) => {
                    let message = format!("{context}: method {text:?} is not valid; match skipped");
                    self.warn_object(who.kind, key, WarningKind::InvalidPath, message);
                    return None;
                }
            },
        };
        let mut headers = Vec::new();
        let mut seen = HashSet::default();
        for h in &m.headers {
            let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
                let message = format!(
                    "{context}: header name {:?} is not valid; match skipped",
                    h.name
                );
                self.warn_object(who.kind, key, WarningKind::InvalidPath, message);
                return None;
            };
            // Only the first of equal names counts (case-insensitive).
            if !seen.insert(name.clone()) {
                continue;
            }
            headers.push((name, self.value_match(who, context, &h.type_, &h.value)?));
        }
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
            path: path.value.clone(),
            path_type,
            regex,
            method,
            headers,
            query,
        })
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

    /// A rule's filters and backends. What cannot be used is warned about
    /// and fails closed: an unknown filter makes the whole rule answer 500,
    /// an unresolvable backend its share.
    fn compile_rule(
        &mut self,
        who: Who<'_>,
        index: usize,
        rule: &gateway::HTTPRouteRule,
        context: &str,
        problems: &mut Problems,
    ) -> GatewayRule {
        let key = who.key;
        let mut compiled = GatewayRule {
            kind: who.kind,
            origin: key.clone(),
            rule: index,
            ..GatewayRule::default()
        };
        let mut closed = false;
        for filter in &rule.filters {
            if let (Some(mirror), "RequestMirror") = (&filter.request_mirror, filter.type_.as_str())
            {
                // A mirror that cannot be resolved is left out: it protects
                // nothing, and the requests themselves are served.
                match self.gateway_backend(who, &mirror.backend_ref.as_backend_ref()) {
                    Ok(backend) => compiled.mirrors.push((backend, mirror.per_million())),
                    Err((reason, why)) => {
                        let what = format!(
                            "{context}: RequestMirror {}: {why}",
                            mirror.backend_ref.name
                        );
                        problems.unresolved.get_or_insert((reason, what.clone()));
                        let message = format!("{what}; requests are not mirrored");
                        self.warn_object(who.kind, key, WarningKind::RouteRefs, message);
                    }
                }
                continue;
            }
            if let Err(why) = apply_filter(&mut compiled, filter) {
                let message = format!("{context}: {why}; the rule answers 500");
                self.warn_object(who.kind, key, WarningKind::RouteRefs, message);
                problems
                    .unsupported
                    .get_or_insert(format!("{context}: {why}"));
                closed = true;
            }
        }
        if closed {
            compiled.redirect = None;
            compiled.backends = Split::default();
            compiled.backends.push(1, None);
            return compiled;
        }
        if compiled.redirect.is_some() {
            return compiled;
        }
        for backend in &rule.backend_refs {
            let resolved = match self.gateway_backend(who, backend) {
                Ok(b) => Some(b),
                Err((reason, why)) => {
                    problems.unresolved.get_or_insert((
                        reason,
                        format!("{context}: backendRef {}: {why}", backend.name),
                    ));
                    let message = format!(
                        "{context}: backendRef {}: {why}; its share of requests gets 500",
                        backend.name
                    );
                    self.warn_object(who.kind, key, WarningKind::RouteRefs, message);
                    None
                }
            };
            compiled.backends.push(backend.weight, resolved);
        }
        if let Some(t) = &rule.timeouts {
            let mut deadline = None;
            for (field, text) in [
                ("request", &t.request),
                ("backendRequest", &t.backend_request),
            ] {
                let Some(text) = text else { continue };
                match gateway::parse_duration(text) {
                    // `0s`: no timeout.
                    Some(d) if d.is_zero() => {}
                    Some(d) => deadline = Some(deadline.map_or(d, |old: Duration| old.min(d))),
                    None => {
                        let message = format!("{context}: timeouts.{field} {text:?} is not a duration (GEP-2257: 1h, 10s, 500ms); ignored");
                        self.warn_object(who.kind, key, WarningKind::RouteRefs, message);
                    }
                }
            }
            compiled.deadline = deadline;
        }
        compiled
    }

    /// A Service backendRef: in the route's namespace, or another one that
    /// grants it with a ReferenceGrant.
    fn gateway_backend(
        &mut self,
        who: Who<'_>,
        backend: &HTTPBackendRef,
    ) -> Result<Arc<crate::table::Backend>, (&'static str, String)> {
        let key = who.key;
        if !backend.group.is_empty() || backend.kind != "Service" {
            return Err((
                "InvalidKind",
                format!(
                    "kind {}/{} is not supported (InvalidKind); Service is",
                    backend.group, backend.kind
                ),
            ));
        }
        if !backend.filters.is_empty() {
            return Err((
                "UnsupportedValue",
                "backendRef filters are not implemented yet".into(),
            ));
        }
        let namespace = backend.namespace.as_deref().unwrap_or(&key.namespace);
        if namespace != key.namespace
            && !self.granted(
                &key.namespace,
                who.kind,
                namespace,
                "",
                "Service",
                &backend.name,
            )
        {
            return Err(("RefNotPermitted", format!(
                "Service {namespace}/{} is in another namespace and no ReferenceGrant allows it (RefNotPermitted)",
                backend.name
            )));
        }
        let Some(port) = backend.port else {
            return Err((
                "UnsupportedValue",
                "a Service backendRef needs a port".into(),
            ));
        };
        let reference = IngressBackend {
            service: Some(IngressServiceBackend {
                name: backend.name.clone(),
                port: Some(ServiceBackendPort {
                    number: Some(port),
                    name: None,
                }),
            }),
            resource: None,
        };
        self.backends
            .resolve(namespace, &reference)
            .map_err(|e| ("BackendNotFound", format!("{e} (BackendNotFound)")))
    }

    /// The Secret and certificate an HTTPS listener names.
    fn listener_cert(
        &mut self,
        l: &Open<'_>,
    ) -> Result<(ObjectKey, crate::table::CertEntry), (&'static str, String)> {
        let refs = l
            .listener
            .tls
            .as_ref()
            .map(|t| t.certificate_refs.as_slice());
        let Some(cert_ref) = refs.and_then(<[_]>::first) else {
            return Err((
                "InvalidCertificateRef",
                "HTTPS without certificateRefs".into(),
            ));
        };
        if !cert_ref.group.is_empty() || cert_ref.kind != "Secret" {
            return Err((
                "InvalidCertificateRef",
                format!(
                    "certificateRef kind {}/{} is not supported; Secret is",
                    cert_ref.group, cert_ref.kind
                ),
            ));
        }
        let namespace = cert_ref
            .namespace
            .as_deref()
            .unwrap_or(&l.gateway.namespace);
        if namespace != l.gateway.namespace
            && !self.granted(
                &l.gateway.namespace,
                "Gateway",
                namespace,
                "",
                "Secret",
                &cert_ref.name,
            )
        {
            return Err((
                "RefNotPermitted",
                format!(
                    "Secret {namespace}/{} is in another namespace and no ReferenceGrant allows it",
                    cert_ref.name
                ),
            ));
        }
        let secret = ObjectKey::new(namespace, &cert_ref.name);
        match self.cert(&secret) {
            Ok(cert) => Ok((secret, cert)),
            Err(e) => Err(("InvalidCertificateRef", format!("TLS Secret {secret}: {e}"))),
        }
    }

    /// Whether a ReferenceGrant in `to_namespace` lets `from_kind` objects
    /// of `from_namespace` refer to the `to_kind` object `name`.
    fn granted(
        &self,
        from_namespace: &str,
        from_kind: &str,
        to_namespace: &str,
        to_group: &str,
        to_kind: &str,
        name: &str,
    ) -> bool {
        self.state
            .reference_grants
            .iter()
            .filter(|(k, _)| k.namespace == to_namespace)
            .any(|(_, grant)| {
                let from = grant.spec.from.iter().any(|f| {
                    f.group == gateway::GROUP
                        && f.kind == from_kind
                        && f.namespace == from_namespace
                });
                let to = grant.spec.to.iter().any(|t| {
                    t.group == to_group
                        && t.kind == to_kind
                        && t.name.as_deref().is_none_or(|n| n == name)
                });
                from && to
            })
    }

    /// The certificate of each HTTPS listener: for its hostname, or, when
    /// it has none, for the hosts of the routes it took. A listener whose
    /// certificate cannot be used says so in its status.
    fn add_listener_certs(
        &mut self,
        open: &[Open<'_>],
        listener_hosts: &HashMap<(&ObjectKey, &str), Vec<HostPattern>>,
    ) {
        for l in open.iter().filter(|l| l.tls) {
            let name = &l.listener.name;
            let (secret, cert) = match self.listener_cert(l) {
                Ok(found) => found,
                Err((reason, why)) => {
                    let message = format!(
                        "listener {name}: {why} ({reason}); its hosts get the default certificate"
                    );
                    self.warn(l.gateway, WarningKind::GatewayListener, message);
                    if let Some(gw) = self.report.gateways.get_mut(l.gateway) {
                        gw.listeners[l.index].conditions = vec![
                            Condition::yes("Accepted", "Accepted"),
                            Condition::no("ResolvedRefs", reason, why.clone()),
                            Condition::no("Programmed", "Invalid", why),
                        ];
                    }
                    continue;
                }
            };
            let hosts = match &l.hostname {
                Some(h) => vec![h.clone()],
                None => {
                    // A listener for every name answers every name it has
                    // no other certificate for (`--default-ssl-certificate`,
                    // set later, wins over it).
                    if !self.table.certs.has_default() {
                        self.table.certs.set_default(cert.clone());
                    }
                    listener_hosts
                        .get(&(l.gateway, name.as_str()))
                        .cloned()
                        .unwrap_or_default()
                }
            };
            for host in hosts {
                if !self.table.certs.insert_first(&host, cert.clone()) {
                    let message = format!("listener {name}: host {host} already has a certificate (from an Ingress or an older listener); Secret {secret} is not used for it");
                    self.warn(l.gateway, WarningKind::TlsConflict, message);
                }
            }
        }
    }
}

/// A rule's policy: the controller's defaults, with `URLRewrite`'s
/// hostname as the upstream `Host`, and gRPC over cleartext HTTP/2 (h2c)
/// to a GRPCRoute's backends.
fn policy_for(base: &Arc<Policy>, rule: &GatewayRule) -> Arc<Policy> {
    let grpc = rule.kind == "GRPCRoute";
    if rule.upstream_host.is_none() && !grpc {
        return base.clone();
    }
    let mut policy = (**base).clone();
    if let Some(host) = &rule.upstream_host {
        policy.upstream_vhost = Some(host.clone());
    }
    if grpc {
        policy.protocol = BackendProtocol::Grpc;
    }
    Arc::new(policy)
}

/// Whether a parentRef's `sectionName` and `port` pick this listener.
fn names_listener(parent: &ParentRef, listener: &Listener) -> bool {
    parent
        .section_name
        .as_deref()
        .is_none_or(|s| s == listener.name)
        && parent.port.is_none_or(|p| p == listener.port)
}

/// The hostnames a route is served for under a listener: the spec's
/// intersection. Empty: none in common.
fn intersect(listener: Option<&HostPattern>, route: &[String]) -> Vec<HostPattern> {
    let route: Vec<HostPattern> = route
        .iter()
        .map(|h| HostPattern::parse_gateway(Some(h)))
        .collect();
    match (listener, route.is_empty()) {
        (None, true) => vec![HostPattern::Any],
        (None, false) => route,
        (Some(l), true) => vec![l.clone()],
        (Some(l), false) => route.into_iter().filter_map(|r| narrower(l, &r)).collect(),
    }
}

/// The more specific of two host patterns when one covers the other.
fn narrower(a: &HostPattern, b: &HostPattern) -> Option<HostPattern> {
    let covers = |wild: &str, name: &str| {
        name.strip_suffix(wild)
            .is_some_and(|label| label.ends_with('.') && label.len() > 1)
    };
    match (a, b) {
        (x, y) if x == y => Some(x.clone()),
        (HostPattern::Suffix(w), HostPattern::Exact(n))
        | (HostPattern::Exact(n), HostPattern::Suffix(w)) => {
            covers(w, n).then(|| HostPattern::Exact(n.clone()))
        }
        (HostPattern::Suffix(x), HostPattern::Suffix(y)) => {
            if covers(x, y) {
                Some(HostPattern::Suffix(y.clone()))
            } else if covers(y, x) {
                Some(HostPattern::Suffix(x.clone()))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A regex anchored at both ends, within the size limit of path regexes.
fn anchored(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(PATH_REGEX_BYTES)
        .build()
}

fn apply_filter(rule: &mut GatewayRule, filter: &HTTPRouteFilter) -> Result<(), String> {
    match filter.type_.as_str() {
        "RequestHeaderModifier" => {
            let m = filter
                .request_header_modifier
                .as_ref()
                .ok_or("RequestHeaderModifier without its settings")?;
            rule.request_headers = Some(header_edits(m)?);
        }
        "ResponseHeaderModifier" => {
            let m = filter
                .response_header_modifier
                .as_ref()
                .ok_or("ResponseHeaderModifier without its settings")?;
            rule.response_headers = Some(header_edits(m)?);
        }
        "RequestRedirect" => {
            let r = filter
                .request_redirect
                .as_ref()
                .ok_or("RequestRedirect without its settings")?;
            let status = match r.status_code {
                301 | 302 | 303 | 307 | 308 => {
                    StatusCode::from_u16(r.status_code).map_err(|e| e.to_string())?
                }
                other => return Err(format!("RequestRedirect status {other} is not a redirect")),
            };
            let port = match r.port {
                None => None,
                Some(p) => Some(u16::try_from(p).map_err(|_| format!("port {p} is out of range"))?),
            };
            rule.redirect = Some(GatewayRedirect {
                scheme: r.scheme.clone(),
                hostname: r.hostname.clone(),
                port,
                path: r.path.as_ref().map(path_modifier).transpose()?,
                status,
            });
        }
        "URLRewrite" => {
            let r = filter
                .url_rewrite
                .as_ref()
                .ok_or("URLRewrite without its settings")?;
            if let Some(host) = &r.hostname {
                rule.upstream_host = Some(
                    HeaderValue::from_str(host)
                        .map_err(|_| format!("hostname {host:?} is not valid"))?,
                );
            }
            rule.rewrite = r.path.as_ref().map(path_modifier).transpose()?;
        }
        other => return Err(format!("filter {other} is not implemented")),
    }
    Ok(())
}

fn path_modifier(m: &gateway::PathModifier) -> Result<PathModifier, String> {
    match (
        m.type_.as_str(),
        &m.replace_full_path,
        &m.replace_prefix_match,
    ) {
        ("ReplaceFullPath", Some(path), _) => Ok(PathModifier::Full(path.clone())),
        ("ReplacePrefixMatch", _, Some(prefix)) => Ok(PathModifier::Prefix(prefix.clone())),
        (other, _, _) => Err(format!("path modifier {other} without its value")),
    }
}

fn header_edits(m: &HeaderModifier) -> Result<HeaderEdits, String> {
    let pair = |h: &gateway::Header| -> Result<(HeaderName, HeaderValue), String> {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("header name {:?} is not valid", h.name))?;
        let value = HeaderValue::from_str(&h.value)
            .map_err(|_| format!("header {:?}: value is not valid", h.name))?;
        Ok((name, value))
    };
    Ok(HeaderEdits {
        set: m.set.iter().map(pair).collect::<Result<_, _>>()?,
        add: m.add.iter().map(pair).collect::<Result<_, _>>()?,
        remove: m
            .remove
            .iter()
            .map(|n| {
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| format!("header name {n:?} is not valid"))
            })
            .collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(h: &str) -> HostPattern {
        HostPattern::parse_gateway(Some(h))
    }

    #[test]
    fn hostnames_intersect_as_the_spec_says() {
        let hosts = |l: Option<&str>, r: &[&str]| {
            let r: Vec<String> = r.iter().map(|s| s.to_string()).collect();
            intersect(l.map(p).as_ref(), &r)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(hosts(None, &[]), ["*"]);
        assert_eq!(hosts(Some("a.example.com"), &[]), ["a.example.com"]);
        assert_eq!(
            hosts(Some("*.example.com"), &["a.example.com", "other.org"]),
            ["a.example.com"]
        );
        assert_eq!(
            hosts(Some("a.example.com"), &["*.example.com"]),
            ["a.example.com"]
        );
        assert_eq!(
            hosts(Some("*.example.com"), &["x.a.example.com"]),
            ["x.a.example.com"]
        );
        assert_eq!(
            hosts(Some("*.example.com"), &["*.a.example.com"]),
            ["*.a.example.com (any depth)"]
        );
        assert!(hosts(Some("example.com"), &["*.example.com"]).is_empty());
    }
}
