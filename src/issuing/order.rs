//! One certificate from the CA: an order for the request's names, each
//! name's challenge (HTTP-01 or TLS-ALPN-01, as the issuer says) answered
//! through the published answers, a CSR
//! for a fresh ECDSA P-256 key, and the chain the CA issues.
//!
//! The answers are published before the CA is told to validate, and the
//! CA is told only once this replica's own table serves them (the others
//! read the same Secret). They are withdrawn however the order ends.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus,
    RetryPolicy,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

use super::store::{SecretStore, StoreError};
use crate::acme::challenges::{self, PATH_PREFIX};
use crate::acme::issuer::ChallengeType as Challenge;
use crate::cluster::ObjectKey;
use crate::table::RouteTable;

/// How long the CA gets to validate every name of an order.
const VALIDATION: Duration = Duration::from_secs(90);
/// How long the CA gets to issue after the CSR.
const ISSUANCE: Duration = Duration::from_secs(60);
/// How long the table gets to serve a published answer.
const PUBLICATION: Duration = Duration::from_secs(30);

/// Why an order produced no certificate.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The CA said no: its problem document, as it wrote it.
    #[error("the CA refused: {problem}")]
    Refused {
        problem: String,
        /// The CA's `Retry-After`, when it sent one.
        retry_after: Option<SystemTime>,
    },
    /// Talking to the CA failed (unreachable, bad nonce retries exhausted,
    /// a timeout).
    #[error("{0}")]
    Acme(String),
    /// The answers could not be published.
    #[error("cannot publish the challenge answers: {0}")]
    Publish(String),
}

