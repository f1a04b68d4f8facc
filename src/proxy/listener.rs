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

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve_plain(listener: TcpListener, proxy: Arc<Proxy>) {
    let server = auto::Builder::new(TokioExecutor::new());
    loop {
        let Some((stream, conn)) = accept(&listener, false).await else {
            continue;
        };
        tokio::spawn(serve(stream, conn, proxy.clone(), server.clone()));
    }
}

pub async fn serve_tls(listener: TcpListener, proxy: Arc<Proxy>, acceptor: TlsAcceptor) {
    let server = auto::Builder::new(TokioExecutor::new());
    loop {
        let Some((stream, conn)) = accept(&listener, true).await else {
            continue;
        };
        let (acceptor, proxy, server) = (acceptor.clone(), proxy.clone(), server.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve(tls, conn, proxy, server).await,
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

async fn serve<S>(
    stream: S,
    conn: ConnInfo,
    proxy: Arc<Proxy>,
    server: auto::Builder<TokioExecutor>,
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
