//! A local server that speaks the Kubernetes API's list/watch protocol, for
//! testing the kube source with the real kube-rs client.
//!
//! Faithful where clients depend on it: lists carry `metadata.resourceVersion`;
//! `?watch=true&resourceVersion=N` replays every change after N from an event
//! log, then streams ADDED/MODIFIED/DELETED/BOOKMARK lines as they happen; a
//! version older than the log's start gets `410 Gone` (an ERROR event), so
//! the client must list again; `set_down(true)` drops every watch and answers
//! 503 until `set_down(false)`. A write (PUT, or a PATCH that names one)
//! whose `resourceVersion` is not the stored one gets `409 Conflict`.
//! Every call is recorded for RBAC checks.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::sync::mpsc;

type Body = Either<
    Full<Bytes>,
    StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>,
>;

/// A call the client made: method, resource (`group/version/plural`,
/// `v1/plural` for the core group), subresource, namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub method: Method,
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub watch: bool,
    /// The `x-replica` header the client sent (see `client_as`).
    pub replica: Option<String>,
    /// `fieldSelector`, percent-decoded.
    pub field_selector: Option<String>,
}

#[derive(Clone)]
struct Change {
    rv: u64,
    kind: &'static str,
    collection: String,
    namespace: String,
    object: Value,
    /// The version it replaced: a watch whose selector matched that one
    /// and not this one sees a DELETED, as from the API server.
    previous: Option<Value>,
}

struct Watch {
    collection: String,
    namespace: Option<String>,
    /// `fieldSelector`, when the server honours it.
    selector: Option<String>,
    tx: mpsc::UnboundedSender<String>,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    /// collection → (namespace, name) → object
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    log: Vec<Change>,
    /// The oldest resourceVersion a watch may resume from.
    log_start: u64,
    watches: Vec<Watch>,
    calls: Vec<Call>,
    down: bool,
    /// Answer as an API server that ignores field selectors would.
    ignore_field_selectors: bool,
    /// The groups of `CRD_GROUPS` served (discovery says so).
    served: BTreeSet<&'static str>,
    /// Writes made by another client just before the next write to an
    /// object (collection, namespace, name) is served.
    interleaved: Vec<(String, (String, String), Interleaved)>,
}

/// An edit another writer makes to an object.
type Interleaved = Box<dyn FnOnce(&mut Value) + Send>;

#[derive(Clone)]
pub struct FakeApi {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

/// A group the API server serves only while its CRDs are installed: its
/// name and, version by version, its resources (plural, and whether
/// namespaced), each a CRD.
pub struct CrdGroup {
    pub name: &'static str,
    versions: &'static [(&'static str, &'static [(&'static str, bool)])],
}

/// The Gateway API (`deploy/gateway-api`).
pub const GATEWAY_API: CrdGroup = CrdGroup {
    name: "gateway.networking.k8s.io",
    versions: &[
        (
            "v1",
            &[
                ("gatewayclasses", false),
                ("gateways", true),
                ("httproutes", true),
                ("grpcroutes", true),
                ("referencegrants", true),
            ],
        ),
        ("v1beta1", &[("referencegrants", true)]),
    ],
};

/// `AcmeIssuer` (`deploy/base/acmeissuers.yaml`).
pub const ACME_ISSUERS: CrdGroup = CrdGroup {
    name: "gatehouse.dev",
    versions: &[("v1alpha1", &[("acmeissuers", false)])],
};

const CRD_GROUPS: [&CrdGroup; 2] = [&GATEWAY_API, &ACME_ISSUERS];

impl CrdGroup {
    /// Its resources, each once (plural, namespaced).
    fn resources(&self) -> BTreeSet<(&'static str, bool)> {
        self.versions
            .iter()
            .flat_map(|(_, resources)| resources.iter().copied())
            .collect()
    }

    /// Whether a call's `group/version` is of this group.
    fn holds(&self, group_version: &str) -> bool {
        group_version
            .strip_prefix(self.name)
            .is_some_and(|version| version.starts_with('/'))
    }
}

