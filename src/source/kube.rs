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
//! - The Gateway API kinds (GatewayClass, Gateway, HTTPRoute,
//!   ReferenceGrant) and the Namespaces (for `allowedRoutes` selectors) are
//!   watched when the API server serves the Gateway API group at start; a
//!   cluster without its CRDs gets one log line and no errors. The Secrets
//!   a Gateway listener names keep their data like those Ingresses name.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};

use super::StateReceiver;
use crate::cluster::{named_config_maps, tls_secret_keys, ClusterState, Object, ObjectKey};
use crate::gateway::{self, GRPCRoute, Gateway, GatewayClass, HTTPRoute, ReferenceGrant};
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
            Change::Namespaces(_) => false,
        }
    }
}

/// Where one kind's watches go: every namespace at once, or one watch
/// per namespace listed.
fn scopes(source: &KubeSource) -> Vec<Option<String>> {
    if source.namespaces.is_empty() {
        vec![None]
    } else {
        source.namespaces.iter().cloned().map(Some).collect()
    }
}

/// Which Gateway API kinds the API server serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayApi {
    /// GatewayClass, Gateway and HTTPRoute (v1).
    pub routes: bool,
    /// GRPCRoute (v1).
    pub grpc: bool,
    /// ReferenceGrant (v1beta1, served by every release that has it).
    pub grants: bool,
}

/// Asks the API server (discovery) which Gateway API kinds it serves. Not
/// served, or not readable: none, said once in the log.
pub async fn discover_gateway_api(client: &Client) -> GatewayApi {
    let found = gateway_api_served(client).await;
    if found.routes {
        let GatewayApi { grants, grpc, .. } = found;
        tracing::info!(target: "gatehouse::source", grants, grpc, "the Gateway API is served: watching GatewayClasses, Gateways and HTTPRoutes beside the Ingresses");
    } else {
        tracing::info!(target: "gatehouse::source", "the Gateway API CRDs are not installed: serving Ingresses only (install them and restart to serve HTTPRoutes)");
        // Installed later, they are noticed (once a minute) and the
        // restart they need is asked for in the log.
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                if gateway_api_served(&client).await.routes {
                    tracing::warn!(target: "gatehouse::source", "the Gateway API CRDs are now installed: restart Gatehouse to serve HTTPRoutes");
                    return;
                }
            }
        });
    }
    found
}

/// What discovery says of the Gateway API group, quietly.
async fn gateway_api_served(client: &Client) -> GatewayApi {
    let serves = |list: &k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList,
                  names: &[&str]| {
        names
            .iter()
            .all(|n| list.resources.iter().any(|r| r.name == *n))
    };
    let v1 = client
        .list_api_group_resources(&format!("{}/v1", gateway::GROUP))
        .await;
    let routes = match &v1 {
        Ok(list) => serves(list, &["gatewayclasses", "gateways", "httproutes"]),
        Err(_) => false,
    };
    let grpc = routes && v1.as_ref().is_ok_and(|list| serves(list, &["grpcroutes"]));
    let grants = routes
        && client
            .list_api_group_resources(&format!("{}/v1beta1", gateway::GROUP))
            .await
            .is_ok_and(|list| serves(&list, &["referencegrants"]));
    GatewayApi {
        routes,
        grpc,
        grants,
    }
}

