//! The immutable routing table and its lookups.
//!
//! A `RouteTable` is built by translate and never changed afterwards, with
//! one exception: a backend's ready endpoints, which a rolling update
//! replaces in place (`Backend::replace_upstream`), so that the routes
//! that share the backend need no rebuild. The proxy reads the table
//! through one `ArcSwap::load` per request or handshake, and a request
//! reads its backend's endpoints once.
//! Host selection comes first (exact, then wildcard, then the rules without
//! a host); paths are matched only within the selected host, as ingress-nginx
//! does with one server block per host.

mod certs;
mod gateway;
mod global_settings;
mod host;
mod path;
mod regex_paths;
mod snippet;

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderValue, StatusCode};

pub use certs::{CertEntry, CertStore, Handshake};
pub use gateway::{
    GatewayMatch, GatewayRedirect, GatewayRule, HeaderEdits, Listeners, PathMatch, PathModifier,
    Split, ValueMatch,
};
pub use global_settings::{Block, GlobalSettings, KeepAlive, Match};
pub use host::{HostMap, HostPattern};
// For the tests that build edge settings.
pub use crate::connection::ForwardedHeaders;
pub use path::{PathTable, PathTableBuilder, PathType};
use regex_paths::{RegexPaths, RegexPathsBuilder};
pub use snippet::Snippeted;

use crate::acme::ChallengeAnswers;
use crate::cluster::ObjectKey;
use crate::connection::{normalize_host, PeerCert};
use crate::metrics::RouteMetricsSlot;
use crate::policy::affinity::Stickiness;
use crate::policy::canary::Canary;
use crate::policy::client_cert::{CertCheck, ClientAuth};
use crate::policy::cors::Cors;
use crate::policy::error_pages::ErrorPages;
use crate::policy::proxy_settings::ProxySettings;
use crate::policy::rate_limit::RouteLimits;
use crate::policy::redirect::{Asked, Redirects};
use crate::policy::rewrite::{append_query, expand_captures, Rewrite};
use crate::policy::snippet::{Answered, RouteSnippet, ServerSnippet};
use crate::policy::{AccessPolicy, Admission};
use crate::upstream::LoadBalance;
// A route's backend, as the tests (and translate's Gateway API code) name
// it; it lives in `upstream`.
pub use crate::upstream::{Action, Backend, Upstream};

/// One host+path rule of one Ingress, and what to do with matching requests.
#[derive(Debug)]
pub struct Route {
    /// The Ingress it comes from; `None` for `--default-backend-service`.
    pub ingress: Option<ObjectKey>,
    pub host: HostPattern,
    /// The path as written in the Ingress.
    pub path: String,
    pub path_type: PathType,
    /// Matched as a case-insensitive regular expression anchored at the
    /// start (`use-regex`, or `rewrite-target` with capture groups).
    pub regex: bool,
    pub action: Action,
    pub policy: Arc<ProxySettings>,
    /// Who may reach the route (shared by the routes of one Ingress).
    pub access: Arc<AccessPolicy>,
    /// `enable-cors`: preflights answered, headers added.
    pub cors: Option<Arc<Cors>>,
    /// A canary Ingress's share of this route's traffic.
    pub canary: Option<Arc<Canary>>,
    /// `limit-*`: per-client rate and connection limits.
    pub limits: Option<Arc<RouteLimits>>,
    /// `affinity: cookie` or `upstream-hash-by`.
    pub stickiness: Option<Arc<Stickiness>>,
    /// `from-to-www-redirect`: every request is sent (308) to this host.
    pub host_redirect: Option<String>,
    /// `custom-http-errors`: statuses replaced by the default backend's page.
    pub error_pages: Option<Arc<ErrorPages>>,
    /// Plain-HTTP requests are redirected to HTTPS (`ssl-redirect`).
    pub ssl_redirect: bool,
    /// `Strict-Transport-Security` for HTTPS responses, when the Ingress's
    /// `tls` section covers the host and HSTS is on.
    pub hsts: Option<HeaderValue>,
    pub rewrite: Option<Rewrite>,
    /// What the host's server-snippet and the Ingress's
    /// configuration-snippet do (`--allow-snippet-annotations`).
    pub snippet: Option<Arc<RouteSnippet>>,
    /// An HTTPRoute rule's filters and backends (`ingress` is then `None`).
    pub gateway: Option<Arc<GatewayRule>>,
    /// An HTTPRoute match's conditions besides the path, for display
    /// (`method GET, header version=one`).
    pub conditions: Option<String>,
    /// The route's request metrics, resolved on its first request.
    pub metrics: RouteMetricsSlot,
}

