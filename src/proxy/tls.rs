//! The TLS side of the HTTPS listener: certificate choice by SNI, and the
//! configuration choice per ClientHello.
//!
//! The resolver reads the current routing table on every handshake, so a
//! renewed Secret is served from the next handshake on, with no listener
//! restart. Exact name, then wildcard, then the default certificate;
//! a name the table refuses (the hostname of a Gateway listener whose
//! certificate cannot be used) gets no certificate, and the handshake
//! fails.
//! Handshakes for names whose host asks for client certificates use that
//! host's configuration; every other handshake uses the shared one and
//! never asks for a certificate.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use crate::acme::challenges::ACME_TLS_ALPN;
use crate::connection::PeerCert;
use crate::table::{Handshake, RouteTable};
use crate::tls::{certified_key_from_der, preference, Preference, TlsError, TlsSettings};
use crate::upstream::Backend;

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
    /// `None` for a refused name: rustls then ends the handshake with a
    /// fatal alert.
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        match table.certs.for_handshake(hello.server_name()) {
            Handshake::Cert(entry) => Some(entry.key.clone()),
            Handshake::Generated => Some(self.fallback.clone()),
            Handshake::Refused => None,
        }
    }
}

/// The HTTPS listener's handshakes.
#[derive(Clone)]
pub struct Handshakes {
    /// The shared configurations and the settings they were built for.
    shared: Arc<ArcSwap<(Arc<TlsSettings>, Shared)>>,
    resolver: Arc<dyn ResolvesServerCert>,
    cert_resolver: Arc<CertResolver>,
    /// Kept across configurations, so that a settings change does not
    /// end every client's resumption.
    resumption: Resumption,
    table: Arc<ArcSwap<RouteTable>>,
}

#[derive(Clone)]
struct Resumption {
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
    sessions: Arc<dyn rustls::server::StoresServerSessions>,
}

impl Resumption {
    /// Tickets and the session-id cache, with the lifetimes and key
    /// rotation of `tls::resumption`.
    fn new() -> Result<Self, TlsSetupError> {
        Ok(Resumption {
            ticketer: crate::tls::ticketer()?,
            sessions: crate::tls::session_cache(),
        })
    }
}

/// The shared configuration in the server's order, and the same with
/// ChaCha20 first for clients that list it first.
#[derive(Clone)]
struct Shared {
    aes: Arc<ServerConfig>,
    chacha: Arc<ServerConfig>,
}

impl Shared {
    fn new(
        resolver: &Arc<CertResolver>,
        settings: &TlsSettings,
        resumption: &Resumption,
    ) -> Result<Self, TlsSetupError> {
        let build = |preference| shared_config(resolver.clone(), settings, preference, resumption);
        Ok(Shared {
            aes: build(Preference::Aes)?,
            chacha: build(Preference::ChaCha)?,
        })
    }

    fn get(&self, preference: Preference) -> Arc<ServerConfig> {
        match preference {
            Preference::Aes => self.aes.clone(),
            Preference::ChaCha => self.chacha.clone(),
        }
    }
}

impl Handshakes {
    pub fn new(
        table: Arc<ArcSwap<RouteTable>>,
        resolver: Arc<CertResolver>,
    ) -> Result<Self, TlsSetupError> {
        let resumption = Resumption::new()?;
        let settings = table.load().edge.tls.clone();
        let shared = Shared::new(&resolver, &settings, &resumption)?;
        Ok(Handshakes {
            shared: Arc::new(ArcSwap::from_pointee((settings, shared))),
            resolver: resolver.clone(),
            cert_resolver: resolver,
            resumption,
            table,
        })
    }

    /// The shared configuration for the current table's `ssl-protocols`
    /// and `ssl-ciphers` and the client's `preference`, rebuilt only when
    /// they change.
    fn current(&self, preference: Preference) -> Arc<ServerConfig> {
        let settings = self.table.load().edge.tls.clone();
        let shared = self.shared.load();
        if Arc::ptr_eq(&shared.0, &settings) {
            return shared.1.get(preference);
        }
        let configs = if *shared.0 == *settings {
            shared.1.clone()
        } else {
            match Shared::new(&self.cert_resolver, &settings, &self.resumption) {
                Ok(configs) => configs,
                Err(e) => {
                    tracing::warn!("TLS settings of the controller ConfigMap not applied: {e}");
                    shared.1.clone()
                }
            }
        };
        let config = configs.get(preference);
        self.shared.store(Arc::new((settings, configs)));
        config
    }