/// The watches: each namespaced kind once per scope, IngressClasses, and
/// the controller ConfigMap by name when no scope covers its namespace.
fn spawn_watchers(
    source: &KubeSource,
    gateway_api: GatewayApi,
    tx: &mpsc::UnboundedSender<(Stream, Change)>,
) -> usize {
    let client = &source.client;
    let mut streams = 0;
    let mut next = |kind: Kind| {
        streams += 1;
        Stream {
            kind,
            index: streams,
        }
    };
    spawn_watcher::<IngressClass>(
        Api::all(client.clone()),
        watcher::Config::default(),
        next(Kind::IngressClass),
        tx.clone(),
        Object::IngressClass,
    );
    for scope in scopes(source) {
        let ns = scope.as_deref();
        let all = watcher::Config::default();
        spawn_watcher::<Ingress>(
            api(client, ns),
            all.clone(),
            next(Kind::Ingress),
            tx.clone(),
            Object::Ingress,
        );
        spawn_watcher::<Service>(
            api(client, ns),
            all.clone(),
            next(Kind::Service),
            tx.clone(),
            Object::Service,
        );
        spawn_watcher::<EndpointSlice>(
            api(client, ns),
            all.clone(),
            next(Kind::EndpointSlice),
            tx.clone(),
            Object::EndpointSlice,
        );
        spawn_watcher::<Secret>(
            api(client, ns),
            all.clone().fields(SECRET_TYPES_NEVER_NEEDED),
            next(Kind::Secret),
            tx.clone(),
            |s| Object::Secret(Arc::new(trimmed(Arc::unwrap_or_clone(s)))),
        );
        spawn_watcher::<ConfigMap>(
            api(client, ns),
            all,
            next(Kind::ConfigMap),
            tx.clone(),
            config_map,
        );
    }
    if gateway_api.routes {
        spawn_watcher::<GatewayClass>(
            Api::all(client.clone()),
            watcher::Config::default(),
            next(Kind::GatewayClass),
            tx.clone(),
            Object::GatewayClass,
        );
        spawn_watcher::<Namespace>(
            Api::all(client.clone()),
            watcher::Config::default(),
            next(Kind::NamespaceLabels),
            tx.clone(),
            Object::Namespace,
        );
        for scope in scopes(source) {
            let ns = scope.as_deref();
            let all = watcher::Config::default();
            spawn_watcher::<Gateway>(
                api(client, ns),
                all.clone(),
                next(Kind::Gateway),
                tx.clone(),
                Object::Gateway,
            );
            spawn_watcher::<HTTPRoute>(
                api(client, ns),
                all.clone(),
                next(Kind::HTTPRoute),
                tx.clone(),
                Object::HTTPRoute,
            );
            if gateway_api.grpc {
                spawn_watcher::<GRPCRoute>(
                    api(client, ns),
                    all.clone(),
                    next(Kind::GRPCRoute),
                    tx.clone(),
                    Object::GRPCRoute,
                );
            }
            if gateway_api.grants {
                spawn_watcher::<ReferenceGrant>(
                    api(client, ns),
                    all,
                    next(Kind::ReferenceGrant),
                    tx.clone(),
                    Object::ReferenceGrant,
                );
            }
        }
    }
    if let Some(key) = &source.config_map {
        let covered = source.namespaces.is_empty() || source.namespaces.contains(&key.namespace);
        if !covered {
            let one = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
            spawn_watcher::<ConfigMap>(
                Api::namespaced(client.clone(), &key.namespace),
                one,
                next(Kind::ConfigMap),
                tx.clone(),
                config_map,
            );
        }
    }
    if let Some(selector) = &source.namespace_selector {
        spawn_namespaces(
            client.clone(),
            selector.clone(),
            next(Kind::Namespace),
            tx.clone(),
        );
    }
    streams
}

fn config_map(map: Arc<ConfigMap>) -> Object {
    Object::ConfigMap(Arc::new(trimmed_config_map(Arc::unwrap_or_clone(map))))
}

