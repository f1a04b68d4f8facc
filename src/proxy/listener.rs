//! Accept loops for the plain and TLS listeners.
//!
//! Each connection is served on its own task by hyper-util's auto builder
//! (HTTP/1.1, and HTTP/2 by preface or ALPN). A failed accept or handshake
//! concerns one client and never stops the loop.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::handler::Proxy;
use super::headers::ConnInfo;
use crate::telemetry::metrics::{HandshakeLabels, ListenerLabels};
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::AtomicI64;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve_plain(listener: TcpListener, proxy: Arc<Proxy>) {
    let server = auto::Builder::new(TokioExecutor::new());
    loop {
        let Some((stream, conn)) = accept(&listener, false).await else {
            continue;
        };
        let open = OpenConnection::new(&proxy, "http");
        tokio::spawn(serve(stream, conn, proxy.clone(), server.clone(), open));
    }
}

pub async fn serve_tls(listener: TcpListener, proxy: Arc<Proxy>, acceptor: TlsAcceptor) {
    let server = auto::Builder::new(TokioExecutor::new());
    loop {
        let Some((stream, conn)) = accept(&listener, true).await else {
            continue;
        };
        let (acceptor, proxy, server) = (acceptor.clone(), proxy.clone(), server.clone());
        let open = OpenConnection::new(&proxy, "https");
        tokio::spawn(async move {
            let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            let reason = match &outcome {
                Ok(Ok(_)) => String::new(),
                Ok(Err(e)) => handshake_failure(e),
                Err(_) => "timeout".to_owned(),
            };
            let result = if reason.is_empty() { "ok" } else { "error" };
            let labels = HandshakeLabels { result, reason };
            proxy
                .telemetry()
                .metrics
                .tls_handshakes
                .get_or_create(&labels)
                .inc();
            match outcome {
                Ok(Ok(tls)) => serve(tls, conn, proxy, server, open).await,
                Ok(Err(e)) => tracing::debug!(client = %conn.client, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(client = %conn.client, "TLS handshake timed out"),
            }
        });
    }
}

async fn accept(listener: &TcpListener, tls: bool) -> Option<(tokio::net::TcpStream, ConnInfo)> {
    match listener.accept().await {
        Ok((stream, client)) => {
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().ok()?;
            Some((stream, ConnInfo { client, local, tls }))
        }
        Err(e) => {
            // Out of file descriptors and the like: back off instead of spinning.
            tracing::warn!("accept failed: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Counts a client connection as open until dropped.
struct OpenConnection(Gauge<i64, AtomicI64>);

impl OpenConnection {
    fn new(proxy: &Proxy, listener: &'static str) -> Self {
        let gauge = proxy
            .telemetry()
            .metrics
            .open_connections
            .get_or_create(&ListenerLabels { listener })
            .clone();
        gauge.inc();
        OpenConnection(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A bounded label for why a handshake failed: the rustls error's kind
/// (`alert_received`, `peer_incompatible`, ...) or the I/O error's.
fn handshake_failure(error: &std::io::Error) -> String {
    if let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        let debug = format!("{tls:?}");
        let variant = debug.split(['(', ' ', '{']).next().unwrap_or("other");
        return snake_case(variant);
    }
    match error.kind() {
        std::io::ErrorKind::UnexpectedEof => "eof".into(),
        std::io::ErrorKind::ConnectionReset => "reset".into(),
        _ => "io".into(),
    }
}

fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

async fn serve<S>(
    stream: S,
    conn: ConnInfo,
    proxy: Arc<Proxy>,
    server: auto::Builder<TokioExecutor>,
    _open: OpenConnection,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.handle(req, &conn).await) }
    });
    if let Err(e) = server.serve_connection(TokioIo::new(stream), service).await {
        tracing::debug!(client = %conn.client, "connection ended with an error: {e}");
    }
}
