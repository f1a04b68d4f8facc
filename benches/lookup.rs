//! Hot-path micro-benchmarks: the per-request routing decision and the
//! per-handshake certificate choice, in a table of 10,000 hosts; the
//! forwarded-header rewriting of a typical browser request; and the full
//! table build for the same cluster.
//!
//! Run: `cargo bench --bench lookup`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use gatehouse::cluster::ClusterState;
use gatehouse::connection::{prepare_request, ConnInfo};
use gatehouse::source::manifest;
use gatehouse::table::RequestFacts;
use gatehouse::translate::{translate, TranslateOptions};
use http::{HeaderMap, HeaderValue};

const HOSTS: usize = 10_000;

/// The allocator of the `gatehouse` binary, so that the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A cluster of `HOSTS` Ingresses, one host each with three paths, a
/// Service with three endpoints, and TLS from one shared Secret.
fn cluster() -> ClusterState {
    let cert = rcgen::generate_simple_self_signed(vec!["*.bench.test".to_owned()]).expect("cert");
    let mut text = format!(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {{name: gatehouse}}\n\
         spec: {{controller: gatehouse.dev/ingress-controller}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: tls}}\ntype: kubernetes.io/tls\n\
         stringData:\n  tls.crt: {:?}\n  tls.key: {:?}\n",
        cert.cert.pem(),
        cert.signing_key.serialize_pem()
    );
    for i in 0..HOSTS {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}}}\n\
             spec: {{ports: [{{port: 80, targetPort: 8080}}]}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: svc{i}-a, labels: {{kubernetes.io/service-name: svc{i}}}}}\n\
             addressType: IPv4\nports: [{{port: 8080}}]\n\
             endpoints: [{{addresses: [\"10.{}.{}.1\"]}}, {{addresses: [\"10.{}.{}.2\"]}}, {{addresses: [\"10.{}.{}.3\"]}}]\n---\n\
             apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ing{i}}}\n\
             spec:\n  ingressClassName: gatehouse\n  tls: [{{hosts: [host{i}.bench.test], secretName: tls}}]\n  rules:\n\
             \x20 - host: host{i}.bench.test\n    http:\n      paths:\n\
             \x20     - {{path: /, pathType: Prefix, backend: {{service: {{name: svc{i}, port: {{number: 80}}}}}}}}\n\
             \x20     - {{path: /api, pathType: Prefix, backend: {{service: {{name: svc{i}, port: {{number: 80}}}}}}}}\n\
             \x20     - {{path: /api/v1/items, pathType: Exact, backend: {{service: {{name: svc{i}, port: {{number: 80}}}}}}}}\n",
            i / 256 % 256, i % 256, i / 256 % 256, i % 256, i / 256 % 256, i % 256
        ));
    }
    ClusterState::from_objects(manifest::parse(&text).expect("generated manifests parse"))
}

fn benches(c: &mut Criterion) {
    let state = cluster();
    let options = TranslateOptions::default();
    let table = translate(&state, &options).table;
    assert_eq!(table.routes().len(), HOSTS * 3);

    let headers = http::HeaderMap::new();
    let facts = |host: &'static str, path: &'static str| RequestFacts {
        host,
        method: &http::Method::GET,
        headers: &headers,
        path,
        query: Some("page=2"),
        tls: true,
        port: 443,
        client: "192.0.2.10".parse().expect("ip"),
        peer: None,
    };
    let prefix = facts("host4242.bench.test", "/api/v2/users/17");
    c.bench_function("decide/10k-hosts/prefix-hit", |b| {
        b.iter(|| table.decide(black_box(&prefix)))
    });
    let exact = facts("Host4242.Bench.Test:443", "/api/v1/items");
    c.bench_function("decide/10k-hosts/exact-hit-with-port-and-case", |b| {
        b.iter(|| table.decide(black_box(&exact)))
    });
    let unknown = facts("nobody.example", "/");
    c.bench_function("decide/10k-hosts/unknown-host-404", |b| {
        b.iter(|| table.decide(black_box(&unknown)))
    });
    c.bench_function("sni/10k-hosts/resolve", |b| {
        b.iter(|| {
            table
                .certs
                .resolve(black_box("host9999.bench.test"))
                .is_some()
        })
    });
    let conn = ConnInfo::new(
        "192.0.2.10:50123".parse().expect("addr"),
        "10.0.0.5:8443".parse().expect("addr"),
        true,
    );
    let browser = browser_request();
    let host = HeaderValue::from_static("host4242.bench.test");
    c.bench_function("headers/browser-request/prepare", |b| {
        b.iter_batched_ref(
            || browser.clone(),
            |headers| prepare_request(headers, &conn, &host, false),
            BatchSize::SmallInput,
        )
    });
    let mut group = c.benchmark_group("translate");
    group.sample_size(10);
    group.bench_function("10k-ingresses/full-build", |b| {
        b.iter(|| translate(black_box(&state), &options))
    });
    group.finish();
}

/// The headers of a browser's GET, as a client sends them.
fn browser_request() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("host", "host4242.bench.test"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("connection", "keep-alive"),
        ("cookie", "session=3f1c0e9a7b; theme=dark"),
        ("upgrade-insecure-requests", "1"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    h
}

criterion_group!(lookup, benches);
criterion_main!(lookup);
