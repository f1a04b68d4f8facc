//! The `kube` source: kube-runtime watchers for the five kinds, applied to
//! per-kind caches, published as `ClusterState`s.
//!
//! - Each change costs in proportion to itself, not to the cluster: the
//!   state is patched object by object (its journal tells translate what
//!   changed) and published as an O(1) copy of its persistent maps.
//! - Nothing is published until every kind has completed its first list, so
//!   the first table is never built from a half-synced cluster.
//! - A relist (after a `410 Gone`, or a reconnect) is buffered and replaces
//!   the kind's cache at once when complete; until then the last complete
//!   view keeps serving.
//! - The watchers retry with kube-runtime's default backoff forever: an API
//!   server that is down or restarting never stops Gatehouse, which keeps
//!   serving its last table. A lost and a restored watch are each logged
//!   once, not once per retry.
//! - Secrets are listed and watched without the types that are never
//!   certificates or password files (Helm releases, service-account
//!   tokens, image pull secrets), which the API server leaves out.
//! - Secrets and ConfigMaps: only those an Ingress references (in
//!   `spec.tls`, in an annotation such as `auth-secret` or
//!   `auth-proxy-set-headers`, or as the default certificate) keep their
//!   data; every other one is held as its name only, its bytes dropped in
//!   the same batch of changes that delivered them. When an Ingress starts
//!   referencing one held without data, it is fetched.
//! - The Gateway API kinds (GatewayClass, Gateway, HTTPRoute, GRPCRoute,
//!   ReferenceGrant) and the Namespaces (for `allowedRoutes` selectors) are
//!   watched while the API server serves the Gateway API group: from the
//!   start if it does, and from when its CRDs are installed if they come
//!   later; their watches stop, and their objects leave the state, when
//!   the CRDs are removed. A cluster without its CRDs gets one log line
//!   and no errors. The Secrets a Gateway listener names keep their data
//!   like those Ingresses name.
//! - AcmeIssuers (cluster-scoped, all of them whatever `--watch-namespace`
//!   says) are followed the same way: watched while their CRD is
//!   installed, so that the ACME manager sees one come, change or go like
//!   any other object; without the CRD, one log line, no errors, and the
//!   Ingresses served as ever.
//!
//! This file holds the client, the per-kind caches and the loop that
//! folds changes into published states; `watchers` starts the watches,
//! `retention` decides which Secrets and ConfigMaps keep their data,
//! `discovery` follows which kinds that CRDs define are served, and
//! `crd_watches` starts and stops their watches accordingly.

mod crd_watches;
mod discovery;
mod retention;
mod watchers;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::Client;
use tokio::sync::{mpsc, watch};

use super::StateReceiver;
use crate::cluster::{ClusterState, Object, ObjectKey};
use crd_watches::CrdWatches;
use retention::{DataScope, Pinned};
use watchers::spawn_watchers;

pub use discovery::{discover, GatewayApi, Served};
pub use watchers::SECRET_TYPES_NEVER_NEEDED;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("cannot find Kubernetes credentials (no in-cluster service account, $KUBECONFIG or ~/.kube/config): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("cannot create the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client the usual way: an explicit kubeconfig, else in-cluster, else
/// `$KUBECONFIG`, else `~/.kube/config`.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, ClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let error = |source| ClientError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(error)?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(error)?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// Where to watch.
#[derive(Clone)]
pub struct KubeSource {
    pub client: Client,
    /// `--watch-namespace`: Ingresses, Services, EndpointSlices, Secrets
    /// and ConfigMaps of these namespaces only (IngressClasses are
    /// cluster-scoped); empty: all.
    pub namespaces: Vec<String>,
    /// `--watch-namespace-selector`: only namespaces with these labels.
    pub namespace_selector: Option<String>,
    /// `--configmap`: the controller ConfigMap, watched wherever it is.
    pub config_map: Option<ObjectKey>,
    /// `--default-ssl-certificate`: a Secret to keep though no Ingress names it.
    pub default_certificate: Option<ObjectKey>,
    /// `--annotations-prefix`, to find the Secrets annotations name.
    pub annotations_prefix: String,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("namespaces", &self.namespaces)
            .field("namespace_selector", &self.namespace_selector)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Ingress,
    IngressClass,
    Service,
    EndpointSlice,
    Secret,
    ConfigMap,
    Namespace,
    GatewayClass,
    Gateway,
    HTTPRoute,
    GRPCRoute,
    ReferenceGrant,
    /// Every Namespace with its labels (the Gateway API's selectors).
    NamespaceLabels,
    AcmeIssuer,
}

/// One watch: a kind, in one namespace or all (a kind may have several).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Stream {
    kind: Kind,
    index: usize,
}