impl Route {
    /// A route with none of the Ingress annotations' features: open to
    /// all, no CORS, canary, limits, affinity, redirects or rewrites.
    pub fn bare(
        host: HostPattern,
        path: &str,
        path_type: PathType,
        action: Action,
        policy: Arc<ProxySettings>,
    ) -> Route {
        Route {
            ingress: None,
            host,
            path: path.to_owned(),
            path_type,
            regex: false,
            action,
            policy,
            access: Arc::new(AccessPolicy::default()),
            cors: None,
            canary: None,
            limits: None,
            stickiness: None,
            host_redirect: None,
            error_pages: None,
            ssl_redirect: false,
            hsts: None,
            rewrite: None,
            gateway: None,
            conditions: None,
            snippet: None,
            metrics: Default::default(),
        }
    }

    /// The redirect phase's view of the route.
    pub fn redirects(&self) -> Redirects<'_> {
        Redirects {
            www: self.host_redirect.as_deref(),
            app_root: self.policy.app_root.as_deref(),
            fixed: self.policy.redirect.as_ref(),
            https: self.ssl_redirect || self.policy.force_ssl_redirect,
        }
    }

    /// The object the route comes from, as `gatehouse routes` and
    /// `/debug/routes` show it.
    pub fn origin(&self) -> String {
        match (&self.ingress, &self.gateway) {
            (Some(ingress), _) => format!("Ingress {ingress}"),
            (None, Some(rule)) => format!("{} {} rule {}", rule.kind, rule.origin, rule.rule),
            (None, None) => "--default-backend-service".to_owned(),
        }
    }
}

/// The facts about a request that routing depends on.
#[derive(Clone, Copy, Debug)]
pub struct RequestFacts<'a> {
    /// `Host` or `:authority` as sent (any case, maybe with a port).
    pub host: &'a str,
    pub method: &'a http::Method,
    pub headers: &'a http::HeaderMap,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub tls: bool,
    /// The port the connection came in on (`$server_port`).
    pub port: u16,
    pub client: IpAddr,
    /// The connection's client certificate, when its server name asked
    /// for one.
    pub peer: Option<&'a PeerCert>,
}

impl RequestFacts<'_> {
    /// What the redirect phase looks at.
    fn asked(&self) -> Asked<'_> {
        Asked {
            host: self.host,
            path: self.path,
            query: self.query,
            tls: self.tls,
        }
    }
}

/// What to do with a request, decided from the table alone.
#[derive(Debug, Clone)]
pub enum Decision {
    Forward(Forward),
    Redirect {
        location: HeaderValue,
        status: StatusCode,
    },
    /// Answer directly: 404 no route, 403 not allowed, 503 no backend or
    /// a route closed because its protection cannot be enforced.
    Respond(StatusCode),
    /// A snippet's `return`, or its `rewrite` that redirects.
    Answer(Answered),
    /// A decision a snippet took part in, with what the proxy needs of
    /// it (boxed: only hosts and routes with snippets have one).
    Snippet(Box<Snippeted>),
}

#[derive(Debug, Clone)]
pub struct Forward {
    pub route: Arc<Route>,
    pub backend: Arc<Backend>,
    /// The upstream path and query when `rewrite-target` changed them.
    pub rewritten: Option<String>,
    /// The route's credentials must be checked first
    /// (`AccessPolicy::authenticate`).
    pub authenticate: bool,
    /// The host's client-certificate policy, which says what the backend
    /// learns of the client's certificate.
    pub client_auth: Option<Arc<ClientAuth>>,
    /// How to pick among the backend's endpoints.
    pub load_balance: LoadBalance,
    /// The canary's backend was chosen (the route's affinity is the main
    /// backend's).
    pub canary: bool,
}

