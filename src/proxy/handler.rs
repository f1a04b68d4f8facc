//! One request, phase by phase.
//!
//! `handle` is the request path: the connection phase builds the request
//! context (with the one table snapshot the request is decided and
//! answered by), the table decides, and a routed request passes the
//! phases of `phase` in order. Every response, routed or not, ends with
//! the response headers every request gets and its log record.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_util::task::TaskTracker;

use super::answer::{self, Inner};
use super::context::RequestContext;
use super::phase::attempts::{self, AttemptError, Attempts};
use super::phase::{access, choice, mirror, response, snippet, upgrade, upstream_request};
use super::request_log::LoggedBody;
use crate::connection::ConnInfo;
use crate::table::{Decision, Forward, RouteTable};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::log_line::{head_size, Attempt, Captured};
use crate::telemetry::spans::{Arrival, RequestTrace};
use crate::telemetry::Telemetry;
use crate::upstream::client_body::{self, ClientBody};
use crate::upstream::{exchange_timeouts, UpstreamResponse, Upstreams};

/// The body of every response the proxy sends.
pub type ProxyBody = LoggedBody<Inner>;

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

    pub async fn handle(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<ProxyBody> {
        // The body is lent to the request path and taken back once the
        // response is complete (see `client_body`).
        let (parts, body) = req.into_parts();
        let (body, unread) = client_body::share(body);
        let mut req = Request::from_parts(parts, body);
        // The head as the client sent it, before the request ID is set.
        let head = self
            .telemetry
            .access_log
            .as_ref()
            .map(|_| request_head(&req));
        let mut cx = RequestContext::arrive(self.table.load_full(), &mut req, conn);
        if let (Some(log), Some(head)) = (&self.telemetry.access_log, head) {
            cx.record.log = capture(log, &cx, &req, head);
        }
        let mut decided = decide(&cx, &mut req);
        let snippet_head = match &mut decided {
            Decided::Table(decision) => snippet::take(&mut cx, &mut req, decision),
            Decided::AcmeAnswer(_) => None,
        };
        if !matches!(decided, Decided::Table(Decision::Forward(_))) {
            self.trace(&mut cx, &req, None);
        }
        let mut response = match decided {
            Decided::Table(Decision::Forward(forward)) => {
                self.serve_route(&mut cx, req, forward).await
            }
            Decided::Table(Decision::Answer(answered)) => snippet::answer(answered),
            // Taken apart by `snippet::take`.
            Decided::Table(Decision::Snippet(_)) => {
                answer::status(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Decided::Table(Decision::Redirect { location, status }) => {
                answer::redirect(location, status)
            }
            Decided::Table(Decision::Respond(status)) => answer::status(status),
            Decided::AcmeAnswer(key_authorization) => answer::key_authorization(key_authorization),
        };
        // The response phase for every request, then telemetry.
        response::headers_for_all(&cx, response.headers_mut());
        if let Some(head) = snippet_head {
            head.edit_response(&cx, &mut response);
        }
        let mut record = cx.record;
        record.status = response.status().as_u16();
        if let Some(captured) = record.log.as_deref_mut() {
            // "HTTP/1.1 200 OK": the status line without its reason.
            let status_line = 13 + response.status().canonical_reason().map_or(0, str::len);
            captured.response_head = head_size(status_line, response.headers());
        }
        let telemetry = self.telemetry.clone();
        let quiet = cx
            .table
            .edge
            .client_body_timeout_for(record.route.as_deref());
        response.map(|body| LoggedBody::new(body, record, telemetry).leaving(unread, quiet))
    }

    /// A request the table routes: a canary's share, the access checks,
    /// the HTTPRoute's request edits and mirrors, forwarding (within an
    /// HTTPRoute's timeout), then what the route does to its response.
    async fn serve_route(
        &self,
        cx: &mut RequestContext<'_>,
        mut req: Request<ClientBody>,
        mut forward: Forward,
    ) -> Response<Inner> {
        let main = cx.record.log.as_ref().map(|_| forward.backend.clone());
        choice::canary(&mut forward, req.headers());
        if let Some(captured) = cx.record.log.as_deref_mut().filter(|_| forward.canary) {
            captured.main_backend = main;
        }
        cx.record.route = Some(forward.route.clone());
        cx.record.backend = Some(forward.backend.clone());
        self.trace(cx, &req, Some(&forward));
        if let Err(refused) = access::admit(cx, &req, &forward) {
            return refused.answer();
        }
        if forward.authenticate {
            let checked = access::credentials(cx, &mut req, &forward, &self.upstreams);
            if let Err(refused) = Box::pin(checked).await {
                return refused.answer();
            }
        }
        let route = &forward.route;
        let gateway = route.gateway.as_deref();
        if let Some(edits) = gateway.and_then(|g| g.request_headers.as_ref()) {
            edits.apply(req.headers_mut());
        }
        if let Some(rule) = gateway.filter(|g| !g.mirrors.is_empty()) {
            mirror::send(&self.upstreams, &req, rule, route.policy.timeouts);
        }
        let noted = route.error_pages.as_ref().map(|pages| {
            pages.note(
                req.headers(),
                req.uri(),
                route.ingress.as_ref(),
                &forward.backend,
            )
        });
        // Each branch awaits the future where it is made: held in a local
        // first, the forwarding future (the largest part of a request's)
        // would be copied into the await.
        let mut response = match gateway.and_then(|g| g.deadline) {
            None => self.forward(cx, req, &forward).await,
            // An HTTPRoute's `timeouts`: the head in time, or 504.
            Some(deadline) => tokio::time::timeout(deadline, self.forward(cx, req, &forward))
                .await
                .unwrap_or_else(|_| answer::status(StatusCode::GATEWAY_TIMEOUT)),
        };
        if let Some(noted) = noted {
            let page = response::error_page(noted, response.status(), &forward, &self.upstreams);
            if let Some(page) = Box::pin(page).await {
                response = page;
            }
        }
        response::of_route(cx, &mut response, &forward);
        response
    }

    /// The choice, upstream request, attempts and response phases.
    async fn forward(
        &self,
        cx: &mut RequestContext<'_>,
        mut req: Request<ClientBody>,
        forward: &Forward,
    ) -> Response<Inner> {
        if let Err(status) = access::body_size(forward, &req) {
            return answer::status(status);
        }
        // The backend's endpoints as they are now, for the whole request.
        let upstream = forward.backend.upstream();
        cx.choice = choice::endpoint(cx, &req, forward, &upstream);
        let upgrade = upgrade::requested(&mut req);
        self.upstreams.configure(&cx.table.edge.upstream);
        let upgrading = upgrade.is_some();
        let resend = attempts::another_possible(&upstream, forward, upgrading);
        let prepared = upstream_request::prepare(cx, req, forward, upgrade.as_ref(), resend);
        let mut outgoing = match prepared {
            Ok(outgoing) => outgoing,
            Err(status) => return answer::status(status),
        };
        let retries = &self.telemetry.metrics.upstream_retries;
        let preferred = cx.choice.preferred;
        let mut attempts =
            Attempts::new(&outgoing, &upstream, forward, preferred, upgrading, retries);
        let timeouts = forward.route.policy.timeouts;
        let attempted = loop {
            let (mut request, target) = match attempts.next(cx, &mut outgoing) {
                Ok(next) => next,
                Err(status) => return answer::status(status),
            };
            let span = cx
                .record
                .trace
                .as_deref()
                .map(|trace| trace.attempt(&mut request, &target, attempts.number()));
            let sent_at = cx.record.log.as_ref().map(|_| Instant::now());
            let result = {
                let to = attempts.target(&outgoing, &target);
                // Pinned here, where it is awaited: the exchange's future
                // is the largest part of a request's, and is not moved
                // again.
                let exchange = std::pin::pin!(self.upstreams.send(request, to));
                let (progress, send, read) = (&outgoing.progress, timeouts.send, timeouts.read);
                let client_body = cx.table.edge.client_body_timeout_for(Some(&forward.route));
                AttemptError::from_exchange(
                    exchange_timeouts::within(exchange, progress, send, read, client_body).await,
                    progress,
                )
            };
            if let Some(span) = span {
                span.end(
                    result
                        .as_ref()
                        .map(Response::status)
                        .map_err(AttemptError::metric_label),
                );
            }
            if let (Some(captured), Some(started)) = (cx.record.log.as_deref_mut(), sent_at) {
                captured.attempts.push(attempt(&target, &result, started));
            }
            if let Some(attempted) = attempts.settle(&outgoing, result, target) {
                break attempted;
            }
        };
        let metrics = &self.telemetry.metrics;
        response::from_upstream(cx, attempted, upgrade, &self.tunnels, forward, metrics)
    }
}

impl Proxy {
    /// Starts the request's server span when its route (or, for a request
    /// no route forwards, the controller ConfigMap) asks for traces; one
    /// branch otherwise.
    fn trace<B>(&self, cx: &mut RequestContext<'_>, req: &Request<B>, forward: Option<&Forward>) {
        let global = cx.table.edge.traces.global;
        let switch = forward.map_or(global, |f| f.route.policy.traces);
        if switch.enabled {
            self.start_trace(cx, req, forward, switch.trust_incoming);
        }
    }

    #[inline(never)]
    fn start_trace<B>(
        &self,
        cx: &mut RequestContext<'_>,
        req: &Request<B>,
        forward: Option<&Forward>,
        trust_incoming: bool,
    ) {
        let Some(tracer) = self.telemetry.traces.tracer() else {
            return;
        };
        let arrival = Arrival {
            facts: cx.facts(req),
            started: cx.record.started,
            peer: cx.conn.peer,
            operation_name: cx.table.edge.traces.operation_name.as_ref(),
            trust_incoming,
        };
        let mut trace = RequestTrace::start(tracer, &arrival, forward.map(|f| &*f.route));
        if let Some(forward) = forward {
            trace.backend(&forward.backend);
        }
        cx.record.trace = Some(Box::new(trace));
    }
}

/// What a templated access log line keeps of the request as it arrived.
fn capture(
    log: &AccessLog,
    cx: &RequestContext<'_>,
    req: &Request<ClientBody>,
    request_head: u64,
) -> Option<Box<Captured>> {
    let mut captured = log.capture(&cx.table.edge.access_log, req.headers())?;
    captured.request_head = request_head;
    captured.https = cx.conn.tls;
    captured.tls = cx.conn.tls_names;
    Some(Box::new(captured))
}

/// `$request_length` without the body: "GET /path HTTP/1.1" and headers.
fn request_head(req: &Request<ClientBody>) -> u64 {
    let uri = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    head_size(req.method().as_str().len() + 1 + uri + 9, req.headers())
}

/// One attempt as the access log lists it: the endpoint's status, or the
/// one nginx notes for a failure (502, or 504 for a timeout).
fn attempt(
    target: &Authority,
    result: &Result<Response<UpstreamResponse>, AttemptError>,
    started: Instant,
) -> Attempt {
    let status = match result {
        Ok(response) => response.status(),
        Err(error) => error.status(),
    };
    Attempt {
        addr: target.clone(),
        status: status.as_u16(),
        started,
        took: started.elapsed(),
        answered: result.is_ok(),
    }
}

/// What a request gets before any phase runs.
enum Decided {
    Table(Decision),
    /// An ACME HTTP-01 challenge the table holds the answer to.
    AcmeAnswer(Bytes),
}

/// The controller ConfigMap's block lists, a request without a host, an
/// ACME challenge answer (before every route: no Ingress can shadow it),
/// an HTTP/2 extended CONNECT for a protocol we do not tunnel, or what the
/// table says about the request.
fn decide(cx: &RequestContext<'_>, req: &mut Request<ClientBody>) -> Decided {
    if cx
        .table
        .edge
        .block
        .refuses(cx.conn.client.ip(), req.headers())
    {
        return Decided::Table(Decision::Respond(StatusCode::FORBIDDEN));
    }
    if !cx.has_host() {
        return Decided::Table(Decision::Respond(StatusCode::BAD_REQUEST));
    }
    // Before an extended CONNECT becomes its GET: only a real GET or HEAD
    // is answered, never a tunnel.
    if let Some(answer) = cx.table.acme_answer(req.method(), req.uri().path()) {
        return Decided::AcmeAnswer(answer.clone());
    }
    if let Err(status) = upgrade::extended_connect(req) {
        return Decided::Table(Decision::Respond(status));
    }
    Decided::Table(cx.table.decide(&cx.request_facts(req)))
}
