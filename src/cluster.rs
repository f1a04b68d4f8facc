//! The typed Kubernetes objects Gatehouse reads, as a source delivers them.
//!
//! Every source (files, kube) produces a whole `ClusterState`; nothing
//! downstream knows which source filled it.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::acme::AcmeIssuer;
use crate::gateway::{GRPCRoute, Gateway, GatewayClass, HTTPRoute, ReferenceGrant};

/// `namespace/name` of a namespaced object, or just `name` for a
/// cluster-scoped one (empty namespace).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Key of an object from its metadata; a namespaced object without a
    /// namespace lands in `default`, as `kubectl apply` would put it.
    pub fn of(meta: &ObjectMeta, namespaced: bool) -> Self {
        let namespace = if namespaced {
            meta.namespace
                .clone()
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| "default".to_owned())
        } else {
            String::new()
        };
        ObjectKey::new(namespace, meta.name.clone().unwrap_or_default())
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// One object of a kind Gatehouse cares about. Shared, not copied: a new
/// `ClusterState` after a change costs a pointer per object.
#[derive(Clone)]
pub enum Object {
    Ingress(Arc<Ingress>),
    IngressClass(Arc<IngressClass>),
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
    Secret(Arc<Secret>),
    /// Only those an annotation names keep their data.
    ConfigMap(Arc<ConfigMap>),
    /// Their labels, for `allowedRoutes` selectors.
    Namespace(Arc<Namespace>),
    GatewayClass(Arc<GatewayClass>),
    Gateway(Arc<Gateway>),
    HTTPRoute(Arc<HTTPRoute>),
    GRPCRoute(Arc<GRPCRoute>),
    ReferenceGrant(Arc<ReferenceGrant>),
    AcmeIssuer(Arc<AcmeIssuer>),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Ingress(_) => "Ingress",
            Object::IngressClass(_) => "IngressClass",
            Object::Service(_) => "Service",
            Object::EndpointSlice(_) => "EndpointSlice",
            Object::Secret(_) => "Secret",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Namespace(_) => "Namespace",
            Object::GatewayClass(_) => "GatewayClass",
            Object::Gateway(_) => "Gateway",
            Object::HTTPRoute(_) => "HTTPRoute",
            Object::GRPCRoute(_) => "GRPCRoute",
            Object::ReferenceGrant(_) => "ReferenceGrant",
            Object::AcmeIssuer(_) => "AcmeIssuer",
        }
    }

    /// The object's metadata, and whether its kind is namespaced.
    fn meta(&self) -> (&ObjectMeta, bool) {
        match self {
            Object::Ingress(o) => (&o.metadata, true),
            Object::IngressClass(o) => (&o.metadata, false),
            Object::Service(o) => (&o.metadata, true),
            Object::EndpointSlice(o) => (&o.metadata, true),
            Object::Secret(o) => (&o.metadata, true),
            Object::ConfigMap(o) => (&o.metadata, true),
            Object::Namespace(o) => (&o.metadata, false),
            Object::GatewayClass(o) => (&o.metadata, false),
            Object::Gateway(o) => (&o.metadata, true),
            Object::HTTPRoute(o) => (&o.metadata, true),
            Object::GRPCRoute(o) => (&o.metadata, true),
            Object::ReferenceGrant(o) => (&o.metadata, true),
            Object::AcmeIssuer(o) => (&o.metadata, false),
        }
    }

    /// Kind, namespace and name, borrowed: `key` without allocating.
    pub fn id(&self) -> (&'static str, &str, &str) {
        let (meta, namespaced) = self.meta();
        let namespace = match meta.namespace.as_deref() {
            _ if !namespaced => "",
            Some(ns) if !ns.is_empty() => ns,
            _ => "default",
        };
        (
            self.kind(),
            namespace,
            meta.name.as_deref().unwrap_or_default(),
        )
    }

    pub fn key(&self) -> ObjectKey {
        let (meta, namespaced) = self.meta();
        ObjectKey::of(meta, namespaced)
    }

    /// Whether two objects are of one kind with equal content (the same
    /// `Arc`, or equal fields).
    pub fn same_content(&self, other: &Object) -> bool {
        fn same<T: PartialEq>(a: &Arc<T>, b: &Arc<T>) -> bool {
            Arc::ptr_eq(a, b) || **a == **b
        }
        match (self, other) {
            (Object::Ingress(a), Object::Ingress(b)) => same(a, b),
            (Object::IngressClass(a), Object::IngressClass(b)) => same(a, b),
            (Object::Service(a), Object::Service(b)) => same(a, b),
            (Object::EndpointSlice(a), Object::EndpointSlice(b)) => same(a, b),
            (Object::Secret(a), Object::Secret(b)) => same(a, b),
            (Object::ConfigMap(a), Object::ConfigMap(b)) => same(a, b),
            (Object::Namespace(a), Object::Namespace(b)) => same(a, b),
            (Object::GatewayClass(a), Object::GatewayClass(b)) => same(a, b),
            (Object::Gateway(a), Object::Gateway(b)) => same(a, b),
            (Object::HTTPRoute(a), Object::HTTPRoute(b)) => same(a, b),
            (Object::GRPCRoute(a), Object::GRPCRoute(b)) => same(a, b),
            (Object::ReferenceGrant(a), Object::ReferenceGrant(b)) => same(a, b),
            (Object::AcmeIssuer(a), Object::AcmeIssuer(b)) => same(a, b),
            _ => false,
        }
    }
}