/// The routes of one host.
#[derive(Debug, Default)]
struct HostRoutes {
    /// Every route of the host, in the order translate added them.
    routes: Vec<Arc<Route>>,
    /// HTTPRoute matches, in the spec's precedence order, tried first.
    gateway: Vec<GatewayMatch>,
    paths: PathTable<Arc<Route>>,
    regexes: RegexPaths,
    /// `spec.defaultBackend` of the Ingress that has rules for this host.
    fallback: Option<Arc<Route>>,
    /// The host's server-snippet, run before any of its routes is chosen.
    server: Option<Arc<ServerSnippet>>,
}

/// A route found for a request, and the regex that matched it, if any.
struct Matched<'a> {
    route: &'a Arc<Route>,
    regex: Option<&'a regex::Regex>,
}

impl HostRoutes {
    /// HTTPRoute matches first; then, for the Ingress rules, exact paths,
    /// then regular expressions in order, then the longest prefix, then
    /// the fallback (nginx's location order).
    fn lookup(&self, req: &RequestFacts<'_>) -> Option<Matched<'_>> {
        if let Some(m) = self.gateway.iter().find(|m| m.matches(req)) {
            return Some(Matched {
                route: &m.route,
                regex: None,
            });
        }
        let path = req.path;
        let tree = self.paths.lookup(path);
        if let Some(route) = tree.filter(|r| r.path_type == PathType::Exact) {
            return Some(Matched { route, regex: None });
        }
        if let Some((route, regex)) = self.regexes.first_match(path) {
            return Some(Matched {
                route,
                regex: Some(regex),
            });
        }
        tree.or(self.fallback.as_ref())
            .map(|route| Matched { route, regex: None })
    }
}

/// Every route, by host then path, and the certificates.
///
/// Its maps are persistent: a clone shares everything with the original,
/// and `splice` replaces a few hosts in O(hosts × log n), which is how a
/// change reaches traffic without rebuilding the whole table.
#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    hosts: HostMap<Arc<HostRoutes>>,
    any_host: Arc<HostRoutes>,
    /// Receives what no rule matches: the oldest rule-less Ingress with a
    /// `spec.defaultBackend`, else `--default-backend-service`.
    default_route: Option<Arc<Route>>,
    pub certs: CertStore,
    /// Hosts that ask for client certificates (`auth-tls-*`).
    pub client_auth: HostMap<Arc<ClientAuth>>,
    /// Hosts that ask for client certificates Gatehouse cannot check (a
    /// missing CA): their HTTPRoutes answer 503.
    pub client_auth_denied: HostMap<()>,
    /// `ssl-passthrough` hosts: their TLS connections go to this backend
    /// untouched.
    pub passthrough: HostMap<Arc<Backend>>,
    /// The global settings (the flags and the controller ConfigMap); the
    /// field keeps its name, `edge`, which configurations and tests use.
    pub edge: Arc<GlobalSettings>,
    /// ACME HTTP-01 answers, served before any route of any host
    /// (`acme_answer`).
    pub challenges: Arc<ChallengeAnswers>,
}

impl RouteTable {
    /// The backend a TLS connection for `server_name` is passed to whole.
    pub fn passthrough_for(&self, server_name: &str) -> Option<&Arc<Backend>> {
        if self.passthrough.is_empty() {
            return None;
        }
        self.passthrough.get(&normalize_host(server_name))
    }

    /// The client-certificate policy of a server name or host.
    pub fn client_auth_for(&self, host: &str) -> Option<&Arc<ClientAuth>> {
        if self.client_auth.is_empty() {
            return None;
        }
        self.client_auth.get(&normalize_host(host))
    }

    /// The key authorization for a `GET` or `HEAD` of
    /// `/.well-known/acme-challenge/TOKEN` when TOKEN is one the challenge
    /// store holds, on any host and either scheme. It comes before every
    /// route, so no Ingress path (a Prefix `/`, a regex) can shadow it and
    /// no redirect, source range or credential applies to it; any other
    /// path under the prefix is routed as usual.
    pub fn acme_answer(&self, method: &http::Method, path: &str) -> Option<&bytes::Bytes> {
        if self.challenges.is_empty()
            || !(method == http::Method::GET || method == http::Method::HEAD)
        {
            return None;
        }
        self.challenges.answer(path)
    }

    /// The routes of a request's host: its own, else the rules without a
    /// host.
    fn host_routes(&self, host: &str) -> &HostRoutes {
        let host = normalize_host(host);
        self.hosts.get(&host).unwrap_or(&self.any_host)
    }

