//! Sources: where the cluster's objects come from.
//!
//! A source publishes whole `ClusterState` snapshots on a `watch` channel;
//! the channel keeps only the newest, which is what coalesces bursts.

pub mod files;
pub mod kube;
pub mod manifest;

use std::sync::Arc;

use tokio::sync::watch;

use crate::cluster::ClusterState;

/// The receiving end every source feeds.
pub type StateReceiver = watch::Receiver<Arc<ClusterState>>;

/// The controller's namespace: the Pod's (`$POD_NAMESPACE`, from the
/// downward API), else `default`. Its `gatehouse-acme-challenges` Secret
/// holds the ACME challenge answers every replica serves.
pub fn controller_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// The Secret that holds the ACME challenge answers.
pub fn acme_challenges_secret() -> crate::cluster::ObjectKey {
    crate::cluster::ObjectKey::new(controller_namespace(), crate::acme::CHALLENGES_SECRET)
}
