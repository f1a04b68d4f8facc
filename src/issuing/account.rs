//! An `AcmeIssuer`'s account at its CA: the HTTPS client that talks to
//! the directory, and the account key, read from the Secret the issuer
//! names or created there.
//!
//! The key is kept as cert-manager keeps it: PEM in the data key
//! `tls.key`. Only ECDSA P-256 keys are used (the ACME client signs with
//! ES256 only); a Secret holding another kind of key is reported, never
//! overwritten. Registering with a key the CA already knows returns the
//! existing account, so a restart or a new leader finds the same account.

use instant_acme::{Account, AccountBuilder, ExternalAccountKey, Key, NewAccount};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::store::{new_secret, SecretStore, StoreError};
use crate::acme::issuer::AcmeIssuerSpec;
use crate::cluster::ObjectKey;

/// The data key that holds the account key.
pub const KEY_DATA: &str = "tls.key";
/// The data key of an EAB Secret when `keySecretRef.key` is absent.
const EAB_DEFAULT_KEY: &str = "secret";

/// Why an issuer has no account (its `Ready` condition's message).
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("caBundle: {0}")]
    CaBundle(String),
    #[error("account key Secret {key}: {why}")]
    KeySecret { key: ObjectKey, why: String },
    #[error("externalAccountBinding Secret {key}: {why}")]
    Eab { key: ObjectKey, why: String },
    #[error("the CA refused the account: {0}")]
    Refused(String),
    #[error("cannot talk to the CA: {0}")]
    Unreachable(String),
}

impl From<instant_acme::Error> for AccountError {
    fn from(error: instant_acme::Error) -> Self {
        match error {
            instant_acme::Error::Api(problem) => AccountError::Refused(problem.to_string()),
            other => AccountError::Unreachable(super::chain(&other)),
        }
    }
}

