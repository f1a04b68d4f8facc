//! The TLS versions and TLS 1.2 cipher suites offered to clients
//! (`ssl-protocols`, `ssl-ciphers`), and the rustls choice they make.

use std::sync::Arc;

use super::provider;

/// The TLS versions and TLS 1.2 cipher suites offered to clients.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsSettings {
    pub tls12: bool,
    pub tls13: bool,
    /// TLS 1.2 suites in order of preference; `None`: the provider's
    /// defaults. TLS 1.3 suites are always all offered, as with nginx's
    /// `ssl_ciphers`, which does not touch TLS 1.3.
    pub tls12_suites: Option<Vec<rustls::SupportedCipherSuite>>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            tls12: true,
            tls13: true,
            tls12_suites: None,
        }
    }
}

/// The crypto provider and protocol versions `ssl-protocols` and
/// `ssl-ciphers` select: every TLS 1.3 suite, and the chosen TLS 1.2 ones.
pub fn tls_choice(
    settings: &TlsSettings,
) -> (
    Arc<rustls::crypto::CryptoProvider>,
    Vec<&'static rustls::SupportedProtocolVersion>,
) {
    let mut versions = Vec::with_capacity(2);
    if settings.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if settings.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let Some(tls12) = &settings.tls12_suites else {
        return (provider().clone(), versions);
    };
    let mut provider = (**provider()).clone();
    provider
        .cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13);
    provider.cipher_suites.extend(tls12.iter().copied());
    (Arc::new(provider), versions)
}
