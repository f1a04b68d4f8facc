//! The upstream request phase: the request as the endpoint will see it.
//! Its path (rewritten or as sent), its headers (hop-by-hop removed, the
//! `X-Forwarded-*` family, `proxy-set-headers`, what the client
//! certificate says, `upstream-vhost`, `x-forwarded-prefix`, a snippet's
//! `proxy_set_header`, the upgrade it asks for) and its body (cut at
//! `proxy-body-size`, watched for the send and read timeouts, kept for
//! another attempt until it is read). When another attempt may follow,
//! the client's headers are kept as they came, and prepared again only
//! if that attempt happens: the first attempt sends the prepared ones
//! without a copy.

use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, StatusCode};
use http_body_util::Limited;

use super::upgrade::Upgrade;
use crate::connection::headers;
use crate::policy::{body_size, client_cert, upstream_headers};
use crate::proxy::context::RequestContext;
use crate::table::Forward;
use crate::upstream::client_body::ClientBody;
use crate::upstream::exchange_timeouts::{Progress, Watched};
use crate::upstream::retry_body::BodySlot;

/// The request body as attempts send it.
pub type Body = BodySlot<Watched<Limited<ClientBody>>>;

/// A request ready to be sent to an endpoint, and sent again.
pub struct Outgoing {
    /// Method, version and the first attempt's headers; the URI is set
    /// per attempt.
    pub parts: Parts,
    pub path: PathAndQuery,
    /// Over HTTP/2 (gRPC), else HTTP/1.1.
    pub http2: bool,
    pub tls: bool,
    pub body: Body,
    pub progress: Arc<Progress>,
    /// When forwarding began: the send timeout runs from here.
    pub started: Instant,
    /// The client's headers for another attempt, when one may follow:
    /// fewer than the prepared ones, so cheaper to keep, and prepared
    /// again only when that attempt happens.
    spare: Option<Spare>,
}

/// The client's headers as preparation found them, and what preparation
/// expanded from the request as the client sent it.
struct Spare {
    headers: HeaderMap,
    additions: Additions,
}

/// The headers a route's configuration asks for, expanded from the
/// request as the client sent it: `proxy-set-headers`, and a snippet's
/// `proxy_set_header` (an empty value sends none).
#[derive(Clone, Default)]
struct Additions {
    set_headers: Option<Vec<(HeaderName, HeaderValue)>>,
    snippet: Option<Vec<(HeaderName, Option<HeaderValue>)>>,
}

impl Outgoing {
    /// Whether the request has no body to send (it may be sent again
    /// whatever happened to the first attempt).
    pub fn bodiless(&self) -> bool {
        self.progress.body_done()
    }

    /// Whether the headers for another attempt were kept.
    pub fn can_resend(&self) -> bool {
        self.spare.is_some()
    }

    /// The headers of attempt `attempt`: the prepared ones for the first,
    /// the kept ones prepared again for a later one (taken for the last).
    /// `None`: none were kept for another attempt.
    pub fn headers_for(
        &mut self,
        cx: &RequestContext<'_>,
        forward: &Forward,
        attempt: u32,
        last: bool,
    ) -> Option<HeaderMap> {
        if attempt == 1 {
            return Some(std::mem::take(&mut self.parts.headers));
        }
        let (mut headers, additions) = if last {
            let spare = self.spare.take()?;
            (spare.headers, spare.additions)
        } else {
            let spare = self.spare.as_ref()?;
            (spare.headers.clone(), spare.additions.clone())
        };
        prepare_headers(cx, forward, additions, None, self.http2, &mut headers);
        Some(headers)
    }
}

/// Builds the upstream request; `upgrade` is the switch of protocols the
/// client asks for, `resend` whether another attempt may follow. A
/// rewritten path that is no valid URI path gets 400.
pub fn prepare(
    cx: &mut RequestContext<'_>,
    req: Request<ClientBody>,
    forward: &Forward,
    upgrade: Option<&Upgrade>,
    resend: bool,
) -> Result<Outgoing, StatusCode> {
    let path = target_path(forward, &req)?;
    let additions = Additions::expand(cx, forward, &req);
    let (mut parts, body) = req.into_parts();
    let spare = (resend && upgrade.is_none()).then(|| Spare {
        headers: parts.headers.clone(),
        additions: additions.clone(),
    });
    let policy = &forward.route.policy;
    let http2 = policy.protocol.is_http2() && upgrade.is_none();
    prepare_headers(cx, forward, additions, upgrade, http2, &mut parts.headers);
    let started = Instant::now();
    let limit = body_size::streaming_limit(policy.body_limit);
    let (body, progress) = Watched::new(Limited::new(body, limit), started);
    cx.record.progress = Some(progress.clone());
    Ok(Outgoing {
        parts,
        path,
        http2,
        tls: policy.protocol.is_tls(),
        body: BodySlot::new(body),
        progress,
        started,
        spare,
    })
}

impl Additions {
    fn expand(cx: &RequestContext<'_>, forward: &Forward, req: &Request<ClientBody>) -> Self {
        let templates = &cx.table.edge.proxy_set_headers;
        let set_headers =
            (!templates.is_empty()).then(|| upstream_headers::expand(templates, &cx.facts(req)));
        let snippet = forward.route.snippet.as_ref();
        let snippet = snippet
            .filter(|s| !s.headers.upstream.is_empty())
            .map(|s| s.headers.upstream_values(&cx.facts(req)));
        Additions {
            set_headers,
            snippet,
        }
    }
}

