//! The replica that leads obtains and renews the certificates Ingresses
//! ask for; every replica serves them, and the answers to the CA's
//! challenges, from its table.
//!
//! On every new cluster state (and when a renewal or retry falls due) the
//! manager lists the requests translate finds, and for each one whose
//! Secret holds no certificate for exactly its names, or one due for
//! renewal, orders one, unless a failure's backoff says to wait. Orders
//! run one at a time. The certificate is written to the request's Secret
//! conditionally on the version read just before, and only when it is
//! newer than what the Secret holds by then: a replica that stopped
//! leading mid-order cannot replace what the new leader wrote. A failed
//! order changes nothing, so the hosts keep the certificate they had.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::Account;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use tokio::sync::watch;

use super::account::{self, AccountError};
use super::order::{self, Answers, Issued, OrderError, Wanted};
use super::orders::{Orders, ORDERS_SECRET};
use super::store::{SecretStore, StoreError};
use crate::acme::issuer::AcmeIssuerSpec;
use crate::acme::schedule;
use crate::cluster::{ClusterState, ObjectKey};
use crate::source::StateReceiver;
use crate::translate::{certificate_requests, CertificateRequest, TranslateOptions};

/// The annotation on an issued Secret naming the issuer.
pub const ISSUER_ANNOTATION: &str = "gatehouse.dev/acme-issuer";
/// With no other reason to wake, the manager looks again this often.
const IDLE: Duration = Duration::from_secs(3600);

/// What a certificate in a Secret says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Its DNS names, lowercase.
    pub names: Vec<String>,
}

impl Held {
    /// The leaf of the `tls.crt` of `secret`, when there is one.
    pub fn of(secret: &Secret) -> Option<Held> {
        let crt = secret.data.as_ref()?.get("tls.crt")?;
        Held::of_pem(&crt.0)
    }

    pub fn of_pem(pem: &[u8]) -> Option<Held> {
        use rustls_pki_types::pem::PemObject;
        let leaf = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
            .next()?
            .ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf).ok()?;
        let time = |t: x509_parser::time::ASN1Time| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64)
        };
        let names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        x509_parser::extensions::GeneralName::DNSName(dns) => {
                            Some(dns.to_ascii_lowercase())
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Held {
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
            names,
        })
    }

    /// Whether it names exactly `hosts` (in any order).
    fn covers_exactly(&self, hosts: &[String]) -> bool {
        let mut mine = self.names.clone();
        let mut wanted = hosts.to_vec();
        mine.sort();
        mine.dedup();
        wanted.sort();
        wanted.dedup();
        mine == wanted
    }
}

/// How one certificate stands, for logs and (later) `/debug/certs`.
#[derive(Default)]
struct Progress {
    /// Start times of the failed attempts since the last success.
    failures: Vec<SystemTime>,
    retry_after: Option<SystemTime>,
    /// What this replica wrote last, until the state shows it.
    written: Option<Held>,
}

pub struct Manager {
    store: SecretStore,
    /// Where Secrets without a namespace of their own live.
    namespace: String,
    options: Arc<TranslateOptions>,
    answers: Answers,
    orders: Orders,
    accounts: HashMap<String, (AcmeIssuerSpec, Account)>,
    progress: HashMap<ObjectKey, Progress>,
}

impl Manager {
    pub fn new(
        store: SecretStore,
        namespace: String,
        options: Arc<TranslateOptions>,
        answers: Answers,
    ) -> Self {
        let orders = Orders {
            store: store.clone(),
            secret: ObjectKey::new(&namespace, ORDERS_SECRET),
        };
        Manager {
            store,
            namespace,
            options,
            answers,
            orders,
            accounts: HashMap::new(),
            progress: HashMap::new(),
        }
    }

