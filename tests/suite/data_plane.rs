//! The data plane in depth: retries and passive health, upgrades, endpoint
//! removal with requests in flight, Expect, trailers, and listener limits.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gatehouse::proxy::Limits;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start(
    manifests: &[String],
    limits: Limits,
) -> (tempfile::TempDir, gatehouse::app::Running) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text: String = [INGRESS_CLASS.to_owned()]
        .iter()
        .chain(manifests)
        .cloned()
        .collect();
    std::fs::write(dir.path().join("all.yaml"), text).expect("write");
    let mut config = config_for(dir.path());
    config.limits = limits;
    let gatehouse = gatehouse::app::start(config).await.expect("start");
    (dir, gatehouse)
}

/// One backend, `web`, serving every path of `web.test`, and Gatehouse with
/// `limits` in front of it.
async fn start_web(limits: Limits) -> (Backend, tempfile::TempDir, gatehouse::app::Running) {
    let web = Backend::start("web").await;
    let manifests = [
        service("web", &[web.addr]),
        ingress("web", "web.test", "/", "web", None),
    ];
    let (dir, gatehouse) = start(&manifests, limits).await;
    (web, dir, gatehouse)
}

/// One worker, so that the tests that count upstream connections measure
/// one pool.
fn one_worker() -> Limits {
    Limits {
        workers: 1,
        ..Limits::default()
    }
}

/// New client connections are shared out evenly between the workers, even
/// when they arrive in a burst that one worker would otherwise take: eight
/// connections opened at once end up four on each worker. Each worker keeps
/// at most four idle upstream connections, so two rounds of eight
/// overlapping requests need exactly eight upstream connections only when
/// every worker serves four clients; a worker with more would open (and
/// drop) extra ones in each round.
#[tokio::test]
async fn client_connections_are_shared_out_evenly_between_workers() {
    let limits = Limits {
        workers: 2,
        ..Limits::default()
    };
    let web = Backend::start("web").await;
    // The controller ConfigMap's upstream-keepalive-connections.
    let manifests = [
        service("web", &[web.addr]),
        ingress("web", "web.test", "/", "web", None),
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: gatehouse, namespace: test}\ndata: {upstream-keepalive-connections: \"4\"}\n".to_owned(),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let text: String = [INGRESS_CLASS.to_owned()]
        .iter()
        .chain(&manifests)
        .cloned()
        .collect();
    std::fs::write(dir.path().join("all.yaml"), text).expect("write");
    let mut config = config_for(dir.path());
    config.limits = limits;
    config.translate.config_map = Some(gatehouse::cluster::ObjectKey::new("test", "gatehouse"));
    let gatehouse = gatehouse::app::start(config).await.expect("start");
    let connecting = (0..8).map(|_| http_connect(gatehouse.http_addr));
    let mut clients = futures_util::future::join_all(connecting).await;
    for round in 0..2 {
        let requests = clients
            .iter_mut()
            .map(|client| send(client, "web.test", "/sleep/300"));
        for reply in futures_util::future::join_all(requests).await {
            assert_eq!(
                reply.expect("reply").status,
                StatusCode::OK,
                "round {round}"
            );
        }
        // Let both pools take their connections back.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(web.accepted.load(std::sync::atomic::Ordering::Relaxed), 8);
}

/// The same port as `live`, on another loopback address where nothing listens.
fn dead_twin(live: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], live.port()))
}

