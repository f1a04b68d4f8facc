//! Status publishing, leader election and Events against the local API
//! server, with two replicas running side by side.

use crate::support;

use std::time::Duration;

use gatehouse::cluster::{Object, ObjectKey};
use gatehouse::status::Publish;
use http::Method;
use serde_json::{json, Value};
use support::fake_api::{FakeApi, ACME_ISSUERS, GATEWAY_API};
use support::*;

async fn replica(api: &FakeApi, name: &str) -> gatehouse::app::Running {
    let config = replica_config(
        api,
        name,
        "ingress",
        Publish::Service(ObjectKey::new("ingress", "gatehouse")),
    );
    gatehouse::app::start(config).await.expect("start")
}

fn lb_ips(api: &FakeApi, namespace: &str, name: &str) -> Vec<String> {
    let ingress = api
        .get("networking.k8s.io/v1", "Ingress", namespace, name)
        .expect("ingress");
    ingress["status"]["loadBalancer"]["ingress"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["ip"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// How long a replica may take to publish what a test waits for.
const PUBLISHED: Duration = Duration::from_secs(15);

#[tokio::test]
async fn one_elected_replica_publishes_status_and_events() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            ingress("shop", "shop.test", "/", "web", None),
            ingress("broken", "broken.test", "/", "missing", None),
        ]
        .concat(),
    );
    // The Service whose LoadBalancer address is published.
    api.put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gatehouse", "namespace": "ingress"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "ports": [{"port": 443}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}}));
    // Another controller's Ingress that still carries our address: cleared.
    let mut foreign: Value = serde_json::to_value(
        match gatehouse::source::manifest::parse(&ingress(
            "nginx-owned",
            "n.test",
            "/",
            "web",
            None,
        ))
        .expect("parse")
        .remove(0)
        {
            Object::Ingress(i) => (*i).clone(),
            _ => unreachable!("an Ingress"),
        },
    )
    .expect("json");
    foreign["spec"]["ingressClassName"] = json!("nginx");
    foreign["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}});
    api.put(foreign);

    let (one, two) = (
        replica(&api, "replica-1").await,
        replica(&api, "replica-2").await,
    );

    eventually("status published", PUBLISHED, async || {
        lb_ips(&api, "test", "shop") == ["203.0.113.10"]
    })
    .await;
    eventually("foreign status cleared", PUBLISHED, async || {
        lb_ips(&api, "test", "nginx-owned").is_empty()
    })
    .await;
    let lease = api
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            "ingress",
            "gatehouse-leader",
        )
        .expect("lease");
    let leader = lease["spec"]["holderIdentity"]
        .as_str()
        .expect("holder")
        .to_owned();
    assert!(leader == "replica-1" || leader == "replica-2");

    eventually("an Event for the missing Service", PUBLISHED, async || {
        api.calls()
            .iter()
            .any(|c| c.resource == "events" && c.method == Method::POST)
    })
    .await;
    // Let both replicas run through several election rounds and rebuilds.
    api.put_manifests(&ingress("blog", "blog.test", "/", "web", None));
    eventually("status of a new Ingress", PUBLISHED, async || {
        lb_ips(&api, "test", "blog") == ["203.0.113.10"]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let calls = api.calls();
    let writes: Vec<_> = calls
        .iter()
        .filter(|c| {
            (c.resource == "ingresses" && c.subresource.as_deref() == Some("status"))
                || c.resource == "events"
        })
        .filter(|c| c.method != Method::GET)
        .collect();
    assert!(!writes.is_empty());
    for write in &writes {
        assert_eq!(
            write.replica.as_deref(),
            Some(leader.as_str()),
            "only the leader writes: {write:?}"
        );
    }
    let events = calls
        .iter()
        .filter(|c| c.resource == "events" && c.method == Method::POST)
        .count();
    assert_eq!(
        events, 1,
        "one Event for one warning, however many rebuilds"
    );
    drop((one, two));
}

#[tokio::test]
async fn a_route_closed_for_its_protection_gets_a_protection_denied_event() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            ingress_annotated(
                "admin",
                "admin.test",
                "/",
                "web",
                None,
                &[
                    ("nginx.ingress.kubernetes.io/auth-type", "basic"),
                    ("nginx.ingress.kubernetes.io/auth-secret", "absent"),
                ],
            ),
        ]
        .concat(),
    );
    api.put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gatehouse", "namespace": "ingress"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 443}]}}));
    let gatehouse = replica(&api, "replica-1").await;
    assert_eq!(
        http_get(gatehouse.http_addr, "admin.test", "/")
            .await
            .status,
        http::StatusCode::SERVICE_UNAVAILABLE
    );
    let event = eventually("a ProtectionDenied Event", PUBLISHED, async || {
        api.event("ProtectionDenied")
    })
    .await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["name"], "admin");
    assert_eq!(event["regarding"]["kind"], "Ingress");
    let note = event["note"].as_str().expect("note");
    assert!(
        note.contains("nginx.ingress.kubernetes.io/auth-secret")
            && note.contains("Secret test/absent not found"),
        "{note}"
    );
}

