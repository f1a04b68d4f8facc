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
use crate::cluster::{
    certificate_secret_keys, named_config_maps, tls_secret_keys, ClusterState, Object, ObjectKey,
};
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
            scope.apply(&mut caches, &mut selected, first);
            // Fold everything already queued into one state.
            while let Ok(more) = changes.try_recv() {
                scope.apply(&mut caches, &mut selected, more);
            }
            scope.enforce(&mut caches);
            let all_synced = caches.len() == streams - usize::from(selecting)
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
/// one that becomes referenced while held without it; keeps the published
/// state up to date change by change.
///
/// Every step is proportional to the change: references are counted per
/// Secret and ConfigMap (added and taken away as Ingresses, Gateways and
/// the controller ConfigMap come and go), only the objects whose count
/// crossed zero or that just arrived are checked for data, and only the
/// objects that changed are put into the state, whose persistent maps
/// make the published copy O(1). A relist or a new namespace selection
/// costs in proportion to what it lists.
struct DataScope {
    client: Client,
    pinned: Pinned,
    annotations_prefix: String,
    fetches: mpsc::UnboundedSender<(Stream, Change)>,
    /// Objects fetched (or being fetched) since their last watch event.
    fetched: BTreeSet<(Kind, ObjectKey)>,
    /// How many objects name each Secret and ConfigMap (the pinned ones
    /// count once more).
    references: BTreeMap<(Kind, ObjectKey), u32>,
    /// Secrets and ConfigMaps whose data may have to go or come.
    dirty: BTreeSet<(Kind, ObjectKey)>,
    /// Objects (kind, key) changed since the last published state.
    touched: BTreeSet<(&'static str, ObjectKey)>,
    /// The state as last published, or `None` until the first (and after
    /// the namespace selection changes): then it is built whole.
    state: Option<ClusterState>,
}

impl DataScope {
    fn new(
        client: Client,
        pinned: Pinned,
        annotations_prefix: String,
        fetches: mpsc::UnboundedSender<(Stream, Change)>,
    ) -> Self {
        let mut references = BTreeMap::new();
        if let Some(key) = &pinned.secret {
            references.insert((Kind::Secret, key.clone()), 1);
        }
        if let Some(key) = &pinned.config_map {
            references.insert((Kind::ConfigMap, key.clone()), 1);
        }
        DataScope {
            client,
            pinned,
            annotations_prefix,
            fetches,
            fetched: BTreeSet::new(),
            references,
            dirty: BTreeSet::new(),
            touched: BTreeSet::new(),
            state: None,
        }
    }

    fn apply(
        &mut self,
        caches: &mut BTreeMap<Stream, KindCache>,
        selected: &mut Option<BTreeSet<String>>,
        (stream, change): (Stream, Change),
    ) {
        match change {
            Change::Namespaces(names) => {
                if selected.as_ref() != Some(&names) {
                    *selected = Some(names);
                    self.state = None;
                }
            }
            // To whichever watch of the kind holds the object.
            Change::Fetched(object) => {
                let id = (object.kind(), object.key());
                for (_, cache) in caches.iter_mut().filter(|(s, _)| s.kind == stream.kind) {
                    if cache.apply(Change::Fetched(object.clone())) {
                        self.touched.insert(id.clone());
                    }
                }
            }
            change => self.apply_watched(caches.entry(stream).or_default(), stream.kind, change),
        }
    }

    /// A watch event for one stream's cache.
    fn apply_watched(&mut self, cache: &mut KindCache, kind: Kind, change: Change) {
        match change {
            Change::Apply(ref object) | Change::Delete(ref object) => {
                let key = object.key();
                let id = (object.kind(), key.clone());
                self.fetched.remove(&(kind, key.clone()));
                let old = cache.live.get(&key).cloned();
                cache.apply(change);
                let new = cache.live.get(&key).cloned();
                self.account(kind, &key, old.as_ref(), new.as_ref());
                self.touched.insert(id);
            }
            Change::InitApply(object) => {
                let key = object.key();
                self.fetched.remove(&(kind, key.clone()));
                if matches!(kind, Kind::Secret | Kind::ConfigMap) {
                    self.dirty.insert((kind, key));
                }
                cache.apply(Change::InitApply(object));
            }
            Change::InitDone => {
                // The relist replaces the live view whole.
                let old = std::mem::take(&mut cache.live);
                cache.apply(Change::InitDone);
                let keys: BTreeSet<&ObjectKey> = old.keys().chain(cache.live.keys()).collect();
                for key in keys {
                    let (before, now) = (old.get(key), cache.live.get(key));
                    self.account(kind, key, before, now);
                    if let Some(object) = before.or(now) {
                        self.touched.insert((object.kind(), key.clone()));
                    }
                }
            }
            other => drop(cache.apply(other)),
        }
    }

