//! The access phase (nginx's rewrite-phase CORS preflight, its preaccess
//! limits and its access checks), for a routed request: a CORS preflight
//! is answered, then `limit-*`, credentials and (as forwarding begins)
//! `proxy-body-size` may refuse it. The source ranges and closed routes were judged with the
//! table's decision.

use std::time::Instant;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::policy::access::Subject;
use crate::policy::body_size;
use crate::policy::Refusal;
use crate::proxy::answer::{self, Inner};
use crate::proxy::context::RequestContext;
use crate::proxy::upstream::Upstreams;
use crate::table::Forward;

/// Why the access phase answers a request itself.
#[derive(Debug)]
pub enum Refused {
    /// A CORS preflight, answered 204.
    Preflight,
    /// Over a limit (429 or `limit-*-status-code`).
    Limit(StatusCode),
    /// The credentials check's answer.
    Credentials(Refusal),
}

impl Refused {
    pub fn answer(self) -> Response<Inner> {
        match self {
            Refused::Preflight => answer::no_content(),
            Refused::Limit(status) => answer::status(status),
            Refused::Credentials(refusal) => answer::refusal(refusal),
        }
    }
}

/// Runs the access checks. What they admit (the CORS origin, the
/// credentials' grants, a place in `limit-connections`) is kept in the
/// context.
pub async fn check(
    cx: &mut RequestContext<'_>,
    req: &mut Request<Incoming>,
    forward: &Forward,
    upstreams: &Upstreams,
) -> Result<(), Refused> {
    let route = &forward.route;
    if let Some(cors) = &route.cors {
        if let Some((admitted, preflight)) = cors.admit_request(req.method(), req.headers()) {
            cx.cors = Some(admitted);
            if preflight {
                return Err(Refused::Preflight);
            }
        }
    }
    if let Some(limits) = &route.limits {
        match limits.admit(cx.conn.client.ip(), Instant::now()) {
            Ok(held) => cx.record.held = held,
            Err(over) => return Err(Refused::Limit(limits.status(over))),
        }
    }
    if forward.authenticate {
        let subject = Subject {
            facts: cx.facts(req),
            conn: &cx.conn,
            timeouts: route.policy.timeouts,
        };
        let granted = route.access.authenticate(&subject, upstreams).await;
        let granted = granted.map_err(Refused::Credentials)?;
        granted.apply_to_request(req.headers_mut());
        cx.granted = Some(granted);
    }
    Ok(())
}

/// The access phase's last check, `proxy-body-size` on the declared
/// length. It runs as forwarding begins, after the error pages have taken
/// note of the request, so that its 413 gets the route's custom error page
/// and response headers as an endpoint's 413 would.
pub fn body_size(forward: &Forward, req: &Request<Incoming>) -> Result<(), StatusCode> {
    if body_size::declared_over(forward.route.policy.body_limit, req.headers()) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    Ok(())
}
