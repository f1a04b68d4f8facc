//! The Gateway API objects' status, written by the elected replica: our
//! GatewayClasses (`Accepted`), our Gateways (conditions, listeners,
//! addresses) and, in each HTTPRoute, the parents that are our Gateways.
//! Another controller's entries in a route's `status.parents` are kept.
//!
//! A condition keeps its `lastTransitionTime` while its status stays the
//! same, and an object whose status would not change is not written, so a
//! resync costs no writes.

use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};

use crate::cluster::ClusterState;
use crate::gateway::report::{Condition, StatusReport};
use crate::gateway::{Gateway, GatewayClass, HTTPRoute, GROUP};

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

/// Writes every status that differs from the report.
pub async fn sync(
    client: &Client,
    controller: &str,
    state: &ClusterState,
    report: &StatusReport,
    published: Option<&[String]>,
) {
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
        if current != Some(&desired) {
            let api: Api<GatewayClass> = Api::all(client.clone());
            write(api, name, "GatewayClass", name, desired).await;
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
        if current != Some(&desired) {
            let api: Api<Gateway> = Api::namespaced(client.clone(), &key.namespace);
            write(api, &key.name, "Gateway", &key.to_string(), desired).await;
        }
    }
    for (key, route) in &state.http_routes {
        let current = route.status.as_ref();
        let parents = current.and_then(|s| s["parents"].as_array());
        let ours = |p: &&Value| p["controllerName"] == controller;
        let theirs: Vec<Value> = parents
            .into_iter()
            .flatten()
            .filter(|p| !ours(p))
            .cloned()
            .collect();
        let Some(route_report) = report.routes.get(key) else {
            // No parent of ours: take out what we wrote before, if anything.
            if parents.is_some_and(|ps| ps.iter().any(|p| ours(&p))) {
                let api: Api<HTTPRoute> = Api::namespaced(client.clone(), &key.namespace);
                let desired = json!({"parents": theirs});
                write(api, &key.name, "HTTPRoute", &key.to_string(), desired).await;
            }
            continue;
        };
        let mut all = theirs;
        for parent in &route_report.parents {
            let reference = json!({
                "group": parent.parent.group,
                "kind": parent.parent.kind,
                "namespace": parent.parent.namespace.clone().unwrap_or_else(|| key.namespace.clone()),
                "name": parent.parent.name,
            });
            let mut reference = reference;
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
                "conditions": conditions_json(&parent.conditions, route_report.generation, previous, &now),
            }));
        }
        let desired = json!({"parents": all});
        if current != Some(&desired) {
            let api: Api<HTTPRoute> = Api::namespaced(client.clone(), &key.namespace);
            write(api, &key.name, "HTTPRoute", &key.to_string(), desired).await;
        }
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

async fn write<K>(api: Api<K>, name: &str, kind: &str, key: &str, status: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"status": status});
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => tracing::debug!(target: "gatehouse::status", kind, object = key, "status updated"),
        Err(e) => {
            tracing::warn!(target: "gatehouse::status", kind, object = key, "cannot update status: {e}")
        }
    }
}
