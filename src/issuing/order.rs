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
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeStatus, ChallengeType,
    Identifier, NewOrder, Order, OrderStatus, RetryPolicy,
};
use k8s_openapi::ByteString;

use super::orders::{edit_secret, Orders, Record};
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
                retry_after: rate_limited_until(
                    problem.r#type.as_deref(),
                    problem.detail.as_deref(),
                    SystemTime::now(),
                ),
                problem: problem.to_string(),
            },
            other => OrderError::Acme(super::chain(&other)),
        }
    }
}

/// A rate-limited CA is not asked again before it says: the ACME client
/// does not pass the `Retry-After` of an error on, but Let's Encrypt
/// writes the time into the problem's detail (`… retry after
/// 2026-12-07 19:00:00 UTC: see …`); without one, an hour.
fn rate_limited_until(
    kind: Option<&str>,
    detail: Option<&str>,
    now: SystemTime,
) -> Option<SystemTime> {
    if kind != Some("urn:ietf:params:acme:error:rateLimited") {
        return None;
    }
    let written = detail
        .and_then(|d| d.split("retry after ").nth(1))
        .and_then(|rest| rest.get(..19))
        .and_then(|text| {
            let format =
                time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
            time::PrimitiveDateTime::parse(text, format).ok()
        })
        .map(|at| SystemTime::from(at.assume_utc()));
    Some(written.unwrap_or(now + Duration::from_secs(3600)))
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

/// What to order, and for which Secret.
pub struct Wanted<'a> {
    pub issuer: &'a str,
    pub hosts: &'a [String],
    pub profile: Option<&'a str>,
    pub challenge: Challenge,
    /// The certificate's Secret: the key of its order record.
    pub secret: &'a ObjectKey,
    /// The certificate this one replaces (ARI), when the CA knows it.
    pub replaces: Option<&'a CertificateIdentifier<'static>>,
}

/// Orders a certificate (or resumes the order a previous leader recorded)
/// and waits for it. The record is removed when the order ends, whether
/// with a certificate or refused; a failure to reach the CA keeps it, so
/// the next attempt resumes.
/// `started` is told whether the order was `placed` or `resumed`.
pub async fn obtain(
    account: &Account,
    wanted: &Wanted<'_>,
    answers: &Answers,
    orders: &Orders,
    started: impl FnOnce(&'static str),
) -> Result<Issued, OrderError> {
    let record_error = |e: StoreError| OrderError::Publish(format!("order record: {e}"));
    let (mut order, record) = match resume(account, wanted, orders).await? {
        Some(resumed) => {
            started("resumed");
            resumed
        }
        None => {
            let identifiers: Vec<Identifier> =
                wanted.hosts.iter().cloned().map(Identifier::Dns).collect();
            let order = place(account, wanted, &identifiers).await?;
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| OrderError::Acme(format!("cannot make a key: {e}")))?;
            let record = Record {
                issuer: wanted.issuer.to_owned(),
                hosts: wanted.hosts.to_vec(),
                order: order.url().to_owned(),
                key: key.serialize_pem(),
            };
            started("placed");
            orders
                .put(wanted.secret, &record)
                .await
                .map_err(record_error)?;
            (order, record)
        }
    };
    let mut published = Vec::new();
    let outcome = complete(&mut order, wanted, &record, answers, &mut published).await;
    if let Err(e) = answers.withdraw(&published).await {
        tracing::warn!(target: "gatehouse::acme", "cannot withdraw challenge answers (they stay harmless): {e}");
    }
    if matches!(outcome, Ok(_) | Err(OrderError::Refused { .. })) {
        orders.remove(wanted.secret).await.map_err(record_error)?;
    }
    outcome
}

