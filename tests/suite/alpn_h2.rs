//! RFC 9113 §3.3: a TLS connection whose ALPN chose `h2` speaks only
//! HTTP/2. An HTTP/1.1 request on it is an invalid connection preface
//! (h2spec `http2/3.5/2`), answered with GOAWAY or a close, never with an
//! HTTP/1.1 response. The plain port keeps serving both.

use crate::support;

use std::time::Duration;

use http::StatusCode;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a connection sends back to `request`, and whether it then closed
/// (rather than going quiet for two seconds).
async fn answer_to<S>(stream: &mut S, request: &[u8]) -> (Vec<u8>, bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (answer, true),
            Err(_) => return (answer, false),
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn http_1_1_on_an_h2_connection_is_a_bad_preface_not_a_request() {
    let site = Site::one_route("shop", "shop.test", &[])
        .await
        .start()
        .await;
    let addr = site.gatehouse.https_addr;
    let request = b"GET / HTTP/1.1\r\nHost: shop.test\r\n\r\n";

    let h2 = tls_config(None, &[b"h2"]);
    let (mut tls, _) = tls_connect(addr, "shop.test", h2).await.expect("TLS");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (answer, closed) = answer_to(&mut tls, request).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "an h2 connection answered HTTP/1.1: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // If anything came back, it is HTTP/2 frames: the server's SETTINGS
    // first (type 4); then GOAWAY (type 7) or the connection closes.
    if answer.len() >= 9 {
        assert_eq!(answer[3], 4, "the server's preface is a SETTINGS frame");
        let mut at = 0;
        let mut types = Vec::new();
        while at + 9 <= answer.len() {
            let len = u32::from_be_bytes([0, answer[at], answer[at + 1], answer[at + 2]]) as usize;
            types.push(answer[at + 3]);
            at += 9 + len;
        }
        assert!(
            closed || types.contains(&7),
            "frames {types:?}: neither GOAWAY nor a close"
        );
    }
    assert!(
        closed || !answer.is_empty(),
        "the connection neither answered nor closed"
    );

    // The same request over ALPN http/1.1 is served.
    let h1 = tls_config(None, &[b"http/1.1"]);
    let (mut tls, _) = tls_connect(addr, "shop.test", h1).await.expect("TLS");
    let (answer, _) = answer_to(&mut tls, request).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn h2_clients_and_the_plain_port_are_served_as_before() {
    let site = Site::one_route("shop", "shop.test", &[])
        .await
        .start()
        .await;
    let h2 = tls_config(None, &[b"h2"]);
    let (tls, _) = tls_connect(site.gatehouse.https_addr, "shop.test", h2)
        .await
        .expect("TLS");
    let io = hyper_util::rt::TokioIo::new(tls);
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = http::Request::get("https://shop.test/")
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .expect("request");
    let reply = sender.send_request(req).await.expect("h2 request");
    assert_eq!(reply.status(), StatusCode::OK);
    let plain = http_get(site.gatehouse.http_addr, "shop.test", "/").await;
    assert_eq!(plain.status, StatusCode::OK);
}
