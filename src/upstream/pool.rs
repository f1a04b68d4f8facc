//! Connections to the endpoints.
//!
//! Each worker has its own `Upstreams`: HTTP/1.1 keep-alive connections
//! (plain, or TLS for `backend-protocol: HTTPS`) pooled per endpoint, and one
//! shared HTTP/2 connection per endpoint (gRPC: h2c, or TLS for GRPCS).
//!
//! An HTTP/1.1 connection goes back to its pool when the response body has
//! been read to its end, from the body itself: there is no task per request
//! and no lookup beyond one hash of the endpoint's address. A response read
//! only in part closes its connection, which is the only safe thing to do
//! with HTTP/1.1. Idle connections are kept LIFO, so the warm ones are used
//! first; those idle past `upstream-keepalive-timeout`, those that served
//! `upstream-keepalive-requests`, and those the endpoint closed, are dropped
//! when met or in a sweep every few seconds of pool use. The limits come
//! from the current table (the controller ConfigMap) on every request.
//!
//! Upstream TLS does not verify the endpoint's certificate: endpoints are
//! Pods addressed by IP, usually with self-signed certificates, and
//! ingress-nginx's default (`proxy-ssl-verify: off`) is the same.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::future;
use http::uri::Authority;
use http::{Request, Response, StatusCode};
use http_body_util::Limited;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

use super::client_body::ClientBody;
use super::exchange_timeouts::Watched;
use super::retry_body::Lease;
use crate::tls::provider;
use crate::upstream::{Timeouts, UpstreamKeepalive};

/// The body sent upstream: the client's, cut off past the route's limit,
/// reporting its progress for the send and read timeouts, leased to one
/// attempt at a time.
pub type UpstreamBody = Lease<Watched<Limited<ClientBody>>>;

/// How often the pools look for idle connections to drop.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How long a connection whose response has ended may take to be ready for
/// the next request before it is given up.
const READY_WAIT: Duration = Duration::from_secs(1);

type Map<V> = HashMap<Key, V, foldhash::fast::RandomState>;

/// What went wrong talking to an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect failed")]
    Connect(#[source] std::io::Error),
    #[error("connect timed out after {0:?}")]
    ConnectTimedOut(Duration),
    #[error("TLS handshake failed")]
    Tls(#[source] std::io::Error),
    #[error("HTTP handshake failed")]
    Handshake(#[source] hyper::Error),
    #[error(transparent)]
    Exchange(hyper::Error),
}

impl UpstreamError {
    /// Whether the connection was never established: nothing was sent.
    pub fn is_connect(&self) -> bool {
        !matches!(self, UpstreamError::Exchange(_))
    }

    /// The status this failure earns.
    pub fn failure(&self) -> Failure {
        match self {
            UpstreamError::ConnectTimedOut(_) => Failure::TimedOut,
            UpstreamError::Exchange(e) => {
                let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
                while let Some(e) = current {
                    if e.is::<http_body_util::LengthLimitError>() {
                        return Failure::BodyTooLarge;
                    }
                    current = e.source();
                }
                // The request body failed on the client's side (a bad
                // chunk size, a connection cut mid-body): the client's
                // fault, not the endpoint's.
                if e.is_user() {
                    return Failure::ClientBody;
                }
                Failure::Failed
            }
            _ => Failure::Failed,
        }
    }
}

/// A request of the proxy's own: method, origin-form URI, headers.
pub struct OwnRequest {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: http::HeaderMap,
}

#[derive(Debug, thiserror::Error)]
pub enum OwnRequestError {
    #[error(transparent)]
    Failed(UpstreamError),
    #[error("no answer within the connect and read timeouts")]
    TimedOut,
}

/// What went wrong with an upstream request, for the status it earns.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The request body passed the route's limit: 413.
    BodyTooLarge,
    /// The client's request body was malformed or cut off: 400.
    ClientBody,
    /// Connect or response took too long: 504.
    TimedOut,
    /// Anything else (refused, reset, bad response): 502.
    Failed,
}

/// Where a request goes and how.
pub struct Target<'a> {
    pub authority: &'a Authority,
    pub tls: bool,
    pub http2: bool,
    pub connect_timeout: Duration,
}

/// One endpoint, as the pools know it.
#[derive(Clone)]
struct Key {
    authority: Authority,
    tls: bool,
}