/// Starts the watchers and waits until every kind has been listed once;
/// then returns the receiver of cluster states, which keeps being updated.
pub async fn watch_cluster(source: KubeSource) -> StateReceiver {
    let (changes_tx, mut changes) = mpsc::unbounded_channel::<(Stream, Change)>();
    let gateway_api = discover_gateway_api(&source.client).await;
    let streams = spawn_watchers(&source, gateway_api, &changes_tx);
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
        let mut selected: Option<BTreeSet<String>> = None;
        let mut synced_tx = Some(synced_tx);
        while let Some(first) = changes.recv().await {
            let mut changed = scope.apply(&mut caches, &mut selected, first);
            // Fold everything already queued into one state.
            while let Ok(more) = changes.try_recv() {
                changed |= scope.apply(&mut caches, &mut selected, more);
            }
            changed |= scope.enforce(&mut caches);
            let all_synced = caches.len() == streams - usize::from(selecting)
                && caches.values().all(|c| c.synced)
                && (!selecting || selected.is_some());
            if !changed || !all_synced {
                continue;
            }
            let objects = caches.values().flat_map(|c| c.live.values().cloned());
            let objects = objects.filter(|o| scope.in_scope(o, selected.as_ref()));
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

/// Objects kept whatever references them: the default certificate and the
/// controller ConfigMap.
struct Pinned {
    secret: Option<ObjectKey>,
    config_map: Option<ObjectKey>,
}

/// Watches the Namespaces a label selector picks, and sends the whole set
/// after every change once listed.
fn spawn_namespaces(
    client: Client,
    selector: String,
    stream: Stream,
    tx: mpsc::UnboundedSender<(Stream, Change)>,
) {
    tokio::spawn(async move {
        let config = watcher::Config::default().labels(&selector);
        let events = watcher(Api::<Namespace>::all(client), config).default_backoff();
        futures_util::pin_mut!(events);
        let (mut live, mut relist, mut synced) = (BTreeSet::new(), None, false);
        while let Some(event) = events.next().await {
            let name = |ns: &Namespace| ns.metadata.name.clone().unwrap_or_default();
            match event {
                Ok(watcher::Event::Init) => relist = Some(BTreeSet::new()),
                Ok(watcher::Event::InitApply(ns)) => {
                    relist.get_or_insert_with(BTreeSet::new).insert(name(&ns));
                }
                Ok(watcher::Event::InitDone) => {
                    live = relist.take().unwrap_or_default();
                    synced = true;
                }
                Ok(watcher::Event::Apply(ns)) => {
                    live.insert(name(&ns));
                }
                Ok(watcher::Event::Delete(ns)) => {
                    live.remove(&name(&ns));
                }
                Err(e) => {
                    tracing::warn!(target: "gatehouse::source", "namespace watch failed; retrying: {e}");
                    continue;
                }
            }
            if synced && tx.send((stream, Change::Namespaces(live.clone()))).is_err() {
                return;
            }
        }
    });
}

/// Keeps the data of referenced Secrets and ConfigMaps only, and fetches
/// one that becomes referenced while held without it.
struct DataScope {
    client: Client,
    pinned: Pinned,
    annotations_prefix: String,
    fetches: mpsc::UnboundedSender<(Stream, Change)>,
    /// Objects fetched (or being fetched) since their last watch event.
    fetched: BTreeSet<(Kind, ObjectKey)>,
}

impl DataScope {
    fn new(
        client: Client,
        pinned: Pinned,
        annotations_prefix: String,
        fetches: mpsc::UnboundedSender<(Stream, Change)>,
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
        caches: &mut BTreeMap<Stream, KindCache>,
        selected: &mut Option<BTreeSet<String>>,
        (stream, change): (Stream, Change),
    ) -> bool {
        match change {
            Change::Namespaces(names) => {
                let changed = selected.as_ref() != Some(&names);
                *selected = Some(names);
                changed
            }
            // To whichever watch of the kind holds the object.
            Change::Fetched(object) => {
                let mut changed = false;
                for (_, cache) in caches.iter_mut().filter(|(s, _)| s.kind == stream.kind) {
                    changed |= cache.apply(Change::Fetched(object.clone()));
                }
                changed
            }
            change => {
                if let Change::Apply(object) | Change::InitApply(object) = &change {
                    // A new version from the watch: fetch again if it needs data.
                    self.fetched.remove(&(stream.kind, object.key()));
                }
                caches.entry(stream).or_default().apply(change)
            }
        }
    }

    /// Whether an object belongs to the namespaces the selector picks (the
    /// pinned objects always do).
    fn in_scope(&self, object: &Object, selected: Option<&BTreeSet<String>>) -> bool {
        let Some(selected) = selected else {
            return true;
        };
        let key = object.key();
        let pinned = match object {
            Object::IngressClass(_) | Object::GatewayClass(_) | Object::Namespace(_) => {
                return true
            }
            Object::Secret(_) => self.pinned.secret.as_ref() == Some(&key),
            Object::ConfigMap(_) => self.pinned.config_map.as_ref() == Some(&key),
            _ => false,
        };
        pinned || selected.contains(&key.namespace)
    }

    /// Secrets named in `spec.tls` or the annotations of any Ingress (and
    /// the pinned default), and ConfigMaps named in annotations, the
    /// controller ConfigMap and those it names.
    fn referenced(&self, caches: &BTreeMap<Stream, KindCache>) -> Referenced {
        let mut referenced = Referenced {
            secrets: self.pinned.secret.iter().cloned().collect(),
            config_maps: self.pinned.config_map.iter().cloned().collect(),
        };
        let of = |kind: Kind| {
            caches
                .iter()
                .filter(move |(s, _)| s.kind == kind)
                .flat_map(|(_, c)| c.live.values())
        };
        let prefix = &self.annotations_prefix;
        for object in of(Kind::Ingress) {
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
        for object in of(Kind::Gateway) {
            if let Object::Gateway(gateway) = object {
                referenced
                    .secrets
                    .extend(gateway::certificate_secret_keys(gateway));
            }
        }
        if let Some(pinned) = &self.pinned.config_map {
            for object in of(Kind::ConfigMap) {
                if let Object::ConfigMap(map) = object {
                    if object.key() == *pinned {
                        referenced
                            .config_maps
                            .extend(named_config_maps(pinned, map));
                    }
                }
            }
        }
        referenced
    }

    /// Drops the data of unreferenced objects; fetches referenced ones held
    /// without data. Returns whether the live view changed.
    fn enforce(&mut self, caches: &mut BTreeMap<Stream, KindCache>) -> bool {
        let referenced = self.referenced(caches);
        let mut changed = false;
        let mut wanted = Vec::new();
        for (stream, cache) in caches.iter_mut() {
            let keys = match stream.kind {
                Kind::ConfigMap => &referenced.config_maps,
                Kind::Secret => &referenced.secrets,
                _ => continue,
            };
            let objects = cache
                .live
                .iter_mut()
                .chain(cache.relist.iter_mut().flatten());
            for (key, object) in objects {
                match (has_data(object), keys.contains(key)) {
                    (true, false) => {
                        drop_data(object);
                        changed = true;
                    }
                    (false, true) => wanted.push((stream.kind, key.clone())),
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
                    let _ = tx.send((Stream { kind, index: 0 }, Change::Fetched(object)));
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
    config: watcher::Config,
    stream: Stream,
    tx: mpsc::UnboundedSender<(Stream, Change)>,
    wrap: fn(Arc<K>) -> Object,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let events = watcher(api, config).default_backoff();
        futures_util::pin_mut!(events);
        let mut healthy = true;
        while let Some(item) = events.next().await {
            let event = match item {
                Ok(event) => event,
                Err(e) => {
                    if healthy {
                        tracing::warn!(target: "gatehouse::source", kind = ?stream.kind, "watch failed; serving the last table and retrying with backoff: {e}");
                        healthy = false;
                    }
                    continue;
                }
            };
            if !healthy {
                tracing::info!(target: "gatehouse::source", kind = ?stream.kind, "watch restored");
                healthy = true;
            }
            let change = match event {
                watcher::Event::Init => Change::Init,
                watcher::Event::InitApply(o) => Change::InitApply(wrap(Arc::new(o))),
                watcher::Event::InitDone => Change::InitDone,
                watcher::Event::Apply(o) => Change::Apply(wrap(Arc::new(o))),
                watcher::Event::Delete(o) => Change::Delete(wrap(Arc::new(o))),
            };
            if tx.send((stream, change)).is_err() {
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