    /// The route for a request among a host's, else the default route.
    fn find<'t>(&'t self, routes: &'t HostRoutes, req: &RequestFacts<'_>) -> Option<Matched<'t>> {
        routes.lookup(req).or_else(|| {
            self.default_route
                .as_ref()
                .map(|route| Matched { route, regex: None })
        })
    }

    /// The whole decision for a request, in ingress-nginx's order: a
    /// closed route (503), app-root, permanent/temporal redirect, HTTPS
    /// redirect (nginx's rewrite phase), source ranges and whether
    /// credentials must be checked (its access phase), then the backend
    /// (with the rewritten path). A host with a server-snippet, or a route
    /// with a snippet, is decided with them (`snippet`).
    pub fn decide(&self, req: &RequestFacts<'_>) -> Decision {
        let client_auth = self.client_auth_for(req.host);
        let routes = self.host_routes(req.host);
        if routes.server.is_some() {
            return self.decide_with_snippets(routes, None, client_auth, req);
        }
        // Client certificates are the server's business in nginx, checked
        // before any location: over TLS first of all; over plain HTTP
        // after the redirects (which send the client to TLS).
        if req.tls {
            if let Some(refused) = client_auth.and_then(|ca| cert_refusal(ca, req)) {
                return refused;
            }
        }
        let Some(matched) = self.find(routes, req) else {
            return Decision::Respond(StatusCode::NOT_FOUND);
        };
        if matched.route.snippet.is_some() {
            return self.decide_with_snippets(routes, Some(matched), client_auth, req);
        }
        let redirects = matched.route.redirects();
        self.route_decision(&matched, client_auth, req, redirects, req)
    }

    /// A route's decision, from the route's own checks on: `req` is the
    /// request as the snippets' rewrites left it, `sent` as it came (the
    /// redirects send the client to what it asked for).
    fn route_decision(
        &self,
        matched: &Matched<'_>,
        client_auth: Option<&Arc<ClientAuth>>,
        req: &RequestFacts<'_>,
        redirects: Redirects<'_>,
        sent: &RequestFacts<'_>,
    ) -> Decision {
        let Matched { route, regex } = *matched;
        if let Some(rule) = &route.gateway {
            // A host that asks for client certificates (an Ingress's
            // `auth-tls-*`) asks for its HTTPRoutes too; over plain HTTP
            // there is no certificate to give. One whose certificates
            // cannot be checked closes them.
            if !self.client_auth_denied.is_empty()
                && self
                    .client_auth_denied
                    .get(&normalize_host(req.host))
                    .is_some()
            {
                return Decision::Respond(StatusCode::SERVICE_UNAVAILABLE);
            }
            if let Some(refused) = plain_cert_refusal(client_auth, req) {
                return refused;
            }
            return match gateway_decision(route, rule, req) {
                Decision::Forward(mut forward) => {
                    forward.client_auth = client_auth.cloned();
                    Decision::Forward(forward)
                }
                other => other,
            };
        }
        if route.access.denied.is_some() {
            return Decision::Respond(StatusCode::SERVICE_UNAVAILABLE);
        }
        let policy = &route.policy;
        if let Some((location, status)) = redirects.apply(&sent.asked()) {
            return match location {
                Ok(location) => Decision::Redirect { location, status },
                // The host came from a valid header and the path from a
                // valid URI.
                Err(_) => Decision::Respond(StatusCode::BAD_REQUEST),
            };
        }
        if let Some(refused) = plain_cert_refusal(client_auth, req) {
            return refused;
        }
        let authenticate = match admission(route, req) {
            Ok(authenticate) => authenticate,
            Err(refused) => return refused,
        };
        let backend = match &route.action {
            // With a canary, the choice phase may still find targets.
            Action::Forward(backend) if backend.has_targets() || route.canary.is_some() => {
                backend.clone()
            }
            Action::Forward(_) | Action::Unavailable => {
                return Decision::Respond(StatusCode::SERVICE_UNAVAILABLE)
            }
        };
        Decision::Forward(Forward {
            route: route.clone(),
            backend,
            rewritten: rewrite(route.rewrite.as_ref(), regex, req),
            authenticate,
            client_auth: client_auth.cloned(),
            load_balance: policy.load_balance,
            canary: false,
        })
    }

    /// Every route: host by host (in the order of their patterns), each
    /// host's in the order translate added them, then the rules without a
    /// host and the default route.
    pub fn routes(&self) -> Vec<Arc<Route>> {
        let mut hosts: Vec<(HostPattern, &Arc<HostRoutes>)> = self.hosts.iter().collect();
        hosts.sort_by(|a, b| a.0.cmp(&b.0));
        let hosts = hosts.into_iter().map(|(_, routes)| routes);
        let every = hosts.chain(std::iter::once(&self.any_host));
        let mut routes: Vec<Arc<Route>> = every.flat_map(|h| h.routes.iter().cloned()).collect();
        routes.extend(self.default_route.clone());
        routes
    }

    /// The hosts with HTTPRoute or GRPCRoute matches.
    pub fn gateway_hosts(&self) -> Vec<HostPattern> {
        let mut hosts: Vec<HostPattern> = self
            .hosts
            .iter()
            .filter(|(_, routes)| !routes.gateway.is_empty())
            .map(|(host, _)| host)
            .collect();
        if !self.any_host.gateway.is_empty() {
            hosts.push(HostPattern::Any);
        }
        hosts
    }

    /// Every route, in no particular order (cheaper than `routes`).
    pub fn iter_routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        let every = self.hosts.values().chain(std::iter::once(&self.any_host));
        every
            .flat_map(|h| h.routes.iter())
            .chain(self.default_route.as_ref())
    }

    /// What differs between this table and `newer`, by identity: the
    /// routes of each host (and of the rules without a host, and the
    /// default route) that changed, as (before, after), and the TLS hosts
    /// whose certificate entry changed. Unchanged hosts are shared between
    /// the tables of incremental builds, so this costs a pointer
    /// comparison per host.
    pub fn differences<'a>(&'a self, newer: &'a RouteTable) -> TableDiff<'a> {
        let routes_of = |h: Option<&'a Arc<HostRoutes>>| h.map_or(&[][..], |h| &h.routes[..]);
        let mut routes: Vec<RoutesChange<'a>> = self
            .hosts
            .diff(&newer.hosts, Arc::ptr_eq)
            .into_iter()
            .map(|(_, before, after)| (routes_of(before), routes_of(after)))
            .collect();
        if !Arc::ptr_eq(&self.any_host, &newer.any_host) {
            routes.push((&self.any_host.routes, &newer.any_host.routes));
        }
        let same_default = match (&self.default_route, &newer.default_route) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same_default {
            routes.push((
                self.default_route.as_slice(),
                newer.default_route.as_slice(),
            ));
        }
        let certs = self.certs.diff(&newer.certs);
        TableDiff { routes, certs }
    }

    /// The number of routes, without listing them.
    pub fn route_count(&self) -> usize {
        self.iter_routes().count()
    }

    /// This table with the parts named by `slots` taken from `part` (a
    /// table translated from the objects those slots depend on), sharing
    /// everything else with this one. The edge settings and the default
    /// certificate come from `part`, which was built from the same
    /// settings.
    pub fn splice<'a>(
        &self,
        part: &RouteTable,
        slots: impl IntoIterator<Item = &'a Slot>,
    ) -> RouteTable {
        let mut table = self.clone();
        for slot in slots {
            match slot {
                Slot::Default => table.default_route = part.default_route.clone(),
                Slot::Host(HostPattern::Any) => table.any_host = part.any_host.clone(),
                Slot::Host(host) => {
                    table.hosts.copy_pattern(&part.hosts, host);
                    table.certs.copy_pattern(&part.certs, host);
                    table.client_auth.copy_pattern(&part.client_auth, host);
                    let denied = &part.client_auth_denied;
                    table.client_auth_denied.copy_pattern(denied, host);
                    table.passthrough.copy_pattern(&part.passthrough, host);
                }
            }
        }
        table.certs.copy_default(&part.certs);
        table.edge = part.edge.clone();
        table.challenges = part.challenges.clone();
        table
    }

    pub fn default_route(&self) -> Option<&Arc<Route>> {
        self.default_route.as_ref()
    }
}

