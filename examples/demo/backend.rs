//! A tiny HTTP backend for the demo and the benchmarks: answers every
//! request with 200 and a few lines saying what it received.
//!
//! Usage: demo-backend [ADDR] [NAME]   (default 127.0.0.1:9080 demo-backend)

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:9080").parse()?;
    let name: &'static str = args.next().unwrap_or_else(|| "demo-backend".into()).leak();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("{name} listening on http://{addr}");
    let server = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let server = server.clone();
        tokio::spawn(async move {
            let service =
                service_fn(move |req| async move { Ok::<_, Infallible>(answer(name, &req)) });
            let _ = server.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn answer(name: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |h: &str| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let body = format!(
        "hello from {name}\nrequest: {} {}\nhost: {}\nx-forwarded-for: {}\nx-forwarded-proto: {}\n",
        req.method(),
        req.uri(),
        header("host"),
        header("x-forwarded-for"),
        header("x-forwarded-proto"),
    );
    Response::new(Full::new(Bytes::from(body)))
}
