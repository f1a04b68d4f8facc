//! Incremental rebuilds equal full builds: random clusters, random change
//! sequences, and after every change the patched build (`translate_next`)
//! against `translate` of the same state — routes, certificates,
//! warnings, migration summaries and the decision for a grid of requests.

use std::collections::BTreeMap;

use gatehouse::cluster::{ClusterState, Object};
use gatehouse::source::manifest;
use gatehouse::table::{Action, Decision, RequestFacts, Upstream};
use gatehouse::translate::{
    translate, translate_next, BuildKind, HostOwnership, Reuse, TranslateOptions, Translation,
};
use proptest::prelude::*;

use crate::properties::{
    annotation_names, config, ingress_object, ingress_spec, services, IngressSpec,
};
use crate::support::{tls_secret, Pki, INGRESS_CLASS};

/// An Ingress of the translate properties' kind, plus what ties hosts
/// together: a second host, a default backend (with or without rules),
/// and the annotations that reach across hosts.
#[derive(Clone, Debug)]
struct Shape {
    spec: IngressSpec,
    second_host: Option<usize>,
    default_backend: Option<usize>,
    rules: bool,
    annotations: Vec<(&'static str, &'static str)>,
}

fn shape() -> impl Strategy<Value = Shape> {
    let focus = prop::sample::select(vec![
        ("server-alias", "h1.test"),
        ("server-alias", "www.h0.test, h2.test"),
        ("from-to-www-redirect", "true"),
        ("canary", "true"),
        ("canary-weight", "50"),
        ("default-backend", "svc1"),
        ("custom-http-errors", "503"),
        ("ssl-passthrough", "true"),
        ("ssl-redirect", "false"),
        ("service-upstream", "true"),
        ("auth-tls-secret", "tls-h0"),
        ("auth-secret", "tls-h1"),
    ]);
    (
        ingress_spec(),
        prop::option::of(0..4usize),
        prop::option::of(0..3usize),
        prop::bool::weighted(0.9),
        prop::collection::vec(focus, 0..4),
    )
        .prop_map(
            |(spec, second_host, default_backend, rules, annotations)| Shape {
                spec,
                second_host,
                default_backend,
                rules,
                annotations,
            },
        )
}

fn shaped(shape: &Shape, names: &[String]) -> Object {
    let Object::Ingress(ingress) = ingress_object(&shape.spec, names) else {
        unreachable!("an Ingress")
    };
    let mut ingress = (*ingress).clone();
    let annotations = ingress
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    for (name, value) in &shape.annotations {
        annotations.insert(
            format!("nginx.ingress.kubernetes.io/{name}"),
            value.to_string(),
        );
    }
    let spec = ingress.spec.as_mut().expect("spec");
    let rules = spec.rules.as_mut().expect("rules");
    if let Some(host) = shape.second_host {
        let mut rule = rules[0].clone();
        rule.host = Some(format!("h{host}.test")).filter(|_| host < 3);
        rules.push(rule);
    }
    if let Some(service) = shape.default_backend {
        spec.default_backend = Some(
            serde_json::from_value(serde_json::json!(
                {"service": {"name": format!("svc{service}"), "port": {"number": 80}}}
            ))
            .expect("a backend"),
        );
    }
    if !shape.rules {
        spec.rules = None;
    }
    Object::Ingress(std::sync::Arc::new(ingress))
}

#[derive(Clone, Debug)]
enum Change {
    Ingress(Shape),
    DeleteIngress {
        name: usize,
        namespace: usize,
    },
    Slice {
        namespace: usize,
        service: usize,
        address: u8,
        ready: bool,
    },
    /// The slice moves to the other Service (its label changes).
    MoveSlice {
        namespace: usize,
        service: usize,
    },
    DeleteSlice {
        namespace: usize,
        service: usize,
    },
    Service {
        namespace: usize,
        service: usize,
        port: u16,
    },
    DeleteService {
        namespace: usize,
        service: usize,
    },
    Secret {
        namespace: usize,
        host: usize,
        valid: bool,
    },
    DeleteSecret {
        namespace: usize,
        host: usize,
    },
}