/// Deliberately not `Debug`-printing its objects: Secrets hold key material.
impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.key())
    }
}

/// The ConfigMaps the controller ConfigMap names (`add-headers`,
/// `proxy-set-headers`), in its namespace unless `namespace/name`.
pub fn named_config_maps(own: &ObjectKey, map: &ConfigMap) -> Vec<ObjectKey> {
    let data = map.data.iter().flatten();
    data.filter(|(k, _)| *k == "add-headers" || *k == "proxy-set-headers")
        .map(|(_, v)| match v.trim().split_once('/') {
            Some((ns, name)) => ObjectKey::new(ns, name),
            None => ObjectKey::new(&own.namespace, v.trim()),
        })
        .collect()
}

/// The Secrets an Ingress's `spec.tls` names, in the Ingress's own
/// namespace (an Ingress never uses another namespace's Secrets).
pub fn tls_secret_keys(ingress: &Ingress) -> impl Iterator<Item = ObjectKey> + '_ {
    let namespace = ObjectKey::of(&ingress.metadata, true).namespace;
    let tls = ingress.spec.as_ref().and_then(|s| s.tls.as_ref());
    tls.into_iter()
        .flatten()
        .filter_map(|t| t.secret_name.as_deref())
        .filter(|name| !name.is_empty())
        .map(move |name| ObjectKey::new(&namespace, name))
}

/// The Secrets a Gateway's listeners name as certificates (same
/// namespace unless the reference says otherwise; whether a
/// ReferenceGrant allows another is translate's business).
pub fn certificate_secret_keys(gateway: &Gateway) -> impl Iterator<Item = ObjectKey> + '_ {
    let own = ObjectKey::of(&gateway.metadata, true).namespace;
    let refs = gateway.spec.listeners.iter().filter_map(|l| l.tls.as_ref());
    refs.flat_map(|tls| tls.certificate_refs.iter())
        .filter(|r| r.group.is_empty() && r.kind == "Secret")
        .map(move |r| ObjectKey::new(r.namespace.as_deref().unwrap_or(&own), &r.name))
}

/// A persistent map by object key: a clone is O(1) and shares everything
/// with the original, an insert is O(log n). A B-tree of small nodes: at
/// 100,000 objects a hash trie's mostly empty leaves cost several times
/// the memory.
pub type KeyedMap<V> = imbl::OrdMap<ObjectKey, V>;

/// A persistent ordered map (same cost model as `KeyedMap`).
pub type OrderedMap<K, V> = imbl::OrdMap<K, V>;

