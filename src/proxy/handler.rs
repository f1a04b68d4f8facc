//! One request: take the table's decision and carry it out.
//!
//! The table is loaded once per request and dropped before any await; only
//! the decision (a few `Arc`s) travels with the request, so a swap never
//! waits for traffic and traffic never waits for a swap.

use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{self, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_util::task::TaskTracker;

use super::observed::{Observed, RequestRecord};
use crate::connection::headers::{self, ConnInfo};
use crate::metrics::UpstreamErrorLabels;
use crate::policy::access::{Granted, Subject};
use crate::policy::affinity::Choice;
use crate::policy::cors::Cors;
use crate::policy::error_pages::{ErrorPages, Failed};
use crate::policy::next_upstream::{Outcome, Resend};
use crate::policy::template::Facts;
use crate::policy::{client_cert, hsts, Refusal};
use crate::table::{Decision, Edge, Forward, GatewayRule, RequestFacts, RouteTable};
use crate::telemetry::Telemetry;
use crate::upstream::progress::{self, ReadPaced, Stalled, Watched};
use crate::upstream::retry_body::BodySlot;
use crate::upstream::{
    Failure, LoadBalance, OwnRequest, Pick, Target, Timeouts, Upstream, UpstreamError,
    UpstreamResponse, Upstreams,
};

/// A response body before telemetry wraps it: the upstream's, streamed, or
/// a short one of the proxy's own.
type Inner = Either<ReadPaced<UpstreamResponse>, Full<Bytes>>;

/// The body of every response the proxy sends.
pub type ProxyBody = Observed<Inner>;

static X_FORWARDED_PREFIX: header::HeaderName =
    header::HeaderName::from_static("x-forwarded-prefix");
static X_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// Everything a request needs: the table, the upstream connection pools and
/// the telemetry it reports to.
pub struct Proxy {
    table: Arc<ArcSwap<RouteTable>>,
    upstreams: Arc<Upstreams>,
    telemetry: Arc<Telemetry>,
    /// Upgraded connections (WebSockets), so that draining can wait for them.
    tunnels: TaskTracker,
}

impl Proxy {
    pub fn new(table: Arc<ArcSwap<RouteTable>>, telemetry: Arc<Telemetry>) -> Self {
        Proxy {
            table,
            upstreams: Arc::new(Upstreams::new()),
            telemetry,
            tunnels: TaskTracker::new(),
        }
    }

    /// A proxy for one worker thread: the same table, telemetry and tunnel
    /// tracking, and upstream pools of its own.
    pub fn for_worker(&self) -> Self {
        Proxy {
            table: self.table.clone(),
            upstreams: Arc::new(Upstreams::new()),
            telemetry: self.telemetry.clone(),
            tunnels: self.tunnels.clone(),
        }
    }

    /// The table being served.
    pub fn table(&self) -> &Arc<ArcSwap<RouteTable>> {
        &self.table
    }

    pub fn tunnels(&self) -> &TaskTracker {
        &self.tunnels
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    pub async fn handle(&self, mut req: Request<Incoming>, conn: &ConnInfo) -> Response<ProxyBody> {
        // The table is borrowed for what is decided without waiting, and
        // let go before anything is awaited.
        let table = self.table.load();
        // A trusted proxy may name the client (`use-forwarded-headers`).
        let forwarded = conn.for_request(req.headers(), &table.edge.forwarded);
        let conn = forwarded.as_ref().unwrap_or(conn);
        let blocked = table.edge.block.refuses(conn.client.ip(), req.headers());
        let host = request_host(&req);
        let request_id = request_id(&req);
        req.headers_mut()
            .insert(X_REQUEST_ID.clone(), request_id.clone());
        let mut record = RequestRecord::new(
            conn.client.ip(),
            req.method().clone(),
            req.version(),
            host.clone(),
            req.uri().clone(),
            request_id,
        );
        let mut cors = None;
        let decision = match &host {
            // `block-*` of the controller ConfigMap: before anything else.
            _ if blocked => Decision::Respond(StatusCode::FORBIDDEN),
            Some(host) => decide(&table, &req, conn, host),
            None => Decision::Respond(StatusCode::BAD_REQUEST),
        };
        drop(table);
        let response = match (decision, host) {
            (Decision::Forward(forward), Some(host)) => {
                self.serve_route(req, forward, conn, host, &mut record, &mut cors)
                    .await
            }
            (Decision::Redirect { location, status }, _) => {
                let mut response = respond(status);
                response.headers_mut().insert(header::LOCATION, location);
                response
            }
            (Decision::Respond(status), _) => respond(status),
            (Decision::Forward(_), None) => respond(StatusCode::BAD_REQUEST),
        };
        self.finish(response, record, conn, cors.as_ref())
    }

    /// A request the table routes: the choice of a canary, then, in
    /// ingress-nginx's order, a CORS preflight, limits, credentials,
    /// forwarding and custom error pages.
    async fn serve_route(
        &self,
        mut req: Request<Incoming>,
        mut forward: Forward,
        conn: &ConnInfo,
        host: HeaderValue,
        record: &mut RequestRecord,
        cors: &mut Option<(Arc<Cors>, HeaderValue, bool)>,
    ) -> Response<Inner> {
        // The choice phase: a canary may take this request.
        if let Some(canary) = &forward.route.canary {
            if let Some((backend, balance)) = canary.choose(req.headers()) {
                (forward.backend, forward.load_balance) = (backend.clone(), balance);
                forward.canary = true;
            }
        }
        record.route = Some(forward.route.clone());
        record.backend = Some(forward.backend.clone());
        *cors = forward.route.cors.as_ref().and_then(|c| {
            let (origin, preflight) = c.admit(req.method(), req.headers())?;
            Some((c.clone(), origin, preflight))
        });
        if let Some((_, _, true)) = cors {
            // A preflight, answered here (nginx's rewrite phase).
            return no_content();
        }
        // The access phase's limits (nginx's preaccess phase).
        if let Some(limits) = &forward.route.limits {
            match limits.admit(conn.client.ip(), Instant::now()) {
                Ok(held) => record.held = held,
                Err(over) => return respond(limits.status(over)),
            }
        }
        // The access phase's second step: credentials.
        let granted = if forward.authenticate {
            match self.authenticate(&req, &forward, conn, &host).await {
                Ok(granted) => Some(granted),
                Err(refusal) => return refuse(refusal),
            }
        } else {
            None
        };
        if let Some(granted) = &granted {
            granted.apply_to_request(req.headers_mut());
        }
        // An HTTPRoute rule's `RequestHeaderModifier`, then its mirrors.
        let gateway = forward.route.gateway.clone();
        if let Some(edits) = gateway.as_ref().and_then(|g| g.request_headers.as_ref()) {
            edits.apply(req.headers_mut());
        }
        if let Some(rule) = gateway.as_ref().filter(|g| !g.mirrors.is_empty()) {
            self.mirror(&req, rule, forward.route.policy.timeouts);
        }
        // What a custom error page needs of the request.
        let pages = forward.route.error_pages.clone().map(|pages| {
            let request = (req.headers().clone(), req.uri().clone());
            (
                pages,
                request,
                forward.route.clone(),
                forward.backend.clone(),
            )
        });
        let deadline = gateway.as_ref().and_then(|g| g.deadline);
        let forwarded = self.forward(req, forward, conn, host, record);
        let mut response = match deadline {
            None => forwarded.await,
            // An HTTPRoute's `timeouts`: the head in time, or 504.
            Some(deadline) => match tokio::time::timeout(deadline, forwarded).await {
                Ok(response) => response,
                Err(_) => respond(StatusCode::GATEWAY_TIMEOUT),
            },
        };
        if let Some((pages, (headers, uri), route, service)) = pages {
            let failed = Failed {
                code: response.status().as_u16(),
                headers: &headers,
                uri: &uri,
                ingress: route.ingress.as_ref(),
                service: &service,
            };
            if let Some(page) = self
                .error_page(&pages, &failed, route.policy.timeouts)
                .await
            {
                response = page;
            }
        }
        if let Some(granted) = granted {
            let status = response.status();
            granted.apply_to_response(status, response.headers_mut());
        }
        if let Some(edits) = gateway.as_ref().and_then(|g| g.response_headers.as_ref()) {
            edits.apply(response.headers_mut());
        }
        response
    }

    /// `RequestMirror`: a copy of a request without a body to each mirror
    /// backend (for its share), sent beside the request and never waited
    /// for; the answer is dropped. A request with a body is not mirrored:
    /// copying it would mean holding it, or slowing it to the mirror's pace.
    fn mirror(&self, req: &Request<Incoming>, rule: &GatewayRule, timeouts: Timeouts) {
        let headers = req.headers();
        let bodiless = hyper::body::Body::is_end_stream(req.body())
            || (headers
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v == "0")
                && !headers.contains_key(header::TRANSFER_ENCODING));
        if !bodiless {
            return;
        }
        let uri = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let Ok(uri) = Uri::try_from(uri) else {
            return;
        };
        for (backend, per_million) in &rule.mirrors {
            if *per_million < 1_000_000 && fastrand::u32(0..1_000_000) >= *per_million {
                continue;
            }
            let authority = match &*backend.upstream() {
                Upstream::Endpoints(set) => match set.pick(LoadBalance::RoundRobin) {
                    Some(pick) => set.authority(pick),
                    None => continue,
                },
                Upstream::External(authority) => authority.clone(),
            };
            let mut headers = headers.clone();
            headers::remove_hop_by_hop(&mut headers);
            let request = OwnRequest {
                method: req.method().clone(),
                uri: uri.clone(),
                headers,
            };
            let upstreams = self.upstreams.clone();
            tokio::spawn(async move {
                if let Err(e) = upstreams
                    .send_own(request, &authority, false, timeouts)
                    .await
                {
                    tracing::debug!(upstream = %authority, "request mirror: {e}");
                }
            });
        }
    }

    /// The default backend's page for a status the route lists, if it
    /// answers.
    async fn error_page(
        &self,
        pages: &ErrorPages,
        failed: &Failed<'_>,
        timeouts: Timeouts,
    ) -> Option<Response<Inner>> {
        if !pages.intercepts(failed.code) {
            return None;
        }
        let (page, authority) = pages.fetch(failed, &self.upstreams, timeouts).await?;
        let read = timeouts.read;
        let mut response = page.map(|body| Either::Left(ReadPaced::new(body, read, authority)));
        headers::remove_hop_by_hop(response.headers_mut());
        Some(response)
    }

    /// The response phase: HSTS, CORS and the controller ConfigMap's
    /// headers, then telemetry.
    fn finish(
        &self,
        mut response: Response<Inner>,
        mut record: RequestRecord,
        conn: &ConnInfo,
        cors: Option<&(Arc<Cors>, HeaderValue, bool)>,
    ) -> Response<ProxyBody> {
        if let Some(route) = &record.route {
            hsts::apply(route.hsts.as_ref(), conn.tls, response.headers_mut());
        }
        if let Some((cors, origin, _)) = cors {
            cors.apply(origin, response.headers_mut());
        }
        edge_response_headers(&self.table.load().edge, response.headers_mut());
        record.status = response.status().as_u16();
        let telemetry = self.telemetry.clone();
        response.map(|body| Observed::new(body, record, telemetry))
    }

    /// Runs the route's authentication on the request.
    async fn authenticate(
        &self,
        req: &Request<Incoming>,
        forward: &Forward,
        conn: &ConnInfo,
        host: &HeaderValue,
    ) -> Result<Granted, Refusal> {
        let subject = Subject {
            facts: facts(req, conn, host),
            conn,
            timeouts: forward.route.policy.timeouts,
        };
        let access = &forward.route.access;
        access.authenticate(&subject, &self.upstreams).await
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        forward: Forward,
        conn: &ConnInfo,
        host: HeaderValue,
        record: &mut RequestRecord,
    ) -> Response<Inner> {
        let policy = forward.route.policy.clone();
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
        // The choice phase: session affinity or a hash key.
        // The backend's endpoints as they are now, for the whole request.
        let upstream = forward.backend.upstream();
        let choice = match (&forward.route.stickiness, &*upstream) {
            (Some(sticky), Upstream::Endpoints(set)) if !forward.canary => {
                let facts = facts(&req, conn, &host);
                // A regex path is no cookie path.
                let path = if forward.route.regex {
                    "/"
                } else {
                    forward.route.path.as_str()
                };
                sticky.choose(&facts, set, path, millis(Instant::now()))
            }
            _ => Choice::default(),
        };
        let upgrade = upgrade_protocol(&req).map(|proto| (proto, hyper::upgrade::on(&mut req)));
        let path = match &forward.rewritten {
            Some(rewritten) => match PathAndQuery::try_from(rewritten.as_str()) {
                Ok(path) => path,
                Err(_) => return respond(StatusCode::BAD_REQUEST),
            },
            None => req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        };
        let method_retryable = is_idempotent(req.method());

        let (set_headers, compute_full) = {
            let table = self.table.load();
            let edge = &table.edge;
            self.upstreams.configure(&edge.upstream);
            let set = (!edge.proxy_set_headers.is_empty()).then(|| {
                let facts = facts(&req, conn, &host);
                let expand = |(name, value): &(header::HeaderName, _)| {
                    let value: &crate::policy::template::Template = value;
                    let value = HeaderValue::from_str(&value.expand(&facts)).ok()?;
                    Some((name.clone(), value))
                };
                edge.proxy_set_headers
                    .iter()
                    .filter_map(expand)
                    .collect::<Vec<_>>()
            });
            (set, edge.forwarded.compute_full)
        };
        let (mut parts, body) = req.into_parts();
        headers::prepare_request(&mut parts.headers, conn, &host, compute_full);
        for (name, value) in set_headers.into_iter().flatten() {
            parts.headers.insert(name, value);
        }
        match &forward.client_auth {
            Some(client_auth) => {
                client_auth.request_headers(conn.peer_cert.as_deref(), &mut parts.headers)
            }
            None => client_cert::remove_forged(&mut parts.headers),
        }
        parts.headers.remove(header::EXPECT); // answered by our own server
        if let Some(vhost) = &policy.upstream_vhost {
            parts.headers.insert(header::HOST, vhost.clone());
        }
        if let Some(prefix) = &policy.x_forwarded_prefix {
            parts
                .headers
                .insert(X_FORWARDED_PREFIX.clone(), prefix.clone());
        }
        if let Some((proto, _)) = &upgrade {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, proto.clone());
        }
        let http2 = policy.protocol.is_http2() && upgrade.is_none();
        if http2 {
            // gRPC needs `te: trailers`, which hop-by-hop removal took out.
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        let limit = policy
            .body_limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let started = Instant::now();
        let (body, progress) = Watched::new(Limited::new(body, limit), started);
        record.progress = Some(progress.clone());
        let slot = BodySlot::new(body);
        let bodiless = progress.body_done();

        let endpoints = match &*upstream {
            Upstream::Endpoints(set) => set.addrs().len(),
            Upstream::External(_) => 1,
        };
        let mut failed: Option<Pick> = None;
        let mut attempt = 0;
        let (result, target, finished) = loop {
            attempt += 1;
            let sent_at = if attempt == 1 {
                started
            } else {
                Instant::now()
            };
            let (target, pick) = match &*upstream {
                Upstream::Endpoints(set) => {
                    let now = millis(sent_at);
                    let preferred = choice
                        .preferred
                        .filter(|_| attempt == 1)
                        .and_then(|i| set.pick_index(i, now));
                    let pick =
                        preferred.or_else(|| set.pick_healthy(forward.load_balance, now, failed));
                    match pick {
                        Some(pick) => (set.authority(pick), Some((set, pick))),
                        None => return respond(StatusCode::SERVICE_UNAVAILABLE),
                    }
                }
                Upstream::External(authority) => (authority.clone(), None),
            };
            let tls = policy.protocol.is_tls();
            let uri = if http2 {
                // HTTP/2 sends scheme and authority as pseudo-headers.
                let mut uri = uri::Parts::default();
                uri.scheme = Some(if tls { Scheme::HTTPS } else { Scheme::HTTP });
                uri.authority = Some(target.clone());
                uri.path_and_query = Some(path.clone());
                match Uri::from_parts(uri) {
                    Ok(uri) => uri,
                    Err(_) => return respond(StatusCode::BAD_REQUEST),
                }
            } else {
                Uri::from(path.clone())
            };
            let mut request = Request::new(slot.lease());
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = uri;
            *request.version_mut() = if http2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };
            // Kept for another attempt only when one may follow (most
            // routes have one endpoint or one try: no copy).
            *request.headers_mut() = if policy.next_upstream.is_last(attempt, endpoints) {
                std::mem::take(&mut parts.headers)
            } else {
                parts.headers.clone()
            };

            let timeouts = policy.timeouts;
            let to = Target {
                authority: &target,
                tls,
                http2,
                connect_timeout: timeouts.connect,
            };
            let result = {
                let exchange = std::pin::pin!(self.upstreams.send(request, to));
                progress::within(exchange, &progress, timeouts.send, timeouts.read).await
            };
            let finished = Instant::now();
            let connect_failed = matches!(&result, Ok(Err(e)) if e.is_connect());
            if let Some((set, pick)) = pick {
                if connect_failed {
                    let until = millis(finished) + PASSIVE_HEALTH_BACKOFF.as_millis() as u64;
                    set.mark_down(pick, until);
                } else {
                    set.observe(pick, finished - sent_at);
                }
            }
            // Another endpoint, as `proxy-next-upstream` says, for a
            // request that can be sent again whole.
            let outcome = match &result {
                Ok(Ok(response)) => Some(Outcome::Status(response.status().as_u16())),
                Ok(Err(e)) => match e.failure() {
                    Failure::Failed => Some(Outcome::Error),
                    Failure::TimedOut => Some(Outcome::Timeout),
                    Failure::BodyTooLarge | Failure::ClientBody => None,
                },
                Err(Stalled::Client) => None,
                Err(_) => Some(Outcome::Timeout),
            };
            let resend = if connect_failed && slot.untouched() {
                Resend::NothingSent
            } else if bodiless || slot.untouched() {
                Resend::Whole {
                    idempotent: method_retryable,
                }
            } else {
                Resend::Impossible
            };
            let again = upgrade.is_none()
                && outcome.is_some_and(|outcome| {
                    let elapsed = finished - started;
                    policy
                        .next_upstream
                        .again(outcome, attempt, elapsed, endpoints, resend)
                });
            if again {
                self.telemetry.metrics.upstream_retries.inc();
                failed = pick.map(|(_, p)| p);
                continue;
            }
            break (result, target, finished);
        };
        let took = finished - started;
        record.upstream = Some(target.clone());
        record.upstream_time = Some(took);
        self.count_failure(&result, &forward);

        match result {
            Ok(Ok(mut response)) => {
                let read = policy.timeouts.read;
                let paced = move |body| Either::Left(ReadPaced::new(body, read, target));
                if let Some((proto, client_side)) = upgrade {
                    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                        let upstream_side = hyper::upgrade::on(&mut response);
                        self.tunnels.spawn(tunnel(client_side, upstream_side));
                        headers::remove_hop_by_hop(response.headers_mut());
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                        response.headers_mut().insert(header::UPGRADE, proto);
                        return response.map(paced);
                    }
                }
                headers::remove_hop_by_hop(response.headers_mut());
                if let Some(cookie) = choice.set_cookie {
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                }
                response.map(paced)
            }
            Ok(Err(e)) => {
                let (failure, error) = (e.failure(), error_chain(&e));
                if failure == Failure::ClientBody {
                    tracing::debug!(client = %conn.client, %error, "the request body failed on the client's side");
                } else {
                    tracing::warn!(upstream = %target, %error, "upstream request failed");
                }
                respond(match failure {
                    Failure::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                    Failure::ClientBody => StatusCode::BAD_REQUEST,
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

    fn count_failure<T>(
        &self,
        result: &Result<Result<T, UpstreamError>, Stalled>,
        forward: &Forward,
    ) {
        let kind = match result {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => match e.failure() {
                Failure::BodyTooLarge => "body_too_large",
                Failure::ClientBody => "client_body",
                Failure::TimedOut => "timeout",
                Failure::Failed if e.is_connect() => "connect",
                Failure::Failed => "other",
            },
            Err(Stalled::Client) => "client_stalled",
            Err(_) => "timeout",
        };
        let ingress = forward.route.ingress.as_ref();
        let labels = UpstreamErrorLabels {
            namespace: ingress.map(|k| k.namespace.clone()).unwrap_or_default(),
            ingress: ingress.map(|k| k.name.clone()).unwrap_or_default(),
            service: forward.backend.service.name.clone(),
            kind,
        };
        self.telemetry
            .metrics
            .upstream_errors
            .get_or_create(&labels)
            .inc();
    }
}

/// How long an endpoint that refused a connection is skipped.
const PASSIVE_HEALTH_BACKOFF: Duration = Duration::from_secs(2);

/// `at` in milliseconds on a process-wide monotonic clock (for endpoint
/// backoff).
fn millis(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    at.saturating_duration_since(epoch).as_millis() as u64
}

/// RFC 9110 §9.2.2: repeating these has the same effect as sending once.
fn is_idempotent(method: &http::Method) -> bool {
    use http::Method as M;
    matches!(
        *method,
        M::GET | M::HEAD | M::OPTIONS | M::TRACE | M::PUT | M::DELETE
    )
}

/// The protocol an HTTP/1.1 client asks to switch to (`Connection: upgrade`
/// plus `Upgrade: ...`), e.g. `websocket`.
fn upgrade_protocol(req: &Request<Incoming>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let asks = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten()
}

/// Copies bytes both ways between an upgraded client connection and the
/// upgraded upstream connection until either side closes.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!("upgraded connection ended: {e}");
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

/// The client's `X-Request-ID` when it is a sensible token, else a new one.
fn request_id(req: &Request<Incoming>) -> HeaderValue {
    let given = req.headers().get(&X_REQUEST_ID).filter(|v| {
        let bytes = v.as_bytes();
        !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
    });
    match given {
        Some(id) => id.clone(),
        None => {
            // A user-space generator: no system call per request.
            let mut text = uuid::Uuid::encode_buffer();
            let id = uuid::Uuid::new_v4().simple().encode_lower(&mut text);
            // 32 hex digits are always a valid header value.
            HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("-"))
        }
    }
}

/// What the policies' variables are expanded from.
fn facts<'a>(req: &'a Request<Incoming>, conn: &ConnInfo, host: &'a HeaderValue) -> Facts<'a> {
    Facts {
        method: req.method(),
        uri: req.uri(),
        host: host.to_str().unwrap_or_default(),
        tls: conn.tls,
        client: conn.client.ip(),
        headers: req.headers(),
    }
}

/// The access phase's answer: 401 (with the challenge), a sign-in
/// redirect, 403 or 500.
fn refuse(refusal: Refusal) -> Response<Inner> {
    let mut response = respond(refusal.status);
    response.headers_mut().extend(refusal.headers);
    response
}

/// `204` for a CORS preflight, with an empty text body as nginx sends it.
fn no_content() -> Response<Inner> {
    let mut response = respond(StatusCode::NO_CONTENT);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain charset=UTF-8"),
    );
    response
}

/// A short response of the proxy's own.
fn respond(status: StatusCode) -> Response<Inner> {
    let body = match status {
        StatusCode::NOT_FOUND => "404 page not found\n",
        StatusCode::UNAUTHORIZED => "401 authorization required\n",
        StatusCode::FORBIDDEN => "403 forbidden\n",
        StatusCode::PAYLOAD_TOO_LARGE => "413 request entity too large\n",
        StatusCode::BAD_GATEWAY => "502 bad gateway\n",
        StatusCode::SERVICE_UNAVAILABLE => "503 service unavailable\n",
        StatusCode::GATEWAY_TIMEOUT => "504 gateway timeout\n",
        StatusCode::INTERNAL_SERVER_ERROR => "500 internal server error\n",
        StatusCode::BAD_REQUEST => "400 bad request\n",
        StatusCode::REQUEST_TIMEOUT => "408 request timeout\n",
        StatusCode::TOO_MANY_REQUESTS => "429 too many requests\n",
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

/// What the table says about the request.
fn decide(
    table: &RouteTable,
    req: &Request<Incoming>,
    conn: &ConnInfo,
    host: &HeaderValue,
) -> Decision {
    let facts = RequestFacts {
        host: host.to_str().unwrap_or_default(),
        method: req.method(),
        headers: req.headers(),
        path: req.uri().path(),
        query: req.uri().query(),
        tls: conn.tls,
        client: conn.client.ip(),
        peer: conn.peer_cert.as_deref(),
    };
    table.decide(&facts)
}

static SERVER_TOKEN: HeaderValue =
    HeaderValue::from_static(concat!("gatehouse/", env!("CARGO_PKG_VERSION")));

/// The controller ConfigMap's response headers: `hide-headers`, the
/// endpoint's `Server` unless `allow-backend-server-header`, ours with
/// `server-tokens`, then `add-headers`.
fn edge_response_headers(edge: &Edge, headers: &mut http::HeaderMap) {
    for name in &edge.hide_headers {
        headers.remove(name);
    }
    if !edge.backend_server_header {
        headers.remove(header::SERVER);
    }
    if edge.server_tokens {
        headers
            .entry(header::SERVER)
            .or_insert_with(|| SERVER_TOKEN.clone());
    }
    for (name, value) in &edge.add_headers {
        headers.insert(name.clone(), value.clone());
    }
}