    /// Reads the ClientHello, picks the configuration for its server name,
    /// and completes the handshake; for a host that asks for client
    /// certificates, the certificate the client sent is verified. A
    /// connection for an `ssl-passthrough` host is handed back untouched.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<Accepted> {
        if let Some(backend) = self.passthrough(&stream).await? {
            return Ok(Accepted::Passthrough(stream, backend));
        }
        let (tls, peer) = self.terminate(stream).await?;
        Ok(Accepted::Tls(Box::new(tls), peer))
    }

    /// The passthrough backend of the ClientHello's server name; only
    /// looked at (peeked, nothing consumed) when some host passes through.
    async fn passthrough(&self, stream: &TcpStream) -> std::io::Result<Option<Arc<Backend>>> {
        if self.table.load().passthrough.is_empty() {
            return Ok(None);
        }
        let name = peek_server_name(stream).await?;
        Ok(name.and_then(|n| self.table.load().passthrough_for(&n).cloned()))
    }

    async fn terminate(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<(TlsStream<TcpStream>, Option<PeerCert>)> {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
        let hello = start.client_hello();
        if let Some(answer) = self.acme_answer(&hello) {
            let tls = start.into_stream(acme_config(answer)?).await?;
            return Ok((tls, None));
        }
        let preference = preference(hello.cipher_suites());
        let client_auth = hello
            .server_name()
            .and_then(|name| self.table.load().client_auth_for(name).cloned());
        let Some(client_auth) = client_auth else {
            return Ok((start.into_stream(self.current(preference)).await?, None));
        };
        let settings = self.table.load().edge.tls.clone();
        let config = client_auth
            .server_config(&self.resolver, &settings, preference)
            .map_err(std::io::Error::other)?;
        let tls = start.into_stream(config).await?;
        let peer = client_auth.verify(tls.get_ref().1.peer_certificates());
        Ok((tls, Some(peer)))
    }
}

impl Handshakes {
    /// The TLS-ALPN-01 validation certificate for a ClientHello that
    /// offers `acme-tls/1` and names a host with a published answer.
    fn acme_answer(&self, hello: &ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offers = hello.alpn()?.any(|p| p == ACME_TLS_ALPN);
        if !offers {
            return None;
        }
        let table = self.table.load();
        table.challenges.alpn_answer(hello.server_name()?).cloned()
    }
}

/// The configuration of a TLS-ALPN-01 validation handshake: the answer's
/// certificate and nothing but `acme-tls/1`. The listener closes such a
/// connection after the handshake (RFC 8737 §3).
fn acme_config(answer: Arc<CertifiedKey>) -> std::io::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(crate::tls::provider().clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(answer)));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// What a TLS connection turned out to be.
pub enum Accepted {
    /// Terminated here, with the client certificate when one was asked for
    /// (boxed: a TLS stream is large, and every connection holds one).
    Tls(Box<TlsStream<TcpStream>>, Option<PeerCert>),
    /// For an `ssl-passthrough` host: the raw connection (its ClientHello
    /// still unread) and where it goes.
    Passthrough(TcpStream, Arc<Backend>),
}

/// The server name of the ClientHello at the start of `stream`, read
/// without consuming it.
async fn peek_server_name(stream: &TcpStream) -> std::io::Result<Option<String>> {
    // A ClientHello fits in one TLS record (16 KiB) plus its header.
    let mut buf = vec![0u8; 16 * 1024 + 5];
    loop {
        let seen = stream.peek(&mut buf).await?;
        if seen == 0 {
            return Ok(None);
        }
        let mut acceptor = rustls::server::Acceptor::default();
        let mut rest = &buf[..seen];
        while !rest.is_empty() {
            match acceptor.read_tls(&mut rest) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                return Ok(accepted.client_hello().server_name().map(str::to_owned))
            }
            // More of the ClientHello is on its way (the handshake
            // timeout bounds the wait).
            Ok(None) if seen < buf.len() => {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await
            }
            Ok(None) | Err(_) => return Ok(None),
        }
    }
}

/// A self-signed certificate made at start, served to names no Secret
/// covers (as ingress-nginx serves its "fake certificate"). Valid for a
/// year from an hour before start, as ingress-nginx's is: no client
/// trusts it anyway, and a validity of centuries (rcgen's default) is
/// what certificate checkers rightly flag.
pub fn default_certificate() -> Result<Arc<CertifiedKey>, TlsSetupError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["gatehouse.invalid".to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Gatehouse default certificate");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + DEFAULT_CERTIFICATE_VALIDITY;
    let cert = params.self_signed(&key)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    Ok(certified_key_from_der(chain, key_der)?)
}

/// How long the default certificate is valid from start.
const DEFAULT_CERTIFICATE_VALIDITY: time::Duration = time::Duration::days(365);

/// TLS 1.2 and 1.3 with the server's suite order; ALPN offers HTTP/2 and
/// HTTP/1.1.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let resumption = Resumption::new()?;
    shared_config(
        resolver,
        &TlsSettings::default(),
        Preference::Aes,
        &resumption,
    )
}

/// The configuration of every handshake that asks for no client
/// certificate, under `settings`. Resumption both ways: stateless tickets
/// (rotating keys) for clients that take them, a session cache for TLS 1.2
/// clients that do not.
fn shared_config(
    resolver: Arc<CertResolver>,
    settings: &TlsSettings,
    preference: Preference,
    resumption: &Resumption,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let verifier = Arc::new(rustls::server::NoClientAuth);
    let mut config = crate::tls::server_config(settings, preference, verifier, resolver)?;
    config.ticketer = resumption.ticketer.clone();
    config.session_storage = resumption.sessions.clone();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_certificate_is_valid_for_a_year_from_start() {
        let key = default_certificate().unwrap();
        let not_after = crate::tls::not_after(&key).unwrap();
        let in_a_year = time::OffsetDateTime::now_utc() + DEFAULT_CERTIFICATE_VALIDITY;
        let off = (not_after - in_a_year.unix_timestamp()).abs();
        assert!(
            off < 3600,
            "not after {not_after}, a year from now {in_a_year}"
        );
    }
}
