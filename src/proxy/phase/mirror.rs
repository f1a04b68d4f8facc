//! The mirror phase: an HTTPRoute rule's `RequestMirror` filters. Each
//! mirror backend in whose share the request falls gets a copy of a
//! bodiless request, sent beside it and never waited for; its answer is
//! dropped.

use std::sync::Arc;

use http::{Request, Uri};

use crate::connection::headers;
use crate::policy::mirror;
use crate::table::GatewayRule;
use crate::upstream::client_body::ClientBody;
use crate::upstream::{LoadBalance, Timeouts, Upstream};
use crate::upstream::{OwnRequest, Upstreams};

/// Sends the copies; the request itself goes on untouched.
pub fn send(
    upstreams: &Arc<Upstreams>,
    req: &Request<ClientBody>,
    rule: &GatewayRule,
    timeouts: Timeouts,
) {
    let ended = hyper::body::Body::is_end_stream(req.body());
    if !mirror::can_copy(req.headers(), ended) {
        return;
    }
    let uri = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = Uri::try_from(uri) else {
        return;
    };
    for (backend, per_million) in &rule.mirrors {
        if !mirror::takes_copy(*per_million) {
            continue;
        }
        let authority = match &*backend.upstream() {
            Upstream::Endpoints(set) => match set.pick(LoadBalance::RoundRobin) {
                Some(pick) => set.authority(pick),
                None => continue,
            },
            Upstream::External(authority) => authority.clone(),
        };
        let mut headers = req.headers().clone();
        headers::remove_hop_by_hop(&mut headers);
        let request = OwnRequest {
            method: req.method().clone(),
            uri: uri.clone(),
            headers,
        };
        let upstreams = upstreams.clone();
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
