//! Property tests: the parsers never panic on any input, translate is a
//! pure function of the cluster state (whatever order the objects come
//! in), and the path router agrees with a reference implementation of
//! Kubernetes' matching rules.

use std::collections::BTreeMap;
use std::sync::Arc;

use gatehouse::cluster::{ClusterState, Object};
use gatehouse::source::manifest;
use gatehouse::table::{PathTableBuilder, PathType};
use gatehouse::translate::{translate, TranslateOptions};
use k8s_openapi::api::networking::v1::Ingress;
use proptest::prelude::*;

use crate::support::INGRESS_CLASS;

pub(crate) fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------ path router

/// Kubernetes' rules, written plainly: `Exact` matches the whole path;
/// `Prefix` matches whole `/`-separated elements, a trailing slash
/// ignored. The longest rule wins; at equal length `Exact` wins.
fn reference(rules: &[(String, PathType)], path: &str) -> Option<usize> {
    let matches = |(rule, kind): &(String, PathType)| match kind {
        PathType::Exact => path == rule,
        _ => {
            let base = rule.trim_end_matches('/');
            base.is_empty() || path == base || path.starts_with(&format!("{base}/"))
        }
    };
    let length = |(rule, kind): &(String, PathType)| match kind {
        PathType::Exact => rule.len(),
        _ => rule.trim_end_matches('/').len(),
    };
    rules
        .iter()
        .enumerate()
        .filter(|(_, r)| matches(r))
        .max_by_key(|(i, r)| (length(r), r.1 == PathType::Exact, std::cmp::Reverse(*i)))
        .map(|(i, _)| i)
}

fn segment() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "ab", "a.b", "a-b", "c"]).prop_map(str::to_owned)
}

fn path() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 0..4), any::<bool>()).prop_map(|(parts, slash)| {
        let mut path = format!("/{}", parts.join("/"));
        if slash && path.len() > 1 {
            path.push('/');
        }
        path
    })
}

fn rule() -> impl Strategy<Value = (String, PathType)> {
    (
        path(),
        prop::sample::select(vec![PathType::Exact, PathType::Prefix]),
    )
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn the_path_router_agrees_with_kubernetes_rules(
        rules in prop::collection::vec(rule(), 1..12),
        requests in prop::collection::vec(path(), 1..16),
    ) {
        // An equal rule (same type, same path once normalised) is refused
        // by the table as by Kubernetes' validation: keep the first.
        let mut kept: Vec<(String, PathType)> = Vec::new();
        let mut builder = PathTableBuilder::default();
        for (path, kind) in &rules {
            if builder.add(path, *kind, kept.len()).is_ok() {
                kept.push((path.clone(), *kind));
            }
        }
        let table = builder.build();
        for request in &requests {
            let got = table.lookup(request).copied();
            let want = reference(&kept, request);
            // Equal-length Prefix rules that differ only by a trailing
            // slash are one rule to both.
            let same = match (got, want) {
                (Some(g), Some(w)) => {
                    let norm = |(p, k): &(String, PathType)| (p.trim_end_matches('/').to_owned(), *k);
                    norm(&kept[g]) == norm(&kept[w])
                }
                (g, w) => g == w,
            };
            prop_assert!(same, "{request}: table {:?}, reference {:?}, rules {kept:?}",
                got.map(|g| &kept[g]), want.map(|w| &kept[w]));
        }
    }
}

// ------------------------------------------------------------ translate

/// Annotation names ingress-nginx documents (docs/annotations.md's table).
pub(crate) fn annotation_names() -> Vec<String> {
    let rows = crate::annotation_coverage::rows().into_iter();
    rows.map(|(name, _)| format!("nginx.ingress.kubernetes.io/{name}"))
        .collect()
}

