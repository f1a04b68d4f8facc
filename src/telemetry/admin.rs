//! The admin address (`--metrics-addr`): `/healthz`, `/readyz`, `/metrics`,
//! `/debug/routes`, `/debug/certs`.
//!
//! `/healthz` answers while the process runs. `/readyz` answers 200 once the
//! first routing table is in place, and 503 before: a load balancer must not
//! send traffic to a replica that would 404 everything.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::acme::status::AcmeStatus;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::table::RouteTable;

/// Readiness, shared between the controller (which sets it) and `/readyz`.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What the admin endpoints read.
#[derive(Clone)]
pub struct AdminState {
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
    pub table: Arc<ArcSwap<RouteTable>>,
    /// The ACME certificates, as the leading replica sees them.
    pub acme: AcmeStatus,
}

pub async fn serve(listener: TcpListener, state: AdminState) {
    let server = auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let state = state.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(&req, &state)) }
            });
            let _ = server.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn answer(req: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    let text = |status, body: &'static str| {
        (
            status,
            "text/plain; charset=utf-8",
            Bytes::from_static(body.as_bytes()),
        )
    };
    let json = |value: serde_json::Value| {
        let body = serde_json::to_vec_pretty(&value).unwrap_or_default();
        (StatusCode::OK, "application/json", Bytes::from(body))
    };
    let (status, content_type, body) = match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if state.readiness.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Bytes::from(state.metrics.encode()),
        ),
        "/debug/routes" => json(super::debug::routes(&state.table.load())),
        "/debug/certs" => json(super::debug::certs(
            &state.table.load(),
            &state.acme.current(),
        )),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