/// `group/version/plural` of an object, from its apiVersion and kind.
fn collection_of(object: &Value) -> String {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let plural = match object["kind"].as_str().unwrap_or("") {
        "Ingress" => "ingresses",
        "IngressClass" => "ingressclasses",
        "Service" => "services",
        "EndpointSlice" => "endpointslices",
        "Secret" => "secrets",
        "ConfigMap" => "configmaps",
        "Lease" => "leases",
        "Event" => "events",
        "Namespace" => "namespaces",
        "GatewayClass" => "gatewayclasses",
        "Gateway" => "gateways",
        "HTTPRoute" => "httproutes",
        "GRPCRoute" => "grpcroutes",
        "ReferenceGrant" => "referencegrants",
        "AcmeIssuer" => "acmeissuers",
        "CustomResourceDefinition" => "customresourcedefinitions",
        "ValidatingWebhookConfiguration" => "validatingwebhookconfigurations",
        other => panic!("fake API does not know kind {other}"),
    };
    format!("{api_version}/{plural}")
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let api = FakeApi {
            addr,
            inner: Arc::new(Mutex::new(Inner {
                rv: 1,
                log_start: 1,
                ..Inner::default()
            })),
        };
        let server = api.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.handle(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        api
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(format!("http://{}", self.addr).parse().expect("url"));
        kube::Client::try_from(config).expect("client")
    }

    /// A client whose calls are recorded as made by `replica`.
    pub fn client_as(&self, replica: &str) -> kube::Client {
        let mut config = kube::Config::new(format!("http://{}", self.addr).parse().expect("url"));
        config.headers.push((
            "x-replica".parse().expect("name"),
            replica.parse().expect("value"),
        ));
        kube::Client::try_from(config).expect("client")
    }

    /// The first Event (`events.k8s.io/v1`) with `reason`, if any.
    pub fn event(&self, reason: &str) -> Option<Value> {
        self.list("events.k8s.io/v1", "Event")
            .into_iter()
            .find(|e| e["reason"] == reason)
    }

    /// Creates or replaces an object (ADDED or MODIFIED).
    pub fn put(&self, mut object: Value) {
        let mut inner = self.inner.lock().expect("lock");
        inner.rv += 1;
        let rv = inner.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        if object["metadata"]["creationTimestamp"].is_null() {
            object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        let collection = collection_of(&object);
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        let previous = inner
            .objects
            .entry(collection.clone())
            .or_default()
            .insert((namespace.clone(), name), object.clone());
        let kind = if previous.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        inner.record(Change {
            rv,
            kind,
            collection,
            namespace,
            object,
            previous,
        });
    }

    /// Puts every object of a manifest text, as an API server would hold it
    /// (stringData folded into data, apiVersion and kind set).
    pub fn put_manifests(&self, yaml: &str) {
        use gatehouse::cluster::Object;
        for object in gatehouse::source::manifest::parse(yaml).expect("manifests parse") {
            let value = match object {
                Object::Ingress(o) => serde_json::to_value(&*o),
                Object::IngressClass(o) => serde_json::to_value(&*o),
                Object::Service(o) => serde_json::to_value(&*o),
                Object::EndpointSlice(o) => serde_json::to_value(&*o),
                Object::Secret(o) => serde_json::to_value(&*o),
                Object::ConfigMap(o) => serde_json::to_value(&*o),
                Object::Namespace(o) => serde_json::to_value(&*o),
                Object::GatewayClass(o) => serde_json::to_value(&*o),
                Object::Gateway(o) => serde_json::to_value(&*o),
                Object::HTTPRoute(o) => serde_json::to_value(&*o),
                Object::GRPCRoute(o) => serde_json::to_value(&*o),
                Object::ReferenceGrant(o) => serde_json::to_value(&*o),
                Object::AcmeIssuer(o) => serde_json::to_value(&*o),
            };
            self.put(value.expect("json"));
        }
    }

    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) {
        let mut inner = self.inner.lock().expect("lock");
        let collection = collection_of(&json!({"apiVersion": api_version, "kind": kind}));
        let removed = inner
            .objects
            .get_mut(&collection)
            .and_then(|objects| objects.remove(&(namespace.to_owned(), name.to_owned())));
        if let Some(mut object) = removed {
            inner.rv += 1;
            let rv = inner.rv;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            inner.record(Change {
                rv,
                kind: "DELETED",
                collection,
                namespace: namespace.to_owned(),
                object,
                previous: None,
            });
        }
    }

    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let inner = self.inner.lock().expect("lock");
        let collection = collection_of(&json!({"apiVersion": api_version, "kind": kind}));
        inner
            .objects
            .get(&collection)?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every stored object of a kind.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let inner = self.inner.lock().expect("lock");
        let collection = collection_of(&json!({"apiVersion": api_version, "kind": kind}));
        inner
            .objects
            .get(&collection)
            .map(|objects| objects.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Another writer's change to an object, made just before the next
    /// write (PUT or PATCH, of the object or a subresource) to it is
    /// served: that write then meets an object changed since its writer
    /// read it, as when two controllers write at the same moment.
    pub fn interleave_write(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        edit: impl FnOnce(&mut Value) + Send + 'static,
    ) {
        let collection = collection_of(&json!({"apiVersion": api_version, "kind": kind}));
        let key = (namespace.to_owned(), name.to_owned());
        let mut inner = self.inner.lock().expect("lock");
        inner.interleaved.push((collection, key, Box::new(edit)));
    }

    /// Every version an object was stored in, oldest first (from the
    /// event log: since the last `compact`).
    pub fn versions(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Vec<Value> {
        let inner = self.inner.lock().expect("lock");
        let collection = collection_of(&json!({"apiVersion": api_version, "kind": kind}));
        inner
            .log
            .iter()
            .filter(|c| c.collection == collection && c.kind != "DELETED")
            .filter(|c| c.namespace == namespace && c.object["metadata"]["name"] == name)
            .map(|c| c.object.clone())
            .collect()
    }

    /// Serves a group, as a cluster with its CRDs does.
    pub fn serve(&self, group: &CrdGroup) {
        self.inner.lock().expect("lock").served.insert(group.name);
    }

    /// Installs a group's CRDs while clients run, as `kubectl apply` of
    /// them does: the group is served, and its CustomResourceDefinitions
    /// appear (ADDED on their watches).
    pub fn install(&self, group: &CrdGroup) {
        self.serve(group);
        for (plural, namespaced) in group.resources() {
            let scope = if namespaced { "Namespaced" } else { "Cluster" };
            self.put(json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.{}", group.name)},
                "spec": {"group": group.name, "scope": scope, "names": {"plural": plural}},
                "status": {"conditions": [{"type": "Established", "status": "True"}]},
            }));
        }
    }

    /// Removes a group's CRDs, as `kubectl delete` of them does: the
    /// group's watches end, its objects go with it, its resources answer
    /// 404 and discovery no longer lists it, and the
    /// CustomResourceDefinitions go (DELETED on their watches). Its
    /// objects' deletions reach no watch: a client learns the group is
    /// gone from discovery and the CRDs alone.
    pub fn remove(&self, group: &CrdGroup) {
        let objects: Vec<Value> = {
            let mut inner = self.inner.lock().expect("lock");
            inner.served.remove(group.name);
            inner.watches.retain(|w| !group.holds(&w.collection));
            let held = inner.objects.iter().filter(|(c, _)| group.holds(c));
            held.flat_map(|(_, o)| o.values().cloned()).collect()
        };
        for object in objects {
            let meta = &object["metadata"];
            let (api_version, kind) = (object["apiVersion"].as_str(), object["kind"].as_str());
            self.delete(
                api_version.unwrap_or_default(),
                kind.unwrap_or_default(),
                meta["namespace"].as_str().unwrap_or_default(),
                meta["name"].as_str().unwrap_or_default(),
            );
        }
        for (plural, _) in group.resources() {
            let name = format!("{plural}.{}", group.name);
            self.delete(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "",
                &name,
            );
        }
    }

    /// Serve lists and watches as if field selectors were not there (to
    /// measure what a selector saves).
    pub fn ignore_field_selectors(&self, ignore: bool) {
        self.inner.lock().expect("lock").ignore_field_selectors = ignore;
    }

    /// Forgets the event log: watches that resume from before now get 410.
    pub fn compact(&self) {
        let mut inner = self.inner.lock().expect("lock");
        inner.log.clear();
        inner.log_start = inner.rv;
    }

    /// Ends every open watch with `410 Gone`, as an API server whose watch
    /// cache moved on does; the clients must list again.
    pub fn expire_watches(&self) {
        self.compact();
        let mut inner = self.inner.lock().expect("lock");
        let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "too old resource version", "reason": "Expired", "code": 410}});
        for watch in inner.watches.drain(..) {
            let _ = watch.tx.send(format!("{gone}\n"));
        }
    }

    /// Sends a BOOKMARK on every open watch.
    pub fn bookmark(&self) {
        let inner = self.inner.lock().expect("lock");
        for watch in &inner.watches {
            let (version, kind) = bookmark_kind(&watch.collection);
            let line = json!({"type": "BOOKMARK", "object": {"apiVersion": version, "kind": kind,
                "metadata": {"resourceVersion": inner.rv.to_string()}}});
            let _ = watch.tx.send(format!("{line}\n"));
        }
    }

    /// While down, every request gets 503 and open watches are cut.
    pub fn set_down(&self, down: bool) {
        let mut inner = self.inner.lock().expect("lock");
        inner.down = down;
        if down {
            inner.watches.clear();
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().expect("lock").calls.clone()
    }

    pub fn open_watches(&self) -> usize {
        self.inner.lock().expect("lock").watches.len()
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query: BTreeMap<String, String> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let replica = req
            .headers()
            .get("x-replica")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        // Discovery of the groups CRDs define (what the kube source's
        // `discover` asks): served only while the test says they are
        // installed.
        if let Some(list) = self.discovery(&path) {
            return reply(StatusCode::OK, list);
        }
        let Some(mut call) = parse_path(
            &method,
            &path,
            query.get("watch").is_some_and(|w| w == "true" || w == "1"),
        ) else {
            return reply(
                StatusCode::NOT_FOUND,
                json!({"kind": "Status", "code": 404}),
            );
        };
        call.replica = replica;
        call.field_selector = query.get("fieldSelector").map(|v| percent_decode(v));
        // Label selectors (`k=v`, `k!=v`) go through the same matching,
        // as `labels.k` fields.
        if let Some(labels) = query.get("labelSelector").map(|v| percent_decode(v)) {
            let terms = labels
                .split(',')
                .filter(|t| !t.is_empty())
                .map(|t| format!("labels.{t}"));
            let all: Vec<String> = call.field_selector.iter().cloned().chain(terms).collect();
            call.field_selector = Some(all.join(","));
        }
        let mut inner = self.inner.lock().expect("lock");
        inner.calls.push(call.clone());
        if inner.down {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"kind": "Status", "code": 503, "message": "down"}),
            );
        }
        // A group's resources exist only while its CRDs do.
        let absent = |g: &&CrdGroup| g.holds(&call.group) && !inner.served.contains(g.name);
        if CRD_GROUPS.iter().any(absent) {
            return reply(
                StatusCode::NOT_FOUND,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
            );
        }
        let collection = format!("{}/{}", call.group, call.resource);
        if matches!(method, Method::PUT | Method::PATCH) {
            let key = (
                call.namespace.clone().unwrap_or_default(),
                call.name.clone().unwrap_or_default(),
            );
            let found = inner
                .interleaved
                .iter()
                .position(|(c, k, _)| *c == collection && *k == key);
            if let Some(at) = found {
                let (_, _, edit) = inner.interleaved.remove(at);
                let stored = inner.objects.get(&collection).and_then(|o| o.get(&key));
                if let Some(mut object) = stored.cloned() {
                    edit(&mut object);
                    drop(inner);
                    self.put(object);
                    inner = self.inner.lock().expect("lock");
                }
            }
        }
        let selector = call
            .field_selector
            .clone()
            .filter(|_| !inner.ignore_field_selectors);
        match (&method, &call.name, call.watch) {
            (&Method::GET, None, true) => {
                let from: u64 = query
                    .get("resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if from < inner.log_start && from != 0 {
                    return reply(
                        StatusCode::GONE,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410}),
                    );
                }
                let (tx, rx) = mpsc::unbounded_channel();
                for change in inner
                    .log
                    .iter()
                    .filter(|c| c.rv > from && c.collection == collection)
                {
                    if call
                        .namespace
                        .as_ref()
                        .is_none_or(|ns| *ns == change.namespace)
                        && selected(selector.as_deref(), &change.object)
                    {
                        let _ = tx.send(format!(
                            "{}\n",
                            json!({"type": change.kind, "object": change.object})
                        ));
                    }
                }
                inner.watches.push(Watch {
                    collection,
                    namespace: call.namespace.clone(),
                    selector,
                    tx,
                });
                let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                    let line = rx.recv().await?;
                    Some((Ok(Frame::data(Bytes::from(line))), rx))
                });
                let mut response =
                    Response::new(Either::Right(StreamBody::new(Box::pin(stream) as _)));
                response
                    .headers_mut()
                    .insert("content-type", "application/json".parse().expect("header"));
                response
            }
            (&Method::GET, None, false) => {
                let items: Vec<Value> = inner
                    .objects
                    .get(&collection)
                    .map(|objects| {
                        objects
                            .iter()
                            .filter(|((ns, _), _)| {
                                call.namespace.as_ref().is_none_or(|want| want == ns)
                            })
                            .filter(|(_, o)| selected(selector.as_deref(), o))
                            .map(|(_, o)| o.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                reply(
                    StatusCode::OK,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": inner.rv.to_string()}, "items": items}),
                )
            }
            (&Method::GET, Some(name), false) => {
                let ns = call.namespace.clone().unwrap_or_default();
                match inner
                    .objects
                    .get(&collection)
                    .and_then(|o| o.get(&(ns, name.clone())))
                {
                    Some(object) => reply(StatusCode::OK, object.clone()),
                    None => reply(
                        StatusCode::NOT_FOUND,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                    ),
                }
            }
            (&Method::POST, None, false) => {
                let mut object: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if object["metadata"]["namespace"].is_null() {
                    object["metadata"]["namespace"] =
                        json!(call.namespace.clone().unwrap_or_default());
                }
                if object["metadata"]["name"].is_null() {
                    let generated = format!(
                        "{}{}",
                        object["metadata"]["generateName"]
                            .as_str()
                            .unwrap_or("obj-"),
                        inner.rv
                    );
                    object["metadata"]["name"] = json!(generated);
                }
                let key = (
                    object["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                    object["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                );
                if inner
                    .objects
                    .get(&collection)
                    .is_some_and(|o| o.contains_key(&key))
                {
                    return reply(
                        StatusCode::CONFLICT,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409}),
                    );
                }
                drop(inner);
                self.put(object);
                let stored = self.get_by_collection(&collection, &key);
                reply(StatusCode::CREATED, stored)
            }
            (&Method::PUT, Some(name), false) => {
                let object: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let key = (call.namespace.clone().unwrap_or_default(), name.clone());
                let current = inner
                    .objects
                    .get(&collection)
                    .and_then(|o| o.get(&key))
                    .cloned();
                let Some(current) = current else {
                    return reply(
                        StatusCode::NOT_FOUND,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                    );
                };
                let sent_rv = object["metadata"]["resourceVersion"].as_str().unwrap_or("");
                if !sent_rv.is_empty()
                    && sent_rv
                        != current["metadata"]["resourceVersion"]
                            .as_str()
                            .unwrap_or("")
                {
                    return reply(
                        StatusCode::CONFLICT,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409}),
                    );
                }
                drop(inner);
                self.put(object);
                reply(StatusCode::OK, self.get_by_collection(&collection, &key))
            }
            (&Method::PATCH, Some(name), false) => {
                let patch: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let key = (call.namespace.clone().unwrap_or_default(), name.clone());
                let current = inner
                    .objects
                    .get(&collection)
                    .and_then(|o| o.get(&key))
                    .cloned();
                let Some(mut current) = current else {
                    return reply(
                        StatusCode::NOT_FOUND,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                    );
                };
                // A `resourceVersion` in the patch is a precondition, as
                // the API server makes it.
                let sent_rv = patch["metadata"]["resourceVersion"].as_str();
                if sent_rv.is_some_and(|sent| current["metadata"]["resourceVersion"] != sent) {
                    return reply(
                        StatusCode::CONFLICT,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
                            "message": "the object has been modified; please apply your changes to the latest version and try again"}),
                    );
                }
                merge(&mut current, &patch);
                drop(inner);
                self.put(current);
                reply(StatusCode::OK, self.get_by_collection(&collection, &key))
            }
            _ => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"kind": "Status", "code": 405}),
            ),
        }
    }

    /// The `APIResourceList` of `/apis/GROUP/VERSION`, for a group of
    /// `CRD_GROUPS` that is served.
    fn discovery(&self, path: &str) -> Option<Value> {
        let (group, version) = path.strip_prefix("/apis/")?.split_once('/')?;
        let group = CRD_GROUPS.into_iter().find(|g| g.name == group)?;
        if !self.inner.lock().expect("lock").served.contains(group.name) {
            return None;
        }
        let (_, resources) = group.versions.iter().find(|(v, _)| *v == version)?;
        let list: Vec<Value> = resources
            .iter()
            .map(|(r, namespaced)| json!({"name": r, "singularName": "", "namespaced": namespaced, "kind": "", "verbs": ["get", "list", "watch"]}))
            .collect();
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{}/{version}", group.name), "resources": list}),
        )
    }

    fn get_by_collection(&self, collection: &str, key: &(String, String)) -> Value {
        let inner = self.inner.lock().expect("lock");
        inner
            .objects
            .get(collection)
            .and_then(|o| o.get(key))
            .cloned()
            .unwrap_or(Value::Null)
    }
}