/// The client's headers made the endpoint's: hop-by-hop removed, the
/// `X-Forwarded-*` family, `proxy-set-headers`, the route's own, a
/// snippet's, the upgrade asked for, and gRPC's `te: trailers`.
fn prepare_headers(
    cx: &RequestContext<'_>,
    forward: &Forward,
    additions: Additions,
    upgrade: Option<&Upgrade>,
    http2: bool,
    headers: &mut HeaderMap,
) {
    let compute_full = cx.table.edge.forwarded.compute_full;
    headers::prepare_request(headers, &cx.conn, &cx.host, compute_full);
    if let Some(expanded) = additions.set_headers {
        upstream_headers::set_all(expanded, headers);
    }
    route_headers(cx, forward, headers);
    // A snippet's `proxy_set_header` replaces what Gatehouse would send;
    // an empty value sends none, as nginx.
    for (name, value) in additions.snippet.into_iter().flatten() {
        match value {
            Some(value) => headers.insert(name, value),
            None => headers.remove(name),
        };
    }
    if let Some(upgrade) = upgrade {
        upgrade.ask(headers);
    }
    if http2 {
        // gRPC needs `te: trailers`, which hop-by-hop removal took out.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The path and query sent upstream: `rewrite-target`'s, or the
/// request's (as a snippet's `rewrite` left it).
fn target_path<B>(forward: &Forward, req: &Request<B>) -> Result<PathAndQuery, StatusCode> {
    match &forward.rewritten {
        Some(rewritten) => {
            PathAndQuery::try_from(rewritten.as_str()).map_err(|_| StatusCode::BAD_REQUEST)
        }
        None => Ok(req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))),
    }
}

/// What the route adds: the client certificate's headers (or the removal
/// of forged ones), `upstream-vhost` and `x-forwarded-prefix`. `Expect` is
/// answered by our own server and does not go on.
fn route_headers(cx: &RequestContext<'_>, forward: &Forward, headers: &mut HeaderMap) {
    match &forward.client_auth {
        Some(client_auth) => client_auth.request_headers(cx.conn.peer_cert.as_deref(), headers),
        None => client_cert::remove_forged(headers),
    }
    headers.remove(header::EXPECT);
    let policy = &forward.route.policy;
    let (vhost, prefix) = (&policy.upstream_vhost, &policy.x_forwarded_prefix);
    upstream_headers::set_route_headers(vhost.as_ref(), prefix.as_ref(), headers);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::{backend, conn, context, forward};
    use super::*;
    use crate::policy::proxy_settings::ProxySettings;
    use crate::upstream::client_body::ClientBody;

    #[test]
    fn the_path_is_the_rewritten_one_with_its_query_else_the_clients() {
        let req = Request::get("/shop/cart?id=7").body(()).unwrap();
        let mut forward = forward(backend(&["10.0.0.1:80"]), |_| {});
        assert_eq!(target_path(&forward, &req).unwrap(), "/shop/cart?id=7");
        forward.rewritten = Some("/cart?id=7".into());
        assert_eq!(target_path(&forward, &req).unwrap(), "/cart?id=7");
        forward.rewritten = Some("no path".into());
        assert_eq!(target_path(&forward, &req), Err(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn another_attempt_gets_the_first_attempts_headers_prepared_again_from_the_clients() {
        let vhost = ProxySettings {
            upstream_vhost: Some(HeaderValue::from_static("internal.svc")),
            ..ProxySettings::default()
        };
        let forward = forward(backend(&["10.0.0.1:80"]), |r| r.policy = Arc::new(vhost));
        let client = || {
            Request::get("/cart")
                .header(header::HOST, "shop.test")
                .header(header::CONNECTION, "x-hop")
                .header("x-hop", "1")
                .header("x-forwarded-for", "203.0.113.9")
                .header("x-request-id", "r-1")
                .body(ClientBody::empty())
                .unwrap()
        };
        let conn = conn();
        let mut req = client();
        let mut cx = context(&mut req, &conn);
        let mut out = prepare(&mut cx, req, &forward, None, true).unwrap();
        assert!(out.can_resend());
        let first = out.headers_for(&cx, &forward, 1, false).unwrap();
        assert_eq!(first["host"], "internal.svc");
        assert_eq!(first["x-forwarded-for"], "192.0.2.1");
        assert!(!first.contains_key("x-hop"));
        let second = out.headers_for(&cx, &forward, 2, false).unwrap();
        assert_eq!(second, first);
        let last = out.headers_for(&cx, &forward, 3, true).unwrap();
        assert_eq!(last, first);
        assert!(!out.can_resend(), "the last attempt takes what was kept");

        // One attempt only: nothing is kept, and no other is made.
        let mut req = client();
        let mut cx = context(&mut req, &conn);
        let mut out = prepare(&mut cx, req, &forward, None, false).unwrap();
        assert!(!out.can_resend());
        assert_eq!(out.headers_for(&cx, &forward, 1, true).unwrap(), first);
        assert!(out.headers_for(&cx, &forward, 2, true).is_none());
    }

    #[test]
    fn forged_client_certificate_headers_and_expect_never_reach_the_endpoint() {
        let vhost = ProxySettings {
            upstream_vhost: Some(HeaderValue::from_static("internal.svc")),
            ..ProxySettings::default()
        };
        let forward = forward(backend(&["10.0.0.1:80"]), |r| r.policy = Arc::new(vhost));
        let mut req = Request::get("/").body(()).unwrap();
        let conn = conn();
        let cx = context(&mut req, &conn);
        let mut headers = HeaderMap::new();
        headers.insert("ssl-client-verify", HeaderValue::from_static("SUCCESS"));
        headers.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        route_headers(&cx, &forward, &mut headers);
        assert!(!headers.contains_key("ssl-client-verify"));
        assert!(!headers.contains_key(header::EXPECT));
        assert_eq!(headers[header::HOST], "internal.svc");
    }
}
