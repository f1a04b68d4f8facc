//! Scale benchmark: generated clusters of 1,000 / 10,000 / 50,000 /
//! 100,000 Ingresses (distinct hosts, a TLS Secret per host, 3 endpoints
//! each).
//!
//! Run: `cargo bench --bench scale` (or `-- 1000 10000` for chosen sizes).
//! Each size runs in a child process, so that its memory is its own.
//! Reported per size:
//! - parse: reading and parsing the manifest directory;
//! - cold build: translate with nothing to reuse (start-up);
//! - full rebuild: translate of the whole state reusing the parsed
//!   Secrets (what every change cost before incremental builds);
//! - Ingress Δ, slice Δ: an incremental build after one Ingress or one
//!   EndpointSlice changed (median of 21);
//! - shared slice Δ: the same after the EndpointSlice of a Service that
//!   every Ingress names changed (a rolling update of a shared backend;
//!   median of 21);
//! - start→first: from starting Gatehouse on the directory to its first
//!   answered request (parse, build and listeners);
//! - RSS: the whole process with Gatehouse started on the directory;
//! - lookup: one routing decision for a random host;
//! - gauges, gauges Δ: publishing the table's gauges (endpoints per
//!   backend, expiry per certificate) whole, and by difference after one
//!   EndpointSlice changed;
//! - Ingress→traffic, slice→traffic: from rewriting one Ingress's (or one
//!   EndpointSlice's) file to the first request through the HTTP listener
//!   that reaches its new backend (median of 5; the files source waits
//!   10 ms for the rest of an editor's burst before reading);
//! - over the API: the same two changes through the kube source, the
//!   cluster served by the local list/watch API server (`tests/support`),
//!   from the object's update to the first request that reaches its new
//!   backend (median of 5).

mod common;
#[path = "../tests/support/fake_api.rs"]
#[allow(dead_code)]
mod fake_api;

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse::cluster::Object;
use gatehouse::source::files::ManifestDir;
use gatehouse::table::RequestFacts;
use gatehouse::translate::{translate_next, translate_with, BuildKind, Reuse, TranslateOptions};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

const PER_FILE: usize = 1000;

/// The allocator of the `gatehouse` binary, so that the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let (Ok(phase), Ok(dir)) = (
        std::env::var("GATEHOUSE_SCALE_PHASE"),
        std::env::var("GATEHOUSE_SCALE_DIR"),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = Path::new(&dir);
        match phase.as_str() {
            "translate" => print!("{}", translate_phase(dir)),
            "serve" => print!("{}", runtime.block_on(serve_phase(dir))),
            _ => print!("{}", runtime.block_on(kube_phase(dir))),
        }
        return;
    }
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000, 50_000, 100_000]
    } else {
        sizes
    };
    println!(
        "| Ingresses | parse | cold build | full rebuild | Ingress Δ | slice Δ | shared slice Δ | lookup | gauges | gauges Δ | start→first | RSS | Ingress→traffic | slice→traffic | over the API: Ingress→traffic | slice→traffic |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let unused: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        generate(dir.path(), n, unused, unused);
        // Each phase in a process of its own, so that the controller's
        // memory is its own.
        let mut cells = Vec::new();
        for phase in ["translate", "serve", "kube"] {
            let out = std::process::Command::new(std::env::current_exe().expect("exe"))
                .env("GATEHOUSE_SCALE_PHASE", phase)
                .env("GATEHOUSE_SCALE_DIR", dir.path())
                .output()
                .expect("child");
            if !out.status.success() {
                eprintln!(
                    "{n} {phase}: failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                break;
            }
            cells.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        }
        println!("| {n} | {} |", cells.join(" | "));
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
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: tls{i}, namespace: scale}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}\
             ---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}, namespace: scale}}\nspec: {{ports: [{{port: 80, targetPort: 8080}}]}}\n\
             ---\n{}---\n{}",
            indent(cert.cert.pem()),
            indent(cert.signing_key.serialize_pem()),
            slice_yaml(i, 3),
            ingress_yaml(i, &format!("svc{i}")),
        ));
        if (i + 1) % PER_FILE == 0 || i + 1 == n {
            std::fs::write(dir.join(format!("hosts-{:05}.yaml", i / PER_FILE)), &text)
                .expect("write");
            text.clear();
        }
    }
    point_services(dir, old, new);
    std::fs::write(dir.join("change.yaml"), change_ingress("old")).expect("write");
}

