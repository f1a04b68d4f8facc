//! The managed Secret as this replica sees it, whichever replica wrote
//! it: from the API server, a watch of that one Secret by name; with
//! `--manifests`, the directory's state.
//!
//! The watch is apart from the cluster's: `--watch-namespace` need not
//! list Gatehouse's own namespace for it, and the CA's key never enters
//! the state that routing reads. Reading it takes `get`, `list` and
//! `watch` on that Secret, nothing more.

use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::cluster::ObjectKey;
use crate::source::StateReceiver;

/// The Secret's newest version; `None` while absent (or not yet listed).
pub type SecretFeed = watch::Receiver<Option<Arc<Secret>>>;

/// The feed of `key` from the API server, and the watch to run for it.
pub fn from_cluster(client: Client, key: &ObjectKey) -> (SecretFeed, impl Future<Output = ()>) {
    let (tx, feed) = watch::channel(None);
    let api: Api<Secret> = Api::namespaced(client, &key.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
    let key = key.clone();
    let run = async move {
        let events = watcher(api, config).default_backoff();
        futures_util::pin_mut!(events);
        let (mut listing, mut healthy) = (None, true);
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    if std::mem::replace(&mut healthy, false) {
                        tracing::warn!(target: "gatehouse::admission", secret = %key, "watch of the webhook's Secret failed; retrying with backoff: {e}");
                    }
                    continue;
                }
            };
            if !std::mem::replace(&mut healthy, true) {
                tracing::info!(target: "gatehouse::admission", secret = %key, "watch of the webhook's Secret restored");
            }
            let seen = match event {
                watcher::Event::Init => {
                    listing = None;
                    continue;
                }
                watcher::Event::InitApply(secret) => {
                    listing = Some(Arc::new(secret));
                    continue;
                }
                watcher::Event::InitDone => listing.take(),
                watcher::Event::Apply(secret) => Some(Arc::new(secret)),
                watcher::Event::Delete(_) => None,
            };
            tx.send_if_modified(|old| replace_if_changed(old, seen));
        }
    };
    (feed, run)
}

/// Puts `seen` in `old`'s place unless it is the same version of the
/// Secret (a relist after a reconnect repeats it); says whether it did.
fn replace_if_changed(old: &mut Option<Arc<Secret>>, seen: Option<Arc<Secret>>) -> bool {
    let version = |s: &Option<Arc<Secret>>| s.as_ref().map(|s| s.metadata.resource_version.clone());
    let same = match (old.as_ref(), seen.as_ref()) {
        (Some(a), Some(b)) => {
            Arc::ptr_eq(a, b) || version(old).flatten().is_some() && version(old) == version(&seen)
        }
        (None, None) => true,
        _ => false,
    };
    if !same {
        *old = seen;
    }
    !same
}

/// The feed of `key` from the `--manifests` directory's states.
pub fn from_states(
    mut states: StateReceiver,
    key: &ObjectKey,
) -> (SecretFeed, impl Future<Output = ()>) {
    let current =
        |states: &StateReceiver, key: &ObjectKey| states.borrow().secrets.get(key).cloned();
    let (tx, feed) = watch::channel(current(&states, key));
    let key = key.clone();
    let run = async move {
        while states.changed().await.is_ok() {
            let seen = current(&states, &key);
            tx.send_if_modified(|old| replace_if_changed(old, seen));
        }
    };
    (feed, run)
}
