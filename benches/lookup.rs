//! Hot-path micro-benchmarks: the per-request routing decision and the
//! per-handshake certificate choice, in a table of 10,000 hosts; and the
//! full table build for the same cluster.
//!
//! Run: `cargo bench --bench lookup`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::cluster::ClusterState;
use gatehouse::source::manifest;
use gatehouse::table::RequestFacts;
use gatehouse::translate::{translate, TranslateOptions};

const HOSTS: usize = 10_000;

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

    let facts = |host: &'static str, path: &'static str| RequestFacts {
        host,
        path,
        query: Some("page=2"),
        tls: true,
        client: "192.0.2.10".parse().expect("ip"),
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
    let mut group = c.benchmark_group("translate");
    group.sample_size(10);
    group.bench_function("10k-ingresses/full-build", |b| {
        b.iter(|| translate(black_box(&state), &options))
    });
    group.finish();
}

criterion_group!(lookup, benches);
criterion_main!(lookup);
