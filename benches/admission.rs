//! Admission benchmark: one AdmissionReview judged with 10,000 Ingresses
//! in the served state (or the sizes given: `cargo bench --bench
//! admission -- 1000 50000`).
//!
//! Each review is the JSON body the API server sends, answered by
//! `Reviewer::answer` (parse, copy of the state with the candidate,
//! scope, translate, verdict, response JSON): what the webhook does
//! between reading a body and writing the answer. Reported per size, over
//! `REVIEWS` reviews of each shape: p50, p99 and the slowest.
//! - first: the first review, which builds the host index whole;
//! - new host: CREATE of an Ingress on a host no other serves;
//! - shared host: CREATE of an Ingress on a host three others serve;
//! - refused: CREATE of an Ingress with an nginx snippet;
//! - after a change: UPDATE of a stored Ingress, the served state having
//!   changed one Ingress since the previous review (the index follows the
//!   journal).

use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse::admission::Reviewer;
use gatehouse::cluster::{ClusterState, Object};
use gatehouse::translate::{AdmissionOptions, TranslateOptions};
use serde_json::{json, Value};

/// The allocator of the `gatehouse` binary, so that the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REVIEWS: usize = 2000;

/// Every fourth host is served by four Ingresses (different paths).
const SHARED_EVERY: usize = 4;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000]
    } else {
        sizes
    };
    for size in sizes {
        run(size);
    }
}

fn host(i: usize) -> String {
    match i % SHARED_EVERY {
        0 => format!("shared-{}.bench.test", i / SHARED_EVERY),
        _ => format!("host-{i}.bench.test"),
    }
}

fn ingress(name: &str, host: &str, path: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name, "namespace": "bench", "uid": format!("uid-{name}"),
            "creationTimestamp": "2030-01-01T00:00:00Z", "generation": 1,
            "annotations": annotations,
        },
        "spec": {
            "ingressClassName": "gatehouse",
            "tls": [{"hosts": [host], "secretName": "bench-tls"}],
            "rules": [{"host": host, "http": {"paths": [{
                "path": path, "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}
            }]}}]
        }
    })
}

fn stored(i: usize) -> Value {
    let annotations = json!({
        "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
        "nginx.ingress.kubernetes.io/ssl-redirect": "true",
    });
    ingress(
        &format!("ing-{i}"),
        &host(i),
        &format!("/p{i}"),
        annotations,
    )
}

fn object(value: Value) -> Object {
    match value["kind"].as_str() {
        Some("Ingress") => {
            Object::Ingress(Arc::new(serde_json::from_value(value).expect("Ingress")))
        }
        Some("Service") => {
            Object::Service(Arc::new(serde_json::from_value(value).expect("Service")))
        }
        Some("IngressClass") => {
            Object::IngressClass(Arc::new(serde_json::from_value(value).expect("class")))
        }
        other => panic!("unexpected kind {other:?}"),
    }
}

fn cluster(size: usize) -> ClusterState {
    let mut state = ClusterState::default();
    state.insert(object(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "gatehouse"},
        "spec": {"controller": "gatehouse.dev/ingress-controller"}
    })));
    state.insert(object(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "bench"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]}
    })));
    for i in 0..size {
        state.insert(object(stored(i)));
    }
    state
}

fn review(operation: &str, object: Value) -> Vec<u8> {
    let gvk = json!({"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"});
    let gvr = json!({"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"});
    let old = match operation {
        "UPDATE" => object.clone(),
        _ => Value::Null,
    };
    serde_json::to_vec(&json!({
        "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": object["metadata"]["name"], "namespace": "bench",
            "operation": operation,
            "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
            "object": object, "oldObject": old, "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    }))
    .expect("json")
}

/// p50, p99 and the slowest of `samples`.
fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  {what:<16} p50 {:>7.3} ms   p99 {:>7.3} ms   max {:>7.3} ms   ({} reviews)",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(at(1.0)),
        samples.len()
    );
}

fn timed(reviewer: &Reviewer, body: &[u8], allowed: bool) -> Duration {
    let started = Instant::now();
    let answer = reviewer.answer(body).expect("answer");
    let took = started.elapsed();
    let answer: Value = serde_json::from_slice(&answer).expect("json answer");
    assert_eq!(answer["response"]["allowed"], allowed, "{answer}");
    took
}

fn run(size: usize) {
    println!("{size} Ingresses");
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(cluster(size)));
    let options = Arc::new(TranslateOptions::default());
    let metrics = Arc::new(gatehouse::metrics::Metrics::new());
    let reviewer = Reviewer::new(rx, options, AdmissionOptions::default(), metrics);

    let fresh = |i: usize, host: &str| ingress(&format!("new-{i}"), host, "/new", json!({}));
    let first = review("CREATE", fresh(0, "first.bench.test"));
    report("first", vec![timed(&reviewer, &first, true)]);

    let new_host: Vec<Duration> = (0..REVIEWS)
        .map(|i| {
            let body = review("CREATE", fresh(i, &format!("new-{i}.bench.test")));
            timed(&reviewer, &body, true)
        })
        .collect();
    report("new host", new_host);

    let shared: Vec<Duration> = (0..REVIEWS)
        .map(|i| {
            let body = review("CREATE", fresh(i, &host((i * SHARED_EVERY) % size)));
            timed(&reviewer, &body, true)
        })
        .collect();
    report("shared host", shared);

    let snippet = json!({"nginx.ingress.kubernetes.io/configuration-snippet": "load_module x.so;"});
    let refused: Vec<Duration> = (0..REVIEWS)
        .map(|i| {
            let evil = ingress(
                &format!("evil-{i}"),
                &host(i % size),
                "/evil",
                snippet.clone(),
            );
            timed(&reviewer, &review("CREATE", evil), false)
        })
        .collect();
    report("refused", refused);

    let changed: Vec<Duration> = (0..REVIEWS)
        .map(|i| {
            let mut state = ClusterState::clone(&tx.borrow());
            let mut moved = stored((i * 7) % size);
            moved["spec"]["rules"][0]["http"]["paths"][0]["path"] = json!(format!("/moved{i}"));
            state.insert(object(moved));
            tx.send_replace(Arc::new(state));
            timed(&reviewer, &review("UPDATE", stored((i * 13) % size)), true)
        })
        .collect();
    report("after a change", changed);
}
