//! The TLS side of the HTTPS listener: certificate choice by SNI.
//!
//! The resolver reads the current routing table on every handshake, so a
//! renewed Secret is served from the next handshake on, with no listener
//! restart. Exact name, then wildcard, then the default certificate.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::table::RouteTable;
use crate::translate::{certified_key_from_der, provider, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot generate the default certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot load the default certificate: {0}")]
    Load(#[from] TlsError),
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Picks the certificate for each handshake from the current table.
#[derive(Debug)]
pub struct CertResolver {
    table: Arc<ArcSwap<RouteTable>>,
    fallback: Arc<CertifiedKey>,
}

impl CertResolver {
    pub fn new(table: Arc<ArcSwap<RouteTable>>, fallback: Arc<CertifiedKey>) -> Self {
        CertResolver { table, fallback }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        let chosen = table
            .certs
            .resolve_or_default(hello.server_name())
            .map(|entry| entry.key.clone());
        Some(chosen.unwrap_or_else(|| self.fallback.clone()))
    }
}

/// A self-signed certificate made at start, served to names no Secret
/// covers (as ingress-nginx serves its "fake certificate").
pub fn default_certificate() -> Result<Arc<CertifiedKey>, TlsSetupError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["gatehouse.invalid".to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Gatehouse default certificate");
    let cert = params.self_signed(&key)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    Ok(certified_key_from_der(chain, key_der)?)
}

/// Sessions remembered for TLS 1.2 resumption by session id.
const SESSION_CACHE_ENTRIES: usize = 16_384;

/// TLS 1.2 and 1.3 with the provider's default (secure) cipher suites;
/// ALPN offers HTTP/2 and HTTP/1.1.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let mut config = ServerConfig::builder_with_provider(provider().clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Resumption both ways: stateless tickets (rotating keys) for clients
    // that take them, a session cache for TLS 1.2 clients that do not.
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    Ok(Arc::new(config))
}