// By the authority's text as written. `Authority`'s own `Hash` feeds the
// hasher a byte at a time to ignore case; endpoint addresses are formatted
// by us, so exact text is the cheaper and sufficient identity.
impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.authority.as_str().hash(state);
        self.tls.hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.authority.as_str() == other.authority.as_str() && self.tls == other.tls
    }
}

impl Eq for Key {}

/// One worker's upstream connections.
pub struct Upstreams {
    http1: Arc<Http1Pool>,
    http2: Mutex<Http2Conns>,
    tls_http1: TlsConnector,
    tls_http2: TlsConnector,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    /// Pools with ingress-nginx's default limits, until `configure`.
    pub fn new() -> Self {
        let limits = UpstreamKeepalive::default();
        Upstreams {
            http1: Arc::new(Http1Pool {
                keepalive: AtomicUsize::new(limits.connections),
                idle_timeout_ms: AtomicU64::new(limits.timeout.as_millis() as u64),
                max_requests: AtomicU32::new(limits.requests),
                idle: Mutex::new(Idle {
                    conns: Map::default(),
                    next_sweep: Instant::now() + SWEEP_EVERY,
                }),
            }),
            http2: Mutex::new(Http2Conns {
                conns: Map::default(),
                next_sweep: Instant::now() + SWEEP_EVERY,
            }),
            tls_http1: TlsConnector::from(Arc::new(unverified_tls(b"http/1.1"))),
            tls_http2: TlsConnector::from(Arc::new(unverified_tls(b"h2"))),
        }
    }

    /// Takes the current limits (`upstream-keepalive-*`); cheap enough for
    /// every request (relaxed stores to this worker's own pools).
    pub fn configure(&self, limits: &UpstreamKeepalive) {
        let pool = &self.http1;
        pool.keepalive.store(limits.connections, Ordering::Relaxed);
        let idle = limits.timeout.as_millis() as u64;
        pool.idle_timeout_ms.store(idle, Ordering::Relaxed);
        pool.max_requests.store(limits.requests, Ordering::Relaxed);
    }

    /// Sends `request` (origin-form URI for HTTP/1.1, absolute for HTTP/2)
    /// to the target and returns its response. Not an `async fn`: the
    /// exchange's own future is returned, without another one around it
    /// that the request would be copied into first.
    pub fn send(
        &self,
        request: Request<UpstreamBody>,
        target: Target<'_>,
    ) -> impl Future<Output = Result<Response<UpstreamResponse>, UpstreamError>> + '_ {
        let key = Key {
            authority: target.authority.clone(),
            tls: target.tls,
        };
        if target.http2 {
            future::Either::Left(self.send_http2(request, key, target.connect_timeout))
        } else {
            future::Either::Right(self.send_http1(request, key, target.connect_timeout))
        }
    }

    /// A bodiless HTTP/1.1 request of the proxy's own (an auth check, an
    /// error page) through the same pools, bounded by connect + read.
    pub async fn send_own(
        &self,
        parts: OwnRequest,
        authority: &Authority,
        tls: bool,
        timeouts: Timeouts,
    ) -> Result<Response<UpstreamResponse>, OwnRequestError> {
        let mut request = Request::new(Lease::empty());
        *request.method_mut() = parts.method;
        *request.uri_mut() = parts.uri;
        *request.headers_mut() = parts.headers;
        let target = Target {
            authority,
            tls,
            http2: false,
            connect_timeout: timeouts.connect,
        };
        let sent =
            tokio::time::timeout(timeouts.connect + timeouts.read, self.send(request, target));
        match sent.await {
            Ok(result) => result.map_err(OwnRequestError::Failed),
            Err(_) => Err(OwnRequestError::TimedOut),
        }
    }

    async fn send_http1(
        &self,
        mut request: Request<UpstreamBody>,
        key: Key,
        connect_timeout: Duration,
    ) -> Result<Response<UpstreamResponse>, UpstreamError> {
        loop {
            let (mut sender, uses) = match self.http1.take(&key) {
                Some(kept) => kept,
                // Boxed: connecting (a lookup, a TLS handshake) needs a large
                // future, and the request path should not carry it inline.
                None => (
                    Box::pin(self.connect_http1(&key, connect_timeout)).await?,
                    0,
                ),
            };
            let reused = uses > 0;
            match sender.try_send_request(request).await {
                Ok(response) => {
                    // A switched connection belongs to its tunnel now.
                    let release =
                        (response.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Release {
                            pool: self.http1.clone(),
                            key,
                            sender,
                            uses: uses + 1,
                        });
                    return Ok(response.map(|body| UpstreamResponse::new(body, release)));
                }
                Err(mut e) => match e.take_message() {
                    // The endpoint closed a kept connection before the
                    // request went out: try another one.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(UpstreamError::Exchange(e.into_error())),
                },
            }
        }
    }

    async fn send_http2(
        &self,
        mut request: Request<UpstreamBody>,
        key: Key,
        connect_timeout: Duration,
    ) -> Result<Response<UpstreamResponse>, UpstreamError> {
        loop {
            let idle = self.http1.idle_timeout();
            let shared = self.lock_http2().take(&key, idle);
            let (mut sender, reused) = match shared {
                Some(sender) => (sender, true),
                None => {
                    let sender = Box::pin(self.connect_http2(&key, connect_timeout)).await?;
                    self.lock_http2().put(key.clone(), sender.clone());
                    (sender, false)
                }
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response.map(|body| UpstreamResponse::new(body, None))),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => {
                        self.lock_http2().forget(&key);
                        request = unsent;
                    }
                    _ => return Err(UpstreamError::Exchange(e.into_error())),
                },
            }
        }
    }

    async fn connect_http1(
        &self,
        key: &Key,
        timeout: Duration,
    ) -> Result<http1::SendRequest<UpstreamBody>, UpstreamError> {
        let connecting = async { http1_over(open(key, &self.tls_http1).await?).await };
        within_connect_timeout(timeout, connecting).await
    }

    async fn connect_http2(
        &self,
        key: &Key,
        timeout: Duration,
    ) -> Result<http2::SendRequest<UpstreamBody>, UpstreamError> {
        let connecting = async { http2_over(open(key, &self.tls_http2).await?).await };
        within_connect_timeout(timeout, connecting).await
    }

    fn lock_http2(&self) -> std::sync::MutexGuard<'_, Http2Conns> {
        self.http2.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connection to an endpoint: TLS over TCP, or plain TCP.