/// The objects that matter for routing. What translate walks (Ingresses,
/// EndpointSlices) is ordered, for deterministic iteration; what it only
/// looks up by key (Services, Secrets) is hashed. Every map is
/// persistent: a source publishes a new state after each change by
/// cloning the previous one, which costs O(1) whatever the cluster's
/// size, and the journal says what changed.
#[derive(Clone, Default)]
pub struct ClusterState {
    pub ingresses: OrderedMap<ObjectKey, Arc<Ingress>>,
    pub ingress_classes: OrderedMap<String, Arc<IngressClass>>,
    pub services: KeyedMap<Arc<Service>>,
    pub endpoint_slices: OrderedMap<ObjectKey, Arc<EndpointSlice>>,
    pub secrets: KeyedMap<Arc<Secret>>,
    pub config_maps: KeyedMap<Arc<ConfigMap>>,
    pub namespaces: OrderedMap<String, Arc<Namespace>>,
    pub gateway_classes: OrderedMap<String, Arc<GatewayClass>>,
    pub gateways: OrderedMap<ObjectKey, Arc<Gateway>>,
    pub http_routes: OrderedMap<ObjectKey, Arc<HTTPRoute>>,
    pub grpc_routes: OrderedMap<ObjectKey, Arc<GRPCRoute>>,
    pub reference_grants: OrderedMap<ObjectKey, Arc<ReferenceGrant>>,
    /// By name (cluster-scoped).
    pub acme_issuers: OrderedMap<String, Arc<AcmeIssuer>>,
    /// With `--watch-namespace-selector`, the namespaces it selects (the
    /// objects above are of these, but for the pinned ones); `None`
    /// without a selector.
    pub selected_namespaces: Option<Arc<BTreeSet<String>>>,
    /// Each Service's EndpointSlices (label `kubernetes.io/service-name`).
    slices_by_service: KeyedMap<Arc<Vec<ObjectKey>>>,
    /// What `insert` and `remove` changed, for an incremental rebuild.
    journal: Journal,
}

fn same<T>(current: Option<&Arc<T>>, object: &Arc<T>) -> bool {
    current.is_some_and(|c| Arc::ptr_eq(c, object))
}

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The Service an EndpointSlice belongs to.
pub fn slice_service(key: &ObjectKey, slice: &EndpointSlice) -> Option<ObjectKey> {
    let labels = slice.metadata.labels.as_ref()?;
    let service = labels.get(SERVICE_NAME_LABEL)?;
    Some(ObjectKey::new(&key.namespace, service))
}

/// The changes made to a state, in order: each `insert` and `remove`
/// appends the object's kind and key. A clone continues the journal of
/// the state it was cloned from; `from_objects` starts a new one. Only
/// the newest `JOURNAL_LIMIT` changes are kept: a reader that is further
/// behind rebuilds from scratch.
#[derive(Clone, Debug)]
pub struct Journal {
    lineage: u64,
    /// The sequence number of `entries[0]`.
    start: u64,
    entries: imbl::Vector<(&'static str, ObjectKey)>,
}

const JOURNAL_LIMIT: usize = 8192;

/// Where a journal stood: the changes after it can be asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalPosition {
    lineage: u64,
    seq: u64,
}

impl Default for Journal {
    fn default() -> Self {
        static LINEAGES: AtomicU64 = AtomicU64::new(1);
        Journal {
            lineage: LINEAGES.fetch_add(1, Ordering::Relaxed),
            start: 0,
            entries: imbl::Vector::new(),
        }
    }
}

impl Journal {
    fn record(&mut self, kind: &'static str, key: ObjectKey) {
        self.entries.push_back((kind, key));
        if self.entries.len() > JOURNAL_LIMIT {
            self.entries.pop_front();
            self.start += 1;
        }
    }

    /// Where the journal stands now.
    pub fn position(&self) -> JournalPosition {
        JournalPosition {
            lineage: self.lineage,
            seq: self.start + self.entries.len() as u64,
        }
    }

