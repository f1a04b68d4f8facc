//! The attempts phase: the request sent to an endpoint under the send and
//! read timeouts, and to another one as `proxy-next-upstream` allows.
//!
//! Each attempt picks an endpoint (the choice phase's preference first,
//! then the route's balancing, skipping the endpoint that just failed),
//! sends, and reports to passive health: a refused connection takes the
//! endpoint out for a moment, an answer records its latency.

use std::time::{Duration, Instant};

use http::uri::{self, Authority, Scheme};
use http::HeaderMap;
use http::{Request, Response, StatusCode, Uri, Version};
use prometheus_client::metrics::counter::Counter;

use super::millis;
use super::upstream_request::Outgoing;
use crate::policy::next_upstream::{Outcome, Resend};
use crate::proxy::context::RequestContext;
use crate::table::Forward;
use crate::upstream::exchange_timeouts::{Progress, Stalled};
use crate::upstream::{
    Failure, Pick, Target, Upstream, UpstreamBody, UpstreamError, UpstreamResponse,
};

/// How long an endpoint that refused a connection is skipped.
const PASSIVE_HEALTH_BACKOFF: Duration = Duration::from_secs(2);

/// Why the last attempt got no response.
#[derive(Debug)]
pub enum AttemptError {
    Upstream(UpstreamError),
    Stalled(Stalled),
    /// The request body went past `proxy-body-size` while it streamed.
    BodyTooLarge,
}

impl AttemptError {
    /// An exchange's outcome under the send and read timeouts. A failure
    /// while the body went past its limit is that, whatever the exchange
    /// made of it (HTTP/2 reports a reset of its own).
    pub fn from_exchange(
        timed: Result<Result<Response<UpstreamResponse>, UpstreamError>, Stalled>,
        progress: &Progress,
    ) -> Result<Response<UpstreamResponse>, AttemptError> {
        match timed {
            Ok(Ok(response)) => Ok(response),
            Err(_) | Ok(Err(_)) if progress.body_over_limit() => Err(AttemptError::BodyTooLarge),
            Ok(Err(e)) => Err(AttemptError::Upstream(e)),
            Err(stalled) => Err(AttemptError::Stalled(stalled)),
        }
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            AttemptError::Upstream(e) => match e.failure() {
                Failure::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                Failure::ClientBody => StatusCode::BAD_REQUEST,
                Failure::TimedOut => StatusCode::GATEWAY_TIMEOUT,
                Failure::Failed => StatusCode::BAD_GATEWAY,
            },
            AttemptError::Stalled(Stalled::Client) => StatusCode::REQUEST_TIMEOUT,
            AttemptError::Stalled(_) => StatusCode::GATEWAY_TIMEOUT,
            AttemptError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The `kind` label of the upstream error counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            AttemptError::Upstream(e) => match e.failure() {
                Failure::BodyTooLarge => "body_too_large",
                Failure::ClientBody => "client_body",
                Failure::TimedOut => "timeout",
                Failure::Failed if e.is_connect() => "connect",
                Failure::Failed => "other",
            },
            AttemptError::Stalled(Stalled::Client) => "client_stalled",
            AttemptError::Stalled(_) => "timeout",
            AttemptError::BodyTooLarge => "body_too_large",
        }
    }

    /// What `proxy-next-upstream` calls it; `None` when the client, not
    /// the endpoint, is at fault (no other endpoint would do better).
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            AttemptError::Upstream(e) => match e.failure() {
                Failure::Failed => Some(Outcome::Error),
                Failure::TimedOut => Some(Outcome::Timeout),
                Failure::BodyTooLarge | Failure::ClientBody => None,
            },
            AttemptError::Stalled(Stalled::Client) | AttemptError::BodyTooLarge => None,
            AttemptError::Stalled(_) => Some(Outcome::Timeout),
        }
    }

    /// The connection was never established: nothing was sent.
    pub fn is_connect(&self) -> bool {
        matches!(self, AttemptError::Upstream(e) if e.is_connect())
    }

    /// Says what went wrong, at the level the fault deserves.
    pub fn log(&self, client: std::net::SocketAddr, upstream: &Authority) {
        match self {
            AttemptError::Upstream(e) => {
                let error = error_chain(e);
                if e.failure() == Failure::ClientBody {
                    tracing::debug!(%client, %error, "the request body failed on the client's side");
                } else {
                    tracing::warn!(%upstream, %error, "upstream request failed");
                }
            }
            AttemptError::Stalled(Stalled::Client) | AttemptError::BodyTooLarge => {}
            AttemptError::Stalled(stalled) => {
                tracing::warn!(%upstream, ?stalled, "upstream exchange timed out");
            }
        }
    }
}

/// The last attempt: its result, the endpoint it went to, and how long
/// the attempts took in all.
pub struct Attempted {
    pub result: Result<Response<UpstreamResponse>, AttemptError>,
    pub target: Authority,
    pub took: Duration,
}