type Stream = Either<TlsStream<TcpStream>, TcpStream>;

/// Connects to the endpoint, with TLS (offering `tls`'s ALPN) when the key
/// asks for it.
async fn open(key: &Key, tls: &TlsConnector) -> Result<Stream, UpstreamError> {
    let tcp = connect_tcp(&key.authority).await?;
    if !key.tls {
        return Ok(Either::Right(tcp));
    }
    Ok(Either::Left(tls_handshake(tls, &key.authority, tcp).await?))
}

/// Bounds a whole connect (TCP, TLS, HTTP handshake) by the route's connect
/// timeout.
async fn within_connect_timeout<T>(
    timeout: Duration,
    connecting: impl Future<Output = Result<T, UpstreamError>>,
) -> Result<T, UpstreamError> {
    tokio::time::timeout(timeout, connecting)
        .await
        .unwrap_or(Err(UpstreamError::ConnectTimedOut(timeout)))
}

async fn connect_tcp(authority: &Authority) -> Result<TcpStream, UpstreamError> {
    // An IP:port parses without a lookup; a name (ExternalName) is resolved.
    let tcp = TcpStream::connect(authority.as_str())
        .await
        .map_err(UpstreamError::Connect)?;
    tcp.set_nodelay(true).map_err(UpstreamError::Connect)?;
    Ok(tcp)
}

async fn tls_handshake(
    tls: &TlsConnector,
    authority: &Authority,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, UpstreamError> {
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned()).map_err(|e| {
        UpstreamError::Tls(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    })?;
    tls.connect(name, tcp).await.map_err(UpstreamError::Tls)
}

async fn http1_over(io: Stream) -> Result<http1::SendRequest<UpstreamBody>, UpstreamError> {
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(UpstreamError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!("upstream connection ended: {e}");
        }
    });
    Ok(sender)
}

async fn http2_over(io: Stream) -> Result<http2::SendRequest<UpstreamBody>, UpstreamError> {
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(io))
        .await
        .map_err(UpstreamError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("upstream HTTP/2 connection ended: {e}");
        }
    });
    Ok(sender)
}

/// Idle HTTP/1.1 connections, per endpoint.
struct Http1Pool {
    /// Idle connections kept per endpoint.
    keepalive: AtomicUsize,
    idle_timeout_ms: AtomicU64,
    /// Requests one connection carries before it is closed.
    max_requests: AtomicU32,
    idle: Mutex<Idle>,
}

