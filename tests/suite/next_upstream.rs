//! proxy-next-upstream end to end: a Service with a healthy endpoint and
//! one that answers 503.

use crate::support;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use support::*;
use tokio::io::AsyncWriteExt;

/// An endpoint at `addr` that answers every request 503 and closes.
async fn failing_endpoint(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                if try_read_head(&mut stream).await.is_ok() {
                    let _ = stream
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy")
                        .await;
                }
            });
        }
    })
}

async fn site(
    annotations: &[(&str, &str)],
) -> (
    tempfile::TempDir,
    Backend,
    tokio::task::JoinHandle<()>,
    gatehouse::app::Running,
) {
    let good = Backend::start_on("127.0.0.1:0".parse().unwrap(), "good").await;
    let bad_addr: SocketAddr = format!("127.0.0.2:{}", good.addr.port()).parse().unwrap();
    let bad = failing_endpoint(bad_addr).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = [
        INGRESS_CLASS.to_owned(),
        service("web", &[good.addr, bad_addr]),
        ingress_annotated("web", "web.test", "/", "web", None, annotations),
    ]
    .concat();
    std::fs::write(dir.path().join("all.yaml"), manifests).expect("write");
    let gatehouse = start_gatehouse(dir.path()).await;
    (dir, good, bad, gatehouse)
}

async fn statuses(gatehouse: &gatehouse::app::Running, method: Method, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    let mut conn = http_connect(gatehouse.http_addr).await;
    for _ in 0..n {
        let req: Request<Full<Bytes>> = Request::builder()
            .method(method.clone())
            .uri("/")
            .header(http::header::HOST, "web.test")
            .body(Full::default())
            .expect("request");
        out.push(
            send_request(&mut conn, req)
                .await
                .expect("request")
                .status
                .as_u16(),
        );
    }
    out
}

#[tokio::test]
async fn a_503_is_tried_on_the_next_endpoint_when_asked() {
    let (_dir, _good, _bad, gatehouse) = site(&[(
        "nginx.ingress.kubernetes.io/proxy-next-upstream",
        "error timeout http_503",
    )])
    .await;
    let got = statuses(&gatehouse, Method::GET, 10).await;
    assert!(got.iter().all(|s| *s == 200), "{got:?}");
}

#[tokio::test]
async fn by_default_a_503_is_passed_on_and_a_post_is_not_resent() {
    let (_dir, _good, _bad, gatehouse) = site(&[]).await;
    let got = statuses(&gatehouse, Method::GET, 10).await;
    assert!(
        got.contains(&503) && got.contains(&200),
        "round robin over both: {got:?}"
    );
    // Even asked to retry 503s, a POST that reached an endpoint is not
    // sent again without non_idempotent.
    let (_dir, _good, _bad, gatehouse) = site(&[(
        "nginx.ingress.kubernetes.io/proxy-next-upstream",
        "http_503",
    )])
    .await;
    let got = statuses(&gatehouse, Method::POST, 10).await;
    assert!(got.contains(&503), "{got:?}");
    let (_dir, _good, _bad, gatehouse) = site(&[(
        "nginx.ingress.kubernetes.io/proxy-next-upstream",
        "http_503 non_idempotent",
    )])
    .await;
    let got = statuses(&gatehouse, Method::POST, 10).await;
    assert!(got.iter().all(|s| *s == 200), "{got:?}");
}