#[tokio::test]
async fn with_one_endpoint_refusing_connections_no_request_fails() {
    let live = Backend::start("live").await;
    let manifests = [
        service("pair", &[live.addr, dead_twin(live.addr)]),
        ingress("pair", "pair.test", "/", "pair", None),
    ];
    let (_dir, gatehouse) = start(&manifests, Limits::default()).await;
    let mut served = 0;
    for i in 0..40 {
        let mut conn = http_connect(gatehouse.http_addr).await;
        // Bodiless GETs and POSTs with bodies alike: a failed connect sent nothing.
        let req = if i % 2 == 0 {
            Request::get("/")
                .header("host", "pair.test")
                .body(Full::default())
        } else {
            Request::post("/")
                .header("host", "pair.test")
                .body(Full::new(Bytes::from_static(b"order=1")))
        }
        .expect("request");
        let reply = send_request(&mut conn, req).await.expect("request");
        assert_eq!(reply.status, StatusCode::OK, "request {i}: {reply:?}");
        assert_eq!(reply.backend(), "live");
        if i % 2 == 1 {
            assert_eq!(
                reply.seen()["body_len"],
                7,
                "the retried POST arrived whole"
            );
        }
        served += 1;
    }
    assert_eq!(served, 40);
    let metrics = http_get(gatehouse.metrics_addr, "admin", "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    // Passive health: after the first refusal the dead endpoint is skipped,
    // so retries are few, not one per two requests.
    let retries: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("gatehouse_upstream_retries_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("retries metric");
    assert!((1.0..10.0).contains(&retries), "retries: {retries}");
}

#[tokio::test]
async fn an_upgraded_connection_echoes_through_the_proxy() {
    let ws = Backend::start("ws").await;
    let manifests = [
        service("ws", &[ws.addr]),
        ingress("ws", "ws.test", "/", "ws", None),
    ];
    let (_dir, gatehouse) = start(&manifests, Limits::default()).await;
    let mut stream = open_upgrade(gatehouse.http_addr, "ws.test").await;
    for i in 0..5 {
        let message = format!("frame {i}");
        assert_eq!(
            echo(&mut stream, message.as_bytes()).await,
            message.as_bytes()
        );
    }
}

#[tokio::test]
async fn an_endpoint_turning_not_ready_gets_no_new_requests_but_finishes_its_own() {
    // Two endpoints of one Service: one port, two loopback addresses.
    let a = Backend::start("a").await;
    let b = Backend::start_on(SocketAddr::from(([127, 0, 0, 4], a.addr.port())), "b").await;
    let slice = |b_ready: bool| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: test\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints:\n- addresses: [\"{}\"]\n- addresses: [\"{}\"]\n  conditions: {{ready: {b_ready}}}\n",
            a.addr.port(),
            a.addr.ip(),
            b.addr.ip()
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let base = [
        INGRESS_CLASS.to_owned(),
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: test}\nspec:\n  ports: [{name: http, port: 80}]\n".to_owned(),
        ingress("web", "web.test", "/", "web", None),
    ];
    std::fs::write(dir.path().join("base.yaml"), base.concat()).expect("write");
    let slice_file = dir.path().join("slice.yaml");
    std::fs::write(&slice_file, slice(true)).expect("write");
    let gatehouse = gatehouse::app::start(config_for(dir.path()))
        .await
        .expect("start");
    let addr = gatehouse.http_addr;

    // Round-robin: two requests started together land one on each endpoint.
    let slow = [
        tokio::spawn(async move { http_get(addr, "web.test", "/sleep/1500").await }),
        tokio::spawn(async move { http_get(addr, "web.test", "/sleep/1500").await }),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;

    write_atomically(&slice_file, &slice(false));
    let ready_count = || {
        gatehouse
            .table
            .load()
            .routes()
            .iter()
            .find_map(|r| match &r.action {
                gatehouse::table::Action::Forward(backend) => match &*backend.upstream() {
                    gatehouse::table::Upstream::Endpoints(set) => Some(set.addrs().len()),
                    _ => None,
                },
                _ => None,
            })
    };
    eventually(
        "the table to drop b",
        Duration::from_secs(10),
        async || match ready_count() {
            Some(1) => Ok(()),
            other => Err(other),
        },
    )
    .await;
    for _ in 0..6 {
        assert_eq!(
            http_get(addr, "web.test", "/").await.backend(),
            "a",
            "b is not ready any more"
        );
    }
    let mut finished_on = Vec::new();
    for task in slow {
        let reply = task.await.expect("join");
        assert_eq!(reply.status, StatusCode::OK, "a request in flight failed");
        finished_on.push(reply.backend());
    }
    finished_on.sort();
    assert_eq!(
        finished_on,
        ["a", "b"],
        "the request in flight on b finished there"
    );
}

#[tokio::test]
async fn expect_100_continue_is_answered_and_the_body_arrives() {
    let (_web, _dir, gatehouse) = start_web(Limits::default()).await;
    let mut raw = tokio::net::TcpStream::connect(gatehouse.http_addr)
        .await
        .expect("connect");
    raw.write_all(
        b"POST /up HTTP/1.1\r\nhost: web.test\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
    )
    .await
    .expect("head");
    let interim = read_head(&mut raw).await;
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    raw.write_all(b"hello").await.expect("body");
    let head = read_head(&mut raw).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// 100 requests at once over one HTTP/2 connection need 100 upstream
/// connections; all of them go back to the pool (below the keep-alive
/// limit), so a second burst opens none. One worker, so that one pool is
/// measured.
#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let app = Backend::start("app").await;
    let pki = Pki::new();
    let leaf = pki.leaf("pool.test");
    let manifests = [
        service("app", &[app.addr]),
        tls_secret("pool-tls", &leaf),
        ingress("app", "pool.test", "/", "app", Some("pool-tls")),
    ];
    let (_dir, gatehouse) = start(&manifests, one_worker()).await;
    let (sender, _) = h2_connect(gatehouse.https_addr, "pool.test", &pki.ca).await;
    let burst = || {
        let requests = (0..100).map(|_| {
            let mut sender = sender.clone();
            async move {
                let req = Request::get("https://pool.test/sleep/200")
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let response = sender.send_request(req).await.expect("response");
                assert_eq!(response.status(), StatusCode::OK);
                http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .expect("body");
            }
        });
        futures_util::future::join_all(requests)
    };
    burst().await;
    let first = app.accepted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(first >= 50, "concurrent requests used {first} connections");
    burst().await;
    let second = app.accepted.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(second, first, "the second burst opened new connections");
}

/// A kept connection goes back to the pool when its response has been read
/// to the end, bodiless responses included; a response the client walked
/// away from closes its connection, so no later request can read what was
/// left of it.
#[tokio::test]
async fn a_connection_is_reused_only_after_its_response_was_read_to_the_end() {
    let app = Backend::start("app").await;
    let manifests = [
        service("app", &[app.addr]),
        ingress("app", "reuse.test", "/", "app", None),
    ];
    let (_dir, gatehouse) = start(&manifests, one_worker()).await;
    let accepted = || app.accepted.load(std::sync::atomic::Ordering::Relaxed);

    let mut client = http_connect(gatehouse.http_addr).await;
    for (method, path) in [
        ("GET", "/"),
        ("HEAD", "/"),
        ("GET", "/bytes/0"),
        ("GET", "/"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "reuse.test")
            .body(Full::default())
            .expect("request");
        let reply = send_request(&mut client, req).await.expect("reply");
        assert_eq!(reply.status, StatusCode::OK, "{method} {path}");
    }
    assert_eq!(accepted(), 1, "bodiless responses lost their connection");

    // Walk away from a large response after its head.
    let mut raw = tokio::net::TcpStream::connect(gatehouse.http_addr)
        .await
        .expect("connect");
    raw.write_all(b"GET /bytes/50000000 HTTP/1.1\r\nhost: reuse.test\r\n\r\n")
        .await
        .expect("write");
    let head = read_head(&mut raw).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(raw);
    tokio::time::sleep(Duration::from_millis(100)).await;

    for _ in 0..3 {
        let reply = send(&mut client, "reuse.test", "/after")
            .await
            .expect("reply");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.seen()["uri"], "/after");
    }
    assert_eq!(
        accepted(),
        2,
        "the abandoned response's connection was reused, or a kept one was not"
    );
}

/// An endpoint that closes every connection after one response, without
/// saying so: each kept connection turns out dead, and no request fails.
#[tokio::test]
async fn an_endpoint_closing_kept_connections_fails_no_request() {
    let (addr, server) = raw_endpoint(|_request, mut stream| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nonce")
            .await;
    })
    .await;
    let manifests = [
        service("once", &[addr]),
        ingress("once", "once.test", "/", "once", None),
    ];
    let (_dir, gatehouse) = start(&manifests, one_worker()).await;
    let mut client = http_connect(gatehouse.http_addr).await;
    for i in 0..50 {
        let reply = send(&mut client, "once.test", "/").await.expect("reply");
        assert_eq!(reply.status, StatusCode::OK, "request {i}");
        assert_eq!(&reply.body[..], b"once");
    }
    server.abort();
}

/// A TLS endpoint keeps its HTTP/1.1 connection between requests, and an
/// HTTP/2 (GRPCS) endpoint serves sequential and concurrent requests over
/// one shared connection per worker.
#[tokio::test]
async fn tls_and_http2_endpoints_keep_their_connections() {
    let pki = Pki::new();
    let https = Backend::start_tls("https", &pki.leaf("https.internal")).await;
    let grpcs = Backend::start_tls("grpcs", &pki.leaf("grpcs.internal")).await;
    let protocol = "nginx.ingress.kubernetes.io/backend-protocol";
    let manifests = [
        service("https", &[https.addr]),
        service("grpcs", &[grpcs.addr]),
        ingress_annotated(
            "https",
            "https.test",
            "/",
            "https",
            None,
            &[(protocol, "HTTPS")],
        ),
        ingress_annotated(
            "grpcs",
            "grpcs.test",
            "/",
            "grpcs",
            None,
            &[(protocol, "GRPCS")],
        ),
    ];
    let (_dir, gatehouse) = start(&manifests, one_worker()).await;
    let mut client = http_connect(gatehouse.http_addr).await;
    for host in ["https.test", "grpcs.test"] {
        for _ in 0..5 {
            let reply = send(&mut client, host, "/seq").await.expect("reply");
            assert_eq!(reply.status, StatusCode::OK, "{host}");
        }
    }
    let concurrent = (0..20).map(|_| async {
        let reply = http_get(gatehouse.http_addr, "grpcs.test", "/sleep/50").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.seen()["version"], "HTTP/2.0");
    });
    futures_util::future::join_all(concurrent).await;
    let accepted = |b: &Backend| b.accepted.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        accepted(&https),
        1,
        "the TLS endpoint's connection was not kept"
    );
    assert_eq!(
        accepted(&grpcs),
        1,
        "HTTP/2 requests did not share one connection"
    );
}

