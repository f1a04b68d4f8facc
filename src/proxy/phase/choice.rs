//! The choice phase: which backend (a canary's share) and which endpoint
//! of it (session affinity or a hash key) a request prefers. The endpoint
//! itself is picked per attempt, by the route's balancing, starting from
//! this preference.

use std::time::Instant;

use http::{HeaderMap, Request};
use hyper::body::Incoming;

use super::millis;
use crate::policy::affinity::Choice;
use crate::proxy::context::RequestContext;
use crate::table::{Forward, Upstream};

/// A canary Ingress may take the request: then its backend and balancing
/// replace the route's.
pub fn canary(forward: &mut Forward, headers: &HeaderMap) {
    let Some(canary) = &forward.route.canary else {
        return;
    };
    if let Some((backend, balance)) = canary.choose(headers) {
        (forward.backend, forward.load_balance) = (backend.clone(), balance);
        forward.canary = true;
    }
}

/// `affinity: cookie` or `upstream-hash-by` over the endpoints the request
/// will use. A request a canary took keeps no affinity: the route's
/// affinity is the main backend's.
pub fn endpoint(
    cx: &RequestContext<'_>,
    req: &Request<Incoming>,
    forward: &Forward,
    upstream: &Upstream,
) -> Choice {
    match (&forward.route.stickiness, upstream) {
        (Some(sticky), Upstream::Endpoints(set)) if !forward.canary => {
            let route = &forward.route;
            let now = millis(Instant::now());
            sticky.choose(&cx.facts(req), set, &route.path, route.regex, now)
        }
        _ => Choice::default(),
    }
}
