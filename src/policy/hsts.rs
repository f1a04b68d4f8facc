//! HSTS, as ingress-nginx sends it by default: HTTPS responses for hosts
//! that an Ingress's `tls` section covers carry `Strict-Transport-Security`;
//! plain HTTP responses never do (RFC 6797 §7.2).

use http::header::{HeaderMap, HeaderValue, STRICT_TRANSPORT_SECURITY};

/// `--hsts`, `--hsts-max-age`, `--hsts-include-subdomains`, `--hsts-preload`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HstsOptions {
    pub enabled: bool,
    pub max_age: u64,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Default for HstsOptions {
    /// ingress-nginx's defaults.
    fn default() -> Self {
        HstsOptions {
            enabled: true,
            max_age: 31_536_000,
            include_subdomains: true,
            preload: false,
        }
    }
}

impl HstsOptions {
    /// The header value, or `None` when HSTS is off.
    pub fn header(&self) -> Option<HeaderValue> {
        if !self.enabled {
            return None;
        }
        let mut value = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            value.push_str("; includeSubDomains");
        }
        if self.preload {
            value.push_str("; preload");
        }
        // Digits and fixed tokens: always a valid header value.
        HeaderValue::from_str(&value).ok()
    }
}

/// The response phase: adds the route's HSTS header to a response sent
/// over TLS, replacing any the backend sent.
pub fn apply(hsts: Option<&HeaderValue>, tls: bool, headers: &mut HeaderMap) {
    if let (Some(value), true) = (hsts, tls) {
        headers.insert(STRICT_TRANSPORT_SECURITY, value.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_ingress_nginx_defaults() {
        let value = HstsOptions::default().header().unwrap();
        assert_eq!(value, "max-age=31536000; includeSubDomains");
    }

    #[test]
    fn preload_and_subdomains_follow_the_flags() {
        let options = HstsOptions {
            max_age: 60,
            include_subdomains: false,
            preload: true,
            ..HstsOptions::default()
        };
        assert_eq!(options.header().unwrap(), "max-age=60; preload");
        let off = HstsOptions {
            enabled: false,
            ..HstsOptions::default()
        };
        assert!(off.header().is_none());
    }

    #[test]
    fn only_tls_responses_get_the_header() {
        let value = HstsOptions::default().header();
        let mut headers = HeaderMap::new();
        apply(value.as_ref(), false, &mut headers);
        assert!(headers.is_empty());
        apply(value.as_ref(), true, &mut headers);
        assert_eq!(headers.len(), 1);
    }
}
