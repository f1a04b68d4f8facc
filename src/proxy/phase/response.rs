//! The response phase: what the client gets back. The endpoint's response
//! (or the tunnel of an upgrade) with hop-by-hop headers and a snippet's
//! `proxy_hide_header` removed, and the affinity cookie; for a routed request the custom error page, the auth
//! service's cookies and an HTTPRoute's response header edits; for every
//! request HSTS, CORS and the controller ConfigMap's headers.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use tokio_util::task::TaskTracker;

use super::attempts::{AttemptError, Attempted};
use super::upgrade::{self, Upgrade};
use crate::connection::headers;
use crate::metrics::{Metrics, UpstreamErrorLabels};
use crate::policy::error_pages::Noted;
use crate::policy::hsts;
use crate::proxy::answer::{self, Inner};
use crate::proxy::context::RequestContext;
use crate::table::{Forward, GlobalSettings};
use crate::upstream::Upstreams;

/// The answer to a forwarded request, from its last attempt.
pub fn from_upstream(
    cx: &mut RequestContext<'_>,
    attempted: Attempted,
    upgrade: Option<Upgrade>,
    tunnels: &TaskTracker,
    forward: &Forward,
    metrics: &Metrics,
) -> Response<Inner> {
    let Attempted {
        result,
        target,
        took,
    } = attempted;
    cx.record.upstream = Some(target.clone());
    cx.record.upstream_time = Some(took);
    let read = forward.route.policy.timeouts.read;
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            count_failure(metrics, forward, &error);
            error.log(cx.conn.client, &target);
            return answer::status(error.status());
        }
    };
    if let Some(upgrade) = upgrade {
        match upgrade::switch(upgrade, &mut response, tunnels) {
            Ok(true) => return answer::streamed(response, read, target),
            Ok(false) => {}
            Err(status) => return answer::status(status),
        }
    }
    headers::remove_hop_by_hop(response.headers_mut());
    if let Some(snippet) = &forward.route.snippet {
        snippet.headers.hide_from(response.headers_mut());
    }
    if let Some(cookie) = cx.choice.set_cookie.take() {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    answer::streamed(response, read, target)
}

/// The custom error page for a status the route lists, when the default
/// backend answers.
pub async fn error_page(
    noted: Noted,
    status: StatusCode,
    forward: &Forward,
    upstreams: &Upstreams,
) -> Option<Response<Inner>> {
    let timeouts = forward.route.policy.timeouts;
    let (page, from) = noted.page(status.as_u16(), upstreams, timeouts).await?;
    let mut page = answer::streamed(page, timeouts.read, from);
    headers::remove_hop_by_hop(page.headers_mut());
    Some(page)
}

/// A routed request's response, whoever answered it: the auth service's
/// cookies and an HTTPRoute rule's `ResponseHeaderModifier`.
pub fn of_route(cx: &RequestContext<'_>, response: &mut Response<Inner>, forward: &Forward) {
    if let Some(granted) = &cx.granted {
        let status = response.status();
        granted.apply_to_response(status, response.headers_mut());
    }
    let gateway = forward.route.gateway.as_ref();
    if let Some(edits) = gateway.and_then(|g| g.response_headers.as_ref()) {
        edits.apply(response.headers_mut());
    }
}

/// What every response gets: the route's HSTS, the admitted CORS origin's
/// headers, then the controller ConfigMap's headers.
pub fn headers_for_all(cx: &RequestContext<'_>, headers: &mut HeaderMap) {
    if let Some(route) = &cx.record.route {
        hsts::apply(route.hsts.as_ref(), cx.conn.tls, headers);
    }
    if let Some(admitted) = &cx.cors {
        admitted.apply(headers);
    }
    edge_headers(&cx.table.edge, headers);
}

static SERVER_TOKEN: HeaderValue =
    HeaderValue::from_static(concat!("gatehouse/", env!("CARGO_PKG_VERSION")));

/// The controller ConfigMap's response headers: `hide-headers`, the
/// endpoint's `Server` unless `allow-backend-server-header`, ours with
/// `server-tokens`, then `add-headers`.
fn edge_headers(edge: &GlobalSettings, headers: &mut HeaderMap) {
    for name in &edge.hide_headers {
        headers.remove(name);
    }
    // One lookup of `Server` whichever way: ours replaces the endpoint's
    // when that one is not allowed through.
    match (edge.backend_server_header, edge.server_tokens) {
        (false, true) => {
            headers.insert(header::SERVER, SERVER_TOKEN.clone());
        }
        (false, false) => {
            headers.remove(header::SERVER);
        }
        (true, true) => {
            headers
                .entry(header::SERVER)
                .or_insert_with(|| SERVER_TOKEN.clone());
        }
        (true, false) => {}
    }
    for (name, value) in &edge.add_headers {
        headers.insert(name.clone(), value.clone());
    }
}

/// Counts a failed exchange by Ingress, Service and kind.
fn count_failure(metrics: &Metrics, forward: &Forward, error: &AttemptError) {
    let ingress = forward.route.ingress.as_ref();
    let labels = UpstreamErrorLabels {
        namespace: ingress.map(|k| k.namespace.clone()).unwrap_or_default(),
        ingress: ingress.map(|k| k.name.clone()).unwrap_or_default(),
        service: forward.backend.service.name.clone(),
        kind: error.metric_label(),
    };
    metrics.upstream_errors.get_or_create(&labels).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configmap_headers_hide_replace_and_add() {
        let edge = GlobalSettings {
            hide_headers: vec![header::HeaderName::from_static("x-powered-by")],
            server_tokens: true,
            add_headers: vec![(
                header::HeaderName::from_static("x-frame-options"),
                HeaderValue::from_static("DENY"),
            )],
            ..GlobalSettings::default()
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-powered-by", HeaderValue::from_static("php"));
        headers.insert(header::SERVER, HeaderValue::from_static("backend/1"));
        edge_headers(&edge, &mut headers);
        assert!(headers.get("x-powered-by").is_none());
        assert_eq!(headers[header::SERVER], SERVER_TOKEN);
        assert_eq!(headers["x-frame-options"], "DENY");
    }
}
