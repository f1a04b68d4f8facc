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
//!
//! This file is the entry point and its steps; `listeners` opens the
//! Gateways' listeners and their certificates, `acme` reads which of those
//! certificates a Gateway asks Gatehouse to obtain, `attach` attaches
//! routes to them and intersects hostnames, `rules` and `filters` compile
//! a route's rules, `matches` its matches and their order, `grants` reads
//! ReferenceGrants.

mod acme;
mod attach;
mod filters;
mod grants;
mod listeners;
mod matches;
mod rules;

use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::HashSet;

use super::settings::RouteDefaults;
use super::{Build, TranslateOptions};
use crate::cluster::{ClusterState, ObjectKey};
use crate::gateway::{Gateway, HTTPRoute};
use crate::policy::proxy_settings::ProxySettings;
pub(super) use acme::acme_requests;
use attach::ListenerHosts;
use listeners::Open;
use matches::Pending;
use rules::Problems;

/// The route being translated: its key and kind (`HTTPRoute`, or a
/// `GRPCRoute` read as one), for warnings, status and grants.
#[derive(Clone, Copy)]
struct Who<'k> {
    key: &'k ObjectKey,
    kind: &'static str,
}

/// A route with its kind, as the routes are translated.
type KindedRoute<'r> = (&'r ObjectKey, &'r HTTPRoute, &'static str);

impl<'s> Build<'s> {
    /// Adds the routes of every HTTPRoute attached to a Gateway of ours.
    pub(super) fn add_gateway_api(&mut self, options: &TranslateOptions, defaults: &RouteDefaults) {
        let state = self.state;
        let Some(gateways) = self.our_gateways(options) else {
            return;
        };
        self.check_gateway_acme(&gateways, options);
        let open = self.open_gateways(&gateways);
        // GRPCRoutes are read as the HTTPRoutes they amount to.
        let grpc: Vec<(&ObjectKey, HTTPRoute)> = state
            .grpc_routes
            .iter()
            .map(|(k, r)| (k, r.as_http_route()))
            .collect();
        let routes = oldest_first(state, &grpc);
        let policy = Arc::new(defaults.policy.clone());
        // Who may reach an HTTPRoute: what the controller ConfigMap says for
        // an Ingress without annotations (its source ranges, its closures).
        let lookup = crate::policy::objects::ObjectLookup {
            namespace: "",
            secrets: &state.secrets,
            config_maps: &state.config_maps,
        };
        let (plain, _) =
            super::annotations::parse(None, &options.annotations_prefix, &lookup, defaults);
        // HSTS on HTTPS answers, as for an Ingress whose `tls` covers its
        // host (the controller's setting, on by default).
        let hsts = defaults.hsts.header();
        let mut pending = Vec::new();
        let listener_hosts = self.attach_routes(&routes, &open, &gateways, &policy, &mut pending);
        self.add_listener_certs(&open, &listener_hosts);
        self.sum_up_gateways();
        self.add_matches(pending, &plain.access, hsts.as_ref());
    }

    /// The Gateways of our GatewayClasses (the classes go into the status
    /// report); `None` when no GatewayClass is ours.
    fn our_gateways(
        &mut self,
        options: &TranslateOptions,
    ) -> Option<BTreeMap<&'s ObjectKey, &'s Gateway>> {
        let state = self.state;
        let classes = our_classes(state, options);
        if classes.is_empty() {
            return None;
        }
        for name in &classes {
            let generation = state.gateway_classes[*name].metadata.generation;
            self.report.classes.insert(name.to_string(), generation);
        }
        Some(gateways_of(state, &classes))
    }

    /// Attaches each route to the listeners that take it and queues its
    /// matches; returns the hosts each listener without a hostname took.
    fn attach_routes<'a>(
        &mut self,
        routes: &[KindedRoute<'_>],
        open: &'a [Open<'a>],
        gateways: &BTreeMap<&ObjectKey, &Gateway>,
        policy: &Arc<ProxySettings>,
        pending: &mut Vec<Pending>,
    ) -> ListenerHosts<'a> {
        let mut listener_hosts = ListenerHosts::default();
        for &(key, route, kind) in routes {
            let who = Who { key, kind };
            let hosts = self.attach(who, route, open, gateways, &mut listener_hosts);
            if !self.report.routes_of(kind).contains_key(key) {
                continue; // no parent of ours
            }
            // Compiled even when no parent took it: its status says whether
            // its references resolve.
            let mut problems = Problems::default();
            self.route_matches(who, route, &hosts, policy, pending, &mut problems);
            self.report_problems(who, &problems);
        }
        listener_hosts
    }

    /// A route's problems, in the status it has under each parent.
    fn report_problems(&mut self, who: Who<'_>, problems: &Problems) {
        let Some(report) = self.report.routes_of(who.kind).get_mut(who.key) else {
            return;
        };
        for parent in &mut report.parents {
            problems.report_to(parent);
        }
    }
}

/// The names of the GatewayClasses of our controller.
fn our_classes<'s>(state: &'s ClusterState, options: &TranslateOptions) -> HashSet<&'s str> {
    state
        .gateway_classes
        .iter()
        .filter(|(_, c)| c.spec.controller_name == options.gateway_controller)
        .map(|(name, _)| name.as_str())
        .collect()
}

/// The Gateways of `classes`.
fn gateways_of<'s>(
    state: &'s ClusterState,
    classes: &HashSet<&str>,
) -> BTreeMap<&'s ObjectKey, &'s Gateway> {
    state
        .gateways
        .iter()
        .filter(|(_, g)| classes.contains(g.spec.gateway_class_name.as_str()))
        .map(|(k, g)| (k, &**g))
        .collect()
}

/// The HTTPRoutes and the GRPCRoutes (`grpc`, read as HTTPRoutes), oldest
/// first, then by name and kind.
fn oldest_first<'r>(
    state: &'r ClusterState,
    grpc: &'r [(&'r ObjectKey, HTTPRoute)],
) -> Vec<KindedRoute<'r>> {
    let http = state
        .http_routes
        .iter()
        .map(|(k, r)| (k, &**r, "HTTPRoute"));
    let grpc_refs = grpc.iter().map(|(k, r)| (*k, r, "GRPCRoute"));
    let mut routes: Vec<KindedRoute<'r>> = http.chain(grpc_refs).collect();
    routes.sort_by(|(ka, a, kind_a), (kb, b, kind_b)| {
        let age = |r: &HTTPRoute| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
        age(a)
            .cmp(&age(b))
            .then_with(|| ka.cmp(kb))
            .then_with(|| kind_a.cmp(kind_b))
    });
    routes
}
