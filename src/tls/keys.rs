//! TLS Secrets into rustls certified keys.
//!
//! Accepted: `kubernetes.io/tls` Secrets, and `Opaque` Secrets holding
//! `tls.crt` and `tls.key` (cert-manager and hand-made Secrets both occur).
//! `tls.crt` is a PEM chain, leaf first, served in order; the key may be
//! PKCS#8, PKCS#1 (RSA) or SEC1 (EC); it must match the leaf.

use std::sync::{Arc, OnceLock};

use k8s_openapi::api::core::v1::Secret;
use rustls::crypto::CryptoProvider;
use rustls::sign::{CertifiedKey, SigningKey};
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
    certified_key_from_pem(field("tls.crt")?, field("tls.key")?)
}

/// Loads a PEM certificate chain (leaf first) and PEM private key.
pub fn certified_key_from_pem(crt: &[u8], key: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
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
    let signing_key = load_signing_key(key).map_err(|e| TlsError::BadKey(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key cannot tell its public half; nothing to compare.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(_) => Err(TlsError::KeyMismatch),
    }
}

/// The provider tries RSA before ECDSA, and turning an EC key down as RSA
/// costs as much as loading it (the parser derives the public point first).
/// Keys that say they are EC (SEC1, or PKCS#8 naming id-ecPublicKey) go
/// straight to the ECDSA loader; everything else, and anything it refuses,
/// to the provider.
pub fn load_signing_key(key: PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, rustls::Error> {
    let ecdsa = match &key {
        PrivateKeyDer::Sec1(_) => true,
        PrivateKeyDer::Pkcs8(der) => names_ec_algorithm(der.secret_pkcs8_der()),
        _ => false,
    };
    if ecdsa {
        if let Ok(signing_key) = rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(&key) {
            return Ok(signing_key);
        }
    }
    provider().key_provider.load_private_key(key)
}

/// DER of the OID 1.2.840.10045.2.1 (id-ecPublicKey).
const ID_EC_PUBLIC_KEY: [u8; 9] = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// Whether a PKCS#8 key's algorithm is EC. The AlgorithmIdentifier comes
/// right after the version, within the first bytes of the structure.
fn names_ec_algorithm(pkcs8: &[u8]) -> bool {
    let head = &pkcs8[..pkcs8.len().min(32)];
    head.windows(ID_EC_PUBLIC_KEY.len())
        .any(|w| w == ID_EC_PUBLIC_KEY)
}

/// The leaf certificate's notAfter as Unix time, for the expiry metric.
pub fn not_after(key: &CertifiedKey) -> Option<i64> {
    let leaf = key.cert.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    Some(cert.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::SignatureAlgorithm;

    fn load(alg: &'static rcgen::SignatureAlgorithm) -> Arc<CertifiedKey> {
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        let params = rcgen::CertificateParams::new(vec!["keys.test".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let key = PrivateKeyDer::try_from(key.serialize_der()).expect("der");
        certified_key_from_der(vec![cert.der().clone()], key).expect("loads")
    }

    #[test]
    fn every_supported_key_type_loads_as_its_own_algorithm() {
        let cases = [
            (&rcgen::PKCS_ECDSA_P256_SHA256, SignatureAlgorithm::ECDSA),
            (&rcgen::PKCS_ECDSA_P384_SHA384, SignatureAlgorithm::ECDSA),
            (&rcgen::PKCS_RSA_SHA256, SignatureAlgorithm::RSA),
            (&rcgen::PKCS_ED25519, SignatureAlgorithm::ED25519),
        ];
        for (alg, expected) in cases {
            assert_eq!(load(alg).key.algorithm(), expected, "{alg:?}");
        }
    }

    #[test]
    fn only_pkcs8_keys_naming_ec_are_taken_for_ec() {
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("key");
        assert!(names_ec_algorithm(&ec.serialize_der()));
        assert!(!names_ec_algorithm(&rsa.serialize_der()));
        assert!(!names_ec_algorithm(&[]));
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let params = rcgen::CertificateParams::new(vec!["keys.test".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let other = PrivateKeyDer::try_from(other.serialize_der()).expect("der");
        assert!(matches!(
            certified_key_from_der(vec![cert.der().clone()], other),
            Err(TlsError::KeyMismatch)
        ));
    }
}
