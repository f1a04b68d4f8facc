//! One request: take the table's decision and carry it out.
//!
//! The table is loaded once per request and dropped before any await; only
//! the decision (a few `Arc`s) travels with the request, so a swap never
//! waits for traffic and traffic never waits for a swap.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full, Limited};
use hyper::body::Incoming;

use super::headers::{self, ConnInfo};
use super::progress::{self, Stalled, Watched};
use super::upstream::{self, Failure, Upstreams, CONNECT_TIMEOUT};
use crate::table::{Decision, Forward, RequestFacts, RouteTable, Upstream};

/// The body of every response the proxy sends: the upstream's, streamed, or
/// a short one of its own.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

static X_FORWARDED_PREFIX: header::HeaderName =
    header::HeaderName::from_static("x-forwarded-prefix");

/// Everything a request needs: the table and the upstream connection pools.
pub struct Proxy {
    table: Arc<ArcSwap<RouteTable>>,
    upstreams: Upstreams,
}

impl Proxy {
    pub fn new(table: Arc<ArcSwap<RouteTable>>) -> Self {
        Proxy {
            table,
            upstreams: Upstreams::new(),
        }
    }

    pub async fn handle(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<ProxyBody> {
        let Some(host) = request_host(&req) else {
            return respond(StatusCode::BAD_REQUEST);
        };
        let decision = {
            let facts = RequestFacts {
                host: host.to_str().unwrap_or_default(),
                path: req.uri().path(),
                query: req.uri().query(),
                tls: conn.tls,
                client: conn.client.ip(),
            };
            self.table.load().decide(&facts)
        };
        match decision {
            Decision::Forward(forward) => self.forward(req, forward, conn, host).await,
            Decision::Redirect { location, status } => {
                let mut response = respond(status);
                response.headers_mut().insert(header::LOCATION, location);
                response
            }
            Decision::Respond(status) => respond(status),
        }
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        forward: Forward,
        conn: &ConnInfo,
        host: HeaderValue,
    ) -> Response<ProxyBody> {
        let policy = &forward.route.policy;
        if let Some(limit) = policy.body_limit {
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > limit) {
                return respond(StatusCode::PAYLOAD_TOO_LARGE);
            }
        }
        let (target, pick) = match &forward.backend.upstream {
            Upstream::Endpoints(set) => match set.pick(policy.load_balance) {
                Some(pick) => (pick.addr.to_string(), Some((set, pick))),
                None => return respond(StatusCode::SERVICE_UNAVAILABLE),
            },
            Upstream::External { host, port } => (format!("{host}:{port}"), None),
        };
        let scheme = if policy.protocol.is_tls() {
            "https"
        } else {
            "http"
        };
        let path = forward
            .rewritten
            .as_deref()
            .or_else(|| req.uri().path_and_query().map(|pq| pq.as_str()))
            .unwrap_or("/");
        let Ok(uri) = Uri::builder()
            .scheme(scheme)
            .authority(target.as_str())
            .path_and_query(path)
            .build()
        else {
            return respond(StatusCode::BAD_REQUEST);
        };

        let (mut parts, body) = req.into_parts();
        parts.uri = uri;
        let upstream_host = policy.upstream_vhost.as_ref().unwrap_or(&host);
        headers::prepare_request(&mut parts.headers, conn, &host);
        parts.headers.insert(header::HOST, upstream_host.clone());
        if let Some(prefix) = &policy.x_forwarded_prefix {
            parts
                .headers
                .insert(X_FORWARDED_PREFIX.clone(), prefix.clone());
        }
        let client = if policy.protocol.is_http2() {
            parts.version = Version::HTTP_2;
            // gRPC needs `te: trailers`, which hop-by-hop removal took out.
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
            &self.upstreams.http2
        } else {
            parts.version = Version::HTTP_11;
            &self.upstreams.http1
        };
        let limit = policy
            .body_limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let (body, progress) = Watched::new(Limited::new(body, limit));
        let request = Request::from_parts(parts, body);

        let started = Instant::now();
        let timeouts = policy.timeouts;
        let exchange = CONNECT_TIMEOUT.scope(timeouts.connect, client.request(request));
        let result = progress::within(exchange, &progress, timeouts.send, timeouts.read).await;
        if let Some((set, pick)) = pick {
            set.observe(pick, started.elapsed());
        }
        match result {
            Ok(Ok(mut response)) => {
                headers::remove_hop_by_hop(response.headers_mut());
                response.map(Either::Left)
            }
            Ok(Err(e)) => {
                let failure = upstream::classify(&e);
                tracing::warn!(upstream = %target, error = %error_chain(&e), "upstream request failed");
                respond(match failure {
                    Failure::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                    Failure::TimedOut => StatusCode::GATEWAY_TIMEOUT,
                    Failure::Failed => StatusCode::BAD_GATEWAY,
                })
            }
            Err(Stalled::Client) => respond(StatusCode::REQUEST_TIMEOUT),
            Err(stalled) => {
                tracing::warn!(upstream = %target, ?stalled, "upstream exchange timed out");
                respond(StatusCode::GATEWAY_TIMEOUT)
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

/// A short response of the proxy's own.
pub fn respond(status: StatusCode) -> Response<ProxyBody> {
    let body = match status {
        StatusCode::NOT_FOUND => "404 page not found\n",
        StatusCode::FORBIDDEN => "403 forbidden\n",
        StatusCode::PAYLOAD_TOO_LARGE => "413 request entity too large\n",
        StatusCode::BAD_GATEWAY => "502 bad gateway\n",
        StatusCode::SERVICE_UNAVAILABLE => "503 service unavailable\n",
        StatusCode::GATEWAY_TIMEOUT => "504 gateway timeout\n",
        StatusCode::BAD_REQUEST => "400 bad request\n",
        StatusCode::REQUEST_TIMEOUT => "408 request timeout\n",
        _ => "",
    };
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *response.status_mut() = status;
    if !body.is_empty() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
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
