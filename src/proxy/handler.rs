//! One request: find its route in the current table and carry it out.
//!
//! The table is loaded once per request and dropped before any await; only
//! the chosen backend (an `Arc`) travels with the request, so a swap never
//! waits for traffic and traffic never waits for a swap.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::headers::{self, ConnInfo};
use crate::table::{Decision, RouteTable};

/// The body of every response the proxy sends: the upstream's, streamed, or
/// a short one of its own.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Upstream connections idle longer than this are closed.
const UPSTREAM_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
const UPSTREAM_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Everything a request needs: the table and the upstream connection pool.
pub struct Proxy {
    table: Arc<ArcSwap<RouteTable>>,
    upstream: Client<HttpConnector, Incoming>,
}

impl Proxy {
    pub fn new(table: Arc<ArcSwap<RouteTable>>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(UPSTREAM_CONNECT_TIMEOUT));
        let upstream = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(UPSTREAM_IDLE_TIMEOUT)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .set_host(false)
            .build(connector);
        Proxy { table, upstream }
    }

    pub async fn handle(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<ProxyBody> {
        let Some(host) = request_host(&req) else {
            return respond(StatusCode::BAD_REQUEST, "request has no host\n");
        };
        let decision = {
            let table = self.table.load();
            table.decide(host.to_str().unwrap_or_default(), req.uri().path())
        };
        let backend = match decision {
            Decision::Forward(backend) => backend,
            Decision::Respond(status) => return respond_status(status),
        };
        // Decided on a non-empty set; a set never changes after the build.
        let Some(addr) = backend.endpoints.pick() else {
            return respond_status(StatusCode::SERVICE_UNAVAILABLE);
        };
        self.forward(req, addr, conn, &host).await
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        addr: SocketAddr,
        conn: &ConnInfo,
        host: &HeaderValue,
    ) -> Response<ProxyBody> {
        let path = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let uri = Uri::builder()
            .scheme("http")
            .authority(addr.to_string())
            .path_and_query(path)
            .build();
        let Ok(uri) = uri else {
            return respond(StatusCode::BAD_REQUEST, "bad request target\n");
        };
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;
        headers::prepare_request(req.headers_mut(), conn, host);

        match self.upstream.request(req).await {
            Ok(mut response) => {
                headers::remove_hop_by_hop(response.headers_mut());
                response.map(Either::Left)
            }
            Err(e) => {
                tracing::warn!(upstream = %addr, error = %error_chain(&e), "upstream request failed");
                respond(StatusCode::BAD_GATEWAY, "502 bad gateway\n")
            }
        }
    }
}

/// The host a request is for: the `Host` header (HTTP/1.1), else the URI
/// authority (HTTP/2 `:authority`, or an absolute-form HTTP/1.1 target).
fn request_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    if let Some(host) = req.headers().get(header::HOST) {
        return Some(host.clone());
    }
    let authority = req.uri().authority()?;
    HeaderValue::from_str(authority.as_str()).ok()
}

/// A response of the proxy's own for a status the table decided.
fn respond_status(status: StatusCode) -> Response<ProxyBody> {
    match status {
        StatusCode::NOT_FOUND => respond(status, "404 page not found\n"),
        StatusCode::SERVICE_UNAVAILABLE => respond(status, "503 service unavailable\n"),
        _ => respond(status, ""),
    }
}

pub fn respond(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
