//! The upstream request phase: the request as the endpoint will see it.
//! Its path (rewritten or as sent), its headers (hop-by-hop removed, the
//! `X-Forwarded-*` family, `proxy-set-headers`, what the client
//! certificate says, `upstream-vhost`, `x-forwarded-prefix`, a snippet's
//! `proxy_set_header`, the upgrade it asks for) and its body (cut at `proxy-body-size`, watched for the
//! send and read timeouts, kept for another attempt until it is read).

use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderValue};
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
    /// Method, version and headers; the URI is set per attempt.
    pub parts: Parts,
    pub path: PathAndQuery,
    /// Over HTTP/2 (gRPC), else HTTP/1.1.
    pub http2: bool,
    pub tls: bool,
    pub body: Body,
    pub progress: Arc<Progress>,
    /// When forwarding began: the send timeout runs from here.
    pub started: Instant,
}

impl Outgoing {
    /// Whether the request has no body to send (it may be sent again
    /// whatever happened to the first attempt).
    pub fn bodiless(&self) -> bool {
        self.progress.body_done()
    }
}

/// Builds the upstream request; `upgrade` is the switch of protocols the
/// client asks for. A rewritten path that is no valid URI path gets 400.
pub fn prepare(
    cx: &mut RequestContext<'_>,
    req: Request<ClientBody>,
    forward: &Forward,
    upgrade: Option<&Upgrade>,
) -> Result<Outgoing, StatusCode> {
    let path = target_path(forward, &req)?;
    let edge = &cx.table.edge;
    // Expanded from the request as the client sent it.
    let set_headers = (!edge.proxy_set_headers.is_empty())
        .then(|| upstream_headers::expand(&edge.proxy_set_headers, &cx.facts(&req)));
    let snippet = forward.route.snippet.as_ref();
    let snippet_headers = snippet
        .filter(|s| !s.headers.upstream.is_empty())
        .map(|s| s.headers.upstream_values(&cx.facts(&req)));
    let (mut parts, body) = req.into_parts();
    let compute_full = edge.forwarded.compute_full;
    headers::prepare_request(&mut parts.headers, &cx.conn, &cx.host, compute_full);
    if let Some(expanded) = set_headers {
        upstream_headers::set_all(expanded, &mut parts.headers);
    }
    route_headers(cx, forward, &mut parts.headers);
    // A snippet's `proxy_set_header` replaces what Gatehouse would send;
    // an empty value sends none, as nginx.
    for (name, value) in snippet_headers.into_iter().flatten() {
        match value {
            Some(value) => parts.headers.insert(name, value),
            None => parts.headers.remove(name),
        };
    }
    let policy = &forward.route.policy;
    if let Some(upgrade) = upgrade {
        upgrade.ask(&mut parts.headers);
    }
    let http2 = policy.protocol.is_http2() && upgrade.is_none();
    if http2 {
        // gRPC needs `te: trailers`, which hop-by-hop removal took out.
        let trailers = HeaderValue::from_static("trailers");
        parts.headers.insert(header::TE, trailers);
    }
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
    })
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