/// An HTTPRoute rule's answer: its redirect, or one of its backends by
/// weight (500 for a share whose reference did not resolve, 503 for a
/// backend without ready endpoints).
fn gateway_decision(route: &Arc<Route>, rule: &GatewayRule, req: &RequestFacts<'_>) -> Decision {
    // The controller ConfigMap's source ranges and closures hold for
    // HTTPRoutes as for Ingresses without annotations.
    let authenticate = match admission(route, req) {
        Ok(authenticate) => authenticate,
        Err(refused) => return refused,
    };
    let prefix = match route.path_type {
        PathType::Prefix => Some(route.path.trim_end_matches('/')),
        _ => None,
    };
    if let Some(r) = &rule.redirect {
        return redirect(r.location(req, prefix), r.status);
    }
    let backend = match rule.backends.pick() {
        Some(Some(backend)) if backend.has_targets() => backend.clone(),
        Some(Some(_)) => return Decision::Respond(StatusCode::SERVICE_UNAVAILABLE),
        Some(None) | None => return Decision::Respond(StatusCode::INTERNAL_SERVER_ERROR),
    };
    let rewritten = rule.rewrite.as_ref().map(|m| {
        let mut path = m.apply(req.path, prefix);
        if let Some(query) = req.query {
            path.push('?');
            path.push_str(query);
        }
        path
    });
    Decision::Forward(Forward {
        route: route.clone(),
        backend,
        rewritten,
        authenticate,
        client_auth: None,
        load_balance: route.policy.load_balance,
        canary: false,
    })
}