/// Values an annotation may be given, sensible or not.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "true",
            "false",
            "0",
            "1",
            "-1",
            "10m",
            "1024",
            "99999999999999999999",
            "10.0.0.0/8",
            "10.0.0.0/33, ::1/129",
            "GET, POST",
            "https://a.test",
            "$1",
            "/(.*)",
            "(",
            "cookie",
            "default/secret",
            "../x",
            "ns/",
            "*",
            "",
            "503,504",
            "300s",
            "Exact",
            "$request_uri",
            "a,b,,c",
            "h1.test",
            "www.h0.test, h2.test",
            "svc1",
        ])
        .prop_map(str::to_owned),
        ".{0,40}",
        "[0-9a-z,/ :.$()*-]{0,60}",
    ]
}

#[derive(Clone, Debug)]
pub(crate) struct IngressSpec {
    pub(crate) name: usize,
    pub(crate) namespace: usize,
    pub(crate) host: usize,
    paths: Vec<(String, &'static str, usize)>,
    annotations: Vec<(usize, String)>,
    created: u32,
    tls: bool,
}

impl IngressSpec {
    /// The plainest Ingress of this name: one `/` rule on h0.test.
    pub(crate) fn named(name: usize, namespace: usize) -> Self {
        IngressSpec {
            name,
            namespace,
            host: 0,
            paths: vec![("/".into(), "Prefix", 0)],
            annotations: Vec::new(),
            created: 0,
            tls: false,
        }
    }
}

pub(crate) fn ingress_spec() -> impl Strategy<Value = IngressSpec> {
    (
        0..6usize,
        0..2usize,
        0..3usize,
        prop::collection::vec(
            (
                path(),
                prop::sample::select(vec!["Exact", "Prefix", "ImplementationSpecific"]),
                0..3usize,
            ),
            1..4,
        ),
        prop::collection::vec((any::<usize>(), value()), 0..4),
        0..5u32,
        any::<bool>(),
    )
        .prop_map(
            |(name, namespace, host, paths, annotations, created, tls)| IngressSpec {
                name,
                namespace,
                host,
                paths,
                annotations,
                created,
                tls,
            },
        )
}

pub(crate) fn ingress_object(spec: &IngressSpec, names: &[String]) -> Object {
    let annotations: BTreeMap<&str, &str> = spec
        .annotations
        .iter()
        .map(|(i, v)| (names[i % names.len()].as_str(), v.as_str()))
        .collect();
    let paths: Vec<serde_json::Value> = spec
        .paths
        .iter()
        .map(|(path, kind, service)| {
            serde_json::json!({"path": path, "pathType": kind,
                "backend": {"service": {"name": format!("svc{service}"), "port": {"number": 80}}}})
        })
        .collect();
    let host = format!("h{}.test", spec.host);
    let mut value = serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": format!("i{}", spec.name),
            "namespace": format!("ns{}", spec.namespace),
            "creationTimestamp": format!("2026-01-0{}T00:00:00Z", spec.created + 1),
            "annotations": annotations,
        },
        "spec": {
            "ingressClassName": "gatehouse",
            "rules": [{"host": host, "http": {"paths": paths}}],
        },
    });
    if spec.tls {
        value["spec"]["tls"] =
            serde_json::json!([{"hosts": [host], "secretName": format!("tls-h{}", spec.host)}]);
    }
    let ingress: Ingress = serde_json::from_value(value).expect("an Ingress");
    Object::Ingress(Arc::new(ingress))
}

