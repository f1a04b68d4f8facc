//! Request and response header rewriting for the forwarded hop.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and are
//! removed in both directions, with every header the `Connection` header
//! names. The `X-Forwarded-*` family tells the backend what the client sent.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::policy::client_cert::PeerCert;

/// The connection a request arrived on, with the header values every
/// request on it forwards (formatted once per connection).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// The client certificate, when the server name asked for one.
    pub peer: Option<Arc<PeerCert>>,
    client_ip: HeaderValue,
    local_port: HeaderValue,
}

impl ConnInfo {
    pub fn new(client: SocketAddr, local: SocketAddr, tls: bool) -> Self {
        // An IP address is always a valid header value.
        let client_ip = HeaderValue::from_str(&client.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("-"));
        ConnInfo {
            client,
            local,
            tls,
            peer: None,
            client_ip,
            local_port: HeaderValue::from(local.port()),
        }
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the headers instead of a
    // lookup per hop-by-hop name.
    let hop = |name: &HeaderName| HOP_BY_HOP.contains(name) || name == header::PROXY_AUTHENTICATE;
    if !headers.keys().any(hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::PROXY_AUTHENTICATE);
}

/// Prepares the headers of a request about to be forwarded: hop-by-hop
/// removed, `Host` set to what the client asked for, `X-Forwarded-For`
/// appended to, the other `X-Forwarded-*` and `X-Real-IP` set.
pub fn prepare_request(headers: &mut HeaderMap, conn: &ConnInfo, host: &HeaderValue) {
    remove_hop_by_hop(headers);
    // Room for the headers added below, so that no insert regrows the map.
    headers.reserve(6);
    headers.insert(header::HOST, host.clone());

    let client_ip = &conn.client_ip;
    match headers.entry(X_FORWARDED_FOR.clone()) {
        header::Entry::Occupied(mut prior) if !prior.get().is_empty() => {
            let prior_value = prior.get().as_bytes();
            let mut joined = Vec::with_capacity(prior_value.len() + 2 + client_ip.len());
            joined.extend_from_slice(prior_value);
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(client_ip.as_bytes());
            // A valid header value, a comma and an IP address: valid.
            let value = HeaderValue::from_bytes(&joined).unwrap_or_else(|_| client_ip.clone());
            prior.insert(value);
        }
        header::Entry::Occupied(mut prior) => {
            prior.insert(client_ip.clone());
        }
        header::Entry::Vacant(slot) => {
            slot.insert(client_ip.clone());
        }
    }
    headers.insert(X_REAL_IP.clone(), client_ip.clone());
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(conn.scheme()),
    );
    headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    headers.insert(X_FORWARDED_PORT.clone(), conn.local_port.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ConnInfo {
        ConnInfo::new(
            "192.0.2.7:5555".parse().unwrap(),
            "127.0.0.1:8443".parse().unwrap(),
            true,
        )
    }

    #[test]
    fn headers_named_in_connection_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_for_is_appended_and_the_rest_set() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("spoofed"));
        prepare_request(&mut h, &conn(), &HeaderValue::from_static("shop.example"));
        assert_eq!(h["x-forwarded-for"], "203.0.113.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "shop.example");
        assert_eq!(h["x-forwarded-port"], "8443");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert_eq!(h["host"], "shop.example");
    }
}
