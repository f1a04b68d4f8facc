//! What the ACME manager tells the cluster, from the Kubernetes source
//! only: an Event on the Ingress or Gateway for each certificate issued
//! (`CertificateIssued`) and each failed attempt (`AcmeOrderFailed`, with
//! the CA's problem document), and the `Ready` condition of each
//! `AcmeIssuer` (whether its account is registered).

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::Client;

use crate::acme::issuer::AcmeIssuer;
use crate::cluster::ClusterState;
use crate::status;
use crate::translate::acme::Owner;
use crate::translate::CertificateRequest;

/// Events and issuer conditions, written by the replica that leads.
pub struct ClusterReport {
    client: Client,
    recorder: Recorder,
    /// The `Ready` condition last written per issuer: written again only
    /// when it changes.
    ready: HashMap<String, (bool, String)>,
}

impl ClusterReport {
    pub fn new(client: Client, identity: String) -> Self {
        ClusterReport {
            recorder: status::recorder(&client, &identity),
            client,
            ready: HashMap::new(),
        }
    }

    /// An Event on the Ingress or Gateway that asked for the certificate.
    pub async fn event(
        &self,
        state: &ClusterState,
        request: &CertificateRequest,
        failed: bool,
        note: String,
    ) {
        let (kind, key) = match &request.owner {
            Owner::Ingress(key) => ("Ingress", key),
            Owner::Gateway(key) => ("Gateway", key),
        };
        let Some(reference) = status::regarding(state, kind, key) else {
            return;
        };
        let event = Event {
            type_: if failed {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: if failed {
                "AcmeOrderFailed"
            } else {
                "CertificateIssued"
            }
            .into(),
            note: Some(status::truncate(&note, status::NOTE_LIMIT)),
            action: "Issue".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(target: "gatehouse::acme", owner = %request.owner, "cannot publish an Event: {e}");
        }
    }

    /// Sets the issuer's `Ready` condition, when it changed.
    pub async fn issuer_ready(&mut self, issuer: &AcmeIssuer, ready: bool, message: String) {
        let Some(name) = issuer.metadata.name.clone() else {
            return;
        };
        if self.ready.get(&name) == Some(&(ready, message.clone())) {
            return;
        }
        let mut updated = issuer.clone();
        let condition = Condition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            reason: if ready {
                "AccountRegistered"
            } else {
                "AccountFailed"
            }
            .into(),
            message: message.clone(),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
            observed_generation: issuer.metadata.generation,
        };
        let status = updated.status.get_or_insert_with(Default::default);
        status.conditions.retain(|c| c.type_ != "Ready");
        status.conditions.push(condition);
        // At the version read: a concurrent writer wins, and the next
        // round writes again from what it wrote.
        let api: Api<AcmeIssuer> = Api::all(self.client.clone());
        match api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => drop(self.ready.insert(name, (ready, message))),
            Err(e) => {
                tracing::debug!(target: "gatehouse::acme", issuer = %name, "status not written: {e}")
            }
        }
    }
}