#[tokio::test]
async fn a_lease_not_renewed_is_taken_over() {
    let api = FakeApi::start().await;
    api.put_manifests(INGRESS_CLASS);
    // A Lease held by a replica that stopped renewing a minute ago.
    api.put(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "gatehouse-leader", "namespace": "ingress"},
        "spec": {"holderIdentity": "gone-replica", "leaseDurationSeconds": 15, "leaseTransitions": 3,
                 "acquireTime": "2026-01-01T00:00:00.000000Z", "renewTime": "2026-01-01T00:00:00.000000Z"}}));
    let _me = replica(&api, "replica-3").await;
    eventually("the expired Lease taken over", PUBLISHED, async || {
        let lease = api
            .get(
                "coordination.k8s.io/v1",
                "Lease",
                "ingress",
                "gatehouse-leader",
            )
            .expect("lease");
        lease["spec"]["holderIdentity"] == "replica-3" && lease["spec"]["leaseTransitions"] == 4
    })
    .await;
}

#[tokio::test]
async fn a_lease_held_and_renewed_by_another_replica_is_left_alone() {
    let api = FakeApi::start().await;
    api.put_manifests(INGRESS_CLASS);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    api.put(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "gatehouse-leader", "namespace": "ingress"},
        "spec": {"holderIdentity": "busy-replica", "leaseDurationSeconds": 15, "renewTime": now}}));
    let _me = replica(&api, "replica-4").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lease = api
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            "ingress",
            "gatehouse-leader",
        )
        .expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], "busy-replica");
}

