//! What Gatehouse writes back to the cluster, as the elected leader only:
//! `status.loadBalancer.ingress` of its Ingresses, the status of its
//! GatewayClasses, Gateways and HTTPRoutes (`gateway`), and Events on the
//! objects the warnings concern (so `kubectl describe` says what is
//! wrong).

pub mod gateway;
pub mod lease;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use serde_json::json;
use tokio::sync::watch;

use crate::cluster::{ClusterState, ObjectKey};
use crate::source::StateReceiver;
use crate::translate::gateway_status::StatusReport;
use crate::translate::{is_ours, TranslateOptions, Warning, WarningKind};

/// Where the addresses written into Ingress status come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publish {
    /// `--publish-service`: that Service's LoadBalancer ingress, else its ClusterIP.
    Service(ObjectKey),
    /// `--publish-status-address`: IPs and host names as given.
    Addresses(Vec<String>),
    /// Neither flag: status is left alone.
    Nothing,
}

#[derive(Clone, Debug)]
pub struct StatusConfig {
    pub publish: Publish,
    /// The Lease (`--election-id`) and the namespace it lives in.
    pub election_id: String,
    pub namespace: String,
    /// This replica's name in the Lease (the Pod name).
    pub identity: String,
}

/// How often status is re-checked even without changes (a user may edit it).
const RESYNC: Duration = Duration::from_secs(60);

pub struct StatusWriter {
    client: Client,
    config: StatusConfig,
    options: Arc<TranslateOptions>,
    recorder: Recorder,
    /// Warnings already published as Events (while we lead).
    published: BTreeSet<Warning>,
    /// The Gateway API statuses last written.
    written: gateway::Written,
}

impl StatusWriter {
    pub fn new(client: Client, config: StatusConfig, options: Arc<TranslateOptions>) -> Self {
        StatusWriter {
            recorder: recorder(&client, &config.identity),
            client,
            config,
            options,
            published: BTreeSet::new(),
            written: gateway::Written::new(),
        }
    }

    /// The election on the Lease `config` names, to be run for as long as
    /// the replica runs (and no longer: a stopped replica must stop
    /// renewing); the receiver says whether this replica leads.
    pub fn elect(
        client: &Client,
        config: &StatusConfig,
    ) -> (watch::Receiver<bool>, impl std::future::Future<Output = ()>) {
        let (leading_tx, leading) = watch::channel(false);
        let elector = lease::Elector::new(
            Api::namespaced(client.clone(), &config.namespace),
            config.election_id.clone(),
            config.identity.clone(),
        );
        (leading, elector.run(leading_tx, lease::RENEW))
    }

    /// While `leading` says this replica leads, keeps status and Events in
    /// line with the cluster state and the current warnings.
    pub async fn run(
        mut self,
        mut states: StateReceiver,
        mut warnings: watch::Receiver<Arc<BTreeSet<Warning>>>,
        mut gateway_status: watch::Receiver<Arc<StatusReport>>,
        mut leading: watch::Receiver<bool>,
    ) {
        loop {
            if *leading.borrow_and_update() {
                let state = states.borrow_and_update().clone();
                let current = warnings.borrow_and_update().clone();
                let report = gateway_status.borrow_and_update().clone();
                let addresses = self.addresses().await;
                if let Some(addresses) = &addresses {
                    self.sync_status(&state, addresses).await;
                }
                let routes = !state.http_routes.is_empty() || !state.grpc_routes.is_empty();
                if !report.classes.is_empty() || routes {
                    let published: Option<Vec<String>> = addresses.as_ref().map(|list| {
                        list.iter()
                            .filter_map(|a| a.ip.clone().or_else(|| a.hostname.clone()))
                            .collect()
                    });
                    gateway::sync(
                        &self.client,
                        &self.options.gateway_controller,
                        &state,
                        &report,
                        published.as_deref(),
                        &mut self.written,
                    )
                    .await;
                }
                self.publish_events(&state, &current).await;
            } else {
                self.published.clear();
                self.written.clear();
            }
            tokio::select! {
                r = states.changed() => if r.is_err() { return },
                r = warnings.changed() => if r.is_err() { return },
                r = gateway_status.changed() => if r.is_err() { return },
                r = leading.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(RESYNC) => self.written.clear(),
            }
        }
    }

