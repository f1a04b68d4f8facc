//! `server-snippet` belongs to a host, not to an Ingress: ingress-nginx
//! pastes it into the host's `server` block, so its script runs for every
//! request of the host before a path is chosen, and its header edits
//! apply to every Ingress's paths of that host; when several Ingresses of
//! a host carry one, the oldest one's is used and the others are warned
//! about (ingress-nginx: "server-snippet already configured for server").
//! Ingresses that share a host are translated together, so the choice
//! is the same in a full and an incremental build.

use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;

use super::ingress::IngressView;
use super::{Build, WarningKind};
use crate::cluster::ObjectKey;
use crate::policy::rewrite::Rewrite;
use crate::policy::snippet::{PathRegex, RouteSnippet, ServerSnippet, Snippet, TargetRewrite};
use crate::policy::template::RouteNames;
use crate::policy::{AccessOptions, Annotations};
use crate::table::{Action, HostPattern, Route};

/// A host's server-snippet: the Ingress it comes from, as read, and what
/// it does before a path is chosen.
pub(super) struct Claim {
    owner: ObjectKey,
    snippet: Arc<Snippet>,
    server: Option<Arc<ServerSnippet>>,
}

impl Build<'_> {
    /// Each host's server-snippet, from the oldest Ingress of the host
    /// that has one applied whole (`ingresses` is oldest first).
    pub(super) fn claim_server_snippets(
        &mut self,
        ingresses: &[(&ObjectKey, &Ingress)],
        prefix: &str,
        access: &AccessOptions,
    ) {
        if !access.snippets_allowed() {
            return;
        }
        for (key, ingress) in ingresses {
            let annotations = Annotations::new(ingress.metadata.annotations.as_ref(), prefix);
            let Some((annotation, text)) = annotations.get("server-snippet") else {
                continue;
            };
            let snippet = Snippet::read_as("server-snippet", text);
            if !snippet.applies() {
                continue; // warned about with the Ingress's annotations
            }
            let server = ServerSnippet::of(&snippet).map(Arc::new);
            let snippet = Arc::new(snippet);
            let rules = ingress.spec.as_ref().and_then(|s| s.rules.as_ref());
            for rule in rules.into_iter().flatten() {
                let host = HostPattern::parse(rule.host.as_deref());
                match self.server_snippets.get(&host) {
                    Some(Claim { owner, .. }) if owner != *key => {
                        let message = format!("annotation {annotation}: {host} already has the server-snippet of {owner}, the oldest Ingress of the host with one, as ingress-nginx chooses; not applied to {host}");
                        self.warn(key, WarningKind::SnippetRefused, message);
                    }
                    Some(_) => {}
                    None => {
                        if let Some(server) = &server {
                            self.table.set_server_snippet(&host, server.clone());
                        }
                        let claim = Claim {
                            owner: (*key).clone(),
                            snippet: snippet.clone(),
                            server: server.clone(),
                        };
                        self.server_snippets.insert(host, claim);
                    }
                }
            }
        }
    }

    /// A route's snippets: its host's server-snippet under its Ingress's
    /// configuration-snippet, with the route's `rewrite-target` as
    /// ingress-nginx writes it after the snippet when the snippet's script
    /// may reach it with the URI changed.
    pub(super) fn route_snippet(
        &self,
        view: &IngressView<'_>,
        host: &HostPattern,
        route: &Route,
    ) -> Option<Arc<RouteSnippet>> {
        let server = self.server_snippets.get(host).map(|c| &*c.snippet);
        let location = view.annotations.snippet.as_deref();
        let mut merged = RouteSnippet::merge(server, location)?;
        merged.bind(&route_names(view.key, route));
        if merged.script.may_end_changed() {
            merged.target = target_rewrite(route);
        }
        Some(Arc::new(merged))
    }

    /// A server-snippet's `client_body_timeout`, which ingress-nginx's
    /// locations inherit (they write none of their own), on a route of
    /// the host whose configuration-snippet sets none.
    pub(super) fn server_body_timeout(&self, host: &HostPattern, route: &mut Route) {
        let claim = self.server_snippets.get(host);
        let Some(time) = claim.and_then(|c| c.snippet.client_body_timeout) else {
            return;
        };
        if route.policy.client_body_timeout.is_none() {
            let mut policy = (*route.policy).clone();
            policy.client_body_timeout = Some(time);
            route.policy = Arc::new(policy);
        }
    }

    /// The server-snippet of `host` for another name of it
    /// (`server-alias`), which ingress-nginx's `server_name` serves alike.
    pub(super) fn alias_server_snippet(&mut self, host: &HostPattern, alias: &HostPattern) {
        if let Some(server) = self
            .server_snippets
            .get(host)
            .and_then(|c| c.server.clone())
        {
            self.table.set_server_snippet(alias, server);
        }
    }
}

/// ingress-nginx's location variables for the route (its Ingress, its
/// Service and port as the Ingress names them; empty for a backend that
/// could not be resolved).
fn route_names(key: &ObjectKey, route: &Route) -> RouteNames {
    let (service_name, service_port) = match &route.action {
        Action::Forward(backend) => (backend.service.name.clone(), backend.port.clone()),
        Action::Unavailable => Default::default(),
    };
    RouteNames {
        namespace: key.namespace.clone(),
        ingress_name: key.name.clone(),
        service_name,
        service_port,
    }
}

/// ingress-nginx's `rewrite "(?i)PATH" TARGET break;` for the route's
/// `rewrite-target` (none when the target is the path itself); the
/// route's path compiled as it was for the route, so this compiles too.
fn target_rewrite(route: &Route) -> Option<TargetRewrite> {
    let target = match route.rewrite.as_ref()? {
        Rewrite::Replace(target) | Rewrite::Captures(target) => target,
    };
    if *target == route.path {
        return None;
    }
    let path = regex::RegexBuilder::new(&format!("(?i)(?:{})", route.path))
        .size_limit(64 * 1024)
        .build()
        .ok()?;
    Some(TargetRewrite {
        path: PathRegex(path),
        target: target.clone(),
    })
}