    /// The changes (kind and key) made since `position`, when this
    /// journal continues that one and still holds them all.
    pub fn since(
        &self,
        position: JournalPosition,
    ) -> Option<impl Iterator<Item = &(&'static str, ObjectKey)>> {
        let end = self.start + self.entries.len() as u64;
        if position.lineage != self.lineage || position.seq < self.start || position.seq > end {
            return None;
        }
        Some(
            self.entries
                .iter()
                .skip((position.seq - self.start) as usize),
        )
    }
}

impl ClusterState {
    /// Adds or replaces an object; returns true when one of the same kind
    /// and key was already present.
    pub fn insert(&mut self, object: Object) -> bool {
        let (kind, key) = (object.kind(), object.key());
        if let Object::EndpointSlice(slice) = &object {
            self.record_slice_services(&key, Some(slice));
        }
        self.journal.record(kind, key.clone());
        self.put(key, object)
    }

    /// An EndpointSlice change is a change of its Service's endpoints:
    /// the journal names the Service the slice belonged to and the one it
    /// belongs to now.
    fn record_slice_services(&mut self, key: &ObjectKey, new: Option<&Arc<EndpointSlice>>) {
        let old = self.endpoint_slices.get(key);
        let old = old.and_then(|o| slice_service(key, o));
        let new = new.and_then(|n| slice_service(key, n));
        if old != new {
            if let Some(service) = old {
                self.journal.record("Service", service);
            }
        }
        if let Some(service) = new {
            self.journal.record("Service", service);
        }
    }

    fn put(&mut self, key: ObjectKey, object: Object) -> bool {
        match object {
            Object::Ingress(o) => self.ingresses.insert(key, o).is_some(),
            Object::IngressClass(o) => self.ingress_classes.insert(key.name, o).is_some(),
            Object::Service(o) => self.services.insert(key, o).is_some(),
            Object::EndpointSlice(o) => {
                self.index_slice(&key, &o);
                let old = self.endpoint_slices.insert(key.clone(), o);
                self.unindex_slice(&key, old)
            }
            Object::Secret(o) => self.secrets.insert(key, o).is_some(),
            Object::ConfigMap(o) => self.config_maps.insert(key, o).is_some(),
            Object::Namespace(o) => self.namespaces.insert(key.name, o).is_some(),
            Object::GatewayClass(o) => self.gateway_classes.insert(key.name, o).is_some(),
            Object::Gateway(o) => self.gateways.insert(key, o).is_some(),
            Object::HTTPRoute(o) => self.http_routes.insert(key, o).is_some(),
            Object::GRPCRoute(o) => self.grpc_routes.insert(key, o).is_some(),
            Object::ReferenceGrant(o) => self.reference_grants.insert(key, o).is_some(),
            Object::AcmeIssuer(o) => self.acme_issuers.insert(key.name, o).is_some(),
        }
    }

    /// Removes the object of `object`'s kind and key, if present.
    pub fn remove(&mut self, object: &Object) {
        self.remove_key(object.kind(), &object.key());
    }

    /// Removes the object of this kind (`Object::kind`) and key, if
    /// present.
    pub fn remove_key(&mut self, kind: &'static str, key: &ObjectKey) {
        if kind == "EndpointSlice" {
            self.record_slice_services(key, None);
        }
        self.journal.record(kind, key.clone());
        match kind {
            "Ingress" => drop(self.ingresses.remove(key)),
            "IngressClass" => drop(self.ingress_classes.remove(&key.name)),
            "Service" => drop(self.services.remove(key)),
            "EndpointSlice" => {
                let old = self.endpoint_slices.remove(key);
                self.unindex_slice(key, old);
            }
            "Secret" => drop(self.secrets.remove(key)),
            "ConfigMap" => drop(self.config_maps.remove(key)),
            "Namespace" => drop(self.namespaces.remove(&key.name)),
            "GatewayClass" => drop(self.gateway_classes.remove(&key.name)),
            "Gateway" => drop(self.gateways.remove(key)),
            "HTTPRoute" => drop(self.http_routes.remove(key)),
            "GRPCRoute" => drop(self.grpc_routes.remove(key)),
            "ReferenceGrant" => drop(self.reference_grants.remove(key)),
            "AcmeIssuer" => drop(self.acme_issuers.remove(&key.name)),
            _ => {}
        }
    }

