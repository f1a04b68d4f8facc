//! The webhook's certificate when Gatehouse manages it itself (no
//! `--validating-webhook-certificate` and `-key`): a CA of its own and a
//! serving certificate for the webhook's Service, in one Secret
//! (`authority`), which the elected replica creates and renews, keeping
//! the ValidatingWebhookConfiguration's `caBundle` that CA's (`keeper`,
//! `bundle`), and from which every replica serves (`feed`, `serving`).
//!
//! Answering a review still needs no write access: a replica that never
//! leads only reads the Secret.

pub mod authority;
pub mod bundle;
pub mod feed;
pub mod keeper;
pub mod serving;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::certificate::ServingCertificate;
use crate::cluster::ObjectKey;
use crate::issuing::store::SecretStore;
use bundle::CaBundle;
use keeper::CertificateKeeper;

/// The default name of the Secret, of the Service and of the
/// ValidatingWebhookConfiguration (the Secret and the Service in
/// Gatehouse's namespace).
pub const DEFAULT_NAME: &str = "gatehouse-admission";

/// Where the managed certificate lives and whom it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedCertificate {
    /// `--validating-webhook-secret`: holds the CA and the serving pair.
    pub secret: ObjectKey,
    /// `--validating-webhook-service`: the API server calls it, so the
    /// serving certificate names it.
    pub service: ObjectKey,
    /// `--validating-webhook-configuration`: its webhooks' `caBundle`
    /// are kept the CA's.
    pub configuration: String,
}

/// Where the managed certificate is read from and written to, and
/// whether this replica may write.
pub struct Place {
    /// The API server (with the configuration to keep), or the
    /// `--manifests` directory (no configuration).
    pub store: SecretStore,
    /// Whether this replica leads; `None`: it never writes.
    pub leading: Option<watch::Receiver<bool>>,
}

/// Starts serving from the Secret into `serving`, and, on the elected
/// replica, keeping it and the caBundle current.
pub fn start(
    config: &ManagedCertificate,
    serving: Arc<ServingCertificate>,
    place: Place,
    tasks: &mut JoinSet<()>,
) {
    let key = &config.secret;
    let (feed, bundle) = match &place.store {
        SecretStore::Kube(client) => {
            let (feed, watch) = feed::from_cluster(client.clone(), key);
            tasks.spawn(watch);
            let bundle = CaBundle::new(client.clone(), config.configuration.clone());
            (feed, Some(bundle))
        }
        SecretStore::Directory(_, states) => {
            let (feed, follow) = feed::from_states(states.clone(), key);
            tasks.spawn(follow);
            (feed, None)
        }
    };
    tasks.spawn(serving::follow(serving, feed.clone(), key.clone()));
    if let Some(leading) = place.leading {
        let keeper = CertificateKeeper {
            store: place.store,
            secret: key.clone(),
            names: authority::service_names(&config.service),
            bundle,
            bundle_absent: false,
            failing: None,
            overlap: None,
        };
        tasks.spawn(keeper.run(feed, leading));
    }
}