/// The verb an API call needs, from the HTTP method.
fn verb(call: &support::fake_api::Call) -> &'static str {
    match call.method {
        Method::GET if call.watch => "watch",
        Method::GET if call.name.is_some() => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

fn grants(
    rules: &[k8s_openapi::api::rbac::v1::PolicyRule],
    group: &str,
    resource: &str,
    verb: &str,
    name: Option<&str>,
) -> bool {
    rules.iter().any(|rule| {
        let has = |list: &Option<Vec<String>>, item: &str| {
            list.iter().flatten().any(|v| v == item || v == "*")
        };
        has(&rule.api_groups, group)
            && has(&rule.resources, resource)
            && rule.verbs.iter().any(|v| v == verb || v == "*")
            && match &rule.resource_names {
                None => true,
                Some(names) => name.is_some_and(|n| names.iter().any(|allowed| allowed == n)),
            }
    })
}

/// Every call the controller made in a full scenario (two replicas, watches,
/// status, Events, the Lease) must be allowed by deploy/base/rbac.yaml. A new
/// kind of call without a matching rule fails here, not in a cluster.
#[tokio::test]
async fn deploy_rbac_grants_every_call_the_controller_makes() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.serve(&GATEWAY_API);
    api.serve(&ACME_ISSUERS);
    api.put_manifests(
        &[
            gateway_api_manifests(web.addr),
            ingress("shop", "shop.test", "/", "web", None),
            ingress("broken", "broken.test", "/", "missing", None),
            ACME_ISSUER.to_owned(),
        ]
        .concat(),
    );
    api.put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gatehouse", "namespace": "ingress"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 443}]}}));
    let (_one, _two) = (
        replica(&api, "replica-1").await,
        replica(&api, "replica-2").await,
    );
    eventually("status published", PUBLISHED, async || {
        lb_ips(&api, "test", "shop") == ["10.96.0.10"]
    })
    .await;
    eventually("an Event", PUBLISHED, async || {
        api.calls().iter().any(|c| c.resource == "events")
    })
    .await;
    eventually("route status", PUBLISHED, async || {
        let calls = api.calls();
        ["httproutes", "grpcroutes"].iter().all(|r| {
            calls
                .iter()
                .any(|c| c.resource == *r && c.subresource.is_some())
        })
    })
    .await;

    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/base/rbac.yaml"
    ))
    .expect("rbac.yaml");
    let mut cluster_rules = Vec::new();
    let mut role_rules = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = <Value as serde::Deserialize>::deserialize(doc).expect("yaml");
        match value["kind"].as_str() {
            Some("ClusterRole") => cluster_rules.extend(
                serde_json::from_value::<k8s_openapi::api::rbac::v1::ClusterRole>(value)
                    .expect("ClusterRole")
                    .rules
                    .unwrap_or_default(),
            ),
            Some("Role") => role_rules.extend(
                serde_json::from_value::<k8s_openapi::api::rbac::v1::Role>(value)
                    .expect("Role")
                    .rules
                    .unwrap_or_default(),
            ),
            _ => {}
        }
    }
    let calls = api.calls();
    let mut kinds = std::collections::BTreeSet::new();
    for call in calls.iter().filter(|c| c.replica.is_some()) {
        let group = call.group.split_once('/').map_or("", |(g, _)| g);
        let resource = match &call.subresource {
            Some(sub) => format!("{}/{sub}", call.resource),
            None => call.resource.clone(),
        };
        let verb = verb(call);
        kinds.insert(format!("{verb} {group}/{resource}"));
        // The Role is bound in the controller's own namespace, where the
        // Lease lives; everything else comes from the ClusterRole.
        let allowed = grants(&cluster_rules, group, &resource, verb, call.name.as_deref())
            || (group == "coordination.k8s.io"
                && grants(&role_rules, group, &resource, verb, call.name.as_deref()));
        assert!(
            allowed,
            "deploy RBAC does not allow {verb} {group}/{resource} {:?}",
            call.name
        );
    }
    // The scenario really exercised every kind of call.
    for expected in [
        "list networking.k8s.io/ingresses",
        "watch discovery.k8s.io/endpointslices",
        "list /secrets",
        "patch networking.k8s.io/ingresses/status",
        "create events.k8s.io/events",
        "get /services",
        "get coordination.k8s.io/leases",
        "watch gateway.networking.k8s.io/httproutes",
        "list gateway.networking.k8s.io/referencegrants",
        "list /namespaces",
        "patch gateway.networking.k8s.io/gatewayclasses/status",
        "patch gateway.networking.k8s.io/gateways/status",
        "patch gateway.networking.k8s.io/httproutes/status",
        "patch gateway.networking.k8s.io/grpcroutes/status",
        "list gatehouse.dev/acmeissuers",
        "watch gatehouse.dev/acmeissuers",
    ] {
        assert!(
            kinds.contains(expected),
            "the scenario never made {expected}: {kinds:?}"
        );
    }
    // Calls no scenario without an ACME server reaches: the ACME manager
    // creates and replaces the Secrets it keeps accounts, answers and
    // certificates in (in any namespace), and an issuer's Ready condition
    // is its status.
    for (verb, group, resource) in [
        ("create", "", "secrets"),
        ("update", "", "secrets"),
        ("update", "gatehouse.dev", "acmeissuers/status"),
    ] {
        assert!(
            grants(&cluster_rules, group, resource, verb, None),
            "deploy RBAC does not allow {verb} {group}/{resource}"
        );
    }
}

/// An AcmeIssuer that no Ingress asks for.
const ACME_ISSUER: &str = "
---
apiVersion: gatehouse.dev/v1alpha1
kind: AcmeIssuer
metadata: {name: letsencrypt}
spec:
  server: https://acme-v02.api.letsencrypt.org/directory
  privateKeySecretRef: {name: letsencrypt-account}
";

/// A GatewayClass of ours, a Gateway with a listener served and one not, an
/// HTTPRoute attached to the first and naming a missing backend too.
fn gateway_api_manifests(web: std::net::SocketAddr) -> String {
    let gateway = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gatehouse, generation: 1}
