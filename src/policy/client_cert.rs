//! Client certificates (mTLS): `auth-tls-secret`, `auth-tls-verify-client`,
//! `auth-tls-verify-depth`, `auth-tls-error-page`,
//! `auth-tls-pass-certificate-to-upstream` and `auth-tls-match-cn`, with
//! ingress-nginx's meaning. They apply to the whole host.
//!
//! Only the handshakes whose server name is such a host ask for a client
//! certificate (the listener picks the rustls configuration per
//! ClientHello). As nginx does, the handshake itself never fails for a
//! missing or untrusted certificate: the chain is verified after it, and
//! the request gets `400` ("No required SSL certificate was sent", "The SSL
//! certificate error") or a redirect to `auth-tls-error-page`, so that a
//! browser sees a page rather than a broken connection.
//!
//! A connection is bound to the client-certificate policy of the name it
//! was opened with: a request on it for a host with another policy (a
//! different `Host` than the SNI, or HTTP/2 connection reuse) gets `421
//! Misdirected Request`, so a certificate check cannot be skipped by
//! opening the connection under another name.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use super::objects::ObjectLookup;
use super::parse_bool;
use super::protection::{AccessOptions, Problems};
use super::template::escape_component;
use super::Annotations;
use crate::cluster::ObjectKey;
use crate::connection::peer_cert::Verdict;
use crate::connection::PeerCert;
use crate::tls::Preference;

static SSL_CLIENT_VERIFY: HeaderName = HeaderName::from_static("ssl-client-verify");
static SSL_CLIENT_SUBJECT_DN: HeaderName = HeaderName::from_static("ssl-client-subject-dn");
static SSL_CLIENT_ISSUER_DN: HeaderName = HeaderName::from_static("ssl-client-issuer-dn");
static SSL_CLIENT_CERT: HeaderName = HeaderName::from_static("ssl-client-cert");

/// `auth-tls-verify-client`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VerifyMode {
    /// A valid certificate is required (ingress-nginx's default).
    On,
    /// No certificate is asked for.
    Off,
    /// A certificate is asked for; when one is sent it must be valid.
    Optional,
    /// A certificate is asked for and passed on; it is not required to be
    /// valid (the backend decides).
    OptionalNoCa,
}

/// One host's client-certificate policy.
pub struct ClientAuth {
    pub secret: ObjectKey,
    mode: VerifyMode,
    depth: usize,
    /// Verifies a chain against the CA bundle (and its CRLs).
    verifier: Arc<dyn ClientCertVerifier>,
    error_page: Option<HeaderValue>,
    pass_certificate: bool,
    match_cn: Option<regex::Regex>,
    /// What the TLS layer depends on (CA bundle, CRLs, mode), to tell
    /// whether a connection was opened under this same policy.
    pub fingerprint: u64,
    /// The rustls configuration for handshakes under this policy, built
    /// on first use: in the server's order, and with ChaCha20 first.
    config: [OnceLock<Arc<ServerConfig>>; 2],
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("secret", &self.secret)
            .field("mode", &self.mode)
            .finish()
    }
}

/// What the client-certificate phase says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum CertCheck {
    Pass,
    /// 400, 403 or 421.
    Refuse(StatusCode),
    /// To `auth-tls-error-page`.
    Redirect(HeaderValue),
}