    /// Whether this very object (the same `Arc`) is the state's.
    pub fn holds(&self, object: &Object) -> bool {
        let key = object.key();
        match object {
            Object::Ingress(o) => same(self.ingresses.get(&key), o),
            Object::IngressClass(o) => same(self.ingress_classes.get(&key.name), o),
            Object::Service(o) => same(self.services.get(&key), o),
            Object::EndpointSlice(o) => same(self.endpoint_slices.get(&key), o),
            Object::Secret(o) => same(self.secrets.get(&key), o),
            Object::ConfigMap(o) => same(self.config_maps.get(&key), o),
            Object::Namespace(o) => same(self.namespaces.get(&key.name), o),
            Object::GatewayClass(o) => same(self.gateway_classes.get(&key.name), o),
            Object::Gateway(o) => same(self.gateways.get(&key), o),
            Object::HTTPRoute(o) => same(self.http_routes.get(&key), o),
            Object::GRPCRoute(o) => same(self.grpc_routes.get(&key), o),
            Object::ReferenceGrant(o) => same(self.reference_grants.get(&key), o),
            Object::AcmeIssuer(o) => same(self.acme_issuers.get(&key.name), o),
        }
    }

    /// A state of these objects, with a journal of its own that starts
    /// empty.
    pub fn from_objects(objects: impl IntoIterator<Item = Object>) -> Self {
        let mut state = ClusterState::default();
        for object in objects {
            state.put(object.key(), object);
        }
        state
    }

    /// The changes made to this state, for an incremental rebuild.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The EndpointSlices of a Service, by key.
    pub fn slices_of(&self, service: &ObjectKey) -> impl Iterator<Item = &Arc<EndpointSlice>> {
        let keys = self.slices_by_service.get(service).into_iter();
        let keys = keys.flat_map(|k| k.iter());
        keys.filter_map(|key| self.endpoint_slices.get(key))
    }

    fn index_slice(&mut self, key: &ObjectKey, slice: &EndpointSlice) {
        if let Some(service) = slice_service(key, slice) {
            let keys = self.slices_by_service.entry(service).or_default();
            if let Err(at) = keys.binary_search(key) {
                Arc::make_mut(keys).insert(at, key.clone());
            }
        }
    }

    /// Forgets a replaced or removed slice's Service, unless the current
    /// slice of that key still names it. Returns whether there was one.
    fn unindex_slice(&mut self, key: &ObjectKey, old: Option<Arc<EndpointSlice>>) -> bool {
        let Some(old) = old else {
            return false;
        };
        let Some(service) = slice_service(key, &old) else {
            return true;
        };
        let current = self.endpoint_slices.get(key);
        if current.is_some_and(|c| slice_service(key, c).as_ref() == Some(&service)) {
            return true;
        }
        if let Some(keys) = self.slices_by_service.get_mut(&service) {
            Arc::make_mut(keys).retain(|k| k != key);
            if keys.is_empty() {
                self.slices_by_service.remove(&service);
            }
        }
        true
    }
}

/// Counts only: the state holds Secrets, whose bytes must never reach a log.
impl fmt::Debug for ClusterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterState")
            .field("ingresses", &self.ingresses.len())
            .field("ingress_classes", &self.ingress_classes.len())
            .field("services", &self.services.len())
            .field("endpoint_slices", &self.endpoint_slices.len())
            .field("secrets", &self.secrets.len())
            .field("config_maps", &self.config_maps.len())
            .field("namespaces", &self.namespaces.len())
            .field("gateway_classes", &self.gateway_classes.len())
            .field("gateways", &self.gateways.len())
            .field("http_routes", &self.http_routes.len())
            .field("grpc_routes", &self.grpc_routes.len())
            .field("reference_grants", &self.reference_grants.len())
            .field("acme_issuers", &self.acme_issuers.len())
            .finish()
    }
}
