//! The upgrade phase: an HTTP/1.1 client that asks to switch protocols
//! (`Connection: upgrade` plus `Upgrade: websocket`) and an endpoint that
//! agrees (`101`) are joined, and bytes are copied both ways until either
//! side closes. The tunnel outlives the request; draining waits for it.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::task::TaskTracker;

use crate::connection::headers;
use crate::upstream::UpstreamResponse;

/// A client's request to switch protocols.
pub struct Upgrade {
    /// What it asks for, e.g. `websocket`.
    pub protocol: HeaderValue,
    /// Its side of the connection, once the switch is answered.
    client: OnUpgrade,
}

/// The upgrade a request asks for, if any (HTTP/1.1 only).
pub fn requested<B>(req: &mut Request<B>) -> Option<Upgrade> {
    let protocol = asked_protocol(req)?;
    let client = hyper::upgrade::on(req);
    Some(Upgrade { protocol, client })
}

fn asked_protocol<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let asks = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten()
}

/// An endpoint's answer to an upgrade request: on `101`, the tunnel is
/// started and the response made the client's confirmation of the switch
/// (`true`); any other answer stays an ordinary response.
pub fn switch(
    upgrade: Upgrade,
    response: &mut Response<UpstreamResponse>,
    tunnels: &TaskTracker,
) -> bool {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return false;
    }
    let upstream = hyper::upgrade::on(&mut *response);
    tunnels.spawn(tunnel(upgrade.client, upstream));
    let headers = response.headers_mut();
    headers::remove_hop_by_hop(headers);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, upgrade.protocol);
    true
}

/// Copies bytes both ways between an upgraded client connection and the
/// upgraded upstream connection until either side closes.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!("upgraded connection ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(version: Version, connection: &str) -> Request<()> {
        let mut req = Request::get("/chat")
            .header(header::CONNECTION, connection)
            .header(header::UPGRADE, "websocket")
            .body(())
            .unwrap();
        *req.version_mut() = version;
        req
    }

    #[test]
    fn an_upgrade_is_asked_by_a_connection_token_over_http_1_1() {
        let req = asking(Version::HTTP_11, "keep-alive, Upgrade");
        assert_eq!(asked_protocol(&req).unwrap(), "websocket");
        assert!(asked_protocol(&asking(Version::HTTP_11, "keep-alive")).is_none());
        assert!(
            asked_protocol(&asking(Version::HTTP_2, "upgrade")).is_none(),
            "HTTP/2 has no Upgrade"
        );
    }
}
