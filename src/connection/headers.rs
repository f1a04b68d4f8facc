//! Request and response header rewriting for the forwarded hop.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and are
//! removed in both directions, with every header the `Connection` header
//! names. The `X-Forwarded-*` family tells the backend what the client sent.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::{ForwardedHeaders, PeerCert};

/// The connection a request arrived on, with the header values every
/// request on it forwards (formatted once per connection).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client: the peer, the PROXY protocol header's address, or (per
    /// request) the forwarded-for address a trusted peer names.
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// The address the connection came from (the peer, or the PROXY
    /// protocol header's).
    pub peer: IpAddr,
    /// The peer is a trusted proxy whose `X-Forwarded-*` are kept.
    pub forwarded_trusted: bool,
    /// The client certificate, when the server name asked for one.
    pub peer_cert: Option<Arc<PeerCert>>,
    /// The TLS protocol and cipher suite in OpenSSL's names, for the
    /// access log.
    pub tls_names: Option<(&'static str, &'static str)>,
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
            peer_cert: None,
            tls_names: None,
            peer: client.ip(),
            forwarded_trusted: false,
            client_ip,
            local_port: HeaderValue::from(local.port()),
        }
    }

    /// The connection as one request sees it, when a trusted proxy names
    /// the client: the rightmost forwarded-for entry that is not itself a
    /// trusted proxy (nginx's `real_ip_recursive on`). `None`: as it is.
    pub fn for_request(
        &self,
        headers: &HeaderMap,
        forwarded: &ForwardedHeaders,
    ) -> Option<ConnInfo> {
        if !forwarded.names_client() || !forwarded.trusts(self.peer) {
            return None;
        }
        let chain: Vec<IpAddr> = headers
            .get_all(&forwarded.header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
            .collect();
        let client = chain
            .iter()
            .rev()
            .find(|addr| !forwarded.trusts(**addr))
            .or(chain.first())
            .copied();
        let mut conn = match client {
            Some(ip) => {
                let mut c = ConnInfo::new(SocketAddr::new(ip, 0), self.local, self.tls);
                c.peer = self.peer;
                c.peer_cert = self.peer_cert.clone();
                c.tls_names = self.tls_names;
                c
            }
            None => self.clone(),
        };
        conn.forwarded_trusted = forwarded.use_forwarded_headers;
        Some(conn)
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

/// How many headers `prepare_request` may add: `Host`, `X-Forwarded-For`,
/// `X-Real-IP`, `X-Forwarded-Proto`, `-Host` and `-Port`.
pub const PREPARED_HEADERS: usize = 6;

/// Prepares the headers of a request about to be forwarded: hop-by-hop
/// removed, `Host` set to what the client asked for, `X-Real-IP` and
/// `X-Forwarded-For` the client (or, with `compute_full`, the chain the
/// client sent plus the peer), the other `X-Forwarded-*` ours unless a
/// trusted proxy sent them.
pub fn prepare_request(
    headers: &mut HeaderMap,
    conn: &ConnInfo,
    host: &HeaderValue,
    compute_full: bool,
) {
    remove_hop_by_hop(headers);
    // Room for the headers added below, so that no insert regrows the map
    // (usually made when the request arrived, with the request ID's).
    headers.reserve(PREPARED_HEADERS);
    headers.insert(header::HOST, host.clone());

    let client_ip = &conn.client_ip;
    // The client's chain matters only with `compute_full`: no lookup
    // otherwise.
    let chain = compute_full
        .then(|| headers.get(&X_FORWARDED_FOR))
        .flatten()
        .filter(|v| !v.is_empty());
    let forwarded_for = match chain {
        Some(prior) => {
            let peer = conn.peer.to_string();
            let mut joined = Vec::with_capacity(prior.len() + 2 + peer.len());
            joined.extend_from_slice(prior.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(peer.as_bytes());
            // A valid header value, a comma and an IP address: valid.
            HeaderValue::from_bytes(&joined).unwrap_or_else(|_| client_ip.clone())
        }
        None if compute_full => {
            HeaderValue::from_str(&conn.peer.to_string()).unwrap_or_else(|_| client_ip.clone())
        }
        None => client_ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for);
    headers.insert(X_REAL_IP.clone(), client_ip.clone());
    let ours = |headers: &mut HeaderMap, name: &HeaderName, value: HeaderValue| {
        if !(conn.forwarded_trusted && headers.contains_key(name)) {
            headers.insert(name.clone(), value);
        }
    };
    ours(
        headers,
        &X_FORWARDED_PROTO,
        HeaderValue::from_static(conn.scheme()),
    );
    ours(headers, &X_FORWARDED_HOST, host.clone());
    ours(headers, &X_FORWARDED_PORT, conn.local_port.clone());
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
    fn an_untrusted_clients_forwarded_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("spoofed"));
        prepare_request(
            &mut h,
            &conn(),
            &HeaderValue::from_static("shop.example"),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "shop.example");
        assert_eq!(h["x-forwarded-port"], "8443");
        assert_eq!(h["x-real-ip"], "192.0.2.7");
        assert_eq!(h["host"], "shop.example");
    }

    #[test]
    fn compute_full_forwarded_for_appends_the_peer_to_the_chain() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.1"));
        prepare_request(&mut h, &conn(), &HeaderValue::from_static("a"), true);
        assert_eq!(h["x-forwarded-for"], "203.0.113.1, 192.0.2.7");
    }

    fn trusting(cidrs: &[&str]) -> ForwardedHeaders {
        ForwardedHeaders {
            use_forwarded_headers: true,
            trusted: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            ..ForwardedHeaders::default()
        }
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_entry_of_a_trusted_peer() {
        let peer = ConnInfo::new(
            "10.0.0.5:40000".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
            false,
        );
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.1, 203.0.113.7, 10.0.0.9"),
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let fwd = trusting(&["10.0.0.0/8"]);
        let seen = peer.for_request(&h, &fwd).expect("trusted");
        assert_eq!(seen.client.ip().to_string(), "203.0.113.7");
        prepare_request(&mut h, &seen, &HeaderValue::from_static("a"), false);
        assert_eq!(h["x-forwarded-for"], "203.0.113.7");
        assert_eq!(
            h["x-forwarded-proto"], "https",
            "a trusted proxy's scheme is kept"
        );
        // An untrusted peer's chain is not believed.
        let stranger = ConnInfo::new(
            "192.0.2.9:1".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
            false,
        );
        assert!(stranger.for_request(&h, &fwd).is_none());
        // Off: never believed.
        let off = ForwardedHeaders::default();
        assert!(peer.for_request(&h, &off).is_none());
    }
}
