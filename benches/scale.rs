//! Scale benchmark: generated clusters of 1,000 / 10,000 / 50,000 Ingresses
//! (distinct hosts, a TLS Secret per host, 3 endpoints each).
//!
//! Run: `cargo bench --bench scale` (or `-- 1000 10000` for chosen sizes).
//! Each size runs in a child process, so that its memory is its own.
//! Reported per size:
//! - parse: reading and parsing the manifest directory;
//! - cold build: translate with no parsed Secrets to reuse (start-up);
//! - warm build: translate reusing the previous build's Secrets (every
//!   rebuild after a change);
//! - RSS: the whole process with Gatehouse started on the directory;
//! - lookup: one routing decision for a random host;
//! - change→traffic: from rewriting one Ingress's file to the first request
//!   through the HTTP listener that reaches its new backend (median of 5).

mod common;

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse::source::files::ManifestDir;
use gatehouse::table::RequestFacts;
use gatehouse::translate::{translate, translate_with, TranslateOptions};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

const PER_FILE: usize = 1000;

/// The allocator of the `gatehouse` binary, so that the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Ok(n) = std::env::var("GATEHOUSE_SCALE_CHILD") {
        let n: usize = n.parse().expect("size");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run(n));
        return;
    }
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000, 50_000]
    } else {
        sizes
    };
    println!(
        "{:>8}  {:>9}  {:>10}  {:>10}  {:>8}  {:>9}  {:>14}",
        "ingresses", "parse", "cold build", "warm build", "RSS", "lookup", "change→traffic"
    );
    for n in sizes {
        let out = std::process::Command::new(std::env::current_exe().expect("exe"))
            .env("GATEHOUSE_SCALE_CHILD", n.to_string())
            .output()
            .expect("child");
        let line = String::from_utf8_lossy(&out.stdout);
        let line = line.lines().last().unwrap_or_default();
        if !out.status.success() {
            eprintln!("{n}: failed:\n{}", String::from_utf8_lossy(&out.stderr));
            continue;
        }
        println!("{line}");
    }
}

fn rss_mib() -> f64 {
    common::memory_mib().0
}

/// Writes `n` hosts (Ingress, Service, EndpointSlice, TLS Secret each) in
/// files of `PER_FILE`, plus `change.yaml` with the Ingress that will move.
fn generate(dir: &Path, n: usize, old: SocketAddr, new: SocketAddr) {
    let class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: gatehouse}\nspec: {controller: gatehouse.dev/ingress-controller}\n";
    std::fs::write(dir.join("class.yaml"), class).expect("write");
    let mut text = String::new();
    for i in 0..n {
        let host = format!("host{i}.scale.test");
        let cert = rcgen::generate_simple_self_signed(vec![host.clone()]).expect("cert");
        let indent = |pem: String| {
            pem.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        };
        let (a, b) = (i / 250 % 250, i % 250);
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: tls{i}, namespace: scale}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}\
             ---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}, namespace: scale}}\nspec: {{ports: [{{port: 80, targetPort: 8080}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc{i}-1, namespace: scale, labels: {{kubernetes.io/service-name: svc{i}}}}}\n\
             addressType: IPv4\nports: [{{port: 8080}}]\nendpoints: [{{addresses: [\"10.1.{a}.{b}\"]}}, {{addresses: [\"10.2.{a}.{b}\"]}}, {{addresses: [\"10.3.{a}.{b}\"]}}]\n\
             ---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ing{i}, namespace: scale}}\n\
             spec:\n  ingressClassName: gatehouse\n  tls: [{{hosts: [{host}], secretName: tls{i}}}]\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: svc{i}, port: {{number: 80}}}}}}}}\n",
            indent(cert.cert.pem()),
            indent(cert.signing_key.serialize_pem()),
        ));
        if (i + 1) % PER_FILE == 0 || i + 1 == n {
            std::fs::write(dir.join(format!("hosts-{:05}.yaml", i / PER_FILE)), &text)
                .expect("write");
            text.clear();
        }
    }
    for (name, addr) in [("old", old), ("new", new)] {
        let backend = format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: scale}}\nspec: {{ports: [{{port: 80, targetPort: {port}}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: scale, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: IPv4\nports: [{{port: {port}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"]}}]\n",
            port = addr.port()
        );
        std::fs::write(dir.join(format!("backend-{name}.yaml")), backend).expect("write");
    }
    std::fs::write(dir.join("change.yaml"), change_ingress("old")).expect("write");
}

fn change_ingress(service: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: change, namespace: scale}}\nspec:\n  ingressClassName: gatehouse\n  rules:\n  - host: change.scale.test\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {service}, port: {{number: 80}}}}}}}}\n"
    )
}