fn change() -> impl Strategy<Value = Change> {
    let ns = 0..2usize;
    let svc = 0..3usize;
    prop_oneof![
        4 => shape().prop_map(Change::Ingress),
        1 => (0..6usize, ns.clone()).prop_map(|(name, namespace)| Change::DeleteIngress { name, namespace }),
        2 => (ns.clone(), svc.clone(), 1..4u8, any::<bool>()).prop_map(|(namespace, service, address, ready)| {
            Change::Slice { namespace, service, address, ready }
        }),
        1 => (ns.clone(), svc.clone()).prop_map(|(namespace, service)| Change::MoveSlice { namespace, service }),
        1 => (ns.clone(), svc.clone()).prop_map(|(namespace, service)| Change::DeleteSlice { namespace, service }),
        1 => (ns.clone(), svc.clone(), prop::sample::select(vec![80u16, 81])).prop_map(|(namespace, service, port)| {
            Change::Service { namespace, service, port }
        }),
        1 => (ns.clone(), svc.clone()).prop_map(|(namespace, service)| Change::DeleteService { namespace, service }),
        2 => (ns.clone(), 0..3usize, any::<bool>()).prop_map(|(namespace, host, valid)| {
            Change::Secret { namespace, host, valid }
        }),
        1 => (ns, 0..3usize).prop_map(|(namespace, host)| Change::DeleteSecret { namespace, host }),
    ]
}

fn one(yaml: &str) -> Object {
    manifest::parse(yaml)
        .expect("manifest")
        .pop()
        .expect("one object")
}

