//! The access phase (nginx's rewrite-phase CORS preflight, its preaccess
//! limits and its access checks), for a routed request: a CORS preflight
//! is answered, then `limit-*`, credentials and (as forwarding begins)
//! `proxy-body-size` may refuse it. The source ranges and closed routes were judged with the
//! table's decision.

use std::time::Instant;

use http::{Request, Response, StatusCode};

use crate::policy::access::Subject;
use crate::policy::body_size;
use crate::policy::Refusal;
use crate::proxy::answer::{self, Inner};
use crate::proxy::context::RequestContext;
use crate::table::Forward;
use crate::upstream::Upstreams;

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

/// The checks that need no answer from elsewhere: a CORS preflight and
/// `limit-*`. What they admit (the CORS origin, a place in
/// `limit-connections`) is kept in the context.
pub fn admit<B>(
    cx: &mut RequestContext<'_>,
    req: &Request<B>,
    forward: &Forward,
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
    Ok(())
}

/// The route's credentials (basic, external, client certificate), for a
/// route that asks for them; what they grant is kept in the context and
/// applied to the request. Only such routes build this future: an
/// external check's is large, and the request path should not carry it.
pub async fn credentials<B>(
    cx: &mut RequestContext<'_>,
    req: &mut Request<B>,
    forward: &Forward,
    upstreams: &Upstreams,
) -> Result<(), Refused> {
    let route = &forward.route;
    let trace = cx.record.trace.as_deref();
    let span = trace
        .zip(route.access.external.as_deref())
        .map(|(trace, external)| trace.auth(external.url(), req.headers_mut()));
    let subject = Subject {
        facts: cx.facts(req),
        conn: &cx.conn,
        timeouts: route.policy.timeouts,
    };
    let granted = route.access.authenticate(&subject, upstreams).await;
    if let Some(span) = span {
        // The status the check came to: the request goes on, or the
        // client gets the refusal.
        span.end(Ok(granted
            .as_ref()
            .map_or_else(|r| r.status, |_| StatusCode::OK)));
    }
    let granted = granted.map_err(Refused::Credentials)?;
    granted.apply_to_request(req.headers_mut());
    cx.granted = Some(Box::new(granted));
    Ok(())
}

/// The access phase's last check, `proxy-body-size` on the declared
/// length. It runs as forwarding begins, after the error pages have taken
/// note of the request, so that its 413 gets the route's custom error page
/// and response headers as an endpoint's 413 would.
pub fn body_size<B>(forward: &Forward, req: &Request<B>) -> Result<(), StatusCode> {
    if body_size::declared_over(forward.route.policy.body_limit, req.headers()) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::header;

    use super::super::testing::{backend, conn, context, forward};
    use super::*;
    use crate::policy::cors::Cors;
    use crate::policy::nginx_annotations;
    use crate::policy::proxy_settings::ProxySettings;
    use crate::policy::rate_limit::{LimitConfig, Statuses};
    use crate::policy::Annotations;

    fn compiled<T>(pairs: &[(&str, &str)], compile: impl Fn(&Annotations<'_>) -> T) -> T {
        let map = nginx_annotations(pairs);
        compile(&Annotations::new(Some(&map), "gatehouse.dev"))
    }

    fn cors() -> Option<Arc<Cors>> {
        let pairs = [
            ("enable-cors", "true"),
            ("cors-allow-origin", "https://app.test"),
        ];
        compiled(&pairs, |a| Cors::compile(a, &mut Vec::new())).map(Arc::new)
    }

    #[tokio::test]
    async fn a_preflight_from_an_allowed_origin_is_answered_and_its_origin_kept() {
        let mut req = http::Request::options("/")
            .header(header::ORIGIN, "https://app.test")
            .body(())
            .unwrap();
        let conn = conn();
        let mut cx = context(&mut req, &conn);
        let forward = forward(backend(&["10.0.0.1:80"]), |r| r.cors = cors());
        let checked = admit(&mut cx, &req, &forward);
        assert!(matches!(checked, Err(Refused::Preflight)));
        let mut headers = http::HeaderMap::new();
        cx.cors.expect("origin admitted").apply(&mut headers);
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.test"
        );
    }

    #[tokio::test]
    async fn a_request_from_another_origin_passes_without_cors_headers() {
        let mut req = http::Request::get("/")
            .header(header::ORIGIN, "https://elsewhere.test")
            .body(())
            .unwrap();
        let conn = conn();
        let mut cx = context(&mut req, &conn);
        let forward = forward(backend(&["10.0.0.1:80"]), |r| r.cors = cors());
        assert!(admit(&mut cx, &req, &forward).is_ok());
        assert!(cx.cors.is_none());
    }

    #[tokio::test]
    async fn past_the_rate_limit_a_client_gets_the_limits_status() {
        let limits = compiled(
            &[("limit-rps", "1"), ("limit-burst-multiplier", "1")],
            |a| {
                let config = LimitConfig::parse(a, &mut Vec::new()).expect("limits");
                Arc::new(config.compile(Statuses::default()))
            },
        );
        let forward = forward(backend(&["10.0.0.1:80"]), |r| r.limits = Some(limits));
        let conn = conn();
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let mut req = http::Request::get("/").body(()).unwrap();
            let mut cx = context(&mut req, &conn);
            statuses.push(match admit(&mut cx, &req, &forward) {
                Ok(()) => StatusCode::OK,
                Err(Refused::Limit(status)) => status,
                Err(other) => panic!("{other:?}"),
            });
        }
        assert_eq!(
            statuses[..2],
            [StatusCode::OK, StatusCode::OK],
            "rate 1 + burst 1"
        );
        assert_eq!(
            statuses[2],
            StatusCode::SERVICE_UNAVAILABLE,
            "ingress-nginx's default"
        );
    }

    #[test]
    fn a_declared_body_over_the_routes_limit_gets_413() {
        let limited = ProxySettings {
            body_limit: Some(8),
            ..ProxySettings::default()
        };
        let forward = forward(backend(&["10.0.0.1:80"]), |r| r.policy = Arc::new(limited));
        let req = |length: &str| {
            let req = http::Request::post("/").header(header::CONTENT_LENGTH, length);
            req.body(()).unwrap()
        };
        assert_eq!(
            body_size(&forward, &req("9")),
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        );
        assert_eq!(body_size(&forward, &req("8")), Ok(()));
    }
}