    /// Moves the reference counts from what `old` named to what `new`
    /// names; a count that crosses zero, and a Secret or ConfigMap that
    /// changed, is checked for data by `enforce`.
    fn account(&mut self, kind: Kind, key: &ObjectKey, old: Option<&Object>, new: Option<&Object>) {
        if matches!(kind, Kind::Secret | Kind::ConfigMap) {
            self.dirty.insert((kind, key.clone()));
        }
        for named in old.map(|o| self.names(o)).unwrap_or_default() {
            let count = self.references.entry(named.clone()).or_default();
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.references.remove(&named);
                self.dirty.insert(named);
            }
        }
        for named in new.map(|o| self.names(o)).unwrap_or_default() {
            let count = self.references.entry(named.clone()).or_default();
            *count += 1;
            if *count == 1 {
                self.dirty.insert(named);
            }
        }
    }

    /// The Secrets and ConfigMaps an object names: an Ingress in `spec.tls`
    /// and its annotations, a Gateway in its listeners, the controller
    /// ConfigMap in `add-headers` and `proxy-set-headers`.
    fn names(&self, object: &Object) -> Vec<(Kind, ObjectKey)> {
        let prefix = &self.annotations_prefix;
        match object {
            Object::Ingress(ingress) => {
                let secrets =
                    tls_secret_keys(ingress).chain(annotation_secret_keys(ingress, prefix));
                let maps = annotation_config_map_keys(ingress, prefix);
                secrets
                    .map(|k| (Kind::Secret, k))
                    .chain(maps.into_iter().map(|k| (Kind::ConfigMap, k)))
                    .collect()
            }
            Object::Gateway(gateway) => certificate_secret_keys(gateway)
                .map(|k| (Kind::Secret, k))
                .collect(),
            Object::ConfigMap(map) => {
                let key = object.key();
                match &self.pinned.config_map {
                    Some(own) if *own == key => named_config_maps(own, map)
                        .into_iter()
                        .map(|k| (Kind::ConfigMap, k))
                        .collect(),
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    /// Whether the objects the pinned ones and the others name include this one.
    fn referenced(&self, kind: Kind, key: &ObjectKey) -> bool {
        self.references.contains_key(&(kind, key.clone()))
    }

    /// Drops the data of the checked objects that are not referenced;
    /// fetches the referenced ones held without data.
    fn enforce(&mut self, caches: &mut BTreeMap<Stream, KindCache>) {
        let mut wanted = Vec::new();
        for (kind, key) in std::mem::take(&mut self.dirty) {
            let referenced = self.referenced(kind, &key);
            for (_, cache) in caches.iter_mut().filter(|(s, _)| s.kind == kind) {
                let live = cache.live.get_mut(&key);
                let relisted = cache.relist.as_mut().and_then(|r| r.get_mut(&key));
                for object in live.into_iter().chain(relisted) {
                    match (has_data(object), referenced) {
                        (true, false) => {
                            drop_data(object);
                            self.touched.insert((object.kind(), key.clone()));
                        }
                        (false, true) => wanted.push((kind, key.clone())),
                        _ => {}
                    }
                }
            }
        }
        for wanted in wanted {
            if self.fetched.insert(wanted.clone()) {
                self.fetch(wanted);
            }
        }
    }

    /// The state to publish, when anything changed since the last one:
    /// the last state with the touched objects put in or taken out (the
    /// whole state from the caches the first time, and after the
    /// namespace selection changed).
    fn publish(
        &mut self,
        caches: &BTreeMap<Stream, KindCache>,
        selected: Option<&BTreeSet<String>>,
    ) -> Option<ClusterState> {
        let touched = std::mem::take(&mut self.touched);
        let Some(state) = self.state.as_mut() else {
            let objects = caches.values().flat_map(|c| c.live.values().cloned());
            let objects = objects.filter(|o| in_scope(&self.pinned, o, selected));
            let state = ClusterState::from_objects(objects);
            self.state = Some(state.clone());
            return Some(state);
        };
        if touched.is_empty() {
            return None;
        }
        for (kind, key) in touched {
            // As a whole rebuild would: the last stream holding it wins.
            let current = caches
                .iter()
                .filter(|(s, _)| object_kind(s.kind) == kind)
                .filter_map(|(_, c)| c.live.get(&key))
                .next_back()
                .filter(|o| in_scope(&self.pinned, o, selected));
            match current {
                Some(object) if !state.holds(object) => drop(state.insert(object.clone())),
                Some(_) => {}
                None => state.remove_key(kind, &key),
            }
        }
        Some(state.clone())
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

/// Whether an object belongs to the namespaces the selector picks (the
/// pinned objects always do).
fn in_scope(pinned: &Pinned, object: &Object, selected: Option<&BTreeSet<String>>) -> bool {
    let Some(selected) = selected else {
        return true;
    };
    let key = object.key();
    let pinned = match object {
        Object::IngressClass(_) | Object::GatewayClass(_) | Object::Namespace(_) => return true,
        Object::Secret(_) => pinned.secret.as_ref() == Some(&key),
        Object::ConfigMap(_) => pinned.config_map.as_ref() == Some(&key),
        _ => false,
    };
    pinned || selected.contains(&key.namespace)
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
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn object(yaml: &str) -> Object {
        crate::source::manifest::parse(yaml)
            .expect("manifest")
            .pop()
            .expect("one object")
    }

    fn ingress(name: &str, secret: &str) -> Object {
        object(&format!(
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: a}}
spec:
  tls: [{{hosts: [{name}.test], secretName: {secret}}}]
  rules: [{{host: {name}.test}}]
"
        ))
    }

    fn secret(name: &str, namespace: &str) -> Object {
        object(&format!(
            "apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: {namespace}}}
type: kubernetes.io/tls
data: {{tls.crt: eA==, tls.key: eA==}}
"
        ))
    }

    fn service(name: &str, namespace: &str, port: u16) -> Object {
        object(&format!(
            "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{ports: [{{port: {port}}}]}}
"
        ))
    }

    /// The state a whole rebuild from the caches would publish.
    fn rebuilt(
        scope: &DataScope,
        caches: &BTreeMap<Stream, KindCache>,
        selected: Option<&BTreeSet<String>>,
    ) -> ClusterState {
        let objects = caches.values().flat_map(|c| c.live.values().cloned());
        ClusterState::from_objects(objects.filter(|o| in_scope(&scope.pinned, o, selected)))
    }

    /// The same objects (the very same `Arc`s), kind by kind.
    fn same(a: &ClusterState, b: &ClusterState) -> bool {
        let counts = |s: &ClusterState| {
            (
                s.ingresses.len(),
                s.services.len(),
                s.secrets.len(),
                s.namespaces.len(),
            )
        };
        let objects = |s: &ClusterState| -> Vec<Object> {
            let ingresses = s.ingresses.values().cloned().map(Object::Ingress);
            let services = s.services.values().cloned().map(Object::Service);
            let secrets = s.secrets.values().cloned().map(Object::Secret);
            ingresses.chain(services).chain(secrets).collect()
        };
        counts(a) == counts(b) && objects(b).iter().all(|o| a.holds(o))
    }

    /// Changes applied one at a time publish what a rebuild from the
    /// caches would: the Secrets an Ingress names keep their data, the
    /// others lose it, relists replace a kind, a selection rescopes.
    #[tokio::test]
    async fn the_published_state_is_the_one_a_rebuild_would_make() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        let (tx, _rx) = mpsc::unbounded_channel();
        let pinned = Pinned {
            secret: None,
            config_map: None,
        };
        let mut scope = DataScope::new(client, pinned, "gatehouse.dev".into(), tx);
        let mut caches: BTreeMap<Stream, KindCache> = BTreeMap::new();
        let mut selected: Option<BTreeSet<String>> = None;
        let stream = |kind, index| Stream { kind, index };
        let (ingresses, services, secrets) = (
            stream(Kind::Ingress, 1),
            stream(Kind::Service, 2),
            stream(Kind::Secret, 3),
        );
        for s in [ingresses, services, secrets] {
            scope.apply(&mut caches, &mut selected, (s, Change::Init));
            scope.apply(&mut caches, &mut selected, (s, Change::InitDone));
        }
        let steps: Vec<(Stream, Change)> = vec![
            (secrets, Change::Apply(secret("one", "a"))),
            (ingresses, Change::Apply(ingress("web", "one"))),
            (services, Change::Apply(service("web", "a", 80))),
            (services, Change::Apply(service("web", "a", 81))),
            (secrets, Change::Apply(secret("two", "a"))),
            (ingresses, Change::Apply(ingress("web", "two"))),
            (services, Change::Apply(service("other", "b", 80))),
            (services, Change::Delete(service("web", "a", 81))),
            (secrets, Change::Init),
            (secrets, Change::InitApply(secret("two", "a"))),
            (secrets, Change::InitApply(secret("three", "b"))),
            (secrets, Change::InitDone),
            (ingresses, Change::Delete(ingress("web", "two"))),
            (
                stream(Kind::Namespace, 4),
                Change::Namespaces(["b".to_owned()].into()),
            ),
            (services, Change::Apply(service("third", "b", 80))),
        ];
        for (step, change) in steps.into_iter().enumerate() {
            scope.apply(&mut caches, &mut selected, change);
            scope.enforce(&mut caches);
            if let Some(published) = scope.publish(&caches, selected.as_ref()) {
                let whole = rebuilt(&scope, &caches, selected.as_ref());
                assert!(same(&published, &whole), "step {step}");
            }
            let with_data: Vec<String> = caches[&secrets]
                .live
                .values()
                .filter(|o| has_data(o))
                .map(|o| o.key().to_string())
                .collect();
            let named = caches[&ingresses]
                .live
                .values()
                .flat_map(|o| scope.names(o));
            let named: Vec<String> = named.map(|(_, k)| k.to_string()).collect();
            assert!(
                with_data.iter().all(|k| named.contains(k)),
                "step {step}: {with_data:?} {named:?}"
            );
        }
    }
}
