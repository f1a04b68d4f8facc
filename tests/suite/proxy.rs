//! End to end through the in-process server: real sockets on 127.0.0.1, real
//! TLS with SNI, real HTTP/1.1 and HTTP/2, real backends.

use crate::support;

use http::StatusCode;
use support::*;

/// Two hosts with two certificates and two backends, in one manifest dir.
struct TwoHosts {
    _dir: tempfile::TempDir,
    pki: Pki,
    a: Leaf,
    b: Leaf,
    _backends: (Backend, Backend),
    gatehouse: gatehouse::app::Running,
}

async fn two_hosts() -> TwoHosts {
    let (backend_a, backend_b) = (Backend::start("a").await, Backend::start("b").await);
    let pki = Pki::new();
    let (a, b) = (pki.leaf("a.test"), pki.leaf("b.test"));
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = [
        INGRESS_CLASS.to_owned(),
        service("svc-a", &[backend_a.addr]),
        service("svc-b", &[backend_b.addr]),
        tls_secret("a-tls", &a),
        tls_secret("b-tls", &b),
        ingress("a", "a.test", "/app", "svc-a", Some("a-tls")),
        ingress("b", "b.test", "/", "svc-b", Some("b-tls")),
        ingress("plain", "plain.test", "/app", "svc-a", None),
    ]
    .concat();
    std::fs::write(dir.path().join("all.yaml"), manifests).expect("write manifests");
    let gatehouse = start_gatehouse(dir.path()).await;
    TwoHosts {
        _dir: dir,
        pki,
        a,
        b,
        _backends: (backend_a, backend_b),
        gatehouse,
    }
}

#[tokio::test]
async fn sni_selects_each_hosts_certificate_and_the_request_reaches_its_backend() {
    let t = two_hosts().await;
    let addr = t.gatehouse.https_addr;

    let (mut to_a, leaf_a) = https_connect(addr, "a.test", &t.pki.ca).await;
    assert_eq!(leaf_a, t.a.der, "a.test must get its own certificate");
    let reply = send(&mut to_a, "a.test", "/app/items?page=2&q=x")
        .await
        .expect("request a");
    assert_eq!(reply.status, StatusCode::OK);
    let seen = reply.seen();
    assert_eq!(seen["backend"], "a");
    assert_eq!(seen["uri"], "/app/items?page=2&q=x");
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["headers"]["host"], "a.test");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(seen["headers"]["x-forwarded-host"], "a.test");
    assert_eq!(seen["headers"]["x-forwarded-port"], addr.port().to_string());

    let (mut to_b, leaf_b) = https_connect(addr, "b.test", &t.pki.ca).await;
    assert_eq!(leaf_b, t.b.der, "b.test must get its own certificate");
    let reply = send(&mut to_b, "b.test", "/").await.expect("request b");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.backend(), "b");
}

#[tokio::test]
async fn unknown_server_name_gets_the_default_certificate() {
    let t = two_hosts().await;
    let (_, leaf) = tls_connect(
        t.gatehouse.https_addr,
        "unknown.test",
        tls_config(None, &[]),
    )
    .await
    .expect("handshake");
    assert_ne!(leaf, t.a.der);
    assert_ne!(leaf, t.b.der);
    let subject = String::from_utf8_lossy(leaf.as_ref()).into_owned();
    assert!(subject.contains("Gatehouse default certificate"));
    // And a client that checks names refuses it.
    let verified = tls_connect(
        t.gatehouse.https_addr,
        "unknown.test",
        tls_config(Some(&t.pki.ca), &[]),
    )
    .await;
    assert!(verified.is_err());
}

#[tokio::test]
async fn an_untrusted_clients_forwarded_for_is_replaced_and_hop_headers_dropped() {
    let t = two_hosts().await;
    let mut sender = http_connect(t.gatehouse.http_addr).await;
    sender.ready().await.expect("ready");
    let req = http::Request::get("/app")
        .header("host", "plain.test")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "must not pass")
        .body(http_body_util::Full::default())
        .expect("request");
    let response = sender.send_request(req).await.expect("response");
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("json");
    // As ingress-nginx without use-forwarded-headers: the client alone.
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert!(seen["headers"].get("x-hop").is_none(), "{seen}");
}

#[tokio::test]
async fn http2_over_tls_reaches_the_backend_as_http1_with_the_authority_as_host() {
    let t = two_hosts().await;
    let (mut sender, leaf) = h2_connect(t.gatehouse.https_addr, "a.test", &t.pki.ca).await;
    assert_eq!(leaf, t.a.der);
    for i in 0..3 {
        let req = http::Request::get(format!("https://a.test/app/{i}"))
            .body(http_body_util::Full::<bytes::Bytes>::default())
            .expect("request");
        let response = sender.send_request(req).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        let seen: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(seen["uri"], format!("/app/{i}"));
        assert_eq!(seen["version"], "HTTP/1.1");
        assert_eq!(seen["headers"]["host"], "a.test");
    }
}