spec: {controllerName: gatehouse.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: test, generation: 3}
spec:
  gatewayClassName: gatehouse
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: alt, port: 8080, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: test, generation: 2}
spec:
  parentRefs: [{name: edge}]
  hostnames: [gw.test]
  rules:
  - backendRefs: [{name: web, port: 80}]
  - matches: [{path: {value: /gone}}]
    backendRefs: [{name: missing, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: rpc, namespace: test, generation: 4}
spec:
  parentRefs: [{name: edge, sectionName: http}]
  hostnames: [rpc.test]
  rules:
  - matches: [{method: {service: shop.Cart}}]
    backendRefs: [{name: web, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: elsewhere, namespace: test}
spec:
  parentRefs: [{name: someone-elses}]
  rules:
  - backendRefs: [{name: web, port: 80}]
"#;
    [
        INGRESS_CLASS.to_owned(),
        service("web", &[web]),
        gateway.to_owned(),
    ]
    .concat()
}

fn condition(conditions: &Value, type_: &str) -> (String, String, i64) {
    let found = conditions
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {conditions}"));
    (
        found["status"].as_str().unwrap_or_default().to_owned(),
        found["reason"].as_str().unwrap_or_default().to_owned(),
        found["observedGeneration"].as_i64().unwrap_or(-1),
    )
}

#[tokio::test]
async fn the_elected_replica_writes_gateway_api_status() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.serve(&GATEWAY_API);
    api.put_manifests(&gateway_api_manifests(web.addr));
    // Another controller's entry in a route's status stays.
    let mut shop = api
        .get("gateway.networking.k8s.io/v1", "HTTPRoute", "test", "shop")
        .expect("route");
    shop["status"] = json!({"parents": [{"parentRef": {"name": "other"}, "controllerName": "example.com/other", "conditions": []}]});
    api.put(shop);
    api.put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gatehouse", "namespace": "ingress"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "ports": [{"port": 443}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}));
    let running = replica(&api, "replica-1").await;

    let get = |kind: &str, ns: &str, name: &str| {
        api.get("gateway.networking.k8s.io/v1", kind, ns, name)
            .unwrap_or_else(|| panic!("{kind} {name}"))
    };
    eventually("route status", PUBLISHED, async || {
        get("HTTPRoute", "test", "shop")["status"]["parents"]
            .as_array()
            .is_some_and(|p| p.len() == 2)
            && !get("GRPCRoute", "test", "rpc")["status"].is_null()
    })
    .await;
    let class = get("GatewayClass", "", "gatehouse");
    assert_eq!(
        condition(&class["status"]["conditions"], "Accepted"),
        ("True".into(), "Accepted".into(), 1)
    );
    let gateway = get("Gateway", "test", "edge");
    let status = &gateway["status"];
    assert_eq!(
        status["addresses"],
        json!([{"type": "IPAddress", "value": "203.0.113.7"}])
    );
    assert_eq!(
        condition(&status["conditions"], "Accepted"),
        ("True".into(), "ListenersNotValid".into(), 3)
    );
    assert_eq!(
        condition(&status["conditions"], "Programmed"),
        ("True".into(), "Programmed".into(), 3)
    );
    let listeners = status["listeners"].as_array().expect("listeners");
    assert_eq!(listeners[0]["name"], "http");
    assert_eq!(
        listeners[0]["attachedRoutes"], 2,
        "the HTTPRoute and the GRPCRoute"
    );
    assert_eq!(
        listeners[0]["supportedKinds"],
        json!([
            {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"},
            {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"}
        ])
    );
    assert_eq!(
        condition(&listeners[1]["conditions"], "Accepted"),
        ("False".into(), "PortUnavailable".into(), 3)
    );
    let parents = get("HTTPRoute", "test", "shop")["status"]["parents"].clone();
    assert_eq!(parents[0]["controllerName"], "example.com/other");
    let ours = &parents[1];
    assert_eq!(ours["controllerName"], "gatehouse.dev/gateway-controller");
    assert_eq!(ours["parentRef"]["name"], "edge");
    assert_eq!(ours["parentRef"]["namespace"], "test");
    assert_eq!(
        condition(&ours["conditions"], "Accepted"),
        ("True".into(), "Accepted".into(), 2)
    );
    assert_eq!(
        condition(&ours["conditions"], "ResolvedRefs"),
        ("False".into(), "BackendNotFound".into(), 2)
    );
    let rpc = get("GRPCRoute", "test", "rpc");
    let ours = &rpc["status"]["parents"][0];
    assert_eq!(ours["parentRef"]["sectionName"], "http");
    assert_eq!(
        condition(&ours["conditions"], "Accepted"),
        ("True".into(), "Accepted".into(), 4)
    );
    assert_eq!(
        listeners[0]["attachedRoutes"], 2,
        "the HTTPRoute and the GRPCRoute"
    );
    // Another controller's route is left alone.
    assert!(get("HTTPRoute", "test", "elsewhere")["status"].is_null());
    // And the route serves.
    let reply = http_get(running.http_addr, "gw.test", "/").await;
    assert_eq!(reply.backend(), "web");
    assert_eq!(
        http_get(running.http_addr, "gw.test", "/gone").await.status,
        http::StatusCode::INTERNAL_SERVER_ERROR
    );

    // A resync writes nothing more: the status is what it should be.
    let writes = || {
        api.calls()
            .iter()
            .filter(|c| c.method == Method::PATCH && c.group.starts_with("gateway"))
            .count()
    };
    let before = writes();
    api.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nudge", "namespace": "test"}}));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late: Vec<_> = api
        .calls()
        .into_iter()
        .filter(|c| c.method == Method::PATCH && c.group.starts_with("gateway"))
        .collect();
    assert_eq!(
        writes(),
        before,
        "status rewritten without a change: {late:#?}"
    );
    // A new generation of each is observed (the suite's
    // ObservedGenerationBump tests).
    for (kind, ns, name, generation) in [
        ("GatewayClass", "", "gatehouse", 2),
        ("Gateway", "test", "edge", 4),
        ("HTTPRoute", "test", "shop", 3),
    ] {
        let mut object = get(kind, ns, name);
        object["metadata"]["generation"] = json!(generation);
        object["spec"]["nudged"] = json!(true);
        api.put(object);
    }
    eventually("observedGeneration bumped", PUBLISHED, async || {
        let class = get("GatewayClass", "", "gatehouse");
        let gateway = get("Gateway", "test", "edge");
        let route = get("HTTPRoute", "test", "shop");
        condition(&class["status"]["conditions"], "Accepted").2 == 2
            && condition(&gateway["status"]["conditions"], "Accepted").2 == 4
            && condition(&gateway["status"]["listeners"][0]["conditions"], "Accepted").2 == 4
            && condition(&route["status"]["parents"][1]["conditions"], "Accepted").2 == 3
    })
    .await;
    // An Event on the route for its missing backend.
    eventually("an Event on the HTTPRoute", PUBLISHED, async || {
        api.list("events.k8s.io/v1", "Event")
            .iter()
            .any(|e| e["regarding"]["kind"] == "HTTPRoute" && e["reason"] == "UnresolvedRefs")
    })
    .await;
}

#[tokio::test]
async fn without_the_gateway_api_nothing_of_it_is_asked_for() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            ingress("shop", "shop.test", "/", "web", None),
        ]
        .concat(),
    );
    let running = replica(&api, "replica-1").await;
    assert_eq!(
        http_get(running.http_addr, "shop.test", "/")
            .await
            .backend(),
        "web"
    );
    let asked: Vec<_> = api
        .calls()
        .into_iter()
        .filter(|c| c.group.starts_with("gateway.networking.k8s.io"))
        .collect();
    assert!(asked.is_empty(), "{asked:?}");
}