/// The EndpointSlice of Service `service`, its one endpoint at `to`.
fn slice(service: &str, to: SocketAddr) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-1, namespace: scale, labels: {{kubernetes.io/service-name: {service}}}}}\n\
         addressType: IPv4\nports: [{{port: {port}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"]}}]\n",
        port = to.port()
    )
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

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.0} ms", d.as_secs_f64() * 1e3)
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// One object from a manifest.
fn object(yaml: &str) -> Object {
    gatehouse::source::manifest::parse(yaml)
        .expect("manifest")
        .pop()
        .expect("an object")
}

/// Host `i`'s Ingress, sending `/` to Service `service`.
fn host_ingress(i: usize, service: &str) -> Object {
    object(&ingress_yaml(i, service))
}

fn ingress_yaml(i: usize, service: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ing{i}, namespace: scale}}\n\
         spec:\n  ingressClassName: gatehouse\n  tls: [{{hosts: [host{i}.scale.test], secretName: tls{i}}}]\n  rules:\n  - host: host{i}.scale.test\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {service}, port: {{number: 80}}}}}}}}\n"
    )
}

/// Host `i`'s EndpointSlice, its third address in 10.`third`.0.0/16 (3
/// as generated; a change moves it).
fn host_slice(i: usize, third: u8) -> Object {
    object(&slice_yaml(i, third))
}

/// The EndpointSlice of the Service every Ingress shares (in the last
/// measurement), its third address in 10.`third`.0.0/16.
fn shared_slice_yaml(third: u8) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: shared-1, namespace: scale, labels: {{kubernetes.io/service-name: shared}}}}\n\
         addressType: IPv4\nports: [{{port: 8080}}]\nendpoints: [{{addresses: [\"10.1.0.1\"]}}, {{addresses: [\"10.2.0.1\"]}}, {{addresses: [\"10.{third}.0.1\"]}}]\n"
    )
}

fn slice_yaml(i: usize, third: u8) -> String {
    let (a, b) = (i / 250 % 250, i % 250);
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc{i}-1, namespace: scale, labels: {{kubernetes.io/service-name: svc{i}}}}}\n\
         addressType: IPv4\nports: [{{port: 8080}}]\nendpoints: [{{addresses: [\"10.1.{a}.{b}\"]}}, {{addresses: [\"10.2.{a}.{b}\"]}}, {{addresses: [\"10.{third}.{a}.{b}\"]}}]\n"
    )
}

/// Parse, cold build, full rebuild, incremental builds and lookup.
fn translate_phase(dir: &Path) -> String {
    let options = TranslateOptions::default();
    let started = Instant::now();
    let (manifests, errors) = ManifestDir::load(dir).expect("load");
    assert!(errors.is_empty(), "{errors:?}");
    let mut state = manifests.state().0;
    let parse = started.elapsed();
    drop(manifests);

    let started = Instant::now();
    let (cold, kind) = translate_next(&state, &options, Reuse::default());
    let cold_build = started.elapsed();
    assert_eq!(kind, BuildKind::Full);
    let n = cold.table.certs.len();
    let mut full_times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let full = translate_with(&state, &options, &cold.reuse);
        full_times.push(started.elapsed());
        drop(full);
    }
    let full_rebuild = median(full_times);

    // Incremental builds: one Ingress, then one EndpointSlice, changed.
    let mut cold = cold;
    let mut reuse = std::mem::take(&mut cold.reuse);
    let mut table = cold.table.clone();
    let mut timed = |state: &mut gatehouse::cluster::ClusterState, change: Object| {
        state.insert(change);
        let started = Instant::now();
        let (mut next, kind) = translate_next(state, &options, std::mem::take(&mut reuse));
        let took = started.elapsed();
        assert_eq!(kind, BuildKind::Incremental);
        reuse = std::mem::take(&mut next.reuse);
        table = next.table;
        took
    };
    let ingress_delta = median(
        (0..21)
            .map(|k| {
                timed(
                    &mut state,
                    host_ingress((k * 7919) % n, ["old", "new"][k % 2]),
                )
            })
            .collect(),
    );
    let slice_delta = median(
        (0..21)
            .map(|k| timed(&mut state, host_slice((k * 104_729) % n, 100 + k as u8)))
            .collect(),
    );

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
            port: 443,
            client,
            peer: None,
        };
        black_box(table.decide(black_box(&req)));
    }
    let lookup = started.elapsed() / rounds as u32;

    // The table's gauges, as the controller publishes them: whole (the
    // first time), then by difference after one EndpointSlice change.
    use gatehouse::metrics::Metrics;
    use gatehouse::telemetry::gauges::Published;
    let metrics = Metrics::new();
    let table = std::sync::Arc::new(table);
    let gauges = median(
        (0..3)
            .map(|_| {
                let started = Instant::now();
                metrics.observe_table(&table, &[], &mut Published::default());
                started.elapsed()
            })
            .collect(),
    );
    let mut published = Published::default();
    metrics.observe_table(&table, &[], &mut published);
    state.insert(host_slice(n / 2, 200));
    let (next, _) = translate_next(&state, &options, reuse);
    let next = std::sync::Arc::new(next.table);
    let started = Instant::now();
    metrics.observe_table(&next, &[], &mut published);
    let gauges_delta = started.elapsed();
    drop((table, next, published));

    // One Service that every Ingress names, and its rolling update: each
    // change of its EndpointSlice (never to no ready endpoint) is put in
    // place in its backend, whatever the number of Ingresses.
    let shared: Vec<Object> = state
        .ingresses
        .values()
        .map(|ingress| {
            let mut ingress = (**ingress).clone();
            let spec = ingress.spec.as_mut().and_then(|s| s.rules.as_mut());
            let rule = spec
                .and_then(|r| r.first_mut())
                .and_then(|r| r.http.as_mut());
            let path = rule.and_then(|h| h.paths.first_mut());
            if let Some(service) = path.and_then(|p| p.backend.service.as_mut()) {
                service.name = "shared".to_owned();
            }
            Object::Ingress(std::sync::Arc::new(ingress))
        })
        .collect();
    for ingress in shared {
        state.insert(ingress);
    }
    state.insert(object(
        "apiVersion: v1\nkind: Service\nmetadata: {name: shared, namespace: scale}\nspec: {ports: [{port: 80, targetPort: 8080}]}\n",
    ));
    state.insert(object(&shared_slice_yaml(3)));
    let (mut built, _) = translate_next(&state, &options, Reuse::default());
    let mut reuse = std::mem::take(&mut built.reuse);
    drop(built);
    let shared_slice_delta = median(
        (0..21)
            .map(|k| {
                state.insert(object(&shared_slice_yaml(100 + k as u8)));
                let started = Instant::now();
                let (mut next, kind) = translate_next(&state, &options, std::mem::take(&mut reuse));
                let took = started.elapsed();
                assert_eq!(kind, BuildKind::Incremental);
                reuse = std::mem::take(&mut next.reuse);
                took
            })
            .collect(),
    );
    format!(
        "{} | {} | {} | {} | {} | {} | {} ns | {} | {}",
        ms(parse),
        ms(cold_build),
        ms(full_rebuild),
        ms(ingress_delta),
        ms(slice_delta),
        ms(shared_slice_delta),
        lookup.as_nanos(),
        ms(gauges),
        ms(gauges_delta)
    )
}

