//! The TLS versions and TLS 1.2 cipher suites offered to clients
//! (`ssl-protocols`, `ssl-ciphers`), the order the server picks them in,
//! and the rustls configuration they make.
//!
//! The server's order decides (`ignore_client_order`), as with nginx's
//! `ssl_prefer_server_ciphers on` (ingress-nginx's default): AES-GCM
//! first, 256-bit before 128-bit, ChaCha20-Poly1305 last; `ssl-ciphers`
//! gives the TLS 1.2 order instead. A client that lists a ChaCha20 suite
//! first (one without AES hardware, typically a phone) gets ChaCha20, as
//! OpenSSL's `PrioritizeChaCha` does: rustls has no such option, so the
//! listener reads the ClientHello (`preference`) and picks the
//! configuration whose order puts ChaCha20 first.

use std::sync::Arc;

use rustls::crypto::aws_lc_rs::cipher_suite as suite;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::ResolvesServerCert;
use rustls::{CipherSuite, ServerConfig, SupportedCipherSuite};

use super::provider;

/// The TLS versions and TLS 1.2 cipher suites offered to clients.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsSettings {
    pub tls12: bool,
    pub tls13: bool,
    /// TLS 1.2 suites in order of preference; `None`: `TLS12_ORDER`.
    /// TLS 1.3 suites are always all offered, in `TLS13_ORDER`, as with
    /// nginx's `ssl_ciphers`, which does not touch TLS 1.3.
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

/// The server's order of the TLS 1.3 suites.
pub const TLS13_ORDER: [SupportedCipherSuite; 3] = [
    suite::TLS13_AES_256_GCM_SHA384,
    suite::TLS13_AES_128_GCM_SHA256,
    suite::TLS13_CHACHA20_POLY1305_SHA256,
];

/// The server's order of the TLS 1.2 suites when `ssl-ciphers` names none
/// (rustls picks among those the certificate's key can sign for).
pub const TLS12_ORDER: [SupportedCipherSuite; 6] = [
    suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// Which suites the server's order puts first for a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preference {
    /// The server's order as it stands: AES-GCM first.
    Aes,
    /// ChaCha20-Poly1305 first, for a client that lists it first.
    ChaCha,
}

/// The preference for a client offering `suites` (in its order): ChaCha20
/// when its first suite, GREASE values skipped, is a ChaCha20 one.
pub fn preference(suites: &[CipherSuite]) -> Preference {
    let first = suites
        .iter()
        .map(|s| u16::from(*s))
        .find(|value| value & 0x0f0f != 0x0a0a);
    match first.map(CipherSuite::from) {
        Some(
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ) => Preference::ChaCha,
        _ => Preference::Aes,
    }
}

fn is_chacha(suite: &SupportedCipherSuite) -> bool {
    matches!(
        suite.suite(),
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
    )
}

/// The crypto provider and protocol versions `ssl-protocols` and
/// `ssl-ciphers` select: every TLS 1.3 suite, and the chosen TLS 1.2 ones,
/// in the server's order for `preference`.
pub fn tls_choice(
    settings: &TlsSettings,
    preference: Preference,
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
    let tls12 = settings.tls12_suites.as_deref().unwrap_or(&TLS12_ORDER);
    let mut suites: Vec<SupportedCipherSuite> = TLS13_ORDER.iter().chain(tls12).copied().collect();
    if preference == Preference::ChaCha {
        // A stable sort: the order among the others stays.
        suites.sort_by_key(|s| !is_chacha(s));
    }
    let mut provider = (**provider()).clone();
    provider.cipher_suites = suites;
    (Arc::new(provider), versions)
}

/// A server configuration under `settings` for `preference`: the server's
/// suite order decides, ALPN offers HTTP/2 and HTTP/1.1. Resumption is
/// the caller's.
pub fn server_config(
    settings: &TlsSettings,
    preference: Preference,
    verifier: Arc<dyn ClientCertVerifier>,
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<ServerConfig, rustls::Error> {
    let (provider, versions) = tls_choice(settings, preference);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(settings: &TlsSettings, preference: Preference) -> Vec<CipherSuite> {
        let (provider, _) = tls_choice(settings, preference);
        provider.cipher_suites.iter().map(|s| s.suite()).collect()
    }

    #[test]
    fn the_server_order_is_aes_256_then_128_then_chacha20() {
        use CipherSuite::*;
        assert_eq!(
            names(&TlsSettings::default(), Preference::Aes),
            [
                TLS13_AES_256_GCM_SHA384,
                TLS13_AES_128_GCM_SHA256,
                TLS13_CHACHA20_POLY1305_SHA256,
                TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ]
        );
        // Every suite the provider has, and no other.
        let mut ours = names(&TlsSettings::default(), Preference::Aes);
        let mut all: Vec<_> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
        ours.sort_by_key(|s| u16::from(*s));
        all.sort_by_key(|s| u16::from(*s));
        assert_eq!(ours, all);
    }

    #[test]
    fn chacha20_first_moves_it_ahead_and_keeps_the_rest_in_order() {
        use CipherSuite::*;
        let settings = TlsSettings {
            tls12_suites: Some(vec![
                suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ]),
            ..TlsSettings::default()
        };
        assert_eq!(
            names(&settings, Preference::ChaCha),
            [
                TLS13_CHACHA20_POLY1305_SHA256,
                TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                TLS13_AES_256_GCM_SHA384,
                TLS13_AES_128_GCM_SHA256,
                TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ]
        );
    }

    #[test]
    fn a_client_listing_chacha20_first_grease_aside_prefers_it() {
        use CipherSuite::*;
        let grease = CipherSuite::from(0x1a1a);
        let chacha_first = [
            grease,
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS13_AES_128_GCM_SHA256,
        ];
        assert_eq!(preference(&chacha_first), Preference::ChaCha);
        let aes_first = [
            grease,
            TLS13_AES_128_GCM_SHA256,
            TLS13_CHACHA20_POLY1305_SHA256,
        ];
        assert_eq!(preference(&aes_first), Preference::Aes);
        // A suite Gatehouse lacks, listed first, is the client's first
        // choice too (as OpenSSL reads the list).
        let ccm_first = [CipherSuite::from(0x1305), TLS13_CHACHA20_POLY1305_SHA256];
        assert_eq!(preference(&ccm_first), Preference::Aes);
        assert_eq!(preference(&[]), Preference::Aes);
    }
}
