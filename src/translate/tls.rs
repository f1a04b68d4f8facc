//! TLS Secrets into rustls certified keys.
//!
//! Accepted: `kubernetes.io/tls` Secrets, and `Opaque` Secrets holding
//! `tls.crt` and `tls.key` (cert-manager and hand-made Secrets both occur).
//! `tls.crt` is a PEM chain, leaf first, served in order; the key may be
//! PKCS#8, PKCS#1 (RSA) or SEC1 (EC); it must match the leaf.

use std::sync::{Arc, OnceLock};

use k8s_openapi::api::core::v1::Secret;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("not found")]
    NotFound,
    #[error(
        "type {0} is not a TLS secret (want kubernetes.io/tls, or Opaque with tls.crt and tls.key)"
    )]
    WrongType(String),
    #[error("has no {0}")]
    MissingField(&'static str),
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    #[error("tls.crt is not valid PEM: {0}")]
    BadCertificatePem(String),
    #[error("tls.key holds no usable PEM private key: {0}")]
    BadKey(String),
    #[error("tls.key does not match the certificate in tls.crt")]
    KeyMismatch,
}

/// The crypto provider the proxy serves with; keys are loaded with the same.
pub fn provider() -> &'static Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// Parses a Secret into a certificate the TLS layer can serve.
pub fn certified_key(secret: &Secret) -> Result<Arc<CertifiedKey>, TlsError> {
    let secret_type = secret.type_.as_deref().unwrap_or("Opaque");
    if secret_type != "kubernetes.io/tls" && secret_type != "Opaque" {
        return Err(TlsError::WrongType(secret_type.to_owned()));
    }
    let field = |name: &'static str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(name))
            .map(|b| b.0.as_slice())
            .filter(|b| !b.is_empty())
            .ok_or(TlsError::MissingField(name))
    };
    let (crt, key) = (field("tls.crt")?, field("tls.key")?);
    let chain = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificatePem(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::BadKey(e.to_string()))?;
    certified_key_from_der(chain, key)
}

/// Loads a DER chain and key, refusing a key that does not match the leaf.
pub fn certified_key_from_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key cannot tell its public half; nothing to compare.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(_) => Err(TlsError::KeyMismatch),
    }
}

/// The leaf certificate's notAfter as Unix time, for the expiry metric.
pub fn not_after(key: &CertifiedKey) -> Option<i64> {
    let leaf = key.cert.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    Some(cert.validity().not_after.timestamp())
}
