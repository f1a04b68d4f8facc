//! Clients that send what they should not: each gets the answer nginx
//! gives, and a well-behaved client is served meanwhile.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use gatehouse::proxy::Limits;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;
use tokio::io::AsyncWriteExt;

/// A TLS site `shop.test` whose backend is `web`, with `limits`.
async fn site(limits: Limits) -> Site {
    let plain_too = [("nginx.ingress.kubernetes.io/ssl-redirect", "false")];
    let shop = ingress_annotated(
        "shop",
        "shop.test",
        "/",
        "web",
        Some("shop-tls"),
        &plain_too,
    );
    let site = Site::builder().backend("web").await;
    site.certificate("shop.test", "shop-tls")
        .manifests(shop)
        .limits(limits)
        .start()
        .await
}

#[tokio::test]
async fn a_request_body_with_a_bad_chunk_size_is_the_clients_fault_400() {
    let site = site(Limits::default()).await;
    let mut raw = tokio::net::TcpStream::connect(site.gatehouse.http_addr)
        .await
        .expect("connect");
    raw.write_all(
        b"POST / HTTP/1.1\r\nhost: shop.test\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
    )
    .await
    .expect("write");
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut raw))
        .await
        .expect("an answer");
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert_eq!(
        status_of(site.gatehouse.http_addr, "shop.test").await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_head_size_limit_holds_for_http2_as_for_http1() {
    let limits = Limits {
        max_header_bytes: 8192,
        ..Limits::default()
    };
    let site = site(limits).await;
    let padding = "x".repeat(12 * 1024);
    let (mut h2, _) = h2_connect(site.gatehouse.https_addr, "shop.test", &site.pki.ca).await;
    let big = Request::get("https://shop.test/")
        .header("x-padding", padding.as_str())
        .body(Full::<Bytes>::default())
        .expect("request");
    let refused = h2.send_request(big).await.expect("an answer");
    assert_eq!(
        refused.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    // The connection and a request within the limit are unaffected.
    let small = Request::get("https://shop.test/")
        .body(Full::<Bytes>::default())
        .expect("request");
    let (mut h2, _) = h2_connect(site.gatehouse.https_addr, "shop.test", &site.pki.ca).await;
    let response = h2.send_request(small).await.expect("small request");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_absurd_uri_gets_its_431_read_not_reset() {
    let site = site(Limits::default()).await;
    let uri = "a".repeat(100 * 1024);
    let request = format!("GET /{uri} HTTP/1.1\r\nhost: shop.test\r\n\r\n");
    for _ in 0..3 {
        // As curl does over HTTPS/1.1: the whole request first, then the
        // answer, which must arrive although Gatehouse stopped reading
        // long before (closing on unread input would reset the
        // connection, and the client's write would fail).
        let config = tls_config(Some(&site.pki.ca), &[b"http/1.1"]);
        let (mut tls, _) = tls_connect(site.gatehouse.https_addr, "shop.test", config)
            .await
            .expect("TLS");
        let written = tls.write_all(request.as_bytes()).await;
        assert!(
            written.is_ok(),
            "the request could not be sent: {written:?}"
        );
        let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut tls))
            .await
            .expect("an answer in time");
        assert!(head.starts_with("HTTP/1.1 431"), "{head:?}");
    }
    assert_eq!(
        status_of(site.gatehouse.http_addr, "shop.test").await,
        StatusCode::OK
    );
}

/// Opens streams on one HTTP/2 connection and resets each, `wait` after
/// opening it (zero: at once, in bursts), until Gatehouse stops taking
/// them or `limit` is reached; returns how many were sent, once the
/// connection has ended.
async fn reset_flood(addr: std::net::SocketAddr, pki: &Pki, wait: Duration, limit: usize) -> usize {
    let config = tls_config(Some(&pki.ca), &[b"h2"]);
    let (tls, _) = tls_connect(addr, "shop.test", config).await.expect("TLS");
    let (mut flood, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    let ended = tokio::spawn(connection);
    let mut sent = 0;
    while sent < limit {
        flood = match flood.ready().await {
            Ok(ready) => ready,
            Err(_) => break,
        };
        let request = Request::get("https://shop.test/sleep/50")
            .body(())
            .expect("request");
        let Ok((_response, mut stream)) = flood.send_request(request, false) else {
            break;
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
        if sent % 16 == 0 {
            // Let the connection task write the frames and read what
            // Gatehouse answers.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    if sent < limit {
        tokio::time::timeout(Duration::from_secs(10), ended)
            .await
            .expect("the flood connection is ended by Gatehouse")
            .expect("connection task")
            .ok();
    }
    sent
}

/// CVE-2023-44487: a client that opens streams and resets them, as fast
/// as it can (h2's limit on streams reset before they are taken stops
/// it), or each once it has been taken and forwarded (Gatehouse's count
/// of cancelled streams stops it). Either way the flood is cut off after a
/// few hundred streams, and a well-behaved client is served.
#[tokio::test]
async fn an_http2_rapid_reset_flood_is_cut_off_and_others_are_served() {
    let site = site(Limits::default()).await;
    let addr = site.gatehouse.https_addr;
    let burst = reset_flood(addr, &site.pki, Duration::ZERO, 20_000).await;
    assert!(burst < 2_000, "{burst} resets in bursts were taken");
    let taken = reset_flood(addr, &site.pki, Duration::from_millis(2), 1_000).await;
    assert!(taken < 1_000, "{taken} resets of taken streams were taken");
    let (mut good, _) = h2_connect(addr, "shop.test", &site.pki.ca).await;
    let ok = Request::get("https://shop.test/")
        .body(Full::<Bytes>::default())
        .expect("request");
    assert_eq!(
        good.send_request(ok).await.expect("served").status(),
        StatusCode::OK
    );
}

/// Request smuggling shapes: each is refused with 400, or (both
/// Content-Length and Transfer-Encoding, which RFC 9112 lets a server
/// process by Transfer-Encoding alone) answered once; either way the
/// connection is closed, so nothing after it is read as a second request.
#[tokio::test]
async fn request_smuggling_shapes_are_refused_with_400() {
    use tokio::io::AsyncReadExt;
    let site = site(Limits::default()).await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nhost: shop.test\r\n\r\n";
    let shapes = [
        (
            "Content-Length and Transfer-Encoding",
            format!("POST / HTTP/1.1\r\nhost: shop.test\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "two different Content-Lengths",
            format!("POST / HTTP/1.1\r\nhost: shop.test\r\ncontent-length: 5\r\ncontent-length: 47\r\n\r\nhello{smuggled}"),
        ),
        (
            "an obs-folded header",
            format!("GET / HTTP/1.1\r\nhost: shop.test\r\nx-folded: a\r\n b\r\n\r\n{smuggled}"),
        ),
        (
            "chunked not the final transfer coding",
            format!("POST / HTTP/1.1\r\nhost: shop.test\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
    ];
    for (shape, request) in shapes {
        let mut raw = tokio::net::TcpStream::connect(site.gatehouse.http_addr)
            .await
            .expect("connect");
        raw.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{shape}: the connection stayed open"))
            .ok();
        let text = String::from_utf8_lossy(&answer);
        let refused = text.starts_with("HTTP/1.1 400");
        let by_transfer_encoding = shape.starts_with("Content-Length and")
            && text.starts_with("HTTP/1.1 200")
            && text.contains("\"body_len\":0");
        assert!(refused || by_transfer_encoding, "{shape}: {text}");
        let answers = text.lines().filter(|l| l.starts_with("HTTP/1.1 ")).count();
        assert_eq!(answers, 1, "{shape}: {text}");
        assert!(!text.contains("/smuggled"), "{shape}: {text}");
    }
}

/// `--max-connections`: past it a new connection waits, unserved, and is
/// served as soon as another one closes.
#[tokio::test]
async fn max_connections_holds_new_connections_until_one_closes() {
    let limits = Limits {
        max_connections: 2,
        workers: 1,
        ..Limits::default()
    };
    let site = site(limits).await;
    let addr = site.gatehouse.http_addr;
    let mut first = http_connect(addr).await;
    let mut second = http_connect(addr).await;
    for sender in [&mut first, &mut second] {
        let reply = send(sender, "shop.test", "/").await.expect("served");
        assert_eq!(reply.status, StatusCode::OK);
    }
    // The third is accepted by the kernel, not by Gatehouse: no answer.
    let mut third = tokio::net::TcpStream::connect(addr).await.expect("connect");
    third
        .write_all(b"GET / HTTP/1.1\r\nhost: shop.test\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let waiting = tokio::time::timeout(Duration::from_millis(500), read_head(&mut third)).await;
    assert!(
        waiting.is_err(),
        "served past --max-connections: {waiting:?}"
    );
    drop(first);
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut third))
        .await
        .expect("served once a connection closed");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(second);
}

/// A body past `proxy-body-size` is answered 413 before it is read; the
/// client, still uploading, must get that answer, not a reset.
#[tokio::test]
async fn an_early_413_reaches_a_client_still_uploading() {
    let site = site(Limits::default()).await;
    let body = Bytes::from(vec![b'x'; 4 << 20]);
    for _ in 0..5 {
        let (mut sender, _) =
            https_connect(site.gatehouse.https_addr, "shop.test", &site.pki.ca).await;
        let req = Request::post("/")
            .header(http::header::HOST, "shop.test")
            .body(Full::new(body.clone()))
            .expect("request");
        let reply = send_request(&mut sender, req).await.expect("an answer");
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}

/// A client that asks for a large response and never reads it: Gatehouse
/// must stop reading from the upstream once the client's socket is full,
/// not hold the response. What the upstream got out stays bounded.
#[tokio::test]
async fn a_client_that_never_reads_back_pressures_the_upstream() {
    let (upstream, written, _task) = endless_upstream().await;
    let web = Backend::start("web").await;
    let manifests = INGRESS_CLASS.to_owned()
        + &service("big", &[upstream])
        + &ingress("big", "big.test", "/", "big", None)
        + &service("web", &[web.addr])
        + &ingress("shop", "shop.test", "/", "web", None);
    let (_dir, gatehouse) = serve_manifests(&manifests).await;
    let mut client = tokio::net::TcpStream::connect(gatehouse.http_addr)
        .await
        .expect("connect");
    client
        .write_all(b"GET /huge HTTP/1.1\r\nhost: big.test\r\n\r\n")
        .await
        .expect("request");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = written.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = written.load(std::sync::atomic::Ordering::Relaxed);
    // Four sockets' kernel buffers (autotuned up to ~6 MB each on
    // loopback) and the proxy's: measured 12–20 MB. What matters is that
    // it stops.
    assert!(
        out < 32 << 20,
        "{out} bytes left the upstream for a client that reads nothing"
    );
    assert!(
        later - out < 1 << 20,
        "the upstream kept going: {out} then {later}"
    );
    assert_eq!(
        status_of(gatehouse.http_addr, "big.test").await,
        StatusCode::OK
    );
    drop(client);
}

/// A request with more header fields than hyper's limit (100) over
/// HTTP/1.1 is refused with 431 before anything is forwarded. (Over
/// HTTP/2 the header list's size is the limit, whatever the count:
/// `the_head_size_limit_holds_for_http2_as_for_http1`.)
#[tokio::test]
async fn too_many_header_fields_get_431() {
    let site = site(Limits::default()).await;
    let before = site.backend("web").seen.lock().expect("seen").len();
    let mut raw = tokio::net::TcpStream::connect(site.gatehouse.http_addr)
        .await
        .expect("connect");
    let mut request = String::from("GET / HTTP/1.1\r\nhost: shop.test\r\n");
    for i in 0..200 {
        request.push_str(&format!("x-field-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    raw.write_all(request.as_bytes()).await.expect("write");
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut raw))
        .await
        .expect("an answer");
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    assert_eq!(
        site.backend("web").seen.lock().expect("seen").len(),
        before,
        "nothing forwarded"
    );
    assert_eq!(
        status_of(site.gatehouse.http_addr, "shop.test").await,
        StatusCode::OK
    );
}