/// The attempts of one request: which endpoint each goes to, what each
/// came to, and whether another follows. The exchange itself is awaited
/// by the caller, between `next` and `settle`, so that its large future
/// sits in one place.
pub struct Attempts<'a> {
    /// The backend's endpoints as the request took them.
    upstream: &'a Upstream,
    forward: &'a Forward,
    /// The choice phase's endpoint, for the first attempt.
    preferred: Option<usize>,
    /// An upgrade (WebSocket) is never tried twice.
    upgrade: bool,
    retries: &'a Counter,
    endpoints: usize,
    attempt: u32,
    /// The endpoint of the attempt under way, and when it was sent.
    current: (Option<Pick>, Instant),
}

impl<'a> Attempts<'a> {
    pub fn new(
        out: &Outgoing,
        upstream: &'a Upstream,
        forward: &'a Forward,
        preferred: Option<usize>,
        upgrade: bool,
        retries: &'a Counter,
    ) -> Self {
        let endpoints = endpoint_count(upstream);
        Attempts {
            upstream,
            forward,
            preferred,
            upgrade,
            retries,
            endpoints,
            attempt: 0,
            current: (None, out.started),
        }
    }

    /// The next attempt's request and the endpoint it goes to. `Err` is
    /// the status of an answer of the proxy's own: 503 when no endpoint is
    /// left, 400 when the target makes no valid URI.
    pub fn next(
        &mut self,
        cx: &RequestContext<'_>,
        out: &mut Outgoing,
    ) -> Result<(Request<UpstreamBody>, Authority), StatusCode> {
        self.attempt += 1;
        let sent_at = if self.attempt == 1 {
            out.started
        } else {
            Instant::now()
        };
        let failed = self.current.0.filter(|_| self.attempt > 1);
        let (target, pick) = self.pick(self.attempt, sent_at, failed)?;
        self.current = (pick, sent_at);
        let next_upstream = &self.forward.route.policy.next_upstream;
        let last = next_upstream.is_last(self.attempt, self.endpoints);
        // Kept whenever another attempt may follow (`settle` asks).
        let headers = out
            .headers_for(cx, self.forward, self.attempt, last)
            .ok_or(StatusCode::BAD_GATEWAY)?;
        Ok((request(out, &target, headers)?, target))
    }

    /// The attempt under way: 1 for the first.
    pub fn number(&self) -> u32 {
        self.attempt
    }

    /// How the exchange goes to `target`.
    pub fn target<'t>(&self, out: &Outgoing, target: &'t Authority) -> Target<'t> {
        Target {
            authority: target,
            tls: out.tls,
            http2: out.http2,
            connect_timeout: self.forward.route.policy.timeouts.connect,
        }
    }

    /// Takes an attempt's result: passive health learns of it, and it is
    /// the last one (`Some`) or another endpoint is tried.
    pub fn settle(
        &mut self,
        out: &Outgoing,
        result: Result<Response<UpstreamResponse>, AttemptError>,
        target: Authority,
    ) -> Option<Attempted> {
        let finished = Instant::now();
        let (pick, sent_at) = self.current;
        self.report_health(pick, &result, sent_at, finished);
        let elapsed = finished - out.started;
        if self.again(out, &result, self.attempt, elapsed, self.endpoints) {
            self.retries.inc();
            return None;
        }
        Some(Attempted {
            result,
            target,
            took: elapsed,
        })
    }

    /// The endpoint for this attempt, or 503 when none is ready.
    fn pick(
        &self,
        attempt: u32,
        at: Instant,
        failed: Option<Pick>,
    ) -> Result<(Authority, Option<Pick>), StatusCode> {
        match self.upstream {
            Upstream::Endpoints(set) => {
                let now = millis(at);
                let preferred = self
                    .preferred
                    .filter(|_| attempt == 1)
                    .and_then(|i| set.pick_index(i, now));
                let balance = self.forward.load_balance;
                match preferred.or_else(|| set.pick_healthy(balance, now, failed)) {
                    Some(pick) => Ok((set.authority(pick), Some(pick))),
                    None => Err(StatusCode::SERVICE_UNAVAILABLE),
                }
            }
            Upstream::External(authority) => Ok((authority.clone(), None)),
        }
    }

    /// Passive health: a refused connection takes the endpoint out for a
    /// moment; anything else reports its latency.
    fn report_health(
        &self,
        pick: Option<Pick>,
        result: &Result<Response<UpstreamResponse>, AttemptError>,
        sent_at: Instant,
        finished: Instant,
    ) {
        let (Upstream::Endpoints(set), Some(pick)) = (self.upstream, pick) else {
            return;
        };
        if matches!(result, Err(e) if e.is_connect()) {
            let until = millis(finished) + PASSIVE_HEALTH_BACKOFF.as_millis() as u64;
            set.mark_down(pick, until);
        } else {
            set.observe(pick, finished - sent_at);
        }
    }

    /// Whether another endpoint is tried, as `proxy-next-upstream` says,
    /// for a request that can be sent again whole.
    fn again(
        &self,
        out: &Outgoing,
        result: &Result<Response<UpstreamResponse>, AttemptError>,
        attempt: u32,
        elapsed: Duration,
        endpoints: usize,
    ) -> bool {
        let outcome = match result {
            Ok(response) => Some(Outcome::Status(response.status().as_u16())),
            Err(e) => e.outcome(),
        };
        let Some(outcome) = outcome.filter(|_| !self.upgrade && out.can_resend()) else {
            return false;
        };
        let connect_failed = matches!(result, Err(e) if e.is_connect());
        let untouched = out.body.untouched();
        let resend = Resend::classify(connect_failed, untouched, out.bodiless(), &out.parts.method);
        let next = &self.forward.route.policy.next_upstream;
        next.again(outcome, attempt, elapsed, endpoints, resend)
    }
}