impl OrderError {
    pub fn retry_after(&self) -> Option<SystemTime> {
        match self {
            OrderError::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl From<instant_acme::Error> for OrderError {
    fn from(error: instant_acme::Error) -> Self {
        match error {
            instant_acme::Error::Api(problem) => OrderError::Refused {
                problem: problem.to_string(),
                retry_after: None,
            },
            other => OrderError::Acme(other.to_string()),
        }
    }
}

/// A certificate the CA issued, with its key, both PEM.
pub struct Issued {
    pub chain: String,
    pub key: String,
}

/// Where the answers go and where they are seen served.
pub struct Answers {
    pub store: SecretStore,
    /// The challenges Secret (`gatehouse-acme-challenges` in the
    /// controller's namespace).
    pub secret: ObjectKey,
    pub table: Arc<ArcSwap<RouteTable>>,
}

/// Orders a certificate for `hosts` and waits for it.
pub async fn obtain(
    account: &Account,
    hosts: &[String],
    profile: Option<&str>,
    challenge: Challenge,
    answers: &Answers,
) -> Result<Issued, OrderError> {
    let identifiers: Vec<Identifier> = hosts.iter().cloned().map(Identifier::Dns).collect();
    let mut new = NewOrder::new(&identifiers);
    if let Some(profile) = profile {
        new = new.profile(profile);
    }
    let mut order = account.new_order(&new).await?;
    let mut published = Vec::new();
    let outcome = validate_and_issue(&mut order, hosts, challenge, answers, &mut published).await;
    if let Err(e) = answers.withdraw(&published).await {
        tracing::warn!(target: "gatehouse::acme", "cannot withdraw challenge answers (they stay harmless): {e}");
    }
    outcome
}

async fn validate_and_issue(
    order: &mut Order,
    hosts: &[String],
    kind: Challenge,
    answers: &Answers,
    published: &mut Vec<String>,
) -> Result<Issued, OrderError> {
    let mut ready = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => {
                return Err(OrderError::Refused {
                    problem: format!("authorization is {status:?}"),
                    retry_after: None,
                })
            }
        }
        let name = authorization.identifier().to_string();
        let wanted = match kind {
            Challenge::Http01 => ChallengeType::Http01,
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut challenge = authorization
            .challenge(wanted)
            .ok_or_else(|| OrderError::Refused {
                problem: format!("the CA offers no {kind:?} challenge for {name}"),
                retry_after: None,
            })?;
        let key_authorization = challenge.key_authorization();
        let answer = match kind {
            Challenge::Http01 => Answer::Http01 {
                token: challenge.token.clone(),
                key_authorization: key_authorization.as_str().to_owned(),
            },
            Challenge::TlsAlpn01 => Answer::TlsAlpn01 {
                host: name.clone(),
                pem: validation_certificate(&name, key_authorization.digest().as_ref())?,
            },
        };
        answers
            .publish(&answer)
            .await
            .map_err(OrderError::Publish)?;
        published.push(answer.data_key());
        answers.served(&answer).await.map_err(OrderError::Publish)?;
        challenge.set_ready().await?;
        ready.push(name);
    }
    let polling = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(VALIDATION);
    let status = order.poll_ready(&polling).await?;
    if status != OrderStatus::Ready {
        return Err(OrderError::Refused {
            problem: failure(order).await,
            retry_after: None,
        });
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| OrderError::Acme(format!("cannot make a key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(hosts.to_vec())
        .map_err(|e| OrderError::Acme(format!("cannot make a CSR: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| OrderError::Acme(format!("cannot make a CSR: {e}")))?;
    order.finalize_csr(csr.der()).await?;
    let issuing = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(ISSUANCE);
    let chain = order.poll_certificate(&issuing).await?;
    tracing::debug!(target: "gatehouse::acme", names = ?ready, "validated");
    Ok(Issued {
        chain,
        key: key.serialize_pem(),
    })
}

/// The CA's own words on why an order is invalid: the order's problem, or
/// the first failed challenge's.
async fn failure(order: &mut Order) -> String {
    if let Some(problem) = &order.state().error {
        return problem.to_string();
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(authorization)) = authorizations.next().await {
        let name = authorization.identifier().to_string();
        for challenge in &authorization.challenges {
            if let Some(problem) = &challenge.error {
                return format!("{name}: {problem}");
            }
        }
    }
    "the order became invalid without a problem document".to_owned()
}

/// One published answer.
enum Answer {
    Http01 {
        token: String,
        key_authorization: String,
    },
    TlsAlpn01 {
        host: String,
        /// The validation certificate, then its key.
        pem: String,
    },
}

impl Answer {
    fn data_key(&self) -> String {
        match self {
            Answer::Http01 { token, .. } => challenges::http01_key(token),
            Answer::TlsAlpn01 { host, .. } => challenges::tls_alpn01_key(host),
        }
    }

    fn value(&self) -> ByteString {
        match self {
            Answer::Http01 {
                key_authorization, ..
            } => ByteString(key_authorization.as_bytes().to_vec()),
            Answer::TlsAlpn01 { pem, .. } => ByteString(pem.as_bytes().to_vec()),
        }
    }

    fn is_served(&self, table: &RouteTable) -> bool {
        match self {
            Answer::Http01 { token, .. } => table
                .challenges
                .answer(&format!("{PATH_PREFIX}{token}"))
                .is_some(),
            Answer::TlsAlpn01 { host, .. } => table.challenges.alpn_answer(host).is_some(),
        }
    }
}

/// RFC 8737 §3: a self-signed certificate for `host` whose critical
/// `acmeIdentifier` extension holds the SHA-256 of the key authorization;
/// PEM, certificate then key.
fn validation_certificate(host: &str, digest: &[u8]) -> Result<String, OrderError> {
    let failed =
        |e: rcgen::Error| OrderError::Acme(format!("cannot make the TLS-ALPN-01 certificate: {e}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).map_err(failed)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(failed)?;
    Ok(format!("{}{}", cert.pem(), key.serialize_pem()))
}

impl Answers {
    /// Adds the answer to the challenges Secret.
    async fn publish(&self, answer: &Answer) -> Result<(), String> {
        let (key, value) = (answer.data_key(), answer.value());
        self.edit(|data| {
            data.insert(key.clone(), value.clone());
        })
        .await
    }

    /// Removes the answers under `keys`.
    async fn withdraw(&self, keys: &[String]) -> Result<(), String> {
        if keys.is_empty() {
            return Ok(());
        }
        self.edit(|data| {
            for key in keys {
                data.remove(key);
            }
        })
        .await
    }

    /// Applies `change` to the Secret's data, reading again when another
    /// writer came first.
    async fn edit(
        &self,
        change: impl Fn(&mut std::collections::BTreeMap<String, ByteString>),
    ) -> Result<(), String> {
        for _ in 0..5 {
            let current = self
                .store
                .get(&self.secret)
                .await
                .map_err(|e| e.to_string())?;
            let written = match current {
                Some(mut secret) => {
                    let data = secret.data.get_or_insert_with(Default::default);
                    let before = data.clone();
                    change(data);
                    if *data == before {
                        return Ok(());
                    }
                    self.store.replace(&secret).await
                }
                None => {
                    let mut data = Default::default();
                    change(&mut data);
                    self.store.create(&self.new_secret(data)).await
                }
            };
            match written {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(format!(
            "Secret {} kept changing under five attempts",
            self.secret
        ))
    }

    fn new_secret(&self, data: std::collections::BTreeMap<String, ByteString>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                namespace: Some(self.secret.namespace.clone()),
                name: Some(self.secret.name.clone()),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(data),
            ..Secret::default()
        }
    }

    /// Waits until this replica's table serves `answer`.
    async fn served(&self, answer: &Answer) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + PUBLICATION;
        loop {
            if answer.is_served(&self.table.load()) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "the answer was written to Secret {} but not served within {}s",
                    self.secret,
                    PUBLICATION.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