/// Writes the Services `old` and `new` (and their EndpointSlices) at
/// these addresses.
fn point_services(dir: &Path, old: SocketAddr, new: SocketAddr) {
    for (name, addr) in [("old", old), ("new", new)] {
        let service = format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: scale}}\nspec: {{ports: [{{port: 80, targetPort: {port}}}]}}\n",
            port = addr.port()
        );
        std::fs::write(dir.join(format!("service-{name}.yaml")), service).expect("write");
        std::fs::write(dir.join(format!("slice-{name}.yaml")), slice(name, addr)).expect("write");
    }
}

/// Where the Service `old`'s slice points in turn (after the Ingress
/// changes, the Ingress sends to `old`): the backend that should answer,
/// and its address.
fn slice_moves(old: SocketAddr, new: SocketAddr) -> [(&'static str, SocketAddr); 5] {
    [
        ("new", new),
        ("old", old),
        ("new", new),
        ("old", old),
        ("new", new),
    ]
}

/// Starts the two backends, and points the directory's Services at them.
async fn backends(dir: &Path) -> (SocketAddr, SocketAddr) {
    let (old, new) = (backend("old").await, backend("new").await);
    point_services(dir, old, new);
    (old, new)
}

/// Asks until `target` answers; how long since `started` that took (then
/// a pause, so that the next change starts from a quiet controller).
async fn until_answers(
    ask: &mut impl AsyncFnMut() -> String,
    target: &str,
    started: Instant,
) -> Duration {
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
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(100)).await;
    took
}

