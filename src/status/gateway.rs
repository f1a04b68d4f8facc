//! The Gateway API objects' status, written by the elected replica: our
//! GatewayClasses (`Accepted`), our Gateways (conditions, listeners,
//! addresses) and, in each HTTPRoute, the parents that are our Gateways.
//! Another controller's entries in a route's `status.parents` are kept,
//! also when it writes at the same moment: a route's status is written
//! with the `resourceVersion` it was computed from, and merged again on a
//! conflict (`RouteWrite`).
//!
//! A condition keeps its `lastTransitionTime` while its status stays the
//! same, and an object whose status would not change is not written, so a
//! resync costs no writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::core::object::HasStatus;
use kube::Client;
use serde_json::{json, Value};

use crate::cluster::{ClusterState, ObjectKey, OrderedMap};
use crate::gateway::{Gateway, GatewayClass, GROUP};
use crate::translate::gateway_status::{Condition, RouteReport, StatusReport};

/// The `status.addresses` of a Gateway for the published addresses.
pub fn addresses(published: &[String]) -> Value {
    let entries: Vec<Value> = published
        .iter()
        .map(|a| {
            let type_ = match a.parse::<std::net::IpAddr>() {
                Ok(_) => "IPAddress",
                Err(_) => "Hostname",
            };
            json!({"type": type_, "value": a})
        })
        .collect();
    Value::Array(entries)
}

/// What was last written to each object (kind and key), so that a write
/// whose watch event has not arrived yet is not made again. Cleared on every
/// resync, so that a status changed by someone else is put right.
pub type Written = HashMap<(&'static str, ObjectKey), Value>;

/// Writes every status that differs from the report.
pub async fn sync(
    client: &Client,
    controller: &str,
    state: &ClusterState,
    report: &StatusReport,
    published: Option<&[String]>,
    written: &mut Written,
) {
    let mut pending = Writes { written };
    let now = now();
    for (name, generation) in &report.classes {
        let Some(class) = state.gateway_classes.get(name) else {
            continue;
        };
        let current = class.status.as_ref();
        let conditions = [
            Condition::yes("Accepted", "Accepted"),
            Condition::yes("SupportedVersion", "SupportedVersion"),
        ];
        let desired = json!({
            "conditions": conditions_json(&conditions, *generation, current.map(|s| &s["conditions"]), &now),
        });
        let key = ObjectKey::new("", name);
        if pending.needed("GatewayClass", &key, current, &desired) {
            let api: Api<GatewayClass> = Api::all(client.clone());
            if !write(api, name, "GatewayClass", name, desired).await {
                pending.forget("GatewayClass", &key);
            }
        }
    }
    for (key, gateway_report) in &report.gateways {
        let Some(gateway) = state.gateways.get(key) else {
            continue;
        };
        let current = gateway.status.as_ref();
        let generation = gateway_report.generation;
        let listeners: Vec<Value> = gateway_report
            .listeners
            .iter()
            .map(|l| {
                let previous = current
                    .and_then(|s| s["listeners"].as_array())
                    .and_then(|ls| ls.iter().find(|p| p["name"] == l.name.as_str()))
                    .map(|p| &p["conditions"]);
                let kinds: Vec<Value> = l
                    .supported_kinds
                    .iter()
                    .map(|k| json!({"group": GROUP, "kind": k}))
                    .collect();
                json!({
                    "name": l.name,
                    "supportedKinds": kinds,
                    "attachedRoutes": l.attached_routes,
                    "conditions": conditions_json(&l.conditions, generation, previous, &now),
                })
            })
            .collect();
        let mut desired = json!({
            "conditions": conditions_json(&gateway_report.conditions, generation, current.map(|s| &s["conditions"]), &now),
            "listeners": listeners,
        });
        if let Some(published) = published {
            desired["addresses"] = addresses(published);
        } else if let Some(kept) = current.map(|s| &s["addresses"]).filter(|a| !a.is_null()) {
            desired["addresses"] = kept.clone();
        }
        if pending.needed("Gateway", key, current, &desired) {
            let api: Api<Gateway> = Api::namespaced(client.clone(), &key.namespace);
            if !write(api, &key.name, "Gateway", &key.to_string(), desired).await {
                pending.forget("Gateway", key);
            }
        }
    }
    let writer = (controller, now.as_str());
    sync_routes(
        client,
        "HTTPRoute",
        &state.http_routes,
        &report.routes,
        writer,
        &mut pending,
    )
    .await;
    sync_routes(
        client,
        "GRPCRoute",
        &state.grpc_routes,
        &report.grpc_routes,
        writer,
        &mut pending,
    )
    .await;
}

/// Writes the status of every route of one kind, each against the route
/// as the watch delivered it; `writer` is our controller name and the
/// time the conditions are stamped with.
async fn sync_routes<K>(
    client: &Client,
    kind: &'static str,
    routes: &OrderedMap<ObjectKey, Arc<K>>,
    reports: &BTreeMap<ObjectKey, RouteReport>,
    (controller, now): (&str, &str),
    pending: &mut Writes<'_>,
) where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    K: HasStatus<Status = Value> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for (key, route) in routes {
        let target = RouteWrite {
            api: Api::<K>::namespaced(client.clone(), &key.namespace),
            kind,
            key,
            controller,
            now,
        };
        target.sync(route, reports.get(key), pending).await;
    }
}

