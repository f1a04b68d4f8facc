//! The choice phase: which backend (a canary's share) and which endpoint
//! of it (session affinity or a hash key) a request prefers. The endpoint
//! itself is picked per attempt, by the route's balancing, starting from
//! this preference.

use std::time::Instant;

use http::{HeaderMap, Request};

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
pub fn endpoint<B>(
    cx: &RequestContext<'_>,
    req: &Request<B>,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::header;

    use super::super::testing::{backend, conn, context, forward};
    use super::*;
    use crate::policy::affinity::Stickiness;
    use crate::policy::nginx_annotations;
    use crate::policy::Annotations;

    fn cookie_affinity() -> Option<Arc<Stickiness>> {
        let map = nginx_annotations(&[("affinity", "cookie")]);
        let annotations = Annotations::new(Some(&map), "gatehouse.dev");
        Stickiness::compile(&annotations, &mut Vec::new()).map(Arc::new)
    }

    #[test]
    fn cookie_affinity_prefers_an_endpoint_and_sets_its_cookie_on_the_routes_path() {
        let web = backend(&["10.0.0.1:80", "10.0.0.2:80"]);
        let forward = forward(web.clone(), |r| {
            r.stickiness = cookie_affinity();
            r.path = "/shop".into();
        });
        let mut req = http::Request::get("/shop/cart").body(()).unwrap();
        let conn = conn();
        let cx = context(&mut req, &conn);
        let choice = endpoint(&cx, &req, &forward, &web.upstream());
        assert!(choice.preferred.is_some());
        let cookie = choice.set_cookie.expect("a new session gets a cookie");
        let cookie = cookie.to_str().unwrap();
        assert!(cookie.contains("Path=/shop"), "{cookie}");
    }

    #[test]
    fn a_regex_route_sets_its_cookie_on_the_root_and_a_canary_keeps_no_affinity() {
        let web = backend(&["10.0.0.1:80"]);
        let regex = forward(web.clone(), |r| {
            r.stickiness = cookie_affinity();
            r.path = "/shop/.*".into();
            r.regex = true;
        });
        let mut req = http::Request::get("/shop/cart").body(()).unwrap();
        let conn = conn();
        let cx = context(&mut req, &conn);
        let choice = endpoint(&cx, &req, &regex, &web.upstream());
        let cookie = choice.set_cookie.expect("cookie");
        assert!(cookie.to_str().unwrap().contains("Path=/;"), "{cookie:?}");
        let mut taken = regex.clone();
        taken.canary = true;
        let choice = endpoint(&cx, &req, &taken, &web.upstream());
        assert!(choice.preferred.is_none() && choice.set_cookie.is_none());
        assert!(!req.headers().contains_key(header::COOKIE));
    }
}
