//! `--metrics-compat ingress-nginx`: ingress-nginx's series on /metrics
//! after real requests, and as a real Prometheus stores them.

use crate::support;

use std::time::Duration;

use gatehouse::metrics::ingress_nginx::ControllerLabels;
use http::StatusCode;
use support::prometheus::Prometheus;
use support::*;

/// ingress-nginx's constant labels, as the test's controller sets them.
const CONTROLLER: &str = r#"controller_namespace="ingress",controller_class="gatehouse.dev/ingress-controller",controller_pod="gatehouse-0""#;

pub(super) struct Setup {
    _dir: tempfile::TempDir,
    pub(super) pki: Pki,
    _backend: Backend,
    pub(super) gatehouse: gatehouse::app::Running,
}

async fn setup() -> Setup {
    let pki = Pki::new();
    let leaf = pki.leaf("shop.test");
    serve(pki, leaf).await
}

/// shop.test (TLS with `leaf`, issued by `pki`, path `/api`) and
/// errors.test (path `/status`, which the backend answers with the status
/// the request's path names), served with ingress-nginx's series.
pub(super) async fn serve(pki: Pki, leaf: Leaf) -> Setup {
    let backend = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = [
        INGRESS_CLASS.to_owned(),
        service("web", &[backend.addr]),
        tls_secret("shop-tls", &leaf),
        ingress("shop", "shop.test", "/api", "web", Some("shop-tls")),
        ingress("errors", "errors.test", "/status", "web", None),
    ]
    .concat();
    std::fs::write(dir.path().join("all.yaml"), manifests).expect("write");
    let mut config = config_for(dir.path());
    config.ingress_nginx_metrics = Some(ControllerLabels {
        namespace: "ingress".into(),
        class: "gatehouse.dev/ingress-controller".into(),
        pod: "gatehouse-0".into(),
    });
    let gatehouse = gatehouse::app::start(config).await.expect("start");
    Setup {
        _dir: dir,
        pki,
        _backend: backend,
        gatehouse,
    }
}

/// Three requests to shop.test under `/api`, one to errors.test that the
/// backend answers 502, one to a host no Ingress names. The first
/// connection is handed back open.
async fn traffic(s: &Setup) -> Sender {
    let (mut conn, _) = https_connect(s.gatehouse.https_addr, "shop.test", &s.pki.ca).await;
    for id in 0..3 {
        let reply = send(&mut conn, "shop.test", &format!("/api/items/{id}"))
            .await
            .expect("request");
        assert_eq!(reply.status, StatusCode::OK);
    }
    let error = http_get(s.gatehouse.http_addr, "errors.test", "/status/502").await;
    assert_eq!(error.status, StatusCode::BAD_GATEWAY);
    let unknown = http_get(s.gatehouse.http_addr, "nobody.test", "/x").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // Telemetry is recorded when the response body ends.
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let reply = http_get(addr, "admin", "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    String::from_utf8(reply.body.to_vec()).expect("utf-8")
}

/// The value of the one sample named and labelled exactly `series`.
fn sample(metrics: &str, series: &str) -> f64 {
    let values: Vec<f64> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .collect();
    match values.as_slice() {
        [value] => *value,
        _ => panic!("{} samples {series} in:\n{metrics}", values.len()),
    }
}

fn shop(status: u16) -> String {
    format!(
        r#"{CONTROLLER},status="{status}",method="GET",path="/api",namespace="test",ingress="shop",service="web",canary="",host="shop.test""#
    )
}

#[tokio::test]
async fn ingress_nginx_series_count_real_requests_by_the_route_path_as_written() {
    let s = setup().await;
    let _open = traffic(&s).await;
    let m = scrape(s.gatehouse.metrics_addr).await;

    let ok = shop(200);
    assert_eq!(
        sample(&m, &format!("nginx_ingress_controller_requests{{{ok}}}")),
        3.0
    );
    for histogram in [
        "request_duration_seconds",
        "response_duration_seconds",
        "request_size",
        "response_size",
    ] {
        let count = format!("nginx_ingress_controller_{histogram}_count{{{ok}}}");
        assert_eq!(sample(&m, &count), 3.0, "{histogram}");
    }
    assert!(
        sample(
            &m,
            &format!("nginx_ingress_controller_response_size_sum{{{ok}}}")
        ) > 0.0
    );
    let error = format!(
        r#"nginx_ingress_controller_requests{{{CONTROLLER},status="502",method="GET",path="/status",namespace="test",ingress="errors",service="web",canary="",host="errors.test"}}"#
    );
    assert_eq!(sample(&m, &error), 1.0);
    // The request's path never becomes a label, and hosts no Ingress names
    // are left out, as ingress-nginx leaves them out.
    assert!(
        !m.contains("/api/items") && !m.contains("/status/502"),
        "{m}"
    );
    assert!(!m.contains("nobody.test"), "{m}");
    assert!(
        !m.contains("nginx_ingress_controller_requests_total"),
        "{m}"
    );
    // Gatehouse's own series are all still there.
    assert!(m.contains("gatehouse_requests_total{"), "{m}");

    let expiry = r#"nginx_ingress_controller_ssl_expire_time_seconds{namespace="test",class="gatehouse.dev/ingress-controller",host="shop.test",secret_name="shop-tls"}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut m = m;
    // The table's gauges follow the table on a task of their own.
    while !m.contains(expiry) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        m = scrape(s.gatehouse.metrics_addr).await;
    }
    assert!(sample(&m, expiry) > now, "{m}");
    let controller = format!("{{{CONTROLLER}}}");
    assert!(sample(&m, &format!("nginx_ingress_controller_success{controller}")) >= 1.0);
    assert_eq!(
        sample(
            &m,
            &format!("nginx_ingress_controller_config_last_reload_successful{controller}")
        ),
        1.0
    );
    assert!(sample(&m, &format!("nginx_ingress_controller_config_last_reload_successful_timestamp_seconds{controller}")) > now - 60.0);
    assert!(
        sample(
            &m,
            &format!("nginx_ingress_controller_config_hash{controller}")
        ) >= 1.0
    );
    assert!(
        sample(
            &m,
            &format!("nginx_ingress_controller_nginx_process_resident_memory_bytes{controller}")
        ) > 1e6
    );
    assert!(
        sample(
            &m,
            &format!("nginx_ingress_controller_nginx_process_cpu_seconds_total{controller}")
        ) > 0.0
    );
    // The traffic's first connection is still open.
    let active = format!(
        r#"nginx_ingress_controller_nginx_process_connections{{{CONTROLLER},state="active"}}"#
    );
    assert!(sample(&m, &active) >= 1.0, "{m}");
}