/// How many times a route's status is computed again after another writer
/// changed the route between our read and our write.
const ROUTE_ATTEMPTS: usize = 5;

/// One route's status, to be written with a precondition.
///
/// A route's `status.parents` is shared by every controller whose Gateway
/// the route attaches to, and the CRD makes it an atomic list
/// (`x-kubernetes-list-type: atomic`): whoever writes it writes all of it,
/// and server-side apply would replace the others' entries as well. So
/// the write carries the `resourceVersion` the list was computed from;
/// the API server refuses it (409 Conflict) when another controller wrote
/// in between, and then the route is read again and our entries merged
/// into what it holds now.
struct RouteWrite<'a, K> {
    api: Api<K>,
    kind: &'static str,
    key: &'a ObjectKey,
    controller: &'a str,
    now: &'a str,
}

impl<K> RouteWrite<'_, K>
where
    K: kube::Resource + HasStatus<Status = Value>,
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    /// Writes the route's status if it differs from the report, starting
    /// from the route as the watch delivered it.
    async fn sync(&self, route: &K, report: Option<&RouteReport>, pending: &mut Writes<'_>) {
        let current = route.status();
        let desired = route_status(self.key, current, report, self.controller, self.now);
        let Some(desired) = desired.filter(|d| pending.needed(self.kind, self.key, current, d))
        else {
            return;
        };
        match self
            .write(route.meta().resource_version.clone(), desired, report)
            .await
        {
            Some(written) => pending.remember(self.kind, self.key, written),
            None => pending.forget(self.kind, self.key),
        }
    }

    /// Writes `desired`, computed from the route at `version`; on a
    /// conflict, reads the route and computes it again. What was written
    /// (`Value::Null` when nothing needed to be), or `None` on failure.
    async fn write(
        &self,
        mut version: Option<String>,
        mut desired: Value,
        report: Option<&RouteReport>,
    ) -> Option<Value> {
        let (kind, object) = (self.kind, self.key.to_string());
        for _ in 0..ROUTE_ATTEMPTS {
            let patch = json!({"metadata": {"resourceVersion": version}, "status": desired});
            let written = self
                .api
                .patch_status(
                    &self.key.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await;
            match written {
                Ok(_) => {
                    tracing::debug!(target: "gatehouse::status", kind, object, "status updated");
                    return Some(desired);
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    tracing::debug!(target: "gatehouse::status", kind, object, "status changed by another writer; merging again");
                }
                Err(e) => {
                    tracing::warn!(target: "gatehouse::status", kind, object, "cannot update status: {e}");
                    return None;
                }
            }
            let route = match self.api.get(&self.key.name).await {
                Ok(route) => route,
                Err(e) => {
                    tracing::warn!(target: "gatehouse::status", kind, object, "cannot read the route to update its status: {e}");
                    return None;
                }
            };
            let current = route.status();
            match route_status(self.key, current, report, self.controller, self.now) {
                Some(again) => (version, desired) = (route.meta().resource_version.clone(), again),
                None => return Some(Value::Null),
            }
        }
        tracing::warn!(target: "gatehouse::status", kind, object, "cannot update status: the route kept changing under {ROUTE_ATTEMPTS} attempts");
        None
    }
}