enum Change {
    Init,
    InitApply(Object),
    InitDone,
    Apply(Object),
    Delete(Object),
    /// A Secret read on demand (it became referenced).
    Fetched(Object),
    /// The namespaces `--watch-namespace-selector` selects, once listed.
    Namespaces(BTreeSet<String>),
    /// The kinds CRDs define that the API server serves, when that
    /// changed.
    Served(Served),
}

/// One kind's objects: the live view, and a relist being collected.
#[derive(Default)]
struct KindCache {
    live: BTreeMap<ObjectKey, Object>,
    relist: Option<BTreeMap<ObjectKey, Object>>,
    synced: bool,
}

impl KindCache {
    /// Applies a change; returns whether the live view changed.
    fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::Init => {
                self.relist = Some(BTreeMap::new());
                false
            }
            Change::InitApply(object) => {
                self.relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(object.key(), object);
                false
            }
            Change::InitDone => {
                self.live = self.relist.take().unwrap_or_default();
                self.synced = true;
                true
            }
            Change::Apply(object) => {
                self.live.insert(object.key(), object);
                true
            }
            // Only if the object is still there (no delete raced the read).
            Change::Fetched(object) => match self.live.get_mut(&object.key()) {
                Some(slot) => {
                    *slot = object;
                    true
                }
                None => false,
            },
            Change::Delete(object) => self.live.remove(&object.key()).is_some(),
            Change::Namespaces(_) | Change::Served(_) => false,
        }
    }
}

/// Starts the watchers and waits until every kind has been listed once;
/// then returns the receiver of cluster states, which keeps being updated.
pub async fn watch_cluster(source: KubeSource) -> StateReceiver {
    let (changes_tx, mut changes) = mpsc::unbounded_channel::<(Stream, Change)>();
    let served = discover(&source.client).await;
    let challenges = super::acme_challenges_secret();
    let streams = spawn_watchers(&source, &changes_tx);
    let mut crds = CrdWatches::start(&source, served, &changes_tx, streams);
    let watch_crds = source.namespaces.is_empty();
    let client = source.client.clone();
    discovery::spawn_follower(client, watch_crds, served, changes_tx.clone());
    let client = source.client.clone();
    let pinned = Pinned {
        secret: source.default_certificate.clone(),
        config_map: source.config_map.clone(),
    };
    let prefix = source.annotations_prefix.clone();
    let selecting = source.namespace_selector.is_some();

    let (state_tx, state_rx) = watch::channel(Arc::new(ClusterState::default()));
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut caches: BTreeMap<Stream, KindCache> = BTreeMap::new();
        let mut scope = DataScope::new(client, pinned, prefix, changes_tx);
        scope.pin_secret(challenges);
        let mut selected: Option<BTreeSet<String>> = None;
        let mut synced_tx = Some(synced_tx);
        while let Some(first) = changes.recv().await {
            crds.apply(&mut scope, &mut caches, &mut selected, first);
            // Fold everything already queued into one state.
            while let Ok(more) = changes.try_recv() {
                crds.apply(&mut scope, &mut caches, &mut selected, more);
            }
            scope.enforce(&mut caches);
            let expected = streams - usize::from(selecting) + crds.active_streams();
            let all_synced = caches.len() == expected
                && caches.values().all(|c| c.synced)
                && (!selecting || selected.is_some());
            if !all_synced {
                continue;
            }
            let Some(state) = scope.publish(&caches, selected.as_ref()) else {
                continue;
            };
            if state_tx.send(Arc::new(state)).is_err() {
                return;
            }
            if let Some(tx) = synced_tx.take() {
                tracing::info!(target: "gatehouse::source", "initial list of every kind complete");
                let _ = tx.send(());
            }
        }
    });
    // The aggregator only ends when the watchers do, which they never do.
    let _ = synced_rx.await;
    state_rx
}

/// The kind of the objects a stream of `kind` delivers.
fn object_kind(kind: Kind) -> &'static str {
    match kind {
        Kind::Ingress => "Ingress",
        Kind::IngressClass => "IngressClass",
        Kind::Service => "Service",
        Kind::EndpointSlice => "EndpointSlice",
        Kind::Secret => "Secret",
        Kind::ConfigMap => "ConfigMap",
        Kind::Namespace | Kind::NamespaceLabels => "Namespace",
        Kind::GatewayClass => "GatewayClass",
        Kind::Gateway => "Gateway",
        Kind::HTTPRoute => "HTTPRoute",
        Kind::GRPCRoute => "GRPCRoute",
        Kind::ReferenceGrant => "ReferenceGrant",
        Kind::AcmeIssuer => "AcmeIssuer",
    }
}
