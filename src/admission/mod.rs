//! The validating admission webhook (`--validating-webhook`): the API
//! server asks, before it stores an Ingress, HTTPRoute or Gateway, what
//! translate would make of it, and refuses what translate would close,
//! drop or misread (`translate::admission` says which).
//!
//! It is built so that a review cannot be more than data: HTTPS only
//! (rustls), any path; the body bounded in size (`MAX_BODY_BYTES`, the
//! API server's own request limit) and read within a deadline; parsed
//! into typed structs and judged by translate, a pure function, on a copy
//! of the served state. Nothing a review carries is executed, rendered or
//! written anywhere. At most `Limits::reviews` reviews are judged at once
//! (the others wait for a turn within their deadline), off the threads
//! that serve traffic, on at most `Limits::connections` connections, each
//! closed when idle past the head timeout. Answering needs no write
//! access to anything.
//!
//! Its serving certificate comes from files (`files`), or from a Secret
//! Gatehouse manages itself (`managed`); both feed one resolver
//! (`certificate`), which serves nothing until a pair loads.

mod certificate;
mod files;
pub mod managed;
mod review;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

pub use certificate::ServingCertificate;
pub use files::{CertificateError, CertificateFiles, RELOAD_EVERY};
pub use managed::ManagedCertificate;
pub use review::{ReviewError, Reviewer};

/// The largest review body read: the API server refuses requests over
/// 3 MiB itself, so no genuine review is larger.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Bounds on the work reviews may cause.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Reviews judged at once; more wait their turn.
    pub reviews: usize,
    /// From the request's head to the answer, waiting included. Under the
    /// ValidatingWebhookConfiguration's `timeoutSeconds`, so that the API
    /// server hears our 503 rather than its own timeout.
    pub deadline: Duration,
    /// For the TLS handshake, and for each request head (an idle
    /// kept-alive connection is closed after it too).
    pub handshake: Duration,
    /// Connections open at once; past it the next waits to be accepted.
    pub connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            reviews: 4,
            deadline: Duration::from_secs(4),
            handshake: Duration::from_secs(5),
            connections: 64,
        }
    }
}

/// The webhook's listener settings, from the command line.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub addr: SocketAddr,
    pub certificate: CertificateSource,
    pub admission: crate::translate::AdmissionOptions,
    pub limits: Limits,
}

/// Where the webhook's serving certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateSource {
    /// `--validating-webhook-certificate` and `--validating-webhook-key`.
    Files {
        certificate: std::path::PathBuf,
        key: std::path::PathBuf,
    },
    /// Neither given: a CA and serving certificate Gatehouse keeps itself.
    Managed(ManagedCertificate),
}

/// A TLS configuration serving `certificate`, HTTP/1.1 only: the API
/// server's client speaks it, and its head timeout bounds how long an
/// idle connection is held, which HTTP/2 has no equivalent for.
pub fn tls_config(
    certificate: Arc<ServingCertificate>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(crate::tls::provider().clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What every connection shares.
struct Webhook {
    reviewer: Reviewer,
    turns: Arc<Semaphore>,
    limits: Limits,
}

/// Serves reviews on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    reviewer: Reviewer,
    limits: Limits,
) {
    let webhook = Arc::new(Webhook {
        reviewer,
        turns: Arc::new(Semaphore::new(limits.reviews.max(1))),
        limits,
    });
    let ahead = webhook.clone();
    tokio::task::spawn_blocking(move || ahead.reviewer.follow_served());
    let acceptor = TlsAcceptor::from(tls);
    let mut server = http1::Builder::new();
    server
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake);
    let open = Arc::new(Semaphore::new(limits.connections.max(1)));
    loop {
        let Ok(slot) = open.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (webhook, acceptor, server) = (webhook.clone(), acceptor.clone(), server.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let handshake = tokio::time::timeout(limits.handshake, acceptor.accept(stream));
            let Ok(Ok(stream)) = handshake.await else {
                return;
            };
            let service = service_fn(move |req| {
                let webhook = webhook.clone();
                async move { Ok::<_, Infallible>(webhook.answer(req).await) }
            });
            let _ = server.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

impl Webhook {
    /// Any path: ingress-nginx's `/networking/v1/ingresses` and others.
    async fn answer(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != http::Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview\n");
        }
        let deadline = tokio::time::Instant::now() + self.limits.deadline;
        match tokio::time::timeout_at(deadline, self.clone().review(req)).await {
            Ok(response) => response,
            Err(_) => {
                tracing::warn!(target: "gatehouse::admission", "a review was not answered within its deadline");
                text(StatusCode::SERVICE_UNAVAILABLE, "review deadline passed\n")
            }
        }
    }

    async fn review(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return too_large();
        }
        let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
            Err(_) => return text(StatusCode::BAD_REQUEST, "unreadable body\n"),
        };
        // A turn is held until the judging thread finishes, even if the
        // deadline gave up on it first: the limit bounds the CPU used.
        let Ok(turn) = self.turns.clone().acquire_owned().await else {
            return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
        };
        let webhook = self.clone();
        let judged = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            webhook.reviewer.answer(&body)
        });
        match judged.await {
            Ok(Ok(json)) => {
                let mut response = Response::new(Full::new(Bytes::from(json)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                response
            }
            Ok(Err(error)) => text(StatusCode::BAD_REQUEST, &format!("{error}\n")),
            Err(_) => {
                tracing::error!(target: "gatehouse::admission", "judging a review panicked");
                text(StatusCode::INTERNAL_SERVER_ERROR, "review failed\n")
            }
        }
    }
}

fn too_large() -> Response<Full<Bytes>> {
    let message = format!("an AdmissionReview is at most {MAX_BODY_BYTES} bytes\n");
    text(StatusCode::PAYLOAD_TOO_LARGE, &message)
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