/// A route's status with our parents' entries as the report says (none,
/// when no parent is ours) and other controllers' entries kept; `None`
/// when that is what it already is.
fn route_status(
    key: &ObjectKey,
    current: Option<&Value>,
    report: Option<&RouteReport>,
    controller: &str,
    now: &str,
) -> Option<Value> {
    let parents = current.and_then(|s| s["parents"].as_array());
    let ours = |p: &&Value| p["controllerName"] == controller;
    let mut all: Vec<Value> = parents
        .into_iter()
        .flatten()
        .filter(|p| !ours(p))
        .cloned()
        .collect();
    let Some(report) = report else {
        // No parent of ours: take out what we wrote before, if anything.
        let stale = parents.is_some_and(|ps| ps.iter().any(|p| ours(&p)));
        return stale.then(|| json!({ "parents": all }));
    };
    for parent in &report.parents {
        let namespace = parent.parent.namespace.as_deref().unwrap_or(&key.namespace);
        let mut reference = json!({
            "group": parent.parent.group,
            "kind": parent.parent.kind,
            "namespace": namespace,
            "name": parent.parent.name,
        });
        if let Some(section) = &parent.parent.section_name {
            reference["sectionName"] = json!(section);
        }
        if let Some(port) = parent.parent.port {
            reference["port"] = json!(port);
        }
        let previous = parents
            .into_iter()
            .flatten()
            .find(|p| ours(p) && p["parentRef"] == reference)
            .map(|p| &p["conditions"]);
        all.push(json!({
            "parentRef": reference,
            "controllerName": controller,
            "conditions": conditions_json(&parent.conditions, report.generation, previous, now),
        }));
    }
    let desired = json!({ "parents": all });
    (current != Some(&desired)).then_some(desired)
}

struct Writes<'w> {
    written: &'w mut Written,
}

impl Writes<'_> {
    /// Whether `desired` must be written: it is not the current status,
    /// nor (times aside) what was last written; remembered when it must.
    fn needed(
        &mut self,
        kind: &'static str,
        key: &ObjectKey,
        current: Option<&Value>,
        desired: &Value,
    ) -> bool {
        if current == Some(desired) {
            return false;
        }
        let slot = (kind, key.clone());
        if let Some(last) = self.written.get(&slot) {
            if without_times(last) == without_times(desired) {
                return false;
            }
        }
        self.written.insert(slot, desired.clone());
        true
    }

    /// What was written in the end (merged again after a conflict);
    /// `Value::Null`: nothing needed writing.
    fn remember(&mut self, kind: &'static str, key: &ObjectKey, written: Value) {
        match written {
            Value::Null => self.forget(kind, key),
            written => drop(self.written.insert((kind, key.clone()), written)),
        }
    }

    /// A write that failed: to be tried again.
    fn forget(&mut self, kind: &'static str, key: &ObjectKey) {
        self.written.remove(&(kind, key.clone()));
    }
}

/// A status without its conditions' `lastTransitionTime`.
fn without_times(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(k, _)| *k != "lastTransitionTime")
                .map(|(k, v)| (k.clone(), without_times(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_times).collect()),
        other => other.clone(),
    }
}

/// Conditions as the API writes them; one whose status has not changed
/// keeps its previous `lastTransitionTime`.
fn conditions_json(
    conditions: &[Condition],
    generation: Option<i64>,
    previous: Option<&Value>,
    now: &str,
) -> Value {
    let previous = previous.and_then(Value::as_array);
    let entries: Vec<Value> = conditions
        .iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let since = previous
                .into_iter()
                .flatten()
                .find(|p| p["type"] == c.type_ && p["status"] == status)
                .and_then(|p| p["lastTransitionTime"].as_str())
                .unwrap_or(now);
            let mut entry = json!({
                "type": c.type_,
                "status": status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": since,
            });
            if let Some(generation) = generation {
                entry["observedGeneration"] = json!(generation);
            }
            entry
        })
        .collect();
    Value::Array(entries)
}

fn now() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Patches the status; whether it was written.
async fn write<K>(api: Api<K>, name: &str, kind: &str, key: &str, status: Value) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"status": status});
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::debug!(target: "gatehouse::status", kind, object = key, "status updated");
            true
        }
        Err(e) => {
            tracing::warn!(target: "gatehouse::status", kind, object = key, "cannot update status: {e}");
            false
        }
    }
}