/// Gatehouse on `source`, every address picked by the system, no log.
fn config(source: gatehouse::app::SourceConfig) -> gatehouse::app::Config {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    gatehouse::app::Config {
        source,
        http_addr: any,
        https_addr: any,
        metrics_addr: any,
        ingress_nginx_metrics: None,
        translate: TranslateOptions::default(),
        access_log: gatehouse::telemetry::access_log::AccessLogTarget::Off,
        access_log_format: gatehouse::telemetry::access_log::AccessLogFormat::Json,
        limits: gatehouse::proxy::Limits::default(),
        shutdown_grace: Duration::ZERO,
        drain_timeout: Duration::ZERO,
        status: None,
        webhook: None,
    }
}

/// An HTTP/1.1 connection to `addr`, asking for change.scale.test.
async fn asker(addr: SocketAddr) -> impl AsyncFnMut() -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    async move || {
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
    }
}

/// The directory's cluster served by the local API server, Gatehouse on
/// it, and the two changes made through the API.
async fn kube_phase(dir: &Path) -> String {
    let (old, new) = backends(dir).await;
    let (manifests, _) = ManifestDir::load(dir).expect("load");
    let state = manifests.state().0;
    drop(manifests);
    let api = fake_api::FakeApi::start().await;
    let json = |value: serde_json::Result<serde_json::Value>| value.expect("json");
    for class in state.ingress_classes.values() {
        api.put(json(serde_json::to_value(&**class)));
    }
    for ingress in state.ingresses.values() {
        api.put(json(serde_json::to_value(&**ingress)));
    }
    for service in state.services.values() {
        api.put(json(serde_json::to_value(&**service)));
    }
    for slice in state.endpoint_slices.values() {
        api.put(json(serde_json::to_value(&**slice)));
    }
    for secret in state.secrets.values() {
        api.put(json(serde_json::to_value(&**secret)));
    }
    drop(state);
    let source = gatehouse::app::SourceConfig::Kube(gatehouse::source::kube::KubeSource {
        client: api.client(),
        namespaces: Vec::new(),
        namespace_selector: None,
        config_map: None,
        default_certificate: None,
        annotations_prefix: "gatehouse.dev".into(),
    });
    let running = gatehouse::app::start(config(source)).await.expect("start");
    let mut ask = asker(running.http_addr).await;
    while ask().await != "old" {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut through = async |object: Object, target: &str| {
        let value = match &object {
            Object::Ingress(o) => serde_json::to_value(&**o),
            Object::EndpointSlice(o) => serde_json::to_value(&**o),
            other => panic!("{other:?}"),
        };
        let started = Instant::now();
        api.put(json(value));
        until_answers(&mut ask, target, started).await
    };
    let mut ingress_traffic = Vec::new();
    for target in ["new", "old", "new", "old", "new", "old"] {
        let change = object(&change_ingress(target));
        ingress_traffic.push(through(change, target).await);
    }
    let mut slice_traffic = Vec::new();
    for (target, to) in slice_moves(old, new) {
        slice_traffic.push(through(object(&slice("old", to)), target).await);
    }
    format!(
        "{} | {}",
        ms(median(ingress_traffic)),
        ms(median(slice_traffic))
    )
}

/// The whole controller on the directory: start to first request, memory,
/// and changes through the files source to traffic.
async fn serve_phase(dir: &Path) -> String {
    let (old, new) = backends(dir).await;
    let config = config(gatehouse::app::SourceConfig::Manifests(dir.to_owned()));
    let started = Instant::now();
    let running = gatehouse::app::start(config).await.expect("start");

    let mut ask = asker(running.http_addr).await;
    while ask().await != "old" {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let first = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss = rss_mib();

    // Rewrites `file` with `text` (as an editor does: write, then rename)
    // and waits for `target` to answer.
    let path = dir.to_owned();
    let mut through = async |file: &str, text: String, target: &str| {
        let started = Instant::now();
        let tmp = path.join(".change.tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, path.join(file)).expect("rename");
        until_answers(&mut ask, target, started).await
    };
    let mut ingress_traffic = Vec::new();
    for target in ["new", "old", "new", "old", "new", "old"] {
        ingress_traffic.push(through("change.yaml", change_ingress(target), target).await);
    }
    // The Ingress now sends to "old"; its slice moves between the two
    // backends' ports.
    let mut slice_traffic = Vec::new();
    for (target, to) in slice_moves(old, new) {
        slice_traffic.push(through("slice-old.yaml", slice("old", to), target).await);
    }
    format!(
        "{} | {rss:.0} MiB | {} | {}",
        ms(first),
        ms(median(ingress_traffic)),
        ms(median(slice_traffic)),
    )
}
