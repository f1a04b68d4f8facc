//! Connections to the endpoints.
//!
//! Two pooled clients share one connector: HTTP/1.1 keep-alive (plain, or
//! TLS for `backend-protocol: HTTPS`) and HTTP/2 (gRPC: h2c, or TLS for
//! GRPCS). The connector applies the route's connect timeout, which the
//! request carries in a task-local: the pool's connect runs in the request's
//! task, where the value is set.
//!
//! Upstream TLS does not verify the endpoint's certificate: endpoints are
//! Pods addressed by IP, usually with self-signed certificates, and
//! ingress-nginx's default (`proxy-ssl-verify: off`) is the same.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::lease::Lease;
use super::progress::Watched;
use crate::translate::provider;

/// The body sent upstream: the client's, cut off past the route's limit,
/// reporting its progress for the send and read timeouts, leased to one
/// attempt at a time.
pub type UpstreamBody = Lease<Watched<Limited<Incoming>>>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

tokio::task_local! {
    /// The connect timeout of the request being forwarded.
    pub static CONNECT_TIMEOUT: Duration;
}

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The connect of an upstream connection took longer than allowed.
#[derive(Debug, thiserror::Error)]
#[error("connect timed out after {0:?}")]
pub struct ConnectTimedOut(Duration);

/// TCP connects bounded by the task-local timeout.
#[derive(Clone)]
pub struct TimedConnector {
    inner: HttpConnector,
}

impl tower_service::Service<Uri> for TimedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = CONNECT_TIMEOUT
            .try_with(|t| *t)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(ConnectTimedOut(timeout).into()),
            }
        })
    }
}

pub type UpstreamClient = Client<HttpsConnector<TimedConnector>, UpstreamBody>;

/// The pooled clients, one per wire protocol.
pub struct Upstreams {
    pub http1: UpstreamClient,
    pub http2: UpstreamClient,
}

impl Upstreams {
    /// Clients that keep at most `keepalive` idle connections per endpoint.
    pub fn new(keepalive: usize) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let tcp = TimedConnector { inner: tcp };
        let http1 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(unverified_tls())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp.clone());
        let http2 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(unverified_tls())
            .https_or_http()
            .enable_http2()
            .wrap_connector(tcp);
        let builder = |http2_only: bool| {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(IDLE_TIMEOUT)
                .pool_max_idle_per_host(keepalive)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .set_host(false)
                .http2_only(http2_only);
            b
        };
        Upstreams {
            http1: builder(false).build(http1),
            http2: builder(true).build(http2),
        }
    }
}

fn unverified_tls() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider().clone())
        .with_safe_default_protocol_versions()
        .expect("the default provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerification))
        .with_no_client_auth()
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

/// What went wrong with an upstream request, for the status it earns.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// The request body passed the route's limit: 413.
    BodyTooLarge,
    /// Connect or response took too long: 504.
    TimedOut,
    /// Anything else (refused, reset, bad response): 502.
    Failed,
}

pub fn classify(error: &(dyn std::error::Error + 'static)) -> Failure {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<http_body_util::LengthLimitError>() {
            return Failure::BodyTooLarge;
        }
        if e.is::<ConnectTimedOut>() {
            return Failure::TimedOut;
        }
        current = e.source();
    }
    Failure::Failed
}