impl Inner {
    fn record(&mut self, change: Change) {
        let line = format!(
            "{}\n",
            json!({"type": change.kind, "object": change.object})
        );
        let gone = format!("{}\n", json!({"type": "DELETED", "object": change.object}));
        self.watches.retain(|w| {
            if w.collection != change.collection
                || w.namespace
                    .as_ref()
                    .is_some_and(|ns| *ns != change.namespace)
            {
                return !w.tx.is_closed();
            }
            let selector = w.selector.as_deref();
            let was = change
                .previous
                .as_ref()
                .is_some_and(|p| selected(selector, p));
            match (was, selected(selector, &change.object)) {
                (_, true) => w.tx.send(line.clone()).is_ok(),
                (true, false) => w.tx.send(gone.clone()).is_ok(),
                (false, false) => !w.tx.is_closed(),
            }
        });
        self.log.push(change);
    }
}

fn bookmark_kind(collection: &str) -> (String, &'static str) {
    let (version, plural) = collection.rsplit_once('/').expect("collection");
    let kind = match plural {
        "ingresses" => "Ingress",
        "ingressclasses" => "IngressClass",
        "services" => "Service",
        "endpointslices" => "EndpointSlice",
        "secrets" => "Secret",
        "configmaps" => "ConfigMap",
        "namespaces" => "Namespace",
        "customresourcedefinitions" => "CustomResourceDefinition",
        "acmeissuers" => "AcmeIssuer",
        "validatingwebhookconfigurations" => "ValidatingWebhookConfiguration",
        _ => "Unknown",
    };
    (version.to_owned(), kind)
}

/// JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (key, value) in fields {
                if value.is_null() {
                    target.as_object_mut().expect("object").remove(key);
                } else {
                    merge(&mut target[key], value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Whether an object satisfies a field selector (`field=value`,
/// `field==value`, `field!=value`, comma-separated), as the API server
/// decides it for the fields Gatehouse selects on.
fn selected(selector: Option<&str>, object: &Value) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| {
        let (field, negated, want) = match term.split_once("!=") {
            Some((f, v)) => (f, true, v),
            None => match term.split_once("==").or_else(|| term.split_once('=')) {
                Some((f, v)) => (f, false, v),
                None => return true,
            },
        };
        let got = match field {
            // A Secret without a type is Opaque.
            "type" => object["type"].as_str().unwrap_or("Opaque").to_owned(),
            "metadata.name" => object["metadata"]["name"].as_str().unwrap_or("").to_owned(),
            "metadata.namespace" => object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            label if label.starts_with("labels.") => object["metadata"]["labels"]
                [&label["labels.".len()..]]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            _ => return true,
        };
        (got == want) != negated
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_path(method: &Method, path: &str, watch: bool) -> Option<Call> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => (version.to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (resource.to_string(), None, None),
        [resource, name] => (resource.to_string(), Some(name.to_string()), None),
        [resource, name, sub] => (
            resource.to_string(),
            Some(name.to_string()),
            Some(sub.to_string()),
        ),
        _ => return None,
    };
    Some(Call {
        method: method.clone(),
        group,
        resource,
        subresource,
        namespace,
        name,
        watch,
        replica: None,
        field_selector: None,
    })
}

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    response
}