fn slice(namespace: usize, service: usize, label: usize, address: u8, ready: bool) -> Object {
    one(&format!(
        "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc{service}-x
  namespace: ns{namespace}
  labels: {{kubernetes.io/service-name: svc{label}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints: [{{addresses: [\"198.18.{namespace}.{address}\"], conditions: {{ready: {ready}}}}}]
"
    ))
}

fn service(namespace: usize, service: usize, port: u16) -> Object {
    one(&format!(
        "apiVersion: v1
kind: Service
metadata: {{name: svc{service}, namespace: ns{namespace}}}
spec:
  ports: [{{name: http, port: {port}}}]
"
    ))
}

fn secret(namespace: usize, host: usize, pki: Option<&Pki>) -> Object {
    let name = format!("tls-h{host}");
    let yaml = match pki {
        Some(pki) => tls_secret(&name, &pki.leaf(&format!("h{host}.test"))),
        None => format!(
            "apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: test}}
type: kubernetes.io/tls
stringData: {{tls.crt: broken, tls.key: broken}}
"
        ),
    };
    one(&yaml.replace("namespace: test", &format!("namespace: ns{namespace}")))
}

fn apply(state: &mut ClusterState, change: &Change, names: &[String], pki: &Pki) {
    match change {
        Change::Ingress(shape) => drop(state.insert(shaped(shape, names))),
        Change::DeleteIngress { name, namespace } => {
            let spec = IngressSpec::named(*name, *namespace);
            state.remove(&ingress_object(&spec, names));
        }
        Change::Slice {
            namespace,
            service,
            address,
            ready,
        } => drop(state.insert(slice(*namespace, *service, *service, *address, *ready))),
        Change::MoveSlice { namespace, service } => {
            let label = (service + 1) % 3;
            state.insert(slice(*namespace, *service, label, 9, true));
        }
        Change::DeleteSlice { namespace, service } => {
            state.remove(&slice(*namespace, *service, *service, 1, true))
        }
        Change::Service {
            namespace,
            service: s,
            port,
        } => drop(state.insert(service(*namespace, *s, *port))),
        Change::DeleteService {
            namespace,
            service: s,
        } => state.remove(&service(*namespace, *s, 80)),
        Change::Secret {
            namespace,
            host,
            valid,
        } => drop(state.insert(secret(*namespace, *host, valid.then_some(pki)))),
        Change::DeleteSecret { namespace, host } => state.remove(&secret(*namespace, *host, None)),
    }
}

/// Everything a build decides, as text: `gatehouse routes`, and the
/// answer to each request of a grid, with the host's passthrough and
/// client-certificate policy.
fn view(t: &Translation) -> String {
    let mut out = gatehouse::report::render(&t.table, &t.warnings, &[], &t.summary_list());
    let headers = http::HeaderMap::new();
    let hosts = [
        "h0.test",
        "h1.test",
        "h2.test",
        "www.h0.test",
        "www.h1.test",
        "other.test",
        "demo.gatehouse.test",
    ];
    for host in hosts {
        out.push_str(&format!(
            "{host}: passthrough {:?} client certificates {} certificate {:?}\n",
            t.table.passthrough_for(host).map(|b| b.service.to_string()),
            t.table.client_auth_for(host).is_some(),
            t.table.certs.resolve(host).map(|c| c.secret.to_string()),
        ));
        for path in ["/", "/a", "/b", "/a/b", "/ab", "/c"] {
            for tls in [false, true] {
                let facts = RequestFacts {
                    host,
                    method: &http::Method::GET,
                    headers: &headers,
                    path,
                    query: None,
                    tls,
                    port: 80,
                    client: "192.0.2.10".parse().expect("address"),
                    peer: None,
                };
                let decision = match t.table.decide(&facts) {
                    Decision::Forward(f) => format!(
                        "forward {}:{} {:?} {:?} rewritten {:?} authenticate {}",
                        f.backend.service,
                        f.backend.port,
                        f.route.ingress,
                        f.route.path,
                        f.rewritten,
                        f.authenticate
                    ),
                    Decision::Redirect { location, status } => {
                        format!("redirect {status} {location:?}")
                    }
                    Decision::Respond(status) => format!("respond {status}"),
                    Decision::Answer(answered) => format!("answer {answered:?}"),
                    // Its route, URI and edits, compared whole.
                    Decision::Snippet(part) => format!("with a snippet: {part:?}"),
                };
                out.push_str(&format!("{host}{path} tls={tls}: {decision}\n"));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn an_incremental_build_equals_a_full_build(
        initial in prop::collection::vec(shape(), 1..8),
        changes in prop::collection::vec(change(), 1..12),
        owned in any::<bool>(),
    ) {
        let names = annotation_names();
        let pki = Pki::new();
        let options = TranslateOptions {
            host_ownership: if owned { HostOwnership::Namespace } else { HostOwnership::Shared },
            ..TranslateOptions::default()
        };
        let text = format!("{INGRESS_CLASS}{}", services());
        let mut objects = manifest::parse(&text).expect("manifests parse");
        objects.extend(initial.iter().map(|shape| shaped(shape, &names)));
        let mut latest: BTreeMap<(String, String, String), Object> = BTreeMap::new();
        for object in objects {
            let (kind, ns, name) = object.id();
            latest.insert((kind.to_owned(), ns.to_owned(), name.to_owned()), object);
        }
        let mut state = ClusterState::from_objects(latest.into_values());
        let (first, kind) = translate_next(&state, &options, Reuse::default());
        prop_assert_eq!(kind, BuildKind::Full);
        let mut reuse = first.reuse;
        for (step, change) in changes.iter().enumerate() {
            apply(&mut state, change, &names, &pki);
            let (mut patched, kind) = translate_next(&state, &options, reuse);
            prop_assert_eq!(kind, BuildKind::Incremental, "step {}: {:?}", step, change);
            let full = translate(&state, &options);
            prop_assert_eq!(view(&patched), view(&full), "step {}: {:?}", step, change);
            prop_assert_eq!(&patched.gateway_status, &full.gateway_status);
            reuse = std::mem::take(&mut patched.reuse);
        }
    }
}

/// A change the journal cannot describe to every host (an IngressClass)
/// makes a full build, and so does a state that does not continue the
/// previous one.
#[test]
fn global_changes_and_new_states_build_in_full() {
    let names = annotation_names();
    let text = format!("{INGRESS_CLASS}{}", services());
    let mut objects = manifest::parse(&text).expect("manifests parse");
    objects.push(ingress_object(&IngressSpec::named(0, 0), &names));
    let options = TranslateOptions::default();
    let mut state = ClusterState::from_objects(objects.clone());
    let (t, kind) = translate_next(&state, &options, Reuse::default());
    assert_eq!(kind, BuildKind::Full);
    state.insert(service(0, 1, 80));
    let (mut t, kind) = translate_next(&state, &options, t.reuse);
    assert_eq!(kind, BuildKind::Incremental);
    state.insert(one(INGRESS_CLASS));
    let (mut t, kind) = translate_next(&state, &options, std::mem::take(&mut t.reuse));
    assert_eq!(kind, BuildKind::Full);
    let fresh = ClusterState::from_objects(objects);
    let (_, kind) = translate_next(&fresh, &options, std::mem::take(&mut t.reuse));
    assert_eq!(kind, BuildKind::Full);
}

/// With HTTPRoutes beside the Ingresses (the Gateway demo): Ingresses
/// joining and leaving the HTTPRoutes' host and others, and the
/// HTTPRoutes' backend's endpoints changing, build incrementally and equal
/// full builds, status included.
#[test]
fn with_httproutes_an_incremental_build_equals_a_full_build() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gateway-demo");
    let mut text = format!("{INGRESS_CLASS}{}", services());
    for file in ["gateway.yaml", "secret.yaml", "service.yaml"] {
        let yaml = std::fs::read_to_string(format!("{demo}/{file}")).expect("demo manifest");
        text.push_str(&format!("\n---\n{yaml}"));
    }
    let mut state = ClusterState::from_objects(manifest::parse(&text).expect("manifests"));
    let options = TranslateOptions::default();
    let (first, kind) = translate_next(&state, &options, Reuse::default());
    assert_eq!(kind, BuildKind::Full);
    assert!(
        view(&first).contains("demo.gatehouse.test/ tls=true: forward demo/demo-backend"),
        "{}",
        view(&first)
    );
    let shared = |path: &str| {
        one(&format!(
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: beside, namespace: ns0}}
spec:
  ingressClassName: gatehouse
  rules:
  - host: demo.gatehouse.test
    http: {{paths: [{{path: {path}, pathType: Prefix, backend: {{service: {{name: svc0, port: {{number: 80}}}}}}}}]}}
"
        ))
    };
    let elsewhere = one(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: elsewhere, namespace: ns1}
spec:
  ingressClassName: gatehouse
  rules:
  - host: h1.test
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: svc1, port: {number: 80}}}}]}
",
    );
    let demo_slice = |address: &str| {
        one(&format!(
            "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: demo-backend-1
  namespace: demo
  labels: {{kubernetes.io/service-name: demo-backend}}
addressType: IPv4
ports: [{{name: http, port: 9080}}]
endpoints: [{{addresses: [\"{address}\"]}}]
"
        ))
    };
    // (object, whether it is put or removed)
    let steps = [
        (shared("/ingress"), true),
        (elsewhere, true),
        (demo_slice("198.18.0.7"), true),
        (shared("/"), true),
        (shared("/"), false),
        (demo_slice("198.18.0.7"), false),
    ];
    let mut reuse = first.reuse;
    for (step, (object, put)) in steps.into_iter().enumerate() {
        if put {
            state.insert(object);
        } else {
            state.remove(&object);
        }
        let (mut patched, kind) = translate_next(&state, &options, reuse);
        assert_eq!(kind, BuildKind::Incremental, "step {step}");
        let full = translate(&state, &options);
        assert_eq!(view(&patched), view(&full), "step {step}");
        assert_eq!(patched.gateway_status, full.gateway_status, "step {step}");
        reuse = std::mem::take(&mut patched.reuse);
    }
}

/// A rolling update of a Service that many Ingresses share: each change of
/// its EndpointSlice puts the new ready endpoints in place in the one
/// backend they all forward to, and rebuilds no host (the new table shares
/// every host with the one before) however many Ingresses name it. When a
/// change leaves it with no ready endpoint, a route with
/// `default-backend` falls back to another Service: then the hosts are
/// rebuilt.
#[test]
fn a_rolling_update_of_a_shared_service_rebuilds_no_host() {
    let hosts = 300;
    let mut text = INGRESS_CLASS.to_string();
    for svc in ["shared", "fallback"] {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: ns}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n"
        ));
    }
    text.push_str(&shared_slice("fallback", &[(9, true)]));
    text.push_str(&shared_slice("shared", &[(1, true), (2, true)]));
    for i in 0..hosts {
        let annotations = if i == 0 {
            "\n  annotations: {nginx.ingress.kubernetes.io/default-backend: fallback}"
        } else {
            ""
        };
        text.push_str(&format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: i{i}\n  namespace: ns{annotations}\nspec:\n  ingressClassName: gatehouse\n  rules:\n  - host: h{i}.test\n    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: shared, port: {{name: http}}}}}}}}]}}\n"
        ));
    }
    let options = TranslateOptions::default();
    let mut state = ClusterState::from_objects(manifest::parse(&text).expect("manifests"));
    let (first, _) = translate_next(&state, &options, Reuse::default());
    let (mut table, mut reuse) = (first.table, first.reuse);
    // Where a host's route forwards: the backend and its endpoints now.
    let target = |table: &gatehouse::table::RouteTable, host: &str| {
        let route = table
            .routes()
            .into_iter()
            .find(|r| r.host.to_string() == host)
            .expect("a route for the host");
        let Action::Forward(backend) = &route.action else {
            return "unavailable".to_owned();
        };
        let endpoints = match &*backend.upstream() {
            Upstream::Endpoints(set) if set.is_empty() => "none ready (503)".to_owned(),
            Upstream::Endpoints(set) => {
                let addrs: Vec<String> = set.addrs().iter().map(|a| a.to_string()).collect();
                addrs.join(",")
            }
            Upstream::External(name) => name.to_string(),
        };
        format!("{}:{} {endpoints}", backend.service, backend.port)
    };
    assert_eq!(
        target(&table, "h7.test"),
        "ns/shared:http 198.18.0.1:8080,198.18.0.2:8080"
    );

    // Pods replaced one by one: endpoints change, never to none.
    let steps: [&[(u8, bool)]; 3] = [
        &[(1, true), (2, true), (3, false)],
        &[(2, true), (3, true)],
        &[(3, true), (4, true)],
    ];
    for endpoints in steps {
        insert(&mut state, &shared_slice("shared", endpoints));
        let (mut next, kind) = translate_next(&state, &options, reuse);
        assert_eq!(kind, BuildKind::Incremental);
        let diff = table.differences(&next.table);
        assert!(
            diff.routes.is_empty(),
            "{} hosts rebuilt",
            diff.routes.len()
        );
        let full = translate(&state, &options);
        assert_eq!(view(&next), view(&full));
        reuse = std::mem::take(&mut next.reuse);
        table = next.table;
    }
    assert_eq!(
        target(&table, "h7.test"),
        "ns/shared:http 198.18.0.3:8080,198.18.0.4:8080"
    );
    assert_eq!(
        target(&table, "h0.test"),
        "ns/shared:http 198.18.0.3:8080,198.18.0.4:8080"
    );

    // None ready: h0's route now goes to its default-backend. Every
    // Ingress that names the Service is translated again, here all of
    // them: a full build.
    insert(
        &mut state,
        &shared_slice("shared", &[(3, false), (4, false)]),
    );
    let (next, kind) = translate_next(&state, &options, reuse);
    assert_eq!(kind, BuildKind::Full);
    assert_eq!(view(&next), view(&translate(&state, &options)));
    assert!(!table.differences(&next.table).routes.is_empty());
    assert_eq!(
        target(&next.table, "h0.test"),
        "ns/fallback:80 198.18.0.9:8080"
    );
    assert_eq!(
        target(&next.table, "h7.test"),
        "ns/shared:http none ready (503)"
    );
}

fn shared_slice(service: &str, endpoints: &[(u8, bool)]) -> String {
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|(a, ready)| {
            format!("{{addresses: [\"198.18.0.{a}\"], conditions: {{ready: {ready}}}}}")
        })
        .collect();
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-1, namespace: ns, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{}]\n",
        endpoints.join(", ")
    )
}

fn insert(state: &mut ClusterState, text: &str) {
    for object in manifest::parse(text).expect("manifest") {
        state.insert(object);
    }
}
