//! The load comparison's backend (`benches/compare/run.sh`): HTTP/1.1 with
//! keep-alive, answering every request with a fixed 200 so that the proxy in
//! front, not the backend, is what gets measured. An `Upgrade` request is
//! switched (101) and then echoes every byte (the soak's WebSockets).
//!
//! Usage: bench-backend [ADDR]   (default 127.0.0.1:9090)

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, Response};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

const BODY: &[u8] = b"hello from the bench backend\n";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:9090")
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("bench-backend listening on http://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|mut req: http::Request<hyper::body::Incoming>| async move {
                if let Some(protocol) = req.headers().get(header::UPGRADE).cloned() {
                    let upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        if let Ok(upgraded) = upgrade.await {
                            let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                        }
                    });
                    let mut response = Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                    let headers = response.headers_mut();
                    headers.insert(
                        header::CONNECTION,
                        header::HeaderValue::from_static("upgrade"),
                    );
                    headers.insert(header::UPGRADE, protocol);
                    return Ok::<_, Infallible>(response);
                }
                let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain"),
                );
                Ok::<_, Infallible>(response)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
