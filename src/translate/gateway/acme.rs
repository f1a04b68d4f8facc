//! The certificates a Gateway asks Gatehouse to obtain over ACME.
//!
//! A Gateway asks with the same annotations as an Ingress
//! (`<prefix>/acme-issuer`, or `kubernetes.io/tls-acme` with
//! `--acme-default-issuer`). Each certificate Secret of its HTTPS
//! listeners (those Gatehouse serves: port 443, `Terminate`) is then one
//! certificate for the hostnames of the listeners that name it, as a
//! `spec.tls` entry is for its hosts. A Secret a listener cannot use (a
//! reference that does not resolve, or that no ReferenceGrant allows) is
//! not requested: Gatehouse writes only where the Gateway may read. A
//! Secret shared with a listener without a hostname, or with a wildcard
//! or invalid one, is not requested either, so that a certificate put
//! there by hand for those names is not replaced by one without them.
//! Each refusal is a warning on the Gateway.

use std::collections::BTreeMap;

use super::listeners::{certificate_secret, HTTPS_PORT};
use super::{gateways_of, our_classes};
use crate::cluster::{ClusterState, ObjectKey};
use crate::gateway::{Gateway, Listener};
use crate::translate::acme::{asked_issuer, refusal, CertificateRequest, Owner};
use crate::translate::{Build, TranslateOptions, WarningKind};

/// The certificates the Gateways of ours ask for, in Gateway order.
pub(in crate::translate) fn acme_requests(
    state: &ClusterState,
    options: &TranslateOptions,
) -> Vec<CertificateRequest> {
    let classes = our_classes(state, options);
    let gateways = gateways_of(state, &classes);
    gateways
        .into_iter()
        .flat_map(|(key, gateway)| requests_of(state, key, gateway, options).0)
        .collect()
}

/// What one Gateway asks for, and the problems (warning messages).
fn requests_of(
    state: &ClusterState,
    key: &ObjectKey,
    gateway: &Gateway,
    options: &TranslateOptions,
) -> (Vec<CertificateRequest>, Vec<String>) {
    let annotations = gateway.metadata.annotations.as_ref();
    let issuer = match asked_issuer(annotations, &state.acme_issuers, options) {
        Ok(Some(issuer)) => issuer,
        Ok(None) => return (Vec::new(), Vec::new()),
        Err(problem) => return (Vec::new(), vec![problem]),
    };
    let (by_secret, mut problems) = listeners_by_secret(state, key, gateway);
    let mut requests = Vec::new();
    for (secret, listeners) in by_secret {
        match hosts_of(&listeners) {
            Ok(hosts) => requests.push(CertificateRequest {
                issuer: issuer.clone(),
                owner: Owner::Gateway(key.clone()),
                secret,
                hosts,
            }),
            Err(refused) => problems.push(format!(
                "Secret {secret} is not requested, its listeners keep the certificate they have: {}",
                refused.join("; ")
            )),
        }
    }
    (requests, problems)
}

/// The HTTPS listeners Gatehouse serves, by the Secret their certificate
/// is in (in listener order), and why a listener's Secret cannot be used.
fn listeners_by_secret<'g>(
    state: &ClusterState,
    key: &ObjectKey,
    gateway: &'g Gateway,
) -> (Vec<(ObjectKey, Vec<&'g Listener>)>, Vec<String>) {
    let mut by_secret: Vec<(ObjectKey, Vec<&Listener>)> = Vec::new();
    let mut problems = Vec::new();
    let terminates = |l: &&Listener| {
        l.protocol == "HTTPS"
            && l.port == HTTPS_PORT
            && l.tls.as_ref().is_none_or(|t| t.mode == "Terminate")
    };
    for listener in gateway.spec.listeners.iter().filter(terminates) {
        let secret = match certificate_secret(state, key, listener) {
            Ok(secret) => secret,
            Err((_, why)) => {
                let name = &listener.name;
                problems.push(format!(
                    "listener {name}: {why}; no certificate is requested"
                ));
                continue;
            }
        };
        match by_secret.iter_mut().find(|(s, _)| *s == secret) {
            Some((_, listeners)) => listeners.push(listener),
            None => by_secret.push((secret, vec![listener])),
        }
    }
    (by_secret, problems)
}

/// The hostnames of the listeners that share a Secret, lowercase, in
/// listener order, without repeats; or why a CA would not issue for them.
fn hosts_of(listeners: &[&Listener]) -> Result<Vec<String>, Vec<String>> {
    let mut hosts: Vec<String> = Vec::new();
    let mut refused = Vec::new();
    for listener in listeners {
        let name = &listener.name;
        let Some(host) = listener.hostname.as_deref() else {
            refused.push(format!("listener {name} has no hostname, so there is no name to ask for (it serves every name)"));
            continue;
        };
        let host = host.trim().to_ascii_lowercase();
        match refusal(&host) {
            Some(why) => refused.push(format!("listener {name}: {host:.64}: {why}")),
            None if hosts.contains(&host) => {}
            None => hosts.push(host),
        }
    }
    if refused.is_empty() {
        Ok(hosts)
    } else {
        Err(refused)
    }
}

impl Build<'_> {
    /// Warns, on each Gateway, about what it asks for that cannot be
    /// requested.
    pub(super) fn check_gateway_acme(
        &mut self,
        gateways: &BTreeMap<&ObjectKey, &Gateway>,
        options: &TranslateOptions,
    ) {
        for (&key, &gateway) in gateways {
            let (_, problems) = requests_of(self.state, key, gateway, options);
            for problem in problems {
                self.warn_object("Gateway", key, WarningKind::AcmeRequest, problem);
            }
        }
    }
}