#[tokio::test]
async fn unrouted_host_and_path_get_404() {
    let t = two_hosts().await;
    let addr = t.gatehouse.http_addr;
    assert_eq!(
        http_get(addr, "nobody.test", "/").await.status,
        StatusCode::NOT_FOUND
    );
    // plain.test routes /app only; /application is not under it.
    assert_eq!(
        http_get(addr, "plain.test", "/application").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        http_get(addr, "PLAIN.TEST:8080", "/app").await.backend(),
        "a"
    );
}

#[tokio::test]
async fn broken_backends_answer_503_or_502_and_leave_other_routes_alone() {
    let good = Backend::start("good").await;
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], closed_port().await));
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = [
        INGRESS_CLASS.to_owned(),
        service("good", &[good.addr]),
        service("empty", &[]),
        service("dead", &[dead]),
        ingress("good", "good.test", "/", "good", None),
        ingress("empty", "empty.test", "/", "empty", None),
        ingress("missing", "missing.test", "/", "no-such-service", None),
        ingress("dead", "dead.test", "/", "dead", None),
    ]
    .concat();
    std::fs::write(dir.path().join("all.yaml"), manifests).expect("write");
    let gatehouse = start_gatehouse(dir.path()).await;
    let addr = gatehouse.http_addr;

    assert_eq!(
        http_get(addr, "empty.test", "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        http_get(addr, "missing.test", "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        http_get(addr, "dead.test", "/").await.status,
        StatusCode::BAD_GATEWAY
    );
    let reply = http_get(addr, "good.test", "/still/fine").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.backend(), "good");
}

#[tokio::test]
async fn a_broken_secret_gets_the_default_certificate_while_other_hosts_keep_their_own() {
    let backend = Backend::start("web").await;
    let pki = Pki::new();
    let good = pki.leaf("good.test");
    let mut broken = pki.leaf("broken.test");
    broken.key_pem = pki.leaf("other.test").key_pem; // key of another certificate
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = [
        INGRESS_CLASS.to_owned(),
        service("web", &[backend.addr]),
        tls_secret("good-tls", &good),
        tls_secret("broken-tls", &broken),
        ingress("good", "good.test", "/", "web", Some("good-tls")),
        ingress("broken", "broken.test", "/", "web", Some("broken-tls")),
    ]
    .concat();
    std::fs::write(dir.path().join("all.yaml"), manifests).expect("write");
    let gatehouse = start_gatehouse(dir.path()).await;

    let (mut sender, leaf) = https_connect(gatehouse.https_addr, "good.test", &pki.ca).await;
    assert_eq!(leaf, good.der);
    assert_eq!(
        send(&mut sender, "good.test", "/")
            .await
            .expect("request")
            .status,
        StatusCode::OK
    );

    let (tls, leaf) = tls_connect(
        gatehouse.https_addr,
        "broken.test",
        tls_config(None, &[b"http/1.1"]),
    )
    .await
    .expect("handshake with the default certificate");
    assert_ne!(leaf, broken.der);
    assert!(String::from_utf8_lossy(leaf.as_ref()).contains("Gatehouse default certificate"));
    // The route itself still works for a client that accepts the certificate.
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("http handshake");
    tokio::spawn(conn);
    assert_eq!(
        send(&mut sender, "broken.test", "/")
            .await
            .expect("request")
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn health_endpoints_answer_once_the_table_is_built() {
    let t = two_hosts().await;
    let addr = t.gatehouse.metrics_addr;
    assert_eq!(http_get(addr, "x", "/healthz").await.status, StatusCode::OK);
    assert_eq!(http_get(addr, "x", "/readyz").await.status, StatusCode::OK);
    assert_eq!(
        http_get(addr, "x", "/nothing").await.status,
        StatusCode::NOT_FOUND
    );
}

/// An ExternalName Service: `name:port`, where the Ingress names the port
/// by number and the Service lists none (as such Services often do).
fn external_name_service(name: &str, external_name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec: {{type: ExternalName, externalName: \"{external_name}\"}}\n"
    )
}

fn ingress_to_port(name: &str, host: &str, service: &str, port: u16) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  ingressClassName: gatehouse\n  rules:\n  - host: {host}\n    http:\n      paths:\n\
         \x20     - {{path: /, pathType: Prefix, backend: {{service: {{name: {service}, port: {{number: {port}}}}}}}}}\n"
    )
}

#[tokio::test]
async fn an_external_name_service_is_reached_by_its_name_and_a_bad_name_gets_503() {
    let outside = Backend::start("outside").await;
    let port = outside.addr.port();
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = [
        INGRESS_CLASS.to_owned(),
        external_name_service("partner", "127.0.0.1"),
        external_name_service("smuggled", "user@127.0.0.1"),
        ingress_to_port("partner", "partner.test", "partner", port),
        ingress_to_port("smuggled", "smuggled.test", "smuggled", port),
    ]
    .concat();
    std::fs::write(dir.path().join("all.yaml"), manifests).expect("write");
    let gatehouse = start_gatehouse(dir.path()).await;
    let addr = gatehouse.http_addr;

    let reply = http_get(addr, "partner.test", "/quote").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.backend(), "outside");
    assert_eq!(reply.seen()["uri"], "/quote");
    assert_eq!(
        http_get(addr, "smuggled.test", "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a name that is not a host name is refused when the table is built"
    );
}