/// A route's `status.parents` is one atomic list shared by every
/// controller whose Gateway it attaches to. Another controller's entry,
/// written between our read of the route and our write, survives: our
/// write is refused (409), the route read again and our entry merged into
/// what it holds.
#[tokio::test]
async fn another_controllers_route_status_written_meanwhile_is_kept() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.serve(&GATEWAY_API);
    api.put_manifests(&gateway_api_manifests(web.addr));
    let theirs = json!({"parentRef": {"name": "other"}, "controllerName": "example.com/other", "conditions": []});
    let entry = theirs.clone();
    api.interleave_write(
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        "test",
        "shop",
        move |route| route["status"] = json!({"parents": [entry]}),
    );
    let _running = replica(&api, "replica-1").await;

    let controllers = |route: &Value| -> Vec<String> {
        route["status"]["parents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["controllerName"].as_str().map(str::to_owned))
            .collect()
    };
    let shop = || {
        api.get("gateway.networking.k8s.io/v1", "HTTPRoute", "test", "shop")
            .expect("route")
    };
    eventually("our route status", PUBLISHED, async || {
        controllers(&shop()).contains(&"gatehouse.dev/gateway-controller".to_owned())
    })
    .await;
    assert_eq!(
        controllers(&shop()),
        ["example.com/other", "gatehouse.dev/gateway-controller"]
    );
    // Not lost and put back later: once written, it is in every version.
    let versions = api.versions("gateway.networking.k8s.io/v1", "HTTPRoute", "test", "shop");
    let since = versions
        .iter()
        .position(|v| controllers(v).contains(&"example.com/other".to_owned()))
        .expect("the other controller wrote");
    for version in &versions[since..] {
        assert!(
            version["status"]["parents"]
                .as_array()
                .is_some_and(|p| p.contains(&theirs)),
            "another controller's entry lost: {}",
            version["status"]
        );
    }
}