/// A new order for `identifiers`, naming the certificate it replaces when
/// there is one. A CA that refuses the order for that (the certificate was
/// replaced already, by an order a previous leader placed and lost) is
/// asked once more without it: the name only helps the CA's bookkeeping.
async fn place(
    account: &Account,
    wanted: &Wanted<'_>,
    identifiers: &[Identifier],
) -> Result<Order, OrderError> {
    let new = |replaces: Option<&CertificateIdentifier<'static>>| {
        let mut new = NewOrder::new(identifiers);
        if let Some(profile) = wanted.profile {
            new = new.profile(profile);
        }
        match replaces {
            Some(id) => new.replaces(id.clone()),
            None => new,
        }
    };
    match account.new_order(&new(wanted.replaces)).await {
        Err(instant_acme::Error::Api(problem)) if wanted.replaces.is_some() => {
            tracing::info!(target: "gatehouse::acme", secret = %wanted.secret, "the CA refused an order that replaces the certificate held ({problem}); ordering without naming it");
            Ok(account.new_order(&new(None)).await?)
        }
        placed => Ok(placed?),
    }
}

/// The recorded order for `wanted`, when there is one the CA still
/// knows and that can still succeed.
async fn resume(
    account: &Account,
    wanted: &Wanted<'_>,
    orders: &Orders,
) -> Result<Option<(Order, Record)>, OrderError> {
    let record = orders
        .get(wanted.secret)
        .await
        .map_err(|e| OrderError::Publish(format!("order record: {e}")))?;
    let Some(record) = record.filter(|r| r.is_for(wanted.issuer, wanted.hosts)) else {
        return Ok(None);
    };
    let mut order = match account.order(record.order.clone()).await {
        Ok(order) => order,
        // Expired or gone: a new order.
        Err(instant_acme::Error::Api(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let status = order.state().status;
    if status == OrderStatus::Invalid {
        return Ok(None);
    }
    tracing::info!(target: "gatehouse::acme", secret = %wanted.secret, ?status, "resuming the order a previous attempt recorded");
    Ok(Some((order, record)))
}

/// Takes `order` from wherever it is to the issued chain.
async fn complete(
    order: &mut Order,
    wanted: &Wanted<'_>,
    record: &Record,
    answers: &Answers,
    published: &mut Vec<String>,
) -> Result<Issued, OrderError> {
    if order.state().status == OrderStatus::Pending {
        answer_challenges(order, wanted.challenge, answers, published).await?;
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
    }
    let key = rcgen::KeyPair::from_pem(&record.key)
        .map_err(|e| OrderError::Acme(format!("the recorded key does not load: {e}")))?;
    if order.state().status == OrderStatus::Ready {
        let mut params = rcgen::CertificateParams::new(wanted.hosts.to_vec())
            .map_err(|e| OrderError::Acme(format!("cannot make a CSR: {e}")))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| OrderError::Acme(format!("cannot make a CSR: {e}")))?;
        order.finalize_csr(csr.der()).await?;
    }
    let issuing = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(ISSUANCE);
    let chain = order.poll_certificate(&issuing).await?;
    Ok(Issued {
        chain,
        key: record.key.clone(),
    })
}

/// Publishes the answer to each pending authorization's challenge, waits
/// until this replica serves it, and tells the CA to validate.
async fn answer_challenges(
    order: &mut Order,
    kind: Challenge,
    answers: &Answers,
    published: &mut Vec<String>,
) -> Result<(), OrderError> {
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
        // A previous leader may have told the CA already.
        if challenge.status == ChallengeStatus::Pending {
            challenge.set_ready().await?;
        }
        tracing::debug!(target: "gatehouse::acme", %name, "challenge answered");
    }
    Ok(())
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

    async fn edit(
        &self,
        change: impl Fn(&mut std::collections::BTreeMap<String, ByteString>),
    ) -> Result<(), String> {
        edit_secret(&self.store, &self.secret, change)
            .await
            .map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limited_ca_is_asked_again_when_it_says_or_in_an_hour() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let limited = Some("urn:ietf:params:acme:error:rateLimited");
        let detail = "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, retry after 2027-01-15 10:30:00 UTC: see https://letsencrypt.org/docs/rate-limits/";
        let at = rate_limited_until(limited, Some(detail), now).expect("a time");
        let expected = time::macros::datetime!(2027-01-15 10:30:00 UTC);
        assert_eq!(at, SystemTime::from(expected));
        assert_eq!(
            rate_limited_until(limited, Some("slow down"), now),
            Some(now + Duration::from_secs(3600))
        );
        let other = Some("urn:ietf:params:acme:error:unauthorized");
        assert_eq!(rate_limited_until(other, Some(detail), now), None);
    }
}