/// The access phase's first step: whether credentials must be checked,
/// or the answer that refuses the request (403 outside the source ranges,
/// 503 for a route closed because its protection cannot be enforced).
fn admission(route: &Route, req: &RequestFacts<'_>) -> Result<bool, Decision> {
    match route.access.admit(req.client) {
        Admission::Open => Ok(false),
        Admission::Authenticate => Ok(true),
        Admission::Refused => Err(Decision::Respond(StatusCode::FORBIDDEN)),
        Admission::Closed => Err(Decision::Respond(StatusCode::SERVICE_UNAVAILABLE)),
    }
}

/// Over plain HTTP, the refusal of a host that asks for client
/// certificates (over TLS they are checked before anything else).
fn plain_cert_refusal(
    client_auth: Option<&Arc<ClientAuth>>,
    req: &RequestFacts<'_>,
) -> Option<Decision> {
    if req.tls {
        return None;
    }
    client_auth.and_then(|ca| cert_refusal(ca, req))
}

fn cert_refusal(client_auth: &ClientAuth, req: &RequestFacts<'_>) -> Option<Decision> {
    match client_auth.check(req.peer, req.tls) {
        CertCheck::Pass => None,
        CertCheck::Refuse(status) => Some(Decision::Respond(status)),
        CertCheck::Redirect(location) => Some(Decision::Redirect {
            location,
            status: StatusCode::FOUND,
        }),
    }
}

fn redirect(location: String, status: StatusCode) -> Decision {
    match HeaderValue::from_str(&location) {
        Ok(location) => Decision::Redirect { location, status },
        // The host came from a valid header and the path from a valid URI.
        Err(_) => Decision::Respond(StatusCode::BAD_REQUEST),
    }
}

/// The upstream path and query for a rewrite: the target (with capture
/// groups filled in), followed by the original query, as nginx appends it.
fn rewrite(
    rule: Option<&Rewrite>,
    regex: Option<&regex::Regex>,
    req: &RequestFacts<'_>,
) -> Option<String> {
    let mut path = match rule? {
        Rewrite::Replace(target) => target.clone(),
        Rewrite::Captures(template) => {
            let groups = regex?.captures(req.path)?;
            expand_captures(template, &groups)
        }
    };
    if path.is_empty() {
        path.push('/');
    }
    if let Some(query) = req.query {
        append_query(&mut path, query);
    }
    Some(path)
}

/// The routes of one host before and after a change.
pub type RoutesChange<'a> = (&'a [Arc<Route>], &'a [Arc<Route>]);

/// What differs between two tables (`RouteTable::differences`).
pub struct TableDiff<'a> {
    /// The routes of a host before and after.
    pub routes: Vec<RoutesChange<'a>>,
    /// A TLS host's certificate before and after.
    pub certs: Vec<(HostPattern, Option<&'a CertEntry>, Option<&'a CertEntry>)>,
}

