//! The ingress-nginx annotations end to end: real HTTP and HTTPS clients,
//! real backends, Gatehouse in between.

use crate::support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const N: &str = "nginx.ingress.kubernetes.io";

/// Gatehouse on one manifest text, with its backends kept alive.
struct Setup {
    _dir: tempfile::TempDir,
    _backends: Vec<Backend>,
    gatehouse: gatehouse::app::Running,
}

async fn setup(backends: Vec<Backend>, manifests: &[String]) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = [INGRESS_CLASS.to_owned()]
        .iter()
        .chain(manifests)
        .cloned()
        .collect::<String>();
    std::fs::write(dir.path().join("all.yaml"), text).expect("write");
    let gatehouse = start_gatehouse(dir.path()).await;
    Setup {
        _dir: dir,
        _backends: backends,
        gatehouse,
    }
}

fn key(name: &str) -> String {
    format!("{N}/{name}")
}

#[tokio::test]
async fn plain_http_to_a_tls_host_is_redirected_and_the_redirect_leads_to_the_same_backend() {
    let web = Backend::start("web").await;
    let pki = Pki::new();
    let leaf = pki.leaf("secure.test");
    let manifests = [
        service("web", &[web.addr]),
        tls_secret("secure-tls", &leaf),
        ingress("secure", "secure.test", "/", "web", Some("secure-tls")),
    ];
    let s = setup(vec![web], &manifests).await;

    let reply = http_get(s.gatehouse.http_addr, "secure.test", "/cart?item=7&qty=2").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    let location = reply.headers["location"].to_str().expect("location");
    assert_eq!(location, "https://secure.test/cart?item=7&qty=2");

    // Follow it (to our HTTPS port: in a cluster the Service maps 443 to it).
    let (mut conn, _) = https_connect(s.gatehouse.https_addr, "secure.test", &pki.ca).await;
    let followed = send(&mut conn, "secure.test", "/cart?item=7&qty=2")
        .await
        .expect("request");
    assert_eq!(followed.status, StatusCode::OK);
    assert_eq!(followed.backend(), "web");
    assert_eq!(followed.seen()["uri"], "/cart?item=7&qty=2");
}

#[tokio::test]
async fn acme_http01_challenges_are_served_over_plain_http_on_redirected_hosts() {
    let web = Backend::start("web").await;
    let solver = Backend::start("acme-solver").await;
    // cert-manager's solver Ingress: its own, without TLS, on the same host.
    let manifests = [
        service("web", &[web.addr]),
        service("solver", &[solver.addr]),
        ingress_annotated(
            "site",
            "site.test",
            "/",
            "web",
            None,
            &[(&key("force-ssl-redirect"), "true")],
        ),
        ingress(
            "cm-acme-http-solver-x7",
            "site.test",
            "/.well-known/acme-challenge/Zm9vYmFy",
            "solver",
            None,
        ),
    ];
    let s = setup(vec![web, solver], &manifests).await;
    let addr = s.gatehouse.http_addr;

    let challenge = http_get(addr, "site.test", "/.well-known/acme-challenge/Zm9vYmFy").await;
    assert_eq!(challenge.status, StatusCode::OK);
    assert_eq!(challenge.backend(), "acme-solver");
    // The rest of the host is still redirected.
    assert_eq!(
        http_get(addr, "site.test", "/").await.status,
        StatusCode::PERMANENT_REDIRECT
    );
}

#[tokio::test]
async fn rewrite_target_with_capture_groups_reaches_the_backend_with_the_new_path_and_the_query() {
    let web = Backend::start("web").await;
    let manifests = [
        service("web", &[web.addr]),
        ingress_annotated(
            "rw",
            "rw.test",
            "/something(/|$)(.*)",
            "web",
            None,
            &[(&key("rewrite-target"), "/$2")],
        ),
    ];
    let s = setup(vec![web], &manifests).await;
    let reply = http_get(
        s.gatehouse.http_addr,
        "rw.test",
        "/something/new/path?a=1&b=two",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.seen()["uri"], "/new/path?a=1&b=two");
    let reply = http_get(s.gatehouse.http_addr, "rw.test", "/something").await;
    assert_eq!(reply.seen()["uri"], "/");
}

#[tokio::test]
async fn source_allowlist_forbids_other_clients() {
    let web = Backend::start("web").await;
    let manifests = [
        service("web", &[web.addr]),
        ingress_annotated(
            "closed",
            "closed.test",
            "/",
            "web",
            None,
            &[(&key("allowlist-source-range"), "10.0.0.0/8")],
        ),
        ingress_annotated(
            "open",
            "open.test",
            "/",
            "web",
            None,
            &[(&key("whitelist-source-range"), "10.0.0.0/8, 127.0.0.0/8")],
        ),
    ];
    let s = setup(vec![web], &manifests).await;
    assert_eq!(
        http_get(s.gatehouse.http_addr, "closed.test", "/")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        http_get(s.gatehouse.http_addr, "open.test", "/")
            .await
            .backend(),
        "web"
    );
}