    async fn addresses(&self) -> Option<Vec<IngressLoadBalancerIngress>> {
        let entry = |value: &str| {
            let is_ip = value.parse::<std::net::IpAddr>().is_ok();
            IngressLoadBalancerIngress {
                ip: is_ip.then(|| value.to_owned()),
                hostname: (!is_ip).then(|| value.to_owned()),
                ..IngressLoadBalancerIngress::default()
            }
        };
        match &self.config.publish {
            Publish::Nothing => None,
            Publish::Addresses(list) => Some(list.iter().map(|a| entry(a)).collect()),
            Publish::Service(key) => {
                let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
                let service = match api.get(&key.name).await {
                    Ok(service) => service,
                    Err(e) => {
                        tracing::warn!(target: "gatehouse::status", "--publish-service {key}: {e}");
                        return None;
                    }
                };
                let balancer: Vec<IngressLoadBalancerIngress> = service
                    .status
                    .and_then(|s| s.load_balancer)
                    .and_then(|lb| lb.ingress)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|i| i.ip.or(i.hostname))
                    .map(|a| entry(&a))
                    .collect();
                if !balancer.is_empty() {
                    return Some(balancer);
                }
                let cluster_ip = service
                    .spec
                    .and_then(|s| s.cluster_ip)
                    .filter(|ip| !ip.is_empty() && ip != "None");
                Some(cluster_ip.iter().map(|ip| entry(ip)).collect())
            }
        }
    }

    /// Writes our addresses into every Ingress of ours whose status differs,
    /// and clears them from Ingresses that are no longer ours.
    async fn sync_status(&self, state: &ClusterState, addresses: &[IngressLoadBalancerIngress]) {
        for (key, ingress) in &state.ingresses {
            let current = ingress
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.clone())
                .unwrap_or_default();
            let ours = is_ours(ingress, &state.ingress_classes, &self.options);
            let desired = if ours {
                addresses.to_vec()
            } else if !current.is_empty() && current == addresses {
                Vec::new()
            } else {
                continue;
            };
            if current == desired {
                continue;
            }
            let api: Api<Ingress> = Api::namespaced(self.client.clone(), &key.namespace);
            let patch = json!({"status": {"loadBalancer": {"ingress": desired}}});
            match api
                .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::debug!(target: "gatehouse::status", ingress = %key, "status updated")
                }
                Err(e) => {
                    tracing::warn!(target: "gatehouse::status", ingress = %key, "cannot update status: {e}")
                }
            }
        }
    }

    /// One Event per warning that appeared since the last call; a warning
    /// that goes away and comes back is published again.
    async fn publish_events(&mut self, state: &ClusterState, warnings: &BTreeSet<Warning>) {
        self.published.retain(|w| warnings.contains(w));
        for warning in warnings.difference(&self.published.clone()) {
            // A controller-wide warning: no object to attach it to.
            let Some(reference) = regarding(state, warning.object, &warning.ingress) else {
                continue;
            };
            let event = Event {
                type_: EventType::Warning,
                reason: reason(warning.kind).into(),
                note: Some(truncate(&warning.message, NOTE_LIMIT)),
                action: "Translate".into(),
                secondary: None,
            };
            match self.recorder.publish(&event, &reference).await {
                Ok(()) => {
                    self.published.insert(warning.clone());
                }
                Err(e) => {
                    tracing::warn!(target: "gatehouse::status", ingress = %warning.ingress, "cannot publish an Event: {e}")
                }
            }
        }
    }
}

fn reason(kind: WarningKind) -> &'static str {
    match kind {
        WarningKind::MissingService => "MissingService",
        WarningKind::MissingServicePort => "MissingServicePort",
        WarningKind::UnsupportedBackend => "UnsupportedBackend",
        WarningKind::MissingSecret => "MissingSecret",
        WarningKind::InvalidSecret => "InvalidSecret",
        WarningKind::InvalidPath => "InvalidPath",
        WarningKind::RouteConflict => "RouteConflict",
        WarningKind::TlsConflict => "TLSConflict",
        WarningKind::InvalidAnnotation => "InvalidAnnotation",
        WarningKind::UnsupportedAnnotation => "UnsupportedAnnotation",
        WarningKind::SnippetRefused => "SnippetRefused",
        WarningKind::DefaultBackendConflict => "DefaultBackendConflict",
        WarningKind::ConfigMapKey => "ConfigMapKey",
        WarningKind::HostNotOwned => "HostNotOwned",
        WarningKind::ProtectionDenied => "ProtectionDenied",
        WarningKind::ProtectionNotEnforced => "ProtectionNotEnforced",
        WarningKind::CanaryUnmatched => "CanaryUnmatched",
        WarningKind::GatewayListener => "ListenerNotServed",
        WarningKind::RouteNotAccepted => "NotAccepted",
        WarningKind::RouteRefs => "UnresolvedRefs",
        WarningKind::HostShared => "HostShared",
        WarningKind::AcmeRequest => "AcmeRequestRefused",
        WarningKind::AcmeChallenges => "AcmeChallengesInvalid",
    }
}

/// Who writes Gatehouse's Events: the controller, and this replica.
pub fn recorder(client: &Client, identity: &str) -> Recorder {
    let reporter = Reporter {
        controller: "gatehouse".into(),
        instance: Some(identity.to_owned()),
    };
    Recorder::new(client.clone(), reporter)
}

/// What an Event about the object `kind` `key` is regarding, when the
/// state holds that object.
pub fn regarding(state: &ClusterState, kind: &str, key: &ObjectKey) -> Option<ObjectReference> {
    let gateway_api = "gateway.networking.k8s.io/v1";
    let (api_version, meta) = match kind {
        "Gateway" => state.gateways.get(key).map(|g| (gateway_api, &g.metadata)),
        "HTTPRoute" => state
            .http_routes
            .get(key)
            .map(|r| (gateway_api, &r.metadata)),
        "GRPCRoute" => state
            .grpc_routes
            .get(key)
            .map(|r| (gateway_api, &r.metadata)),
        "Ingress" => state
            .ingresses
            .get(key)
            .map(|i| ("networking.k8s.io/v1", &i.metadata)),
        _ => None,
    }?;
    Some(ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        name: meta.name.clone(),
        namespace: Some(key.namespace.clone()),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..ObjectReference::default()
    })
}

/// The longest Event note kept (the API server refuses longer ones).
pub const NOTE_LIMIT: usize = 1000;

/// `text` cut to at most `max` bytes on a character boundary, with an
/// ellipsis when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
