//! The upgrade phase: a client that asks to switch protocols and an
//! endpoint that agrees (`101`) are joined, and bytes are copied both ways
//! until either side closes. The tunnel outlives the request; draining
//! waits for it.
//!
//! Two ways to ask, one endpoint handshake:
//! - HTTP/1.1: `Connection: upgrade` plus `Upgrade: websocket`, passed on
//!   as sent; the endpoint's `101` goes back to the client.
//! - HTTP/2 (RFC 8441): an extended CONNECT with `:protocol websocket`.
//!   It is routed, checked and forwarded as the `GET` it stands for; the
//!   endpoint gets an HTTP/1.1 WebSocket handshake with a key of ours (an
//!   HTTP/2 client sends none), and its `101`, once its
//!   `Sec-WebSocket-Accept` matches that key, becomes the client's `200`.
//!   Any other `:protocol` is refused with `501`: the request is well
//!   formed, Gatehouse just implements no other protocol over CONNECT.

use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::ext::Protocol;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use sha1::Digest as _;
use tokio_util::task::TaskTracker;

use crate::connection::headers;
use crate::upstream::UpstreamResponse;

/// A client's request to switch protocols.
pub struct Upgrade {
    /// What it asks for, e.g. `websocket`.
    pub protocol: HeaderValue,
    /// Its side of the connection, once the switch is answered.
    client: OnUpgrade,
    /// For an HTTP/2 extended CONNECT: the `Sec-WebSocket-Key` the
    /// endpoint's handshake is sent with.
    extended: Option<HeaderValue>,
}

/// RFC 8441: an HTTP/2 extended CONNECT for `websocket` becomes the `GET`
/// it stands for (its `:protocol` stays with it, for `requested`), so
/// that routing and access see it as they see an HTTP/1.1 upgrade. Any
/// other `:protocol` gets `501`. Every other request is left as it is.
pub fn extended_connect<B>(req: &mut Request<B>) -> Result<(), StatusCode> {
    if req.method() != Method::CONNECT {
        return Ok(());
    }
    let Some(protocol) = req.extensions().get::<Protocol>() else {
        return Ok(());
    };
    if !protocol.as_str().eq_ignore_ascii_case("websocket") {
        return Err(StatusCode::NOT_IMPLEMENTED);
    }
    *req.method_mut() = Method::GET;
    Ok(())
}

/// The upgrade a request asks for, if any: an HTTP/1.1 upgrade, or an
/// HTTP/2 extended CONNECT that `extended_connect` accepted.
pub fn requested<B>(req: &mut Request<B>) -> Option<Upgrade> {
    if let Some(protocol) = req.extensions_mut().remove::<Protocol>() {
        let websocket = req.version() == Version::HTTP_2
            && req.method() == Method::GET
            && protocol.as_str().eq_ignore_ascii_case("websocket");
        return websocket.then(|| Upgrade {
            protocol: HeaderValue::from_static("websocket"),
            client: hyper::upgrade::on(&mut *req),
            extended: Some(websocket_key()),
        });
    }
    let protocol = asked_protocol(req)?;
    let client = hyper::upgrade::on(req);
    Some(Upgrade {
        protocol,
        client,
        extended: None,
    })
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

impl Upgrade {
    /// The headers that ask the endpoint to switch. For an extended
    /// CONNECT, the rest of an HTTP/1.1 WebSocket handshake too: our key,
    /// and version 13 unless the client named one. The client's
    /// `Sec-WebSocket-Protocol` and `-Extensions` pass as sent.
    pub fn ask(&self, headers: &mut HeaderMap) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, self.protocol.clone());
        if let Some(key) = &self.extended {
            headers.insert(header::SEC_WEBSOCKET_KEY, key.clone());
            headers
                .entry(header::SEC_WEBSOCKET_VERSION)
                .or_insert(HeaderValue::from_static("13"));
        }
    }
}