impl ClientAuth {
    pub fn compile(
        annotations: &Annotations<'_>,
        secrets: &ObjectLookup<'_>,
        options: &AccessOptions,
        problems: &mut Problems,
    ) -> Option<Arc<ClientAuth>> {
        let related = [
            "auth-tls-verify-client",
            "auth-tls-verify-depth",
            "auth-tls-error-page",
            "auth-tls-pass-certificate-to-upstream",
            "auth-tls-match-cn",
        ];
        let Some((secret_key, reference)) = annotations.get("auth-tls-secret") else {
            for name in related {
                if let Some((key, _)) = annotations.get(name) {
                    problems.add(&key, "is set without auth-tls-secret".into());
                }
            }
            return None;
        };
        let before = problems.len();
        let mode = match annotations.get("auth-tls-verify-client") {
            None => VerifyMode::On,
            Some((key, value)) => match value {
                "on" => VerifyMode::On,
                "off" => VerifyMode::Off,
                "optional" => VerifyMode::Optional,
                "optional_no_ca" => VerifyMode::OptionalNoCa,
                other => {
                    problems.add(
                        &key,
                        format!("{other:?} is not on, off, optional or optional_no_ca"),
                    );
                    VerifyMode::On
                }
            },
        };
        let depth = match annotations.get("auth-tls-verify-depth") {
            None => 1,
            Some((key, value)) => value
                .parse::<usize>()
                .ok()
                .filter(|d| (1..=10).contains(d))
                .unwrap_or_else(|| {
                    problems.add(&key, format!("{value:?} is not a depth between 1 and 10"));
                    1
                }),
        };
        let error_page = annotations
            .get("auth-tls-error-page")
            .and_then(|(key, value)| {
                let absolute = value
                    .parse::<http::Uri>()
                    .is_ok_and(|u| u.scheme().is_some() && u.authority().is_some());
                match (
                    absolute && !value.contains('$'),
                    HeaderValue::from_str(value),
                ) {
                    (true, Ok(v)) => Some(v),
                    _ => {
                        problems.add(&key, format!("{value:?} is not an absolute URL"));
                        None
                    }
                }
            });
        let pass_certificate = match annotations.get("auth-tls-pass-certificate-to-upstream") {
            None => false,
            Some((key, value)) => parse_bool(value).unwrap_or_else(|| {
                problems.add(&key, format!("{value:?} is not a boolean"));
                false
            }),
        };
        let match_cn = annotations
            .get("auth-tls-match-cn")
            .and_then(|(key, value)| {
                regex::RegexBuilder::new(value)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|_| {
                        problems.add(&key, format!("{value:?} is not a regular expression"))
                    })
                    .ok()
            });
        let (key, secret) = match secrets.secret(reference, options) {
            Ok(found) => found,
            Err(why) => {
                problems.add(&secret_key, why);
                return None;
            }
        };
        let data = secret.data.as_ref();
        let ca = data.and_then(|d| d.get("ca.crt")).map(|b| b.0.as_slice());
        let crl = data.and_then(|d| d.get("ca.crl")).map(|b| b.0.as_slice());
        let verifier = match ca
            .ok_or_else(|| "has no key \"ca.crt\"".to_owned())
            .and_then(|ca| verifier(ca, crl))
        {
            Ok(v) => v,
            Err(why) => {
                problems.add(&secret_key, format!("Secret {key} {why}"));
                return None;
            }
        };
        if problems.len() > before {
            return None;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (ca, crl, mode).hash(&mut hasher);
        Some(Arc::new(ClientAuth {
            secret: key,
            mode,
            depth,
            verifier,
            error_page,
            pass_certificate,
            match_cn,
            fingerprint: hasher.finish(),
            config: [OnceLock::new(), OnceLock::new()],
        }))
    }

    /// The rustls configuration for a handshake under this policy: the
    /// shared certificate resolver, a certificate request (never
    /// mandatory at the TLS layer), and no resumption, so that no session
    /// made under another policy can be resumed under this one.
    /// Built once, under the TLS settings of the table this policy
    /// belongs to.
    pub fn server_config(
        &self,
        resolver: &Arc<dyn ResolvesServerCert>,
        settings: &crate::tls::TlsSettings,
        preference: Preference,
    ) -> Result<Arc<ServerConfig>, rustls::Error> {
        let slot = &self.config[preference as usize];
        if let Some(config) = slot.get() {
            return Ok(config.clone());
        }
        let ask = Arc::new(AskForCertificate {
            inner: self.verifier.clone(),
            offer: self.mode != VerifyMode::Off,
        });
        let mut config = crate::tls::server_config(settings, preference, ask, resolver.clone())?;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        let config = Arc::new(config);
        Ok(slot.get_or_init(|| config).clone())
    }

    /// Verifies what the client sent in the handshake.
    pub fn verify(&self, chain: Option<&[CertificateDer<'_>]>) -> PeerCert {
        let mut peer = PeerCert {
            fingerprint: self.fingerprint,
            verdict: Verdict::None,
            subject: None,
            issuer: None,
            pem: None,
        };
        let Some((leaf, intermediates)) = chain.and_then(|c| c.split_first()) else {
            return peer;
        };
        peer.verdict = if intermediates.len() >= self.depth {
            Verdict::Failed("certificate chain too long".into())
        } else {
            match self
                .verifier
                .verify_client_cert(leaf, intermediates, UnixTime::now())
            {
                Ok(_) => Verdict::Success,
                Err(e) => Verdict::Failed(reason(&e)),
            }
        };
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) {
            peer.subject = HeaderValue::from_str(&rfc2253(cert.subject())).ok();
            peer.issuer = HeaderValue::from_str(&rfc2253(cert.issuer())).ok();
        }
        if self.pass_certificate {
            let pem = pem(leaf);
            let mut escaped = String::with_capacity(pem.len() * 2);
            escape_component(&pem, &mut escaped);
            peer.pem = HeaderValue::from_str(&escaped).ok();
        }
        peer
    }

    /// The phase for one request, from the connection's certificate (`None`
    /// on plain HTTP, or on a connection opened without this policy).
    pub fn check(&self, peer: Option<&PeerCert>, tls: bool) -> CertCheck {
        if tls && peer.map(|p| p.fingerprint) != Some(self.fingerprint) {
            return CertCheck::Refuse(StatusCode::MISDIRECTED_REQUEST);
        }
        let verdict = peer.map_or(&Verdict::None, |p| &p.verdict);
        let failed = match (self.mode, verdict) {
            (VerifyMode::Off | VerifyMode::OptionalNoCa, _) => false,
            (VerifyMode::On, Verdict::Success) => false,
            (VerifyMode::On, _) => true,
            (VerifyMode::Optional, Verdict::Failed(_)) => true,
            (VerifyMode::Optional, _) => false,
        };
        if failed {
            return match &self.error_page {
                Some(page) => CertCheck::Redirect(page.clone()),
                None => CertCheck::Refuse(StatusCode::BAD_REQUEST),
            };
        }
        if let Some(pattern) = &self.match_cn {
            let subject = peer
                .and_then(|p| p.subject.as_ref())
                .and_then(|s| s.to_str().ok());
            if !pattern.is_match(subject.unwrap_or_default()) {
                return CertCheck::Refuse(StatusCode::FORBIDDEN);
            }
        }
        CertCheck::Pass
    }