/// Whether a request to `upstream` may be attempted more than once: not
/// an upgrade, and `proxy-next-upstream-tries` (or the endpoints' count)
/// allows another. Only then are its headers kept for another attempt.
pub fn another_possible(upstream: &Upstream, forward: &Forward, upgrade: bool) -> bool {
    let next_upstream = &forward.route.policy.next_upstream;
    !upgrade && !next_upstream.is_last(1, endpoint_count(upstream))
}

fn endpoint_count(upstream: &Upstream) -> usize {
    match upstream {
        Upstream::Endpoints(set) => set.addrs().len(),
        Upstream::External(_) => 1,
    }
}

/// One attempt's request, with `headers` for it.
fn request(
    out: &mut Outgoing,
    target: &Authority,
    headers: HeaderMap,
) -> Result<Request<UpstreamBody>, StatusCode> {
    let uri = target_uri(out.http2, out.tls, target, &out.path)?;
    let mut request = Request::new(out.body.lease());
    *request.method_mut() = out.parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = if out.http2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    *request.headers_mut() = headers;
    Ok(request)
}

/// The request target: origin-form for HTTP/1.1; for HTTP/2, which sends
/// scheme and authority as pseudo-headers, absolute.
fn target_uri(
    http2: bool,
    tls: bool,
    target: &Authority,
    path: &uri::PathAndQuery,
) -> Result<Uri, StatusCode> {
    if !http2 {
        return Ok(Uri::from(path.clone()));
    }
    let mut uri = uri::Parts::default();
    uri.scheme = Some(if tls { Scheme::HTTPS } else { Scheme::HTTP });
    uri.authority = Some(target.clone());
    uri.path_and_query = Some(path.clone());
    Uri::from_parts(uri).map_err(|_| StatusCode::BAD_REQUEST)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> AttemptError {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        AttemptError::Upstream(UpstreamError::Connect(refused))
    }

    #[test]
    fn each_failure_knows_its_status_its_metric_and_whether_to_try_again() {
        let timed_out =
            AttemptError::Upstream(UpstreamError::ConnectTimedOut(Duration::from_secs(5)));
        let rows = [
            (
                refused(),
                StatusCode::BAD_GATEWAY,
                "connect",
                Some(Outcome::Error),
            ),
            (
                timed_out,
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                Some(Outcome::Timeout),
            ),
            (
                AttemptError::Stalled(Stalled::Response),
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                Some(Outcome::Timeout),
            ),
            (
                AttemptError::Stalled(Stalled::Upstream),
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                Some(Outcome::Timeout),
            ),
            (
                AttemptError::Stalled(Stalled::Client),
                StatusCode::REQUEST_TIMEOUT,
                "client_stalled",
                None,
            ),
            (
                AttemptError::BodyTooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                None,
            ),
        ];
        for (error, status, label, outcome) in rows {
            assert_eq!(error.status(), status, "{error:?}");
            assert_eq!(error.metric_label(), label, "{error:?}");
            assert_eq!(error.outcome(), outcome, "{error:?}");
        }
        assert!(refused().is_connect());
        assert!(!AttemptError::Stalled(Stalled::Response).is_connect());
    }

    #[test]
    fn http_2_targets_are_absolute_and_http_1_1_targets_origin_form() {
        let target: Authority = "10.0.0.1:50051".parse().unwrap();
        let path = uri::PathAndQuery::from_static("/svc/Method?x=1");
        let h2 = target_uri(true, true, &target, &path).unwrap();
        assert_eq!(h2.to_string(), "https://10.0.0.1:50051/svc/Method?x=1");
        let h2c = target_uri(true, false, &target, &path).unwrap();
        assert_eq!(h2c.scheme_str(), Some("http"));
        let h1 = target_uri(false, false, &target, &path).unwrap();
        assert_eq!(h1.to_string(), "/svc/Method?x=1");
    }
}