#[tokio::test]
async fn grpc_trailers_pass_through_over_http2() {
    let grpc = Backend::start("grpc").await;
    let pki = Pki::new();
    let leaf = pki.leaf("grpc.test");
    let manifests = [
        service("grpc", &[grpc.addr]),
        tls_secret("grpc-tls", &leaf),
        ingress_annotated(
            "grpc",
            "grpc.test",
            "/",
            "grpc",
            Some("grpc-tls"),
            &[("nginx.ingress.kubernetes.io/backend-protocol", "GRPC")],
        ),
    ];
    let (_dir, gatehouse) = start(&manifests, Limits::default()).await;
    let (mut sender, _) = h2_connect(gatehouse.https_addr, "grpc.test", &pki.ca).await;
    let req = Request::post("https://grpc.test/trailers")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .expect("request");
    let response = sender.send_request(req).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let collected = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body");
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "all good");
    assert_eq!(collected.to_bytes(), Bytes::from_static(b"payload"));
}

#[tokio::test]
async fn an_oversized_request_head_gets_431_and_a_slow_one_is_cut_off_while_others_are_served() {
    let limits = Limits {
        max_header_bytes: 8192,
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (_web, _dir, gatehouse) = start_web(limits).await;
    let addr = gatehouse.http_addr;

    let mut big = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let padding = "x".repeat(16 * 1024);
    big.write_all(
        format!("GET / HTTP/1.1\r\nhost: web.test\r\nx-padding: {padding}\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let head = read_head(&mut big).await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");

    // Slowloris: half a head, then nothing.
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nhost: web.te")
        .await
        .expect("write");
    // Meanwhile another client is served normally.
    assert_eq!(http_get(addr, "web.test", "/").await.backend(), "web");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the slow client was never cut off");
    let text = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (_web, _dir, gatehouse) = start_web(limits).await;
    let mut raw = tokio::net::TcpStream::connect(gatehouse.http_addr)
        .await
        .expect("connect");
    raw.write_all(b"GET / HTTP/1.1\r\nhost: web.test\r\n\r\n")
        .await
        .expect("write");
    let head = read_head(&mut raw).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; length];
    raw.read_exact(&mut body).await.expect("body");
    // Now idle: the server closes the connection.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the idle connection was never closed");
}

#[tokio::test]
async fn tls_sessions_resume() {
    let web = Backend::start("web").await;
    let pki = Pki::new();
    let leaf = pki.leaf("resume.test");
    let manifests = [
        service("web", &[web.addr]),
        tls_secret("resume-tls", &leaf),
        ingress("web", "resume.test", "/", "web", Some("resume-tls")),
    ];
    let (_dir, gatehouse) = start(&manifests, Limits::default()).await;
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.clone()).expect("CA");
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let config = std::sync::Arc::new(config);
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let (mut tls, _) = tls_connect(gatehouse.https_addr, "resume.test", config.clone())
                .await
                .expect("handshake");
            // TLS 1.3 tickets arrive after the handshake: exchange a request first.
            tls.write_all(b"GET / HTTP/1.1\r\nhost: resume.test\r\nconnection: close\r\n\r\n")
                .await
                .expect("write");
            let mut response = Vec::new();
            let _ = tls.read_to_end(&mut response).await;
            kinds.push(tls.get_ref().1.handshake_kind());
        }
        assert_eq!(
            kinds[1],
            Some(rustls::HandshakeKind::Resumed),
            "{versions:?}: {kinds:?}"
        );
    }
}