#[tokio::test]
async fn bodies_past_proxy_body_size_get_413_whether_declared_or_streamed() {
    let web = Backend::start("web").await;
    let manifests = [
        service("web", &[web.addr]),
        ingress_annotated(
            "small",
            "small.test",
            "/",
            "web",
            None,
            &[(&key("proxy-body-size"), "1k")],
        ),
    ];
    let s = setup(vec![web], &manifests).await;
    let addr = s.gatehouse.http_addr;

    let post = |len: usize| {
        Request::post("/upload")
            .header("host", "small.test")
            .body(Full::new(Bytes::from(vec![b'x'; len])))
            .expect("request")
    };
    let mut conn = http_connect(addr).await;
    let fits = send_request(&mut conn, post(1024)).await.expect("request");
    assert_eq!(fits.status, StatusCode::OK);
    assert_eq!(fits.seen()["body_len"], 1024);
    let mut conn = http_connect(addr).await;
    let declared = send_request(&mut conn, post(1025)).await.expect("request");
    assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Chunked, no Content-Length: cut off while streaming.
    let mut raw = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let chunk = vec![b'y'; 600];
    let mut request =
        b"POST /upload HTTP/1.1\r\nhost: small.test\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    raw.write_all(&request).await.expect("write");
    let mut head = [0u8; 12];
    raw.read_exact(&mut head).await.expect("status line");
    assert_eq!(&head, b"HTTP/1.1 413");
}

#[tokio::test]
async fn an_opaque_secret_is_served() {
    let web = Backend::start("web").await;
    let pki = Pki::new();
    let leaf = pki.leaf("opaque.test");
    let opaque = tls_secret("opaque-tls", &leaf).replace("type: kubernetes.io/tls", "type: Opaque");
    let manifests = [
        service("web", &[web.addr]),
        opaque,
        ingress("opaque", "opaque.test", "/", "web", Some("opaque-tls")),
    ];
    let s = setup(vec![web], &manifests).await;
    let (mut conn, served) = https_connect(s.gatehouse.https_addr, "opaque.test", &pki.ca).await;
    assert_eq!(served, leaf.der);
    assert_eq!(
        send(&mut conn, "opaque.test", "/")
            .await
            .expect("request")
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn upstream_vhost_and_x_forwarded_prefix_reach_the_backend() {
    let web = Backend::start("web").await;
    let manifests = [
        service("web", &[web.addr]),
        ingress_annotated(
            "vhost",
            "public.test",
            "/",
            "web",
            None,
            &[
                (&key("upstream-vhost"), "internal.svc.cluster.local"),
                (&key("x-forwarded-prefix"), "/shop"),
            ],
        ),
    ];
    let s = setup(vec![web], &manifests).await;
    let seen = http_get(s.gatehouse.http_addr, "public.test", "/")
        .await
        .seen();
    assert_eq!(seen["headers"]["host"], "internal.svc.cluster.local");
    assert_eq!(seen["headers"]["x-forwarded-host"], "public.test");
    assert_eq!(seen["headers"]["x-forwarded-prefix"], "/shop");
}

#[tokio::test]
async fn backend_protocol_https_and_grpc_change_how_the_endpoint_is_reached() {
    let pki = Pki::new();
    let tls_backend = Backend::start_tls("tls-backend", &pki.leaf("pod.internal")).await;
    let h2c_backend = Backend::start("h2c-backend").await;
    let h2_tls_backend = Backend::start_tls("h2-tls-backend", &pki.leaf("grpc.internal")).await;
    let manifests = [
        service("secure-svc", &[tls_backend.addr]),
        service("grpc-svc", &[h2c_backend.addr]),
        ingress_annotated(
            "https",
            "https-upstream.test",
            "/",
            "secure-svc",
            None,
            &[(&key("backend-protocol"), "HTTPS")],
        ),
        ingress_annotated(
            "grpc",
            "grpc.test",
            "/",
            "grpc-svc",
            None,
            &[(&key("backend-protocol"), "GRPC")],
        ),
        service("grpcs-svc", &[h2_tls_backend.addr]),
        ingress_annotated(
            "grpcs",
            "grpcs.test",
            "/",
            "grpcs-svc",
            None,
            &[(&key("backend-protocol"), "GRPCS")],
        ),
    ];
    let s = setup(vec![tls_backend, h2c_backend, h2_tls_backend], &manifests).await;

    let reply = http_get(s.gatehouse.http_addr, "https-upstream.test", "/x").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.backend(), "tls-backend");
    let reply = http_get(s.gatehouse.http_addr, "grpc.test", "/pkg.Service/Method").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.seen()["version"], "HTTP/2.0");
    assert_eq!(reply.seen()["headers"]["te"], "trailers");
    let reply = http_get(s.gatehouse.http_addr, "grpcs.test", "/pkg.Service/Method").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.backend(), "h2-tls-backend");
    assert_eq!(reply.seen()["version"], "HTTP/2.0");
}

