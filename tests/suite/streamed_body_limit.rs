//! `proxy-body-size` on a body that declares no length: it is counted as
//! it streams, and when it goes past the limit the client gets 413 —
//! whatever protocol the endpoint speaks (an HTTP/2 upstream used to turn
//! the cut into its own stream error, and the client got 502).

use crate::support;

use support::*;
use tokio::io::AsyncWriteExt;

/// A chunked POST of `chunks` chunks of 1 KiB, and the status line of the
/// answer.
async fn chunked_post(addr: std::net::SocketAddr, host: &str, chunks: usize) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/grpc\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
    for _ in 0..chunks {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break; // the proxy may answer and close before the rest
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let head = read_head(&mut stream).await;
    head.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_gets_413_over_http_1_1_and_http_2_upstreams() {
    let limit = ("nginx.ingress.kubernetes.io/proxy-body-size", "4k");
    let grpc = ("nginx.ingress.kubernetes.io/backend-protocol", "GRPC");
    let site = Site::builder()
        .backend("web")
        .await
        .manifests(ingress_annotated(
            "h1",
            "h1.test",
            "/",
            "web",
            None,
            &[limit],
        ))
        .manifests(ingress_annotated(
            "h2",
            "h2.test",
            "/",
            "web",
            None,
            &[limit, grpc],
        ))
        .start()
        .await;
    let addr = site.gatehouse.http_addr;
    for host in ["h1.test", "h2.test"] {
        let under = chunked_post(addr, host, 2).await;
        assert!(
            under.starts_with("HTTP/1.1 200"),
            "{host} under the limit: {under}"
        );
        let over = chunked_post(addr, host, 64).await;
        assert!(
            over.starts_with("HTTP/1.1 413"),
            "{host} over the limit: {over}"
        );
    }
}
