//! The answers to ACME challenges, as every replica serves them.
//!
//! Only the elected replica talks to the CA, but the CA may validate
//! against any replica, so the answers are published in the cluster: one
//! Secret, `gatehouse-acme-challenges` in the controller's namespace,
//! whose data key `http-01.TOKEN` holds the key authorization for TOKEN.
//! Every replica reads it like any other object (with `--manifests`, a
//! Secret of that name in the directory), and translate puts the answers
//! into the routing table, where they come before every route.
//!
//! Why a Secret and not a ConfigMap: TLS-ALPN-01 answers are certificates
//! with private keys, and they will live in the same object; a Secret is
//! what RBAC, encryption at rest and Gatehouse's own logging already treat
//! as key material. Why one fixed name in the controller's namespace and
//! not a label: whoever can write the object can answer challenges for
//! every host, so it must be one object only the controller's namespace
//! holds, never one a tenant can create beside their Ingress.
//!
//! TLS-ALPN-01 answers (RFC 8737) sit in the same Secret: the data key
//! `tls-alpn-01.HOST` holds the PEM of the self-signed certificate that
//! carries the `acmeIdentifier` extension, then its key. A handshake that
//! offers only `acme-tls/1` and names HOST gets that certificate, and the
//! connection ends after the handshake; no other handshake ever does.
//!
//! Answers are served on every host: a token is a random value of at
//! least 128 bits that only the CA and the elected replica know, so an
//! answer reveals nothing on another host, and a request for any other
//! token falls through to the routes as before.

use std::collections::BTreeMap;

use std::sync::Arc;

use bytes::Bytes;
use k8s_openapi::api::core::v1::Secret;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The path HTTP-01 challenges are fetched under (RFC 8555 §8.3).
pub const PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// The name of the Secret, in the controller's namespace, that holds the
/// challenge answers.
pub const CHALLENGES_SECRET: &str = "gatehouse-acme-challenges";

/// The prefix of the data keys that hold HTTP-01 answers.
const HTTP01_KEY_PREFIX: &str = "http-01.";
/// The prefix of the data keys that hold TLS-ALPN-01 answers.
const TLS_ALPN01_KEY_PREFIX: &str = "tls-alpn-01.";
/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// id-pe-acmeIdentifier (1.3.6.1.5.5.7.1.31), RFC 8737 §3.
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

/// HTTP-01 answers (token to key authorization) and TLS-ALPN-01 answers
/// (host to validation certificate).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChallengeAnswers {
    http01: BTreeMap<String, Bytes>,
    tls_alpn01: BTreeMap<String, AlpnAnswer>,
}

/// A TLS-ALPN-01 validation certificate, and the PEM it was read from
/// (which is what two answers are compared by).
#[derive(Clone, Debug)]
struct AlpnAnswer {
    pem: Bytes,
    key: Arc<CertifiedKey>,
}

impl PartialEq for AlpnAnswer {
    fn eq(&self, other: &Self) -> bool {
        self.pem == other.pem
    }
}

impl Eq for AlpnAnswer {}

impl ChallengeAnswers {
    /// The answers the Secret holds, and what was wrong with the entries
    /// left out (each names its data key, never its value).
    pub fn from_secret(secret: &Secret) -> (ChallengeAnswers, Vec<String>) {
        let mut answers = ChallengeAnswers::default();
        let mut problems = Vec::new();
        for (key, value) in secret.data.iter().flatten() {
            if let Some(host) = key.strip_prefix(TLS_ALPN01_KEY_PREFIX) {
                match validation_certificate(host, &value.0) {
                    Ok(key) => {
                        let pem = Bytes::copy_from_slice(&value.0);
                        answers
                            .tls_alpn01
                            .insert(host.to_ascii_lowercase(), AlpnAnswer { pem, key });
                    }
                    Err(why) => problems.push(format!("data key {key}: {why}; ignored")),
                }
                continue;
            }
            let Some(token) = key.strip_prefix(HTTP01_KEY_PREFIX) else {
                problems.push(format!(
                    "data key {key}: neither an `http-01.TOKEN` nor a `tls-alpn-01.HOST` answer; ignored"
                ));
                continue;
            };
            match key_authorization(token, &value.0) {
                Ok(answer) => drop(answers.http01.insert(token.to_owned(), answer)),
                Err(why) => problems.push(format!("data key {key}: {why}; ignored")),
            }
        }
        (answers, problems)
    }

    pub fn is_empty(&self) -> bool {
        self.http01.is_empty() && self.tls_alpn01.is_empty()
    }

    pub fn len(&self) -> usize {
        self.http01.len() + self.tls_alpn01.len()
    }

    /// The validation certificate for a TLS-ALPN-01 handshake naming
    /// `server_name`.
    pub fn alpn_answer(&self, server_name: &str) -> Option<&Arc<CertifiedKey>> {
        if self.tls_alpn01.is_empty() {
            return None;
        }
        let answer = match self.tls_alpn01.get(server_name) {
            Some(answer) => answer,
            None => self.tls_alpn01.get(&server_name.to_ascii_lowercase())?,
        };
        Some(&answer.key)
    }

    /// The key authorization to answer a request for `path` with, when
    /// the path is exactly a known token's.
    pub fn answer(&self, path: &str) -> Option<&Bytes> {
        let token = path.strip_prefix(PATH_PREFIX)?;
        self.http01.get(token)
    }
}