    /// Runs while the source publishes states; orders only while
    /// `leading` says so.
    pub async fn run(mut self, mut states: StateReceiver, mut leading: watch::Receiver<bool>) {
        loop {
            let mut wake = SystemTime::now() + IDLE;
            if *leading.borrow_and_update() {
                let state = states.borrow_and_update().clone();
                wake = self.round(&state, &leading).await.min(wake);
            }
            let sleep = wake
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                r = states.changed() => if r.is_err() { return },
                r = leading.changed() => if r.is_err() { return },
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Orders what is due; returns when the next thing falls due.
    async fn round(&mut self, state: &ClusterState, leading: &watch::Receiver<bool>) -> SystemTime {
        let requests = certificate_requests(state, &self.options);
        let mut wake = SystemTime::now() + IDLE;
        for request in &requests {
            if !*leading.borrow() {
                break;
            }
            let now = SystemTime::now();
            let due = self.due(state, request, now);
            if due > now {
                wake = wake.min(due);
                continue;
            }
            let Some(issuer) = state.acme_issuers.get(&request.issuer) else {
                continue;
            };
            let spec = issuer.spec.clone();
            let outcome = self.attempt(&spec, request, leading).await;
            let progress = self.progress.entry(request.secret.clone()).or_default();
            match outcome {
                Ok(held) => {
                    tracing::info!(target: "gatehouse::acme", secret = %request.secret, ingress = %request.ingress, issuer = %request.issuer, hosts = ?request.hosts, "certificate issued");
                    progress.failures.clear();
                    progress.retry_after = None;
                    progress.written = Some(held);
                }
                Err(e) => {
                    progress.failures.push(now);
                    progress.retry_after = e.retry_after();
                    let next = schedule::next_attempt(
                        &progress.failures,
                        progress.retry_after,
                        SystemTime::now(),
                    );
                    tracing::warn!(target: "gatehouse::acme", secret = %request.secret, ingress = %request.ingress, issuer = %request.issuer, hosts = ?request.hosts, retry_in_s = next.duration_since(SystemTime::now()).unwrap_or_default().as_secs(), "certificate not obtained, the hosts keep the certificate they have: {e}");
                }
            }
            wake = wake.min(self.due(state, request, SystemTime::now()));
        }
        // Forget what no Ingress asks for any more.
        self.progress
            .retain(|key, _| requests.iter().any(|r| &r.secret == key));
        wake
    }

    /// When `request` next needs an order: now when its Secret holds no
    /// certificate for exactly its names, else at renewal; never before
    /// a failure's backoff ends.
    fn due(
        &self,
        state: &ClusterState,
        request: &CertificateRequest,
        now: SystemTime,
    ) -> SystemTime {
        let progress = self.progress.get(&request.secret);
        let in_state = state.secrets.get(&request.secret).and_then(|s| Held::of(s));
        let written = progress.and_then(|p| p.written.clone());
        let held = match (in_state, written) {
            (Some(a), Some(b)) => Some(if a.not_after >= b.not_after { a } else { b }),
            (a, b) => a.or(b),
        };
        let renew = match held {
            Some(held) if held.covers_exactly(&request.hosts) => {
                schedule::renewal_time(held.not_before, held.not_after, seed(&request.secret))
            }
            _ => now,
        };
        match progress.filter(|p| !p.failures.is_empty()) {
            Some(p) => renew.max(schedule::next_attempt(&p.failures, p.retry_after, now)),
            None => renew,
        }
    }

    /// One order for `request`, and its certificate written.
    async fn attempt(
        &mut self,
        spec: &AcmeIssuerSpec,
        request: &CertificateRequest,
        leading: &watch::Receiver<bool>,
    ) -> Result<Held, AttemptError> {
        let account = self.account(&request.issuer, spec).await?;
        let wanted = Wanted {
            issuer: &request.issuer,
            hosts: &request.hosts,
            profile: spec.profile.as_deref(),
            challenge: spec.challenge,
            secret: &request.secret,
        };
        let issued = order::obtain(&account, &wanted, &self.answers, &self.orders).await?;
        if !*leading.borrow() {
            return Err(AttemptError::NotLeading);
        }
        self.write(request, issued).await
    }

    /// The issuer's account, registered once per spec.
    async fn account(
        &mut self,
        name: &str,
        spec: &AcmeIssuerSpec,
    ) -> Result<Account, AttemptError> {
        if let Some((known, account)) = self.accounts.get(name) {
            if known == spec {
                return Ok(account.clone());
            }
        }
        let account = account::register(spec, &self.store, &self.namespace).await?;
        tracing::info!(target: "gatehouse::acme", issuer = %name, server = %spec.server, "ACME account registered");
        self.accounts
            .insert(name.to_owned(), (spec.clone(), account.clone()));
        Ok(account)
    }

    /// Stores `issued` in the request's Secret, unless the Secret already
    /// holds a newer certificate for the same names.
    async fn write(
        &self,
        request: &CertificateRequest,
        issued: Issued,
    ) -> Result<Held, AttemptError> {
        let held = Held::of_pem(issued.chain.as_bytes())
            .ok_or_else(|| AttemptError::Store("the CA's certificate does not parse".to_owned()))?;
        let data = [
            ("tls.crt".to_owned(), ByteString(issued.chain.into_bytes())),
            ("tls.key".to_owned(), ByteString(issued.key.into_bytes())),
        ];
        for _ in 0..3 {
            let current = self
                .store
                .get(&request.secret)
                .await
                .map_err(|e| AttemptError::Store(e.to_string()))?;
            let written = match current {
                Some(mut secret) => {
                    if let Some(there) = Held::of(&secret) {
                        if there.covers_exactly(&request.hosts) && there.not_after > held.not_after
                        {
                            // Another writer stored a newer one meanwhile.
                            return Ok(there);
                        }
                    }
                    annotate(&mut secret.metadata, &request.issuer);
                    secret
                        .data
                        .get_or_insert_with(Default::default)
                        .extend(data.clone());
                    self.store.replace(&secret).await
                }
                None => {
                    let mut metadata = ObjectMeta {
                        namespace: Some(request.secret.namespace.clone()),
                        name: Some(request.secret.name.clone()),
                        ..ObjectMeta::default()
                    };
                    annotate(&mut metadata, &request.issuer);
                    let secret = Secret {
                        metadata,
                        type_: Some("kubernetes.io/tls".to_owned()),
                        data: Some(data.clone().into()),
                        ..Secret::default()
                    };
                    self.store.create(&secret).await
                }
            };
            match written {
                Ok(_) => return Ok(held),
                Err(StoreError::Conflict) => continue,
                Err(e) => {
                    return Err(AttemptError::Store(format!(
                        "Secret {}: {e}",
                        request.secret
                    )))
                }
            }
        }
        Err(AttemptError::Store(format!(
            "Secret {} kept changing under three attempts",
            request.secret
        )))
    }
}

fn annotate(metadata: &mut ObjectMeta, issuer: &str) {
    metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ISSUER_ANNOTATION.to_owned(), issuer.to_owned());
}

/// The jitter seed of a certificate: stable across replicas and restarts.
fn seed(key: &ObjectKey) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("{0}")]
    Account(#[from] AccountError),
    #[error("{0}")]
    Order(#[from] OrderError),
    #[error("cannot store the certificate: {0}")]
    Store(String),
    #[error("stopped leading before the certificate was stored; the new leader orders it")]
    NotLeading,
}

impl AttemptError {
    fn retry_after(&self) -> Option<SystemTime> {
        match self {
            AttemptError::Order(e) => e.retry_after(),
            _ => None,
        }
    }
}