pub(crate) fn services() -> String {
    let mut out = String::new();
    for ns in 0..2 {
        for svc in 0..2 {
            out.push_str(&format!(
                "---
apiVersion: v1
kind: Service
metadata: {{name: svc{svc}, namespace: ns{ns}}}
spec:
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc{svc}-x
  namespace: ns{ns}
  labels: {{kubernetes.io/service-name: svc{svc}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints: [{{addresses: [\"198.18.{ns}.{svc}\"]}}]
"
            ));
        }
    }
    out
}

/// What a translation shows: the routes, certificates and warnings as
/// `gatehouse routes` prints them.
fn rendered(state: &ClusterState) -> String {
    let t = translate(state, &TranslateOptions::default());
    gatehouse::report::render(&t.table, &t.warnings, &[], &t.summary_list())
}

proptest! {
    #![proptest_config(config(96))]

    /// Random Ingress sets, with random annotation values: translate never
    /// panics, and its table is the same whatever order the objects
    /// arrive in.
    #[test]
    fn translate_is_a_pure_function_of_the_state(
        specs in prop::collection::vec(ingress_spec(), 1..8),
        seed in any::<u64>(),
    ) {
        let names = annotation_names();
        let text = format!("{INGRESS_CLASS}{}", services());
        let mut objects = manifest::parse(&text).expect("manifests parse");
        objects.extend(specs.iter().map(|spec| ingress_object(spec, &names)));
        // Later duplicates of a name replace earlier ones, as a watch would.
        let mut latest: BTreeMap<(String, String, String), Object> = BTreeMap::new();
        for object in objects {
            let (kind, ns, name) = object.id();
            latest.insert((kind.to_owned(), ns.to_owned(), name.to_owned()), object);
        }
        let objects: Vec<Object> = latest.into_values().collect();
        let forward = ClusterState::from_objects(objects.clone());
        let mut shuffled = objects;
        let mut rng = fastrand::Rng::with_seed(seed);
        rng.shuffle(&mut shuffled);
        let backward = ClusterState::from_objects(shuffled);
        prop_assert_eq!(rendered(&forward), rendered(&backward));
    }

    /// Any annotation with any value: translate gives an answer (a route,
    /// a warning, a closed route), never a panic.
    #[test]
    fn every_annotation_takes_any_value(index in any::<usize>(), value in value()) {
        let names = annotation_names();
        let name = &names[index % names.len()];
        let mut ingress: Ingress = serde_yaml_ng::from_str(
            "metadata: {name: probe, namespace: ns0}
spec:
  ingressClassName: gatehouse
  rules:
  - host: probe.test
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: svc0, port: {number: 80}}}}]}",
        )
        .expect("ingress");
        ingress.metadata.annotations = Some([(name.clone(), value)].into());
        let mut objects = manifest::parse(&format!("{INGRESS_CLASS}{}", services())).expect("parse");
        objects.push(Object::Ingress(Arc::new(ingress)));
        let state = ClusterState::from_objects(objects);
        let t = translate(&state, &TranslateOptions::default());
        prop_assert!(!t.table.routes().is_empty() || !t.warnings.is_empty());
    }
}

// ------------------------------------------------------------ manifests

/// The translate fixtures, the demo and the Gateway API manifests: real
/// documents to cut and corrupt.
fn corpus() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut texts = Vec::new();
    for dir in [
        "tests/fixtures/translate",
        "tests/fixtures/gateway-api",
        "examples/demo",
    ] {
        for entry in std::fs::read_dir(root.join(dir)).expect("dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                texts.push(std::fs::read_to_string(path).expect("read"));
            }
        }
    }
    texts
}

proptest! {
    #![proptest_config(config(256))]

    /// Manifests cut short, with bytes flipped, or made of noise: parsing
    /// answers with objects or an error, never a panic; and what parses
    /// translates.
    #[test]
    fn manifest_parsing_takes_any_text(
        pick in any::<usize>(),
        cut in any::<usize>(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        noise in ".{0,200}",
    ) {
        let corpus = corpus();
        let mut bytes = corpus[pick % corpus.len()].clone().into_bytes();
        let len = bytes.len();
        for (at, byte) in flips {
            bytes[at % len] = byte;
        }
        bytes.truncate(cut % (len + 1));
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        text.push_str(&noise);
        if let Ok(objects) = manifest::parse(&text) {
            let _ = translate(&ClusterState::from_objects(objects), &TranslateOptions::default());
        }
    }
}