/// The data key that holds the answer for `token`.
pub fn http01_key(token: &str) -> String {
    format!("{HTTP01_KEY_PREFIX}{token}")
}

/// The data key that holds the TLS-ALPN-01 answer for `host`.
pub fn tls_alpn01_key(host: &str) -> String {
    format!("{TLS_ALPN01_KEY_PREFIX}{host}")
}

/// RFC 8737 §3: a self-signed certificate for exactly `host` with the
/// critical `acmeIdentifier` extension, and its key. Anything else is
/// refused, so this data key cannot be used to serve a certificate for
/// ordinary traffic (it is offered only to `acme-tls/1` anyway).
fn validation_certificate(host: &str, pem: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let leaf = CertificateDer::pem_slice_iter(pem)
        .next()
        .and_then(Result::ok)
        .ok_or("no PEM certificate")?;
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|_| "no PEM private key")?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&leaf).map_err(|_| "the certificate does not parse")?;
    let identifier = cert
        .extensions()
        .iter()
        .any(|e| e.critical && e.oid.to_id_string() == ACME_IDENTIFIER_OID);
    if !identifier {
        return Err("the certificate has no critical acmeIdentifier extension".to_owned());
    }
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| san.value.general_names.clone())
        .unwrap_or_default();
    let exactly_host = match names.as_slice() {
        [x509_parser::extensions::GeneralName::DNSName(name)] => name.eq_ignore_ascii_case(host),
        _ => false,
    };
    if !exactly_host {
        return Err(format!("the certificate must name exactly {host}"));
    }
    // Not `certified_key_from_der`: its check parses the certificate as a
    // TLS server certificate, which refuses the critical extension that
    // makes this one a validation certificate. The keys are compared here.
    let signing_key = crate::tls::load_signing_key(key).map_err(|e| e.to_string())?;
    let matches = signing_key
        .public_key()
        .is_some_and(|spki| spki.as_ref() == cert.public_key().raw);
    if !matches {
        return Err("the key does not match the certificate".to_owned());
    }
    Ok(Arc::new(CertifiedKey::new(vec![leaf.clone()], signing_key)))
}

/// RFC 8555 §8.1: a key authorization is `token.thumbprint`, both
/// base64url; §8.3: a token is base64url.
fn key_authorization(token: &str, value: &[u8]) -> Result<Bytes, &'static str> {
    if token.is_empty() || !token.bytes().all(is_base64url) {
        return Err("the token is not base64url");
    }
    let value = value.strip_suffix(b"\n").unwrap_or(value);
    let thumbprint = value
        .strip_prefix(token.as_bytes())
        .and_then(|rest| rest.strip_prefix(b"."));
    match thumbprint {
        Some(t) if !t.is_empty() && t.iter().copied().all(is_base64url) => {
            Ok(Bytes::copy_from_slice(value))
        }
        _ => Err("the value is not a key authorization `TOKEN.THUMBPRINT` for this token"),
    }
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(entries: &[(&str, &str)]) -> Secret {
        let data = entries
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect();
        Secret {
            data: Some(data),
            ..Secret::default()
        }
    }

    #[test]
    fn acme_answers_exact_token_paths_only() {
        let (answers, problems) =
            ChallengeAnswers::from_secret(&secret(&[("http-01.tok_1-A", "tok_1-A.thumb_2")]));
        assert!(problems.is_empty(), "{problems:?}");
        let path = "/.well-known/acme-challenge/tok_1-A";
        assert_eq!(
            answers.answer(path).map(|b| &b[..]),
            Some(&b"tok_1-A.thumb_2"[..])
        );
        for other in [
            "/.well-known/acme-challenge/other",
            "/.well-known/acme-challenge/tok_1-A/x",
            "/.well-known/acme-challenge/",
            "/tok_1-A",
        ] {
            assert_eq!(answers.answer(other), None, "{other}");
        }
    }

    #[test]
    fn acme_entries_that_are_not_key_authorizations_are_left_out_and_named() {
        let (answers, problems) = ChallengeAnswers::from_secret(&secret(&[
            ("http-01.good", "good.thumb\n"),
            ("http-01.bad", "<script>"),
            ("http-01.other", "good.thumb"),
            ("tls.crt", "x"),
        ]));
        assert_eq!(answers.len(), 1);
        assert_eq!(
            answers
                .answer("/.well-known/acme-challenge/good")
                .map(|b| &b[..]),
            Some(&b"good.thumb"[..])
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems.iter().all(|p| !p.contains("<script>")),
            "{problems:?}"
        );
    }

    fn validation_pem(host: &str, extension: bool) -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
        if extension {
            params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(&[7; 32])];
        }
        let cert = params.self_signed(&key).unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem())
    }

    #[test]
    fn acme_tls_alpn_answers_need_the_identifier_extension_and_exactly_their_host() {
        let good = validation_pem("shop.test", true);
        let (answers, problems) = ChallengeAnswers::from_secret(&secret(&[
            ("tls-alpn-01.shop.test", &good),
            (
                "tls-alpn-01.plain.test",
                &validation_pem("plain.test", false),
            ),
            ("tls-alpn-01.other.test", &validation_pem("shop.test", true)),
        ]));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(answers.alpn_answer("shop.test").is_some());
        assert!(answers.alpn_answer("SHOP.test").is_some());
        assert!(answers.alpn_answer("plain.test").is_none());
        assert!(answers.alpn_answer("other.test").is_none());
        assert!(answers
            .answer("/.well-known/acme-challenge/shop.test")
            .is_none());
    }
}