/// What one piece of translate's output is keyed by: a host pattern (its
/// routes, certificate, client-certificate policy and passthrough), or the
/// default route for requests no rule matches.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    Host(HostPattern),
    Default,
}

/// Collects routes and certificates, then builds the lookup structures once.
#[derive(Debug, Default)]
pub struct RouteTableBuilder {
    hosts: foldhash::HashMap<HostPattern, HostBuilder>,
    default_route: Option<Arc<Route>>,
    pub certs: CertStore,
    pub client_auth: HostMap<Arc<ClientAuth>>,
    pub client_auth_denied: HostMap<()>,
    pub passthrough: HostMap<Arc<Backend>>,
    pub edge: Arc<GlobalSettings>,
    pub challenges: Arc<ChallengeAnswers>,
}

#[derive(Debug, Default)]
struct HostBuilder {
    routes: Vec<Arc<Route>>,
    gateway: Vec<GatewayMatch>,
    paths: PathTableBuilder<Arc<Route>>,
    regexes: RegexPathsBuilder,
    fallback: Option<Arc<Route>>,
    server: Option<Arc<ServerSnippet>>,
}

impl RouteTableBuilder {
    /// A builder with room for about `hosts` hosts and TLS hosts.
    pub fn with_capacity(hosts: usize) -> Self {
        let mut builder = RouteTableBuilder::default();
        builder.hosts.reserve(hosts);
        builder
    }

    /// Adds a route; when its host+path+type is taken, returns the route
    /// that holds it and adds nothing. A regex route needs its compiled
    /// pattern.
    pub fn add_route(
        &mut self,
        route: Route,
        regex: Option<regex::Regex>,
    ) -> Result<(), Arc<Route>> {
        let route = Arc::new(route);
        let host = self.hosts.entry(route.host.clone()).or_default();
        match regex {
            Some(regex) => host.regexes.add(regex, route.clone())?,
            None => host
                .paths
                .add(&route.path, route.path_type, route.clone())
                .map_err(Arc::clone)?,
        }
        host.routes.push(route);
        Ok(())
    }

    /// Adds an HTTPRoute match for its route's host, after those already
    /// added (translate adds them in precedence order).
    pub fn add_gateway_match(&mut self, m: GatewayMatch) {
        let host = self.hosts.entry(m.route.host.clone()).or_default();
        host.routes.push(m.route.clone());
        host.gateway.push(m);
    }

    /// Sets `host`'s server-snippet (translate chooses one per host).
    pub fn set_server_snippet(&mut self, host: &HostPattern, server: Arc<ServerSnippet>) {
        self.hosts.entry(host.clone()).or_default().server = Some(server);
    }

    /// Whether any route has been added for `host`.
    pub fn has_host(&self, host: &HostPattern) -> bool {
        self.hosts.contains_key(host)
    }

    /// Sets the route for unmatched paths of `host`; the first one stays.
    pub fn add_fallback(&mut self, route: Route) -> Result<(), Arc<Route>> {
        let host = self.hosts.entry(route.host.clone()).or_default();
        if let Some(present) = &host.fallback {
            return Err(present.clone());
        }
        let route = Arc::new(route);
        host.fallback = Some(route.clone());
        host.routes.push(route);
        Ok(())
    }

    /// Sets the route for requests no rule matches; the first one stays.
    pub fn set_default(&mut self, route: Route) -> Result<(), Arc<Route>> {
        if let Some(present) = &self.default_route {
            return Err(present.clone());
        }
        self.default_route = Some(Arc::new(route));
        Ok(())
    }

    pub fn build(self) -> RouteTable {
        let mut table = RouteTable {
            certs: self.certs,
            client_auth: self.client_auth,
            client_auth_denied: self.client_auth_denied,
            passthrough: self.passthrough,
            edge: self.edge,
            challenges: self.challenges,
            default_route: self.default_route,
            ..RouteTable::default()
        };
        for (pattern, host) in self.hosts {
            let routes = HostRoutes {
                routes: host.routes,
                gateway: host.gateway,
                paths: host.paths.build(),
                regexes: host.regexes.build(),
                fallback: host.fallback,
                server: host.server,
            };
            match pattern {
                HostPattern::Any => table.any_host = Arc::new(routes),
                pattern => {
                    table.hosts.insert_first(&pattern, Arc::new(routes));
                }
            }
        }
        table
    }
}
