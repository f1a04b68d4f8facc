//! How far the forwarded headers a peer sends are believed.

use std::net::IpAddr;

use http::header::HeaderName;
use ipnet::IpNet;

use super::canonical_ip;

/// How far `X-Forwarded-*` headers from the peer are believed:
/// ingress-nginx's `use-forwarded-headers`, `enable-real-ip`,
/// `forwarded-for-header`, `compute-full-forwarded-for` and
/// `proxy-real-ip-cidr`.
#[derive(Clone, Debug)]
pub struct ForwardedHeaders {
    /// Believe a trusted peer's forwarded headers: the client address and
    /// `X-Forwarded-Proto`, `-Host` and `-Port`.
    pub use_forwarded_headers: bool,
    /// `enable-real-ip`: believe a trusted peer's client address only.
    pub real_ip: bool,
    /// The header naming the client (`X-Forwarded-For`).
    pub header: HeaderName,
    /// Send upstream the whole chain plus the peer, not the client alone.
    pub compute_full: bool,
    /// Peers (and chain entries) that are proxies of ours; ingress-nginx's
    /// default trusts every address once `use-forwarded-headers` is on.
    pub trusted: Vec<IpNet>,
}

impl Default for ForwardedHeaders {
    fn default() -> Self {
        ForwardedHeaders {
            use_forwarded_headers: false,
            real_ip: false,
            header: HeaderName::from_static("x-forwarded-for"),
            compute_full: false,
            // 0.0.0.0/0 and ::/0.
            trusted: vec![IpNet::V4(Default::default()), IpNet::V6(Default::default())],
        }
    }
}

impl ForwardedHeaders {
    pub fn trusts(&self, addr: IpAddr) -> bool {
        let addr = canonical_ip(addr);
        self.trusted.iter().any(|net| net.contains(&addr))
    }

    /// Whether a trusted peer may name the client at all.
    pub fn names_client(&self) -> bool {
        self.use_forwarded_headers || self.real_ip
    }
}