/// Registers (or finds) the issuer's account; `namespace` is where the
/// Secrets without a namespace of their own live (the controller's).
pub async fn register(
    spec: &AcmeIssuerSpec,
    store: &SecretStore,
    namespace: &str,
) -> Result<Account, AccountError> {
    let key_ref = &spec.private_key_secret_ref;
    let key_secret = ObjectKey::new(
        key_ref.namespace.as_deref().unwrap_or(namespace),
        &key_ref.name,
    );
    let secret_error = |why: String| AccountError::KeySecret {
        key: key_secret.clone(),
        why,
    };
    // Two attempts: a create that loses a race reads what the winner wrote.
    for _ in 0..2 {
        let existing = store
            .get(&key_secret)
            .await
            .map_err(|e| secret_error(e.to_string()))?;
        if let Some(secret) = existing {
            let der = stored_key(&secret).map_err(secret_error)?;
            let key = Key::from_pkcs8_der(der.clone_key())
                .map_err(|e| secret_error(format!("{KEY_DATA}: not an ECDSA P-256 key: {e}")))?;
            let (account, _) = builder(spec)?
                .create_from_key((key, PrivateKeyDer::Pkcs8(der)), spec.server.clone())
                .await?;
            return Ok(account);
        }
        let eab = match &spec.external_account_binding {
            Some(binding) => Some(eab_key(binding, store, &key_secret.namespace).await?),
            None => None,
        };
        let contact = spec
            .email
            .iter()
            .map(|e| format!("mailto:{e}"))
            .collect::<Vec<_>>();
        let contact = contact.iter().map(String::as_str).collect::<Vec<_>>();
        let new = NewAccount {
            contact: &contact,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (account, credentials) = builder(spec)?
            .create(&new, spec.server.clone(), eab.as_ref())
            .await?;
        let pem = key_pem(credentials.private_key()).map_err(secret_error)?;
        match store.create(&key_secret_object(&key_secret, pem)).await {
            Ok(_) => return Ok(account),
            // Another writer stored a key first: use that one.
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(secret_error(e.to_string())),
        }
    }
    Err(secret_error(
        "created and replaced by another writer twice in a row".to_owned(),
    ))
}

/// The client for the issuer's directory: trusting only `caBundle` when
/// it is given (as cert-manager does), else the system's roots.
fn builder(spec: &AcmeIssuerSpec) -> Result<AccountBuilder, AccountError> {
    let Some(bundle) = &spec.ca_bundle else {
        return Account::builder().map_err(AccountError::from);
    };
    use base64::Engine as _;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .map_err(|e| AccountError::CaBundle(format!("not base64: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| AccountError::CaBundle(format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| AccountError::CaBundle(format!("not a CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(AccountError::CaBundle("holds no certificate".to_owned()));
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider().clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| AccountError::CaBundle(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    Ok(Account::builder_with_http(Box::new(client)))
}

/// The PKCS#8 key a Secret holds.
fn stored_key(secret: &Secret) -> Result<PrivatePkcs8KeyDer<'static>, String> {
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEY_DATA))
        .ok_or_else(|| format!("has no {KEY_DATA}"))?;
    PrivatePkcs8KeyDer::from_pem_slice(&data.0)
        .map_err(|_| format!("{KEY_DATA}: not a PEM `PRIVATE KEY` (PKCS#8)"))
}

fn key_pem(der: &PrivatePkcs8KeyDer<'_>) -> Result<String, String> {
    rcgen::KeyPair::try_from(der)
        .map(|pair| pair.serialize_pem())
        .map_err(|e| format!("cannot encode the new key: {e}"))
}

fn key_secret_object(key: &ObjectKey, pem: String) -> Secret {
    let data = [(KEY_DATA.to_owned(), ByteString(pem.into_bytes()))];
    new_secret(key, "Opaque", data.into())
}

/// The external account key: `keyID` and the MAC key, stored as
/// cert-manager stores it (base64url, padding optional).
async fn eab_key(
    binding: &crate::acme::issuer::ExternalAccountBinding,
    store: &SecretStore,
    namespace: &str,
) -> Result<ExternalAccountKey, AccountError> {
    let key = ObjectKey::new(namespace, &binding.key_secret_ref.name);
    let fail = |why: String| AccountError::Eab {
        key: key.clone(),
        why,
    };
    let data_key = binding
        .key_secret_ref
        .key
        .as_deref()
        .unwrap_or(EAB_DEFAULT_KEY);
    let secret = store
        .get(&key)
        .await
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| fail("not found".to_owned()))?;
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(data_key))
        .ok_or_else(|| fail(format!("has no data key {data_key}")))?;
    let mac = decode_mac_key(&value.0).map_err(fail)?;
    Ok(ExternalAccountKey::new(binding.key_id.clone(), &mac))
}

fn decode_mac_key(value: &[u8]) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let text = std::str::from_utf8(value)
        .map_err(|_| "the MAC key is not text (base64url expected)".to_owned())?
        .trim()
        .trim_end_matches('=');
    let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| "the MAC key is not base64url".to_owned())?;
    if mac.len() < 16 {
        return Err(format!(
            "the MAC key is {} bytes; at least 16 expected",
            mac.len()
        ));
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_key_reads_as_cert_manager_stores_it_and_short_or_garbled_keys_are_refused() {
        let key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
        assert_eq!(decode_mac_key(key.as_bytes()).unwrap().len(), 48);
        assert_eq!(
            decode_mac_key(b"c2hvcnQ").unwrap_err(),
            "the MAC key is 5 bytes; at least 16 expected"
        );
        assert!(decode_mac_key(b"not base64!!").is_err());
    }

    #[test]
    fn a_generated_key_round_trips_through_its_secret() {
        let (_, der) = Key::generate_pkcs8().unwrap();
        let secret =
            key_secret_object(&ObjectKey::new("gatehouse", "acct"), key_pem(&der).unwrap());
        let read = stored_key(&secret).unwrap();
        assert_eq!(read.secret_pkcs8_der(), der.secret_pkcs8_der());
        assert!(Key::from_pkcs8_der(read).is_ok());
    }
}
