//! One certificate from the CA: an order for the request's names, each
//! name's HTTP-01 challenge answered through the published answers, a CSR
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

use super::challenges::{self, PATH_PREFIX};
use super::store::{SecretStore, StoreError};
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
    answers: &Answers,
) -> Result<Issued, OrderError> {
    let identifiers: Vec<Identifier> = hosts.iter().cloned().map(Identifier::Dns).collect();
    let mut new = NewOrder::new(&identifiers);
    if let Some(profile) = profile {
        new = new.profile(profile);
    }
    let mut order = account.new_order(&new).await?;
    let mut tokens = Vec::new();
    let outcome = validate_and_issue(&mut order, hosts, answers, &mut tokens).await;
    if let Err(e) = answers.withdraw(&tokens).await {
        tracing::warn!(target: "gatehouse::acme", "cannot withdraw challenge answers (they stay harmless): {e}");
    }
    outcome
}

async fn validate_and_issue(
    order: &mut Order,
    hosts: &[String],
    answers: &Answers,
    tokens: &mut Vec<String>,
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
        let mut challenge = authorization
            .challenge(ChallengeType::Http01)
            .ok_or_else(|| OrderError::Refused {
                problem: format!("the CA offers no http-01 challenge for {name}"),
                retry_after: None,
            })?;
        let token = challenge.token.clone();
        let key_authorization = challenge.key_authorization();
        answers
            .publish(&token, key_authorization.as_str())
            .await
            .map_err(OrderError::Publish)?;
        tokens.push(token.clone());
        answers.served(&token).await.map_err(OrderError::Publish)?;
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

impl Answers {
    /// Adds `http-01.TOKEN` to the challenges Secret.
    pub async fn publish(&self, token: &str, key_authorization: &str) -> Result<(), String> {
        let value = ByteString(key_authorization.as_bytes().to_vec());
        self.edit(|data| {
            data.insert(challenges::http01_key(token), value.clone());
        })
        .await
    }

    /// Removes the answers for `tokens`.
    pub async fn withdraw(&self, tokens: &[String]) -> Result<(), String> {
        if tokens.is_empty() {
            return Ok(());
        }
        self.edit(|data| {
            for token in tokens {
                data.remove(&challenges::http01_key(token));
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

    /// Waits until this replica's table serves the answer for `token`.
    async fn served(&self, token: &str) -> Result<(), String> {
        let path = format!("{PATH_PREFIX}{token}");
        let deadline = tokio::time::Instant::now() + PUBLICATION;
        loop {
            if self.table.load().challenges.answer(&path).is_some() {
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