/// A backend that answers with its name.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(move |_| async move {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        name.as_bytes(),
                    ))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn run(n: usize) {
    let (old, new) = (backend("old").await, backend("new").await);
    let dir = tempfile::tempdir().expect("tempdir");
    generate(dir.path(), n, old, new);
    let options = TranslateOptions::default();

    let started = Instant::now();
    let (manifests, errors) = ManifestDir::load(dir.path()).expect("load");
    assert!(errors.is_empty(), "{errors:?}");
    let state = manifests.state().0;
    let parse = started.elapsed();
    drop(manifests);

    let started = Instant::now();
    let cold = translate(&state, &options);
    let cold_build = started.elapsed();
    assert_eq!(cold.table.certs.len(), n);
    let mut warm_times = Vec::new();
    let mut previous = cold.reuse.clone();
    for _ in 0..3 {
        let started = Instant::now();
        let warm = translate_with(&state, &options, &previous);
        warm_times.push(started.elapsed());
        previous = warm.reuse;
    }
    warm_times.sort();
    let warm_build = warm_times[1];

    let facts: Vec<(String, &str)> = (0..1024)
        .map(|i| (format!("host{}.scale.test", (i * 7919) % n), "/api/items"))
        .collect();
    let rounds = 200_000;
    let client = "192.0.2.1".parse().expect("ip");
    let headers = http::HeaderMap::new();
    let started = Instant::now();
    for i in 0..rounds {
        let (host, path) = &facts[i % facts.len()];
        let req = RequestFacts {
            host,
            method: &http::Method::GET,
            headers: &headers,
            path,
            query: None,
            tls: true,
            client,
            peer: None,
        };
        black_box(cold.table.decide(black_box(&req)));
    }
    let lookup = started.elapsed() / rounds as u32;
    drop((cold, state, previous));

    // The whole controller on the directory.
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let config = gatehouse::app::Config {
        source: gatehouse::app::SourceConfig::Manifests(dir.path().to_owned()),
        http_addr: any,
        https_addr: any,
        metrics_addr: any,
        translate: options,
        access_log: gatehouse::telemetry::access_log::AccessLogTarget::Off,
        access_log_format: gatehouse::telemetry::access_log::AccessLogFormat::Json,
        limits: gatehouse::proxy::Limits::default(),
        shutdown_grace: Duration::ZERO,
        drain_timeout: Duration::ZERO,
        status: None,
    };
    let running = gatehouse::app::start(config).await.expect("start");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss = rss_mib();

    let stream = tokio::net::TcpStream::connect(running.http_addr)
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut ask = async || {
        sender.ready().await.expect("ready");
        let req = hyper::Request::get("/")
            .header("host", "change.scale.test")
            .body(Full::<Bytes>::default())
            .expect("req");
        let body = sender
            .send_request(req)
            .await
            .expect("response")
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    };
    let mut latencies = Vec::new();
    let mut target = "new";
    for _ in 0..5 {
        assert_ne!(ask().await, target);
        let started = Instant::now();
        let file = dir.path().join("change.yaml");
        let tmp = dir.path().join(".change.tmp");
        std::fs::write(&tmp, change_ingress(target)).expect("write");
        std::fs::rename(&tmp, &file).expect("rename");
        loop {
            if ask().await == target {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the change never reached traffic"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(started.elapsed());
        target = if target == "new" { "old" } else { "new" };
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    latencies.sort();
    let change = latencies[latencies.len() / 2];
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    println!(
        "{n:>8}  {:>9}  {:>10}  {:>10}  {:>5.0} MiB  {:>6} ns  {:>14}",
        ms(parse),
        ms(cold_build),
        ms(warm_build),
        rss,
        lookup.as_nanos(),
        ms(change)
    );
}