/// An endpoint's answer to an upgrade request. On `101` the tunnel is
/// started and the response made the client's confirmation of the switch
/// (`Ok(true)`): a `101` for HTTP/1.1, a `200` for an extended CONNECT.
/// Any other answer stays an ordinary response (`Ok(false)`), except that
/// an extended CONNECT whose endpoint did not switch properly (a wrong
/// `Sec-WebSocket-Accept`, or a success that is no `101`, which the client
/// would take for an open tunnel) gets `502`.
pub fn switch(
    upgrade: Upgrade,
    response: &mut Response<UpstreamResponse>,
    tunnels: &TaskTracker,
) -> Result<bool, StatusCode> {
    let status = response.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        if upgrade.extended.is_some() && status.is_success() {
            tracing::debug!("WebSocket endpoint answered {status} instead of 101");
            return Err(StatusCode::BAD_GATEWAY);
        }
        return Ok(false);
    }
    if let Some(key) = &upgrade.extended {
        let accept = response.headers().get(header::SEC_WEBSOCKET_ACCEPT);
        if accept.map(HeaderValue::as_bytes) != Some(websocket_accept(key).as_bytes()) {
            tracing::debug!("WebSocket endpoint answered 101 with a wrong Sec-WebSocket-Accept");
            return Err(StatusCode::BAD_GATEWAY);
        }
    }
    let upstream = hyper::upgrade::on(&mut *response);
    tunnels.spawn(tunnel(upgrade.client, upstream));
    let headers = response.headers_mut();
    headers::remove_hop_by_hop(headers);
    match upgrade.extended {
        None => {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, upgrade.protocol);
        }
        Some(_) => {
            // The accept answered our key, not the client's; the
            // subprotocol and extensions chosen go back as they came.
            headers.remove(header::SEC_WEBSOCKET_ACCEPT);
            headers.remove(header::CONTENT_LENGTH);
            *response.status_mut() = StatusCode::OK;
        }
    }
    Ok(true)
}

/// A new `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 §4.1).
fn websocket_key() -> HeaderValue {
    let mut nonce = [0u8; 16];
    if crate::tls::provider()
        .secure_random
        .fill(&mut nonce)
        .is_err()
    {
        nonce = fastrand::u128(..).to_le_bytes();
    }
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    HeaderValue::from_str(&key).expect("base64 is a valid header value")
}

/// The `Sec-WebSocket-Accept` that answers `key` (RFC 6455 §4.2.2).
fn websocket_accept(key: &HeaderValue) -> String {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha1 = sha1::Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
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

    fn extended(protocol: &'static str) -> Request<()> {
        let mut req = Request::connect("https://chat.test/chat").body(()).unwrap();
        *req.version_mut() = Version::HTTP_2;
        req.extensions_mut().insert(Protocol::from_static(protocol));
        req
    }

    #[test]
    fn an_extended_connect_for_websocket_is_the_get_it_stands_for() {
        let mut req = extended("websocket");
        assert_eq!(extended_connect(&mut req), Ok(()));
        assert_eq!(req.method(), Method::GET);
        assert!(req.extensions().get::<Protocol>().is_some());
    }

    #[test]
    fn an_extended_connect_for_another_protocol_is_not_implemented() {
        let mut req = extended("connect-udp");
        assert_eq!(extended_connect(&mut req), Err(StatusCode::NOT_IMPLEMENTED));
        assert_eq!(req.method(), Method::CONNECT);
    }

    #[test]
    fn a_plain_connect_and_other_methods_are_left_alone() {
        let mut req = Request::connect("chat.test:443").body(()).unwrap();
        *req.version_mut() = Version::HTTP_2;
        assert_eq!(extended_connect(&mut req), Ok(()));
        assert_eq!(req.method(), Method::CONNECT);
    }

    #[test]
    fn the_accept_answers_the_key_as_rfc_6455_computes_it() {
        let key = HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(websocket_accept(&key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let (a, b) = (websocket_key(), websocket_key());
        assert_eq!(a.len(), 24, "16 bytes, base64");
        assert_ne!(a, b);
    }

    #[test]
    fn an_extended_connect_asks_the_endpoint_for_a_full_handshake() {
        let upgrade = Upgrade {
            protocol: HeaderValue::from_static("websocket"),
            client: hyper::upgrade::on(Request::new(())),
            extended: Some(HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==")),
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("chat"),
        );
        upgrade.ask(&mut headers);
        assert_eq!(headers[header::CONNECTION], "upgrade");
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert_eq!(
            headers[header::SEC_WEBSOCKET_KEY],
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
        assert_eq!(headers[header::SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(headers[header::SEC_WEBSOCKET_PROTOCOL], "chat");
    }
}
