//! Connection facts shared by the table, policy and the proxy: the
//! connection a request arrived on and the client it names, the client's
//! certificate, how far forwarded headers are believed, the request's host
//! and query, and the headers that tell the next hop about it.
//!
//! A leaf below the table and policy: it imports no other module of
//! Gatehouse.

mod forwarded;
pub mod headers;
pub mod peer_cert;
mod request;

pub use forwarded::ForwardedHeaders;
pub use headers::{prepare_request, remove_hop_by_hop, ConnInfo};
pub use peer_cert::PeerCert;
pub use request::{normalize_host, query_value, strip_port};

/// A client address as policies and trusted-proxy lists compare it: an IPv4 client seen on a
/// dual-stack socket (`::ffff:a.b.c.d`) is the IPv4 client.
pub fn canonical_ip(addr: std::net::IpAddr) -> std::net::IpAddr {
    match addr {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(std::net::IpAddr::V4)
            .unwrap_or(addr),
        v4 => v4,
    }
}