#[tokio::test]
async fn a_backend_slower_than_proxy_read_timeout_gets_504() {
    let web = Backend::start("web").await;
    let manifests = [
        service("web", &[web.addr]),
        ingress_annotated(
            "slow",
            "slow.test",
            "/",
            "web",
            None,
            &[(&key("proxy-read-timeout"), "1")],
        ),
    ];
    let s = setup(vec![web], &manifests).await;
    let reply = http_get(s.gatehouse.http_addr, "slow.test", "/sleep/3000").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        http_get(s.gatehouse.http_addr, "slow.test", "/sleep/10")
            .await
            .status,
        StatusCode::OK
    );
}

/// `proxy-read-timeout` also bounds each silence within a response body, as
/// nginx's `proxy_read_timeout` bounds the wait between two reads: a body
/// that keeps trickling arrives whole even when it takes longer than the
/// timeout, one that stops is cut off and its connection closed.
#[tokio::test]
async fn a_response_body_that_goes_quiet_is_cut_off_after_proxy_read_timeout() {
    let (addr, endpoint) = raw_endpoint(|request, mut stream| async move {
        let pause = std::time::Duration::from_millis(400);
        if request.starts_with(b"GET /trickle ") {
            // Six bytes over 2.4 s, each gap well inside the timeout.
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n")
                .await;
            for byte in b"abcdef" {
                tokio::time::sleep(pause).await;
                let _ = stream.write_all(&[*byte]).await;
            }
        } else {
            // Ten of a hundred promised bytes, then silence.
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                .await;
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        }
    })
    .await;
    let manifests = [
        service("quiet", &[addr]),
        ingress_annotated(
            "quiet",
            "quiet.test",
            "/",
            "quiet",
            None,
            &[(&key("proxy-read-timeout"), "1")],
        ),
    ];
    let s = setup(vec![], &manifests).await;

    let reply = http_get(s.gatehouse.http_addr, "quiet.test", "/trickle").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(&reply.body[..], b"abcdef");

    let mut raw = tokio::net::TcpStream::connect(s.gatehouse.http_addr)
        .await
        .expect("connect");
    raw.write_all(b"GET /stall HTTP/1.1\r\nhost: quiet.test\r\n\r\n")
        .await
        .expect("request");
    let mut received = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        raw.read_to_end(&mut received),
    )
    .await;
    assert!(read.is_ok(), "the stalled response was not cut off");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("0123456789"), "{text}");
    endpoint.abort();
}

#[tokio::test]
async fn permanent_redirect_and_app_root_answer_without_the_backend() {
    let web = Backend::start("web").await;
    let manifests = [
        service("web", &[web.addr]),
        ingress_annotated(
            "moved",
            "old.test",
            "/",
            "web",
            None,
            &[(&key("permanent-redirect"), "https://new.test/welcome")],
        ),
        ingress_annotated(
            "root",
            "app.test",
            "/",
            "web",
            None,
            &[(&key("app-root"), "/dashboard")],
        ),
    ];
    let s = setup(vec![web], &manifests).await;
    let addr = s.gatehouse.http_addr;
    let moved = http_get(addr, "old.test", "/anything").await;
    assert_eq!(moved.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(moved.headers["location"], "https://new.test/welcome");
    let root = http_get(addr, "app.test", "/").await;
    assert_eq!(root.status, StatusCode::FOUND);
    assert_eq!(root.headers["location"], "http://app.test/dashboard");
    assert_eq!(
        http_get(addr, "app.test", "/dashboard").await.backend(),
        "web"
    );
}

/// Writes a request head announcing `len` body bytes, then the body in
/// `chunks` pieces `gap` apart; returns the status line's code.
async fn slow_upload(
    addr: std::net::SocketAddr,
    host: &str,
    chunks: usize,
    gap_ms: u64,
    send_all: bool,
) -> String {
    let mut raw = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let len = chunks * 100;
    let head = format!("POST /upload HTTP/1.1\r\nhost: {host}\r\ncontent-length: {len}\r\n\r\n");
    raw.write_all(head.as_bytes()).await.expect("head");
    let to_send = if send_all { chunks } else { 1 };
    for _ in 0..to_send {
        raw.write_all(&[b'z'; 100]).await.expect("chunk");
        tokio::time::sleep(std::time::Duration::from_millis(gap_ms)).await;
    }
    let mut status = [0u8; 12];
    raw.read_exact(&mut status).await.expect("status line");
    String::from_utf8_lossy(&status[9..12]).into_owned()
}

#[tokio::test]
async fn a_slow_but_steady_upload_is_not_cut_off_while_a_stalled_one_gets_408() {
    let web = Backend::start("web").await;
    let manifests = [
        service("web", &[web.addr]),
        ingress_annotated(
            "upload",
            "upload.test",
            "/",
            "web",
            None,
            &[
                (&key("proxy-send-timeout"), "1"),
                (&key("proxy-read-timeout"), "1"),
            ],
        ),
    ];
    let s = setup(vec![web], &manifests).await;
    // 6 chunks 400 ms apart: longer than both timeouts in all, never idle
    // for longer than either.
    assert_eq!(
        slow_upload(s.gatehouse.http_addr, "upload.test", 6, 400, true).await,
        "200"
    );
    // One chunk of five, then silence: the client stalled.
    assert_eq!(
        slow_upload(s.gatehouse.http_addr, "upload.test", 5, 10, false).await,
        "408"
    );
}
