//! The watches: one kube-runtime watcher per kind and scope, each sending
//! its events, as `Change`s of its own stream, to the loop that folds them
//! into the published state; and the Namespace selection
//! (`--watch-namespace-selector`).

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::discovery::{Group, Served};
use super::{Change, GatewayApi, Kind, KubeSource, Stream};
use crate::acme::AcmeIssuer;
use crate::cluster::Object;
use crate::gateway::{GRPCRoute, Gateway, GatewayClass, HTTPRoute, ReferenceGrant};

/// Where one kind's watches go: every namespace at once, or one watch
/// per namespace listed.
fn scopes(source: &KubeSource) -> Vec<Option<String>> {
    if source.namespaces.is_empty() {
        vec![None]
    } else {
        source.namespaces.iter().cloned().map(Some).collect()
    }
}

/// The watches of the Ingress side: each namespaced kind once per scope,
/// IngressClasses, and the controller ConfigMap by name when no scope
/// covers its namespace. How many streams were started (numbered from 1).
pub(super) fn spawn_watchers(
    source: &KubeSource,
    tx: &mpsc::UnboundedSender<(Stream, Change)>,
) -> usize {
    let client = &source.client;
    let mut watches = Watches::new(client, tx, 0);
    let all = watcher::Config::default;
    watches.cluster::<IngressClass>(Kind::IngressClass, Object::IngressClass);
    for scope in scopes(source) {
        let ns = scope.as_deref();
        watches.namespaced::<Ingress>(ns, all(), Kind::Ingress, Object::Ingress);
        watches.namespaced::<Service>(ns, all(), Kind::Service, Object::Service);
        watches.namespaced::<EndpointSlice>(ns, all(), Kind::EndpointSlice, Object::EndpointSlice);
        let secrets = all().fields(SECRET_TYPES_NEVER_NEEDED);
        watches.namespaced::<Secret>(ns, secrets, Kind::Secret, secret);
        watches.namespaced::<ConfigMap>(ns, all(), Kind::ConfigMap, config_map);
    }
    if let Some(key) = &source.config_map {
        let covered = source.namespaces.is_empty() || source.namespaces.contains(&key.namespace);
        if !covered {
            let one = all().fields(&format!("metadata.name={}", key.name));
            let api = Api::namespaced(client.clone(), &key.namespace);
            watches.watch::<ConfigMap>(api, one, Kind::ConfigMap, config_map);
        }
    }
    if let Some(selector) = &source.namespace_selector {
        let stream = watches.next(Kind::Namespace);
        spawn_namespaces(client.clone(), selector.clone(), stream, tx.clone());
    }
    watches.index
}

/// The watches of one group of kinds CRDs define, for what `served` says
/// the API server serves of it, numbered after `last`. Their streams, and
/// the tasks that stop them when aborted.
pub(super) fn spawn_group_watchers(
    group: Group,
    source: &KubeSource,
    served: Served,
    tx: &mpsc::UnboundedSender<(Stream, Change)>,
    last: usize,
) -> (Vec<Stream>, Vec<AbortHandle>) {
    let mut watches = Watches::new(&source.client, tx, last);
    match group {
        Group::GatewayApi => gateway_watches(&mut watches, source, served.gateway_api),
        // Cluster-scoped: watched whole, whatever `--watch-namespace` says.
        Group::AcmeIssuers => {
            watches.cluster::<AcmeIssuer>(Kind::AcmeIssuer, Object::AcmeIssuer);
        }
    }
    (watches.started, watches.tasks)
}

/// The Gateway API's watches, for the kinds `served` says the API server
/// serves: GatewayClasses, the Namespaces' labels, and Gateways,
/// HTTPRoutes, GRPCRoutes and ReferenceGrants per scope.
fn gateway_watches(watches: &mut Watches<'_>, source: &KubeSource, served: GatewayApi) {
    let all = watcher::Config::default;
    watches.cluster::<GatewayClass>(Kind::GatewayClass, Object::GatewayClass);
    watches.cluster::<Namespace>(Kind::NamespaceLabels, Object::Namespace);
    for scope in scopes(source) {
        let ns = scope.as_deref();
        watches.namespaced::<Gateway>(ns, all(), Kind::Gateway, Object::Gateway);
        watches.namespaced::<HTTPRoute>(ns, all(), Kind::HTTPRoute, Object::HTTPRoute);
        if served.grpc {
            watches.namespaced::<GRPCRoute>(ns, all(), Kind::GRPCRoute, Object::GRPCRoute);
        }
        if served.grants {
            let kind = Kind::ReferenceGrant;
            watches.namespaced::<ReferenceGrant>(ns, all(), kind, Object::ReferenceGrant);
        }
    }
}

/// Starts watches, each with a stream number of its own.
struct Watches<'a> {
    client: &'a Client,
    tx: &'a mpsc::UnboundedSender<(Stream, Change)>,
    /// The number of the last stream started.
    index: usize,
    /// The watches started, and their tasks.
    started: Vec<Stream>,
    tasks: Vec<AbortHandle>,
}

impl<'a> Watches<'a> {
    fn new(
        client: &'a Client,
        tx: &'a mpsc::UnboundedSender<(Stream, Change)>,
        last: usize,
    ) -> Self {
        Watches {
            client,
            tx,
            index: last,
            started: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// The next stream of `kind`.
    fn next(&mut self, kind: Kind) -> Stream {
        self.index += 1;
        let stream = Stream {
            kind,
            index: self.index,
        };
        self.started.push(stream);
        stream
    }

    /// Watches `api`, which delivers objects of `kind` that `wrap` makes
    /// into `Object`s.
    fn watch<K>(
        &mut self,
        api: Api<K>,
        config: watcher::Config,
        kind: Kind,
        wrap: fn(Arc<K>) -> Object,
    ) where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let stream = self.next(kind);
        let task = spawn_watcher(api, config, stream, self.tx.clone(), wrap);
        self.tasks.push(task);
    }

    /// Watches every object of a cluster-scoped kind.
    fn cluster<K>(&mut self, kind: Kind, wrap: fn(Arc<K>) -> Object)
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        <K as Resource>::DynamicType: Default,
    {
        let api = Api::all(self.client.clone());
        self.watch(api, watcher::Config::default(), kind, wrap);
    }

    /// Watches a namespaced kind in one namespace, or in all (`None`).
    fn namespaced<K>(
        &mut self,
        namespace: Option<&str>,
        config: watcher::Config,
        kind: Kind,
        wrap: fn(Arc<K>) -> Object,
    ) where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K: Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        <K as Resource>::DynamicType: Default,
    {
        let api = api(self.client, namespace);
        self.watch(api, config, kind, wrap);
    }
}

fn secret(secret: Arc<Secret>) -> Object {
    Object::Secret(Arc::new(trimmed(Arc::unwrap_or_clone(secret))))
}

fn config_map(map: Arc<ConfigMap>) -> Object {
    Object::ConfigMap(Arc::new(trimmed_config_map(Arc::unwrap_or_clone(map))))
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
) -> AbortHandle
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let task = tokio::spawn(async move {
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
    task.abort_handle()
}

/// A Secret without what no use of it needs (`stringData` is write-only
/// and never set on read; managed fields and annotations can be large).
pub(super) fn trimmed(mut secret: Secret) -> Secret {
    secret.string_data = None;
    secret.metadata.managed_fields = None;
    secret.metadata.annotations = None;
    secret
}

/// A ConfigMap without managed fields and annotations.
pub(super) fn trimmed_config_map(mut map: ConfigMap) -> ConfigMap {
    map.metadata.managed_fields = None;
    map.metadata.annotations = None;
    map
}
