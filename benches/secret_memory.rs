//! Memory with many large Secrets Gatehouse never needs: 2,000 Helm
//! release Secrets of 100 KB and 200 TLS Secrets (each named by an Ingress)
//! in the local list/watch API server, and Gatehouse's kube source.
//!
//! Run: `cargo bench --bench secret_memory`. Gatehouse runs in a child
//! process (so its memory is its own) twice: once against a server that
//! ignores field selectors (what listing every Secret costs) and once
//! against one that honours them (the Secret watch leaves out the types
//! that are never certificates). Reported per run: RSS once the first
//! table is built and a second later, and the peak (VmHWM).

mod common;
#[path = "../tests/support/fake_api.rs"]
#[allow(dead_code)]
mod fake_api;

use std::time::Duration;

use base64::Engine;
use gatehouse::app::{Config, SourceConfig};
use gatehouse::source::kube::KubeSource;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HELM: usize = 2_000;
const TLS: usize = 200;

fn main() {
    if let Ok(url) = std::env::var("GATEHOUSE_SECRET_BENCH_API") {
        return child(&url);
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let api = fake_api::FakeApi::start().await;
        load(&api);
        for (label, ignore) in [
            ("field selectors ignored", true),
            ("field selectors honoured", false),
        ] {
            api.ignore_field_selectors(ignore);
            let out = std::process::Command::new(std::env::current_exe().expect("exe"))
                .env("GATEHOUSE_SECRET_BENCH_API", format!("http://{}", api.addr))
                .output()
                .expect("child");
            println!("{label}: {}", String::from_utf8_lossy(&out.stdout).trim());
        }
    });
}

fn load(api: &fake_api::FakeApi) {
    use serde_json::json;
    api.put(json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "gatehouse"}, "spec": {"controller": "gatehouse.dev/ingress-controller"}}));
    api.put(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "apps"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}));
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    // A Helm release payload: 100 KB of incompressible-looking bytes.
    let release: Vec<u8> = (0..100 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for i in 0..HELM {
        api.put(
            json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
            "metadata": {"name": format!("sh.helm.release.v1.app{i}.v1"), "namespace": "apps"},
            "data": {"release": b64(&release)}}),
        );
    }
    let key = rcgen::KeyPair::generate().expect("key");
    for i in 0..TLS {
        let host = format!("h{i}.bench.test");
        let cert = rcgen::CertificateParams::new(vec![host.clone()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        api.put(json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": format!("tls{i}"), "namespace": "apps"},
            "data": {"tls.crt": b64(cert.pem().as_bytes()), "tls.key": b64(key.serialize_pem().as_bytes())}}));
        api.put(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": format!("app{i}"), "namespace": "apps"},
            "spec": {"ingressClassName": "gatehouse",
                "tls": [{"hosts": [host.clone()], "secretName": format!("tls{i}")}],
                "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
        );
    }
}

fn child(url: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = kube::Client::try_from(kube::Config::new(url.parse().expect("url"))).expect("client");
        let any = "127.0.0.1:0".parse().expect("addr");
        let config = Config {
            source: SourceConfig::Kube(KubeSource {
                client,
                namespaces: Vec::new(),
                namespace_selector: None,
                config_map: None,
                default_certificate: None,
                annotations_prefix: "gatehouse.dev".into(),
            }),
            http_addr: any,
            https_addr: any,
            metrics_addr: any,
            ingress_nginx_metrics: None,
            translate: Default::default(),
            access_log: gatehouse::telemetry::access_log::AccessLogTarget::Off,
            access_log_format: gatehouse::telemetry::access_log::AccessLogFormat::Json,
            limits: gatehouse::proxy::Limits::default(),
            shutdown_grace: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(1),
            status: None,
            webhook: None,
        };
        let running = gatehouse::app::start(config).await.expect("start");
        let (ready_rss, _) = common::memory_mib();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss, peak) = common::memory_mib();
        let certs = running.table.load().certs.len();
        println!(
            "{certs} certificates served; RSS {ready_rss:.1} MiB when ready, {rss:.1} MiB a second later; peak {peak:.1} MiB"
        );
    });
}