    /// The upstream request phase: what the backend learns about the
    /// client's certificate.
    pub fn request_headers(&self, peer: Option<&PeerCert>, headers: &mut HeaderMap) {
        remove_forged(headers);
        let verdict = peer.map_or(Verdict::None.header(), |p| p.verdict.header());
        headers.insert(SSL_CLIENT_VERIFY.clone(), verdict);
        let Some(peer) = peer else { return };
        for (name, value) in [
            (&SSL_CLIENT_SUBJECT_DN, &peer.subject),
            (&SSL_CLIENT_ISSUER_DN, &peer.issuer),
            (&SSL_CLIENT_CERT, &peer.pem),
        ] {
            if let Some(value) = value {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

/// Client-sent copies of the `ssl-client-*` headers never reach a backend.
pub fn remove_forged(headers: &mut HeaderMap) {
    if !headers
        .keys()
        .any(|k| k.as_str().starts_with("ssl-client-"))
    {
        return;
    }
    for name in [
        &SSL_CLIENT_VERIFY,
        &SSL_CLIENT_SUBJECT_DN,
        &SSL_CLIENT_ISSUER_DN,
        &SSL_CLIENT_CERT,
    ] {
        headers.remove(name);
    }
}

/// A verifier for the CA bundle (and CRLs) of a Secret.
fn verifier(ca: &[u8], crl: Option<&[u8]>) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        let cert = cert.map_err(|_| "has a ca.crt that is not PEM certificates")?;
        roots
            .add(cert)
            .map_err(|e| format!("has a ca.crt certificate rustls refuses: {e}"))?;
    }
    if roots.is_empty() {
        return Err("has no certificate in ca.crt".into());
    }
    let crls = match crl {
        None => Vec::new(),
        Some(bytes) => CertificateRevocationListDer::pem_slice_iter(bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "has a ca.crl that is not PEM CRLs")?,
    };
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider().clone())
        .with_crls(crls)
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("cannot be used to verify clients: {e}"))
}

/// OpenSSL's words for the common failures, as nginx puts them in
/// `$ssl_client_verify`.
fn reason(error: &rustls::Error) -> String {
    use rustls::CertificateError as E;
    match error {
        rustls::Error::InvalidCertificate(e) => match e {
            E::UnknownIssuer => "unable to get local issuer certificate",
            E::Expired | E::ExpiredContext { .. } => "certificate has expired",
            E::NotValidYet | E::NotValidYetContext { .. } => "certificate is not yet valid",
            E::Revoked => "certificate revoked",
            E::BadSignature => "certificate signature failure",
            E::InvalidPurpose | E::InvalidPurposeContext { .. } => {
                "unsupported certificate purpose"
            }
            _ => "certificate verify failed",
        }
        .into(),
        _ => "certificate verify failed".into(),
    }
}

/// A distinguished name as nginx's `$ssl_client_s_dn` writes it (RFC
/// 2253: most specific first, comma-separated, special characters escaped).
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut parts = Vec::new();
    for rdn in name.iter_rdn().collect::<Vec<_>>().into_iter().rev() {
        let attributes: Vec<String> = rdn
            .iter()
            .map(|attr| {
                let key = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
                    .map(str::to_owned)
                    .unwrap_or_else(|_| attr.attr_type().to_id_string());
                let value = attr.as_str().unwrap_or("");
                format!("{key}={}", escape_dn(value))
            })
            .collect();
        parts.push(attributes.join("+"));
    }
    parts.join(",")
}

fn escape_dn(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let edge =
            (i == 0 && (c == '#' || c == ' ')) || (i + 1 == value.chars().count() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn pem(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Asks for a client certificate and checks the handshake's signatures
/// with it, but leaves the chain's verdict to `ClientAuth::verify`, after
/// the handshake, as nginx does.
#[derive(Debug)]
struct AskForCertificate {
    inner: Arc<dyn ClientCertVerifier>,
    offer: bool,
}

impl ClientCertVerifier for AskForCertificate {
    fn offer_client_auth(&self) -> bool {
        self.offer
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_values_escape_rfc2253_specials() {
        assert_eq!(escape_dn("Acme, Inc."), "Acme\\, Inc.");
        assert_eq!(escape_dn("#1"), "\\#1");
        assert_eq!(escape_dn("plain"), "plain");
    }

    #[test]
    fn pem_lines_are_64_characters() {
        let der = CertificateDer::from(vec![7u8; 100]);
        let text = pem(&der);
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(text.lines().all(|l| l.len() <= 64));
    }
}
