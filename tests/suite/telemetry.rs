//! What operators see, checked after real traffic: /metrics, the access
//! log, /debug/routes and /debug/certs.

use crate::support;

use std::time::Duration;

use gatehouse::telemetry::access_log::{AccessLogFormat, AccessLogTarget};
use http::StatusCode;
use support::*;

struct Setup {
    dir: tempfile::TempDir,
    pki: Pki,
    leaf: Leaf,
    _backend: Backend,
    gatehouse: gatehouse::app::Running,
}

async fn setup(format: AccessLogFormat) -> Setup {
    let backend = Backend::start("web").await;
    let pki = Pki::new();
    let leaf = pki.leaf("shop.test");
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = [
        INGRESS_CLASS.to_owned(),
        service("web", &[backend.addr]),
        tls_secret("shop-tls", &leaf),
        ingress("shop", "shop.test", "/", "web", Some("shop-tls")),
        ingress("plain", "plain.test", "/", "web", None),
        ingress("broken", "broken.test", "/", "no-such-service", None),
    ]
    .concat();
    let manifests_dir = dir.path().join("manifests");
    std::fs::create_dir(&manifests_dir).expect("mkdir");
    std::fs::write(manifests_dir.join("all.yaml"), manifests).expect("write");
    let mut config = config_for(&manifests_dir);
    config.access_log = AccessLogTarget::File(dir.path().join("access.log"));
    config.access_log_format = format;
    let gatehouse = gatehouse::app::start(config).await.expect("start");
    Setup {
        dir,
        pki,
        leaf,
        _backend: backend,
        gatehouse,
    }
}

async fn scrape(addr: std::net::SocketAddr, path: &str) -> String {
    let reply = http_get(addr, "admin", path).await;
    assert_eq!(reply.status, StatusCode::OK);
    String::from_utf8(reply.body.to_vec()).expect("utf-8")
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
}