/// Every name the scrape stores, as Prometheus lists them.
const NAMES: [&str; 12] = [
    "nginx_ingress_controller_requests",
    "nginx_ingress_controller_request_duration_seconds_bucket",
    "nginx_ingress_controller_response_duration_seconds_bucket",
    "nginx_ingress_controller_request_size_bucket",
    "nginx_ingress_controller_response_size_sum",
    "nginx_ingress_controller_ssl_expire_time_seconds",
    "nginx_ingress_controller_nginx_process_connections",
    "nginx_ingress_controller_nginx_process_cpu_seconds_total",
    "nginx_ingress_controller_nginx_process_resident_memory_bytes",
    "nginx_ingress_controller_success",
    "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds",
    "nginx_ingress_controller_config_hash",
];

#[tokio::test]
async fn prometheus_stores_the_series_under_ingress_nginx_names() {
    let test = "prometheus_stores_the_series_under_ingress_nginx_names";
    if !Prometheus::installed(test) {
        return;
    }
    let s = setup().await;
    traffic(&s).await;
    // The target label a Kubernetes scrape adds: the series' own
    // `namespace` becomes `exported_namespace`, as dashboards expect.
    let prometheus = Prometheus::start(s.gatehouse.metrics_addr, &[("namespace", "ingress")]).await;
    let requests = prometheus
        .query_until_found(
            r#"nginx_ingress_controller_requests{exported_namespace="test",ingress="shop",path="/api",status="200"}"#,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(requests.len(), 1, "{requests:?}\n{}", prometheus.log());
    assert_eq!(requests[0]["value"][1], "3");
    assert_eq!(
        requests[0]["metric"]["__name__"],
        "nginx_ingress_controller_requests"
    );

    let stored = prometheus
        .query(r#"{__name__=~"nginx_ingress_controller_.*"}"#)
        .await;
    let names: std::collections::BTreeSet<&str> = stored
        .iter()
        .filter_map(|s| s["metric"]["__name__"].as_str())
        .collect();
    for name in NAMES {
        assert!(names.contains(name), "{name} not in {names:#?}");
    }
    assert!(
        !names.contains("nginx_ingress_controller_requests_total"),
        "{names:#?}"
    );
    assert!(
        !names.contains("nginx_ingress_controller_success_total"),
        "{names:#?}"
    );
}