struct Idle {
    conns: Map<Vec<IdleConn>>,
    next_sweep: Instant,
}

struct IdleConn {
    sender: http1::SendRequest<UpstreamBody>,
    since: Instant,
    /// Requests it has carried.
    uses: u32,
}

impl Http1Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.load(Ordering::Relaxed))
    }

    /// The most recently used live connection to the endpoint, if any,
    /// with the requests it has carried.
    fn take(&self, key: &Key) -> Option<(http1::SendRequest<UpstreamBody>, u32)> {
        let timeout = self.idle_timeout();
        let mut idle = self.lock();
        let conns = idle.conns.get_mut(key)?;
        let now = Instant::now();
        while let Some(conn) = conns.pop() {
            if conn.sender.is_ready() && now.duration_since(conn.since) < timeout {
                return Some((conn.sender, conn.uses));
            }
        }
        None
    }

    /// Keeps a connection whose response has ended, once it can take the
    /// next request.
    fn put(self: &Arc<Self>, key: Key, mut sender: http1::SendRequest<UpstreamBody>, uses: u32) {
        if uses >= self.max_requests.load(Ordering::Relaxed) {
            return; // dropped: the connection closes
        }
        if sender.is_ready() {
            self.keep(key, sender, uses);
        } else if !sender.is_closed() {
            // The connection task has not yet seen the end of the exchange.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let pool = self.clone();
            runtime.spawn(async move {
                if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, sender.ready()).await {
                    pool.keep(key, sender, uses);
                }
            });
        }
    }

    fn keep(&self, key: Key, sender: http1::SendRequest<UpstreamBody>, uses: u32) {
        let now = Instant::now();
        let timeout = self.idle_timeout();
        let keepalive = self.keepalive.load(Ordering::Relaxed);
        let mut idle = self.lock();
        if now >= idle.next_sweep {
            idle.next_sweep = now + SWEEP_EVERY;
            idle.conns.retain(|_, conns| {
                conns.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < timeout);
                !conns.is_empty()
            });
        }
        let conns = idle.conns.entry(key).or_default();
        if conns.len() < keepalive {
            conns.push(IdleConn {
                sender,
                since: now,
                uses,
            });
        }
    }
}

/// The HTTP/2 connection shared by all requests to an endpoint.
struct Http2Conns {
    conns: Map<(http2::SendRequest<UpstreamBody>, Instant)>,
    next_sweep: Instant,
}

impl Http2Conns {
    fn take(&mut self, key: &Key, timeout: Duration) -> Option<http2::SendRequest<UpstreamBody>> {
        let now = Instant::now();
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY;
            self.conns.retain(|_, (sender, used)| {
                !sender.is_closed() && now.duration_since(*used) < timeout
            });
        }
        let (sender, used) = self.conns.get_mut(key)?;
        if sender.is_closed() {
            self.conns.remove(key);
            return None;
        }
        *used = now;
        Some(sender.clone())
    }

    fn put(&mut self, key: Key, sender: http2::SendRequest<UpstreamBody>) {
        self.conns.insert(key, (sender, Instant::now()));
    }

    fn forget(&mut self, key: &Key) {
        self.conns.remove(key);
    }
}

/// A pooled connection waiting for its response body to end.
struct Release {
    pool: Arc<Http1Pool>,
    key: Key,
    sender: http1::SendRequest<UpstreamBody>,
    /// Requests it will have carried.
    uses: u32,
}

/// An endpoint's response body. Read to its end, it gives its HTTP/1.1
/// connection back to the pool; dropped before, it closes it.
pub struct UpstreamResponse {
    body: Incoming,
    release: Option<Release>,
}

impl UpstreamResponse {
    fn new(body: Incoming, release: Option<Release>) -> Self {
        let mut response = UpstreamResponse { body, release };
        response.release_if_ended();
        response
    }

    fn release_if_ended(&mut self) {
        if self.body.is_end_stream() {
            if let Some(Release {
                pool,
                key,
                sender,
                uses,
            }) = self.release.take()
            {
                pool.put(key, sender, uses);
            }
        }
    }
}

impl Body for UpstreamResponse {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) | Poll::Ready(None) => self.release_if_ended(),
            Poll::Ready(Some(Err(_))) => self.release = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

fn unverified_tls(alpn: &[u8]) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(provider().clone())
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerification))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

/// Accepts any endpoint certificate (see the module comment), while still
/// checking that the handshake signatures are valid for it.
#[derive(Debug)]
struct NoVerification;

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