#[tokio::test]
async fn metrics_move_with_real_requests_and_carry_bounded_labels() {
    let s = setup(AccessLogFormat::Json).await;
    let (mut conn, _) = https_connect(s.gatehouse.https_addr, "shop.test", &s.pki.ca).await;
    for _ in 0..3 {
        assert_eq!(
            send(&mut conn, "shop.test", "/items/42?secret=1")
                .await
                .expect("request")
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(
        http_get(s.gatehouse.http_addr, "nobody.test", "/x")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        http_get(s.gatehouse.http_addr, "broken.test", "/")
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Telemetry is recorded when the response body ends; give the last one a moment.
    tokio::time::sleep(Duration::from_millis(50)).await;

    let m = scrape(s.gatehouse.metrics_addr, "/metrics").await;
    let ok = r#"gatehouse_requests_total{namespace="test",ingress="shop",host="shop.test",service="web",method="GET",status_class="2xx"}"#;
    assert_eq!(sample(&m, ok), 3.0);
    let unmatched = r#"gatehouse_requests_total{namespace="",ingress="",host="",service="",method="GET",status_class="4xx"}"#;
    assert_eq!(sample(&m, unmatched), 1.0);
    let duration = r#"gatehouse_request_duration_seconds_count{namespace="test",ingress="shop",service="web"}"#;
    assert_eq!(sample(&m, duration), 3.0);
    let upstream = r#"gatehouse_upstream_response_duration_seconds_count{namespace="test",ingress="shop",service="web"}"#;
    assert_eq!(sample(&m, upstream), 3.0);
    assert!(
        sample(
            &m,
            r#"gatehouse_response_bytes_total{namespace="test",ingress="shop",service="web"}"#
        ) > 0.0
    );
    assert!(
        sample(
            &m,
            r#"gatehouse_tls_handshakes_total{result="ok",reason=""}"#
        ) >= 1.0
    );
    assert_eq!(
        sample(
            &m,
            r#"gatehouse_backend_endpoints{namespace="test",service="web",port="80"}"#
        ),
        1.0
    );
    assert!(sample(&m, "gatehouse_table_rebuilds_total{kind=\"full\"}") >= 1.0);
    assert!(sample(&m, "gatehouse_table_last_rebuild_timestamp_seconds") > 1.7e9);
    assert_eq!(
        sample(&m, r#"gatehouse_warnings{kind="missing_service"}"#),
        1.0
    );
    assert_eq!(
        sample(&m, r#"gatehouse_open_connections{listener="https"}"#),
        1.0
    );
    let not_after = x509_not_after(&s.leaf);
    assert_eq!(
        sample(
            &m,
            r#"gatehouse_certificate_expiry_timestamp_seconds{host="shop.test",secret="test/shop-tls"}"#
        ),
        not_after as f64
    );
    // No paths, no client addresses in any label.
    assert!(!m.contains("/items"), "a path leaked into labels");
    assert!(
        !m.contains("127.0.0.1"),
        "a client address leaked into labels"
    );

    // A failed TLS handshake is counted with its reason.
    let refused = tls_connect(
        s.gatehouse.https_addr,
        "shop.test",
        tls_config(Some(&Pki::new().ca), &[]),
    )
    .await;
    assert!(refused.is_err());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let m = scrape(s.gatehouse.metrics_addr, "/metrics").await;
    assert!(
        m.lines()
            .any(|l| l.starts_with(r#"gatehouse_tls_handshakes_total{result="error",reason="#)),
        "{m}"
    );
}

fn x509_not_after(leaf: &Leaf) -> i64 {
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf.der).expect("parse");
    cert.validity().not_after.timestamp()
}

/// Reads the access log until it has `n` lines.
async fn access_lines(s: &Setup, n: usize) -> Vec<String> {
    let what = format!("{n} access log lines");
    eventually(what, Duration::from_secs(5), async || {
        let text = std::fs::read_to_string(s.dir.path().join("access.log")).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            Ok(lines)
        } else {
            Err(lines)
        }
    })
    .await
}

#[tokio::test]
async fn every_request_gets_one_json_access_log_line() {
    let s = setup(AccessLogFormat::Json).await;
    let mut conn = http_connect(s.gatehouse.http_addr).await;
    let req = http::Request::get("/orders/7?token=hidden")
        .header("host", "plain.test")
        .header("x-request-id", "trace-abc-123")
        .body(http_body_util::Full::default())
        .expect("request");
    let reply = send_request(&mut conn, req).await.expect("request");
    assert_eq!(reply.seen()["headers"]["x-request-id"], "trace-abc-123");
    let generated = http_get(s.gatehouse.http_addr, "nobody.test", "/").await;
    assert_eq!(generated.status, StatusCode::NOT_FOUND);

    let lines = access_lines(&s, 2).await;
    let first: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON line");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["host"], "plain.test");
    assert_eq!(first["path"], "/orders/7");
    assert_eq!(first["status"], 200);
    assert_eq!(first["client"], "127.0.0.1");
    assert_eq!(first["ingress"], "test/plain");
    assert_eq!(first["service"], "test/web");
    assert_eq!(first["request_id"], "trace-abc-123");
    assert_eq!(first["upstream"], s._backend.addr.to_string());
    assert!(first["bytes_sent"].as_u64().expect("bytes") > 0);
    assert!(
        first["duration_ms"].as_f64().expect("duration")
            >= first["upstream_ms"].as_f64().expect("upstream time")
    );
    for field in ["time", "protocol", "bytes_received"] {
        assert!(first.get(field).is_some(), "no {field}");
    }
    assert!(
        !lines[0].contains("hidden"),
        "query strings stay out of the log"
    );

    let second: serde_json::Value = serde_json::from_str(&lines[1]).expect("JSON line");
    assert_eq!(second["status"], 404);
    assert!(second["ingress"].is_null());
    assert_eq!(
        second["request_id"].as_str().map(str::len),
        Some(32),
        "a generated id"
    );
}

#[tokio::test]
async fn text_access_log_lines_are_one_per_request() {
    let s = setup(AccessLogFormat::Text).await;
    http_get(s.gatehouse.http_addr, "plain.test", "/a").await;
    let lines = access_lines(&s, 1).await;
    assert!(lines[0].starts_with("127.0.0.1 - - ["), "{}", lines[0]);
    assert!(lines[0].contains("\"GET /a HTTP/1.1\" 200"), "{}", lines[0]);
    assert!(lines[0].contains(" [test-web-80] [] "), "{}", lines[0]);
}

#[tokio::test]
async fn debug_endpoints_show_routes_and_certificates_but_never_keys() {
    let s = setup(AccessLogFormat::Json).await;
    let routes: serde_json::Value =
        serde_json::from_str(&scrape(s.gatehouse.metrics_addr, "/debug/routes").await)
            .expect("JSON");
    let shop = routes["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["host"] == "shop.test")
        .expect("shop route");
    assert_eq!(shop["backend"]["service"], "test/web");
    assert_eq!(shop["ssl_redirect"], true);
    assert_eq!(shop["access"], "public");
    assert_eq!(shop["hsts"], true);

    let text = scrape(s.gatehouse.metrics_addr, "/debug/certs").await;
    let certs: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let shop = &certs["shop.test"];
    assert_eq!(shop["secret"], "test/shop-tls");
    assert_eq!(
        shop["certificate"]["not_after_unix"],
        x509_not_after(&s.leaf)
    );
    assert_eq!(shop["certificate"]["sans"][0], "shop.test");
    assert!(shop["certificate"]["not_after"]
        .as_str()
        .expect("date")
        .contains('T'));

    let key_body: String = s
        .leaf
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for body in [&text, &routes.to_string()] {
        assert!(!body.contains("PRIVATE KEY"));
        assert!(!body.contains(&key_body[..40]), "key material leaked");
    }
}
