//! `server-snippet` belongs to a host, not to an Ingress: ingress-nginx
//! pastes it into the host's `server` block, so it applies to every
//! Ingress's paths of that host, and when several Ingresses of a host
//! carry one, the oldest one's is used and the others are warned about
//! (ingress-nginx: "server-snippet already configured for server").
//! Ingresses that share a host are translated together, so the choice
//! is the same in a full and an incremental build.

use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;

use super::ingress::IngressView;
use super::{Build, WarningKind};
use crate::cluster::ObjectKey;
use crate::policy::snippet::{RouteSnippet, Snippet};
use crate::policy::{AccessOptions, Annotations};
use crate::table::HostPattern;

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
            let snippet = Arc::new(snippet);
            let rules = ingress.spec.as_ref().and_then(|s| s.rules.as_ref());
            for rule in rules.into_iter().flatten() {
                let host = HostPattern::parse(rule.host.as_deref());
                match self.server_snippets.get(&host) {
                    Some((owner, _)) if owner != *key => {
                        let message = format!("annotation {annotation}: {host} already has the server-snippet of {owner}, the oldest Ingress of the host with one, as ingress-nginx chooses; not applied to {host}");
                        self.warn(key, WarningKind::SnippetRefused, message);
                    }
                    Some(_) => {}
                    None => {
                        let claim = ((*key).clone(), snippet.clone());
                        self.server_snippets.insert(host, claim);
                    }
                }
            }
        }
    }

    /// A route's snippets: its host's server-snippet under its Ingress's
    /// configuration-snippet.
    pub(super) fn route_snippet(
        &self,
        view: &IngressView<'_>,
        host: &HostPattern,
    ) -> Option<Arc<RouteSnippet>> {
        let server = self.server_snippets.get(host).map(|(_, s)| &**s);
        let location = view.annotations.snippet.as_deref();
        RouteSnippet::merge(server, location).map(Arc::new)
    }
}
