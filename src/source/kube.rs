//! The `kube` source: kube-runtime watchers for the five kinds, applied to
//! per-kind caches, published as whole `ClusterState`s.
//!
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};

use super::StateReceiver;
use crate::cluster::{tls_secret_keys, ClusterState, Object, ObjectKey};
use crate::policy::access::{annotation_config_map_keys, annotation_secret_keys};

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
    /// `--watch-namespace`: Ingresses, Services, EndpointSlices and Secrets
    /// of one namespace only (IngressClasses are cluster-scoped).
    pub namespace: Option<String>,
    /// `--default-ssl-certificate`: a Secret to keep though no Ingress names it.
    pub default_certificate: Option<ObjectKey>,
    /// `--annotations-prefix`, to find the Secrets annotations name.
    pub annotations_prefix: String,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("namespace", &self.namespace)
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
}

const KINDS: usize = 6;

enum Change {
    Init,
    InitApply(Object),
    InitDone,
    Apply(Object),
    Delete(Object),
    /// A Secret read on demand (it became referenced).
    Fetched(Object),
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
        }
    }
}

/// Starts the watchers and waits until every kind has been listed once;
/// then returns the receiver of cluster states, which keeps being updated.
pub async fn watch_cluster(source: KubeSource) -> StateReceiver {
    let (changes_tx, mut changes) = mpsc::unbounded_channel::<(Kind, Change)>();
    let client = source.client.clone();
    let ns = source.namespace.as_deref();
    spawn_watcher::<Ingress>(
        api(&client, ns),
        Kind::Ingress,
        changes_tx.clone(),
        Object::Ingress,
    );
    spawn_watcher::<IngressClass>(
        Api::all(client.clone()),
        Kind::IngressClass,
        changes_tx.clone(),
        Object::IngressClass,
    );
    spawn_watcher::<Service>(
        api(&client, ns),
        Kind::Service,
        changes_tx.clone(),
        Object::Service,
    );
    spawn_watcher::<EndpointSlice>(
        api(&client, ns),
        Kind::EndpointSlice,
        changes_tx.clone(),
        Object::EndpointSlice,
    );
    let fetch_tx = changes_tx.clone();
    let secrets = watcher::Config::default().fields(SECRET_TYPES_NEVER_NEEDED);
    spawn_watcher_with::<Secret>(
        api(&client, ns),
        secrets,
        Kind::Secret,
        changes_tx.clone(),
        |s| Object::Secret(Arc::new(trimmed(Arc::unwrap_or_clone(s)))),
    );
    spawn_watcher::<ConfigMap>(api(&client, ns), Kind::ConfigMap, changes_tx, |c| {
        Object::ConfigMap(Arc::new(trimmed_config_map(Arc::unwrap_or_clone(c))))
    });
    let pinned = source.default_certificate.clone();
    let prefix = source.annotations_prefix.clone();

    let (state_tx, state_rx) = watch::channel(Arc::new(ClusterState::default()));
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut caches: BTreeMap<Kind, KindCache> = BTreeMap::new();
        let mut secrets = DataScope::new(client, pinned, prefix, fetch_tx);
        let mut synced_tx = Some(synced_tx);
        while let Some(first) = changes.recv().await {
            let mut changed = secrets.apply(&mut caches, first);
            // Fold everything already queued into one state.
            while let Ok(more) = changes.try_recv() {
                changed |= secrets.apply(&mut caches, more);
            }
            changed |= secrets.enforce(&mut caches);
            let all_synced = caches.len() == KINDS && caches.values().all(|c| c.synced);
            if !changed || !all_synced {
                continue;
            }
            let objects = caches.values().flat_map(|c| c.live.values().cloned());
            if state_tx
                .send(Arc::new(ClusterState::from_objects(objects)))
                .is_err()
            {
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

/// Keeps the data of referenced Secrets and ConfigMaps only, and fetches
/// one that becomes referenced while held without it.
struct DataScope {
    client: Client,
    pinned: Option<ObjectKey>,
    annotations_prefix: String,
    fetches: mpsc::UnboundedSender<(Kind, Change)>,
    /// Objects fetched (or being fetched) since their last watch event.
    fetched: BTreeSet<(Kind, ObjectKey)>,
}

impl DataScope {
    fn new(
        client: Client,
        pinned: Option<ObjectKey>,
        annotations_prefix: String,
        fetches: mpsc::UnboundedSender<(Kind, Change)>,
    ) -> Self {
        DataScope {
            client,
            pinned,
            annotations_prefix,
            fetches,
            fetched: BTreeSet::new(),
        }
    }

    fn apply(
        &mut self,
        caches: &mut BTreeMap<Kind, KindCache>,
        (kind, change): (Kind, Change),
    ) -> bool {
        if let Change::Apply(object) | Change::InitApply(object) = &change {
            // A new version from the watch: fetch again if it needs data.
            self.fetched.remove(&(kind, object.key()));
        }
        caches.entry(kind).or_default().apply(change)
    }

    /// Secrets named in `spec.tls` or the annotations of any Ingress (and
    /// the pinned default), and ConfigMaps named in annotations.
    fn referenced(&self, caches: &BTreeMap<Kind, KindCache>) -> Referenced {
        let mut referenced = Referenced {
            secrets: self.pinned.iter().cloned().collect(),
            config_maps: BTreeSet::new(),
        };
        let ingresses = caches.get(&Kind::Ingress).map(|c| c.live.values());
        let prefix = &self.annotations_prefix;
        for object in ingresses.into_iter().flatten() {
            if let Object::Ingress(ingress) = object {
                referenced.secrets.extend(tls_secret_keys(ingress));
                referenced
                    .secrets
                    .extend(annotation_secret_keys(ingress, prefix));
                referenced
                    .config_maps
                    .extend(annotation_config_map_keys(ingress, prefix));
            }
        }
        referenced
    }

    /// Drops the data of unreferenced objects; fetches referenced ones held
    /// without data. Returns whether the live view changed.
    fn enforce(&mut self, caches: &mut BTreeMap<Kind, KindCache>) -> bool {
        let referenced = self.referenced(caches);
        let mut changed = false;
        let mut wanted = Vec::new();
        for kind in [Kind::Secret, Kind::ConfigMap] {
            let Some(cache) = caches.get_mut(&kind) else {
                continue;
            };
            let objects = cache
                .live
                .iter_mut()
                .chain(cache.relist.iter_mut().flatten());
            let keys = match kind {
                Kind::ConfigMap => &referenced.config_maps,
                _ => &referenced.secrets,
            };
            for (key, object) in objects {
                match (has_data(object), keys.contains(key)) {
                    (true, false) => {
                        drop_data(object);
                        changed = true;
                    }
                    (false, true) => wanted.push((kind, key.clone())),
                    _ => {}
                }
            }
        }
        for wanted in wanted {
            if self.fetched.insert(wanted.clone()) {
                self.fetch(wanted);
            }
        }
        changed
    }

    fn fetch(&self, (kind, key): (Kind, ObjectKey)) {
        let (client, tx) = (self.client.clone(), self.fetches.clone());
        tokio::spawn(async move {
            let fetched = match kind {
                Kind::ConfigMap => Api::<ConfigMap>::namespaced(client, &key.namespace)
                    .get(&key.name)
                    .await
                    .map(|c| Object::ConfigMap(Arc::new(trimmed_config_map(c)))),
                _ => Api::<Secret>::namespaced(client, &key.namespace)
                    .get(&key.name)
                    .await
                    .map(|s| Object::Secret(Arc::new(trimmed(s)))),
            };
            match fetched {
                Ok(object) => {
                    let _ = tx.send((kind, Change::Fetched(object)));
                }
                Err(e) => {
                    tracing::warn!(target: "gatehouse::source", ?kind, object = %key, "cannot read a referenced object: {e}")
                }
            }
        });
    }
}

/// The objects whose data is kept, by kind.
struct Referenced {
    secrets: BTreeSet<ObjectKey>,
    config_maps: BTreeSet<ObjectKey>,
}

fn has_data(object: &Object) -> bool {
    match object {
        Object::Secret(s) => s.data.as_ref().is_some_and(|d| !d.is_empty()),
        Object::ConfigMap(c) => {
            c.data.as_ref().is_some_and(|d| !d.is_empty())
                || c.binary_data.as_ref().is_some_and(|d| !d.is_empty())
        }
        _ => false,
    }
}

fn drop_data(object: &mut Object) {
    match object {
        Object::Secret(s) => Arc::make_mut(s).data = None,
        Object::ConfigMap(c) => {
            let c = Arc::make_mut(c);
            c.data = None;
            c.binary_data = None;
        }
        _ => {}
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Secret types that are never certificates, CA bundles or password
/// files, left out by the API server itself: Helm's release Secrets alone
/// are often most of a cluster's Secret bytes.
pub const SECRET_TYPES_NEVER_NEEDED: &str = "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token,type!=kubernetes.io/dockerconfigjson,type!=kubernetes.io/dockercfg,type!=bootstrap.kubernetes.io/token";

fn spawn_watcher<K>(
    api: Api<K>,
    kind: Kind,
    tx: mpsc::UnboundedSender<(Kind, Change)>,
    wrap: fn(Arc<K>) -> Object,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    spawn_watcher_with(api, watcher::Config::default(), kind, tx, wrap);
}

fn spawn_watcher_with<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: Kind,
    tx: mpsc::UnboundedSender<(Kind, Change)>,
    wrap: fn(Arc<K>) -> Object,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let stream = watcher(api, config).default_backoff();
        futures_util::pin_mut!(stream);
        let mut healthy = true;
        while let Some(item) = stream.next().await {
            let event = match item {
                Ok(event) => event,
                Err(e) => {
                    if healthy {
                        tracing::warn!(target: "gatehouse::source", ?kind, "watch failed; serving the last table and retrying with backoff: {e}");
                        healthy = false;
                    }
                    continue;
                }
            };
            if !healthy {
                tracing::info!(target: "gatehouse::source", ?kind, "watch restored");
                healthy = true;
            }
            let change = match event {
                watcher::Event::Init => Change::Init,
                watcher::Event::InitApply(o) => Change::InitApply(wrap(Arc::new(o))),
                watcher::Event::InitDone => Change::InitDone,
                watcher::Event::Apply(o) => Change::Apply(wrap(Arc::new(o))),
                watcher::Event::Delete(o) => Change::Delete(wrap(Arc::new(o))),
            };
            if tx.send((kind, change)).is_err() {
                return;
            }
        }
    });
}

/// A Secret without what no use of it needs (`stringData` is write-only
/// and never set on read; managed fields and annotations can be large).
fn trimmed(mut secret: Secret) -> Secret {
    secret.string_data = None;
    secret.metadata.managed_fields = None;
    secret.metadata.annotations = None;
    secret
}

/// A ConfigMap without managed fields and annotations.
fn trimmed_config_map(mut map: ConfigMap) -> ConfigMap {
    map.metadata.managed_fields = None;
    map.metadata.annotations = None;
    map
}
