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
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use instant_acme::{Account, CertificateIdentifier};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use rustls_pki_types::Der;
use tokio::sync::watch;
use x509_parser::extensions::ParsedExtension;

use super::account::{self, AccountError};
use super::events::ClusterReport;
use super::order::{self, Answers, Issued, OrderError, Wanted};
use super::orders::{Orders, ORDERS_SECRET};
use super::renewal_info::Suggestion;
use super::store::{new_secret, SecretStore, StoreError};
use crate::acme::issuer::{AcmeIssuer, AcmeIssuerSpec};
use crate::acme::schedule;
use crate::acme::status::{AcmeStatus, CertificateState, CertificateStatus};
use crate::acme::ISSUED_BY_ANNOTATION;
use crate::cluster::{ClusterState, ObjectKey};
use crate::metrics::{AcmeOrderLabels, AcmeStateLabels, Metrics};
use crate::source::StateReceiver;
use crate::translate::{certificate_requests, CertificateRequest, TranslateOptions};

/// The shortest time between two rounds.
const ROUND_GAP: Duration = Duration::from_millis(200);
/// With no other reason to wake, the manager looks again this often.
const IDLE: Duration = Duration::from_secs(3600);

/// What a certificate in a Secret says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Its DNS names, lowercase.
    pub names: Vec<String>,
    /// Its identity for ARI (authority key identifier and serial), when
    /// it names its issuer's key.
    pub id: Option<CertificateIdentifier<'static>>,
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
        let id = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    let key_id = aki.key_identifier.as_ref()?;
                    let serial = cert.tbs_certificate.raw_serial();
                    Some(
                        CertificateIdentifier::new(Der::from(key_id.0), Der::from(serial))
                            .into_owned(),
                    )
                }
                _ => None,
            });
        Some(Held {
            not_before: time(cert.validity().not_before),
            not_after: time(cert.validity().not_after),
            names,
            id,
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

/// What the manager remembers of one certificate between rounds.
#[derive(Default)]
struct Progress {
    /// Start times of the failed attempts since the last success.
    failures: Vec<SystemTime>,
    retry_after: Option<SystemTime>,
    last_error: Option<String>,
    /// What this replica wrote last, or found in the store before an
    /// order, until the state shows it.
    written: Option<Held>,
    /// The CA's renewal window for the certificate held (ARI).
    suggestion: Option<Suggestion>,
}

/// A Secret as last seen, and the certificate it holds.
type Parsed = (Arc<Secret>, Option<Held>);

pub struct Manager {
    store: SecretStore,
    /// Where Secrets without a namespace of their own live.
    namespace: String,
    options: Arc<TranslateOptions>,
    answers: Answers,
    orders: Orders,
    accounts: HashMap<String, (AcmeIssuerSpec, Account)>,
    progress: HashMap<ObjectKey, Progress>,
    /// The certificate each requested Secret of the state holds, parsed
    /// once per version of the Secret: every round asks for all of them.
    parsed: Mutex<HashMap<ObjectKey, Parsed>>,
    status: AcmeStatus,
    metrics: Arc<Metrics>,
    /// Events and issuer conditions (from the Kubernetes source only).
    cluster: Option<ClusterReport>,
}

impl Manager {
    pub fn new(
        store: SecretStore,
        namespace: String,
        options: Arc<TranslateOptions>,
        answers: Answers,
        report: (AcmeStatus, Arc<Metrics>),
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
            parsed: Mutex::default(),
            status: report.0,
            metrics: report.1,
            cluster: None,
        }
    }

    /// Reports to the cluster too: Events and issuer conditions.
    pub fn reporting_to(mut self, cluster: ClusterReport) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Runs while the source publishes states; orders only while
    /// `leading` says so.
    pub async fn run(mut self, mut states: StateReceiver, mut leading: watch::Receiver<bool>) {
        loop {
            let mut wake = SystemTime::now() + IDLE;
            if *leading.borrow_and_update() {
                let state = states.borrow_and_update().clone();
                wake = self.round(&state, &leading).await.min(wake);
            } else {
                self.status.publish(Default::default());
            }
            let sleep = wake
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                r = states.changed() => if r.is_err() { return },
                r = leading.changed() => if r.is_err() { return },
                () = tokio::time::sleep(sleep) => {}
            }
            // A round lists every Ingress's requests: under a stream of
            // changes (endpoints churn) it runs at most this often.
            tokio::time::sleep(ROUND_GAP).await;
        }
    }

    /// Orders what is due; returns when the next thing falls due.
    async fn round(&mut self, state: &ClusterState, leading: &watch::Receiver<bool>) -> SystemTime {
        let requests = certificate_requests(state, &self.options);
        // Forget what no Ingress asks for any more.
        self.progress
            .retain(|key, _| requests.iter().any(|r| &r.secret == key));
        self.parsed
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|key, _| requests.iter().any(|r| &r.secret == key));
        self.publish(state, &requests);
        let mut wake = SystemTime::now() + IDLE;
        for request in &requests {
            if !*leading.borrow() {
                break;
            }
            let Some(issuer) = state.acme_issuers.get(&request.issuer) else {
                continue;
            };
            let issuer = issuer.clone();
            if let Some(ask_again) = self.refresh_suggestion(state, &issuer, request).await {
                wake = wake.min(ask_again);
            }
            let now = SystemTime::now();
            let due = self.due(state, request, now);
            if due > now {
                wake = wake.min(due);
                continue;
            }
            if let Some(held) = self.stored_current(request, now).await {
                self.progress
                    .entry(request.secret.clone())
                    .or_default()
                    .written = Some(held);
                wake = wake.min(self.due(state, request, now));
                continue;
            }
            let outcome = self.attempt(&issuer, request, leading).await;
            let event = if outcome.is_ok() { "issued" } else { "failed" };
            self.count(&request.issuer, event);
            let progress = self.progress.entry(request.secret.clone()).or_default();
            let (failed, note) = match outcome {
                Ok(held) => {
                    tracing::info!(target: "gatehouse::acme", secret = %request.secret, owner = %request.owner, issuer = %request.issuer, hosts = ?request.hosts, "certificate issued");
                    let until = httpdate::fmt_http_date(held.not_after);
                    *progress = Progress {
                        written: Some(held),
                        ..Progress::default()
                    };
                    let note = format!(
                        "certificate for {} issued by AcmeIssuer {} into Secret {}, valid until {until}",
                        request.hosts.join(", "),
                        request.issuer,
                        request.secret
                    );
                    (false, note)
                }
                Err(e) => {
                    progress.failures.push(now);
                    progress.retry_after = e.retry_after();
                    progress.last_error = Some(e.to_string());
                    let next = schedule::next_attempt(
                        &progress.failures,
                        progress.retry_after,
                        SystemTime::now(),
                    );
                    let wait = next
                        .duration_since(SystemTime::now())
                        .unwrap_or_default()
                        .as_secs();
                    tracing::warn!(target: "gatehouse::acme", secret = %request.secret, owner = %request.owner, issuer = %request.issuer, hosts = ?request.hosts, retry_in_s = wait, "certificate not obtained, the hosts keep the certificate they have: {e}");
                    let note = format!(
                        "no certificate for {} from AcmeIssuer {}: {e}; the hosts keep the certificate they have; next attempt in {} min",
                        request.hosts.join(", "),
                        request.issuer,
                        wait.div_ceil(60)
                    );
                    (true, note)
                }
            };
            if let Some(cluster) = &self.cluster {
                cluster.event(state, request, failed, note).await;
            }
            self.publish(state, &requests);
            wake = wake.min(self.due(state, request, SystemTime::now()));
        }
        wake
    }

    /// Publishes how every requested certificate stands, and the gauge by
    /// state.
    fn publish(&self, state: &ClusterState, requests: &[CertificateRequest]) {
        let now = SystemTime::now();
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        };
        let mut statuses = std::collections::BTreeMap::new();
        let mut counts = [0i64; CertificateState::ALL.len()];
        for request in requests {
            let progress = self.progress.get(&request.secret);
            let failures = progress.map_or(0, |p| p.failures.len());
            let held = self.held(state, request);
            let due = self.due(state, request, now);
            let current = held
                .as_ref()
                .is_some_and(|h| h.covers_exactly(&request.hosts));
            let standing = if failures > 0 {
                CertificateState::Failed
            } else if current && due > now {
                CertificateState::Valid
            } else {
                CertificateState::Pending
            };
            counts[standing as usize] += 1;
            statuses.insert(
                request.secret.to_string(),
                CertificateStatus {
                    secret: request.secret.to_string(),
                    issuer: request.issuer.clone(),
                    owner: request.owner.to_string(),
                    hosts: request.hosts.clone(),
                    state: standing,
                    not_after: held.map(|h| unix(h.not_after)),
                    next_attempt: Some(unix(due)),
                    failures,
                    last_error: progress.and_then(|p| p.last_error.clone()),
                },
            );
        }
        for (standing, count) in CertificateState::ALL.iter().zip(counts) {
            let labels = AcmeStateLabels {
                state: standing.as_str(),
            };
            self.metrics
                .acme_certificates
                .get_or_create(&labels)
                .set(count);
        }
        self.status.publish(statuses);
    }

    fn count(&self, issuer: &str, event: &'static str) {
        let labels = AcmeOrderLabels {
            issuer: issuer.to_owned(),
            event,
        };
        self.metrics.acme_orders.get_or_create(&labels).inc();
    }

    /// The newer of the certificate the state holds and the one this
    /// replica wrote last.
    fn held(&self, state: &ClusterState, request: &CertificateRequest) -> Option<Held> {
        let in_state = state.secrets.get(&request.secret).and_then(|secret| {
            let mut parsed = self.parsed.lock().unwrap_or_else(PoisonError::into_inner);
            match parsed.get(&request.secret) {
                Some((seen, held)) if Arc::ptr_eq(seen, secret) => held.clone(),
                _ => {
                    let held = Held::of(secret);
                    parsed.insert(request.secret.clone(), (secret.clone(), held.clone()));
                    held
                }
            }
        });
        let written = self
            .progress
            .get(&request.secret)
            .and_then(|p| p.written.clone());
        match (in_state, written) {
            (Some(a), Some(b)) => Some(if a.not_after >= b.not_after { a } else { b }),
            (a, b) => a.or(b),
        }
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
        let renew = self
            .held(state, request)
            .and_then(|held| self.renewal(request, &held))
            .unwrap_or(now);
        let failing = self
            .progress
            .get(&request.secret)
            .filter(|p| !p.failures.is_empty());
        match failing {
            Some(p) => renew.max(schedule::next_attempt(&p.failures, p.retry_after, now)),
            None => renew,
        }
    }

    /// The certificate the request's Secret holds in the store, when it
    /// names exactly the request's hosts and is not due at `now`. The
    /// state can show less than the store: the source holds a Secret no
    /// Ingress names without its data and fetches it once one does, so
    /// an Ingress that starts naming a Secret (re-created, renamed, or
    /// taking over another's hosts) first sees it empty. The store
    /// decides before the CA is asked, so that such an Ingress costs no
    /// order; a store that cannot be read leaves it to the state.
    async fn stored_current(&self, request: &CertificateRequest, now: SystemTime) -> Option<Held> {
        let secret = self.store.get(&request.secret).await.ok()??;
        let held = Held::of(&secret)?;
        self.renewal(request, &held)
            .is_some_and(|renew| renew > now)
            .then_some(held)
    }

    /// When `held` is due for renewal, if it names exactly the request's
    /// hosts (one that does not is due at once): in the CA's window when
    /// it gave one for this certificate, else by its lifetime. Whatever
    /// the CA says, no later than when a tenth of the lifetime remains.
    fn renewal(&self, request: &CertificateRequest, held: &Held) -> Option<SystemTime> {
        if !held.covers_exactly(&request.hosts) {
            return None;
        }
        let seed = schedule::seed(&request.secret.namespace, &request.secret.name);
        let suggested = self
            .progress
            .get(&request.secret)
            .and_then(|p| p.suggestion.as_ref())
            .filter(|s| held.id.as_ref() == Some(&s.certificate))
            .and_then(|s| s.renew_at);
        Some(match suggested {
            Some(renew) => {
                let lifetime = held
                    .not_after
                    .duration_since(held.not_before)
                    .unwrap_or_default();
                renew.min(held.not_after - lifetime / 10)
            }
            None => schedule::renewal_time(held.not_before, held.not_after, seed),
        })
    }

    /// Asks the CA for the renewal window of the certificate `request`'s
    /// Secret holds, when it names the request's hosts and the last answer
    /// (for this certificate) is due to be asked again; returns when to
    /// ask next.
    async fn refresh_suggestion(
        &mut self,
        state: &ClusterState,
        issuer: &AcmeIssuer,
        request: &CertificateRequest,
    ) -> Option<SystemTime> {
        let held = self
            .held(state, request)
            .filter(|h| h.covers_exactly(&request.hosts))?;
        let id = held.id?;
        let now = SystemTime::now();
        if let Some(known) = self
            .progress
            .get(&request.secret)
            .and_then(|p| p.suggestion.as_ref())
            .filter(|s| s.certificate == id && s.ask_again > now)
        {
            return Some(known.ask_again);
        }
        let seed = schedule::seed(&request.secret.namespace, &request.secret.name);
        let suggestion = match self.account(issuer).await {
            Ok(account) => Suggestion::ask(&account, &id, seed, now).await,
            // Nobody to ask (the issuer's condition says why): the
            // lifetime rule, and another try later, not every round.
            Err(_) => Suggestion::unknown(id, now + schedule::ARI_AFTER_FAILURE),
        };
        let ask_again = suggestion.ask_again;
        self.progress
            .entry(request.secret.clone())
            .or_default()
            .suggestion = Some(suggestion);
        Some(ask_again)
    }

    /// One order for `request`, and its certificate written.
    async fn attempt(
        &mut self,
        issuer: &AcmeIssuer,
        request: &CertificateRequest,
        leading: &watch::Receiver<bool>,
    ) -> Result<Held, AttemptError> {
        let spec = &issuer.spec;
        let account = self.account(issuer).await?;
        let replaces = self
            .progress
            .get(&request.secret)
            .and_then(|p| p.suggestion.as_ref())
            .and_then(Suggestion::replaces)
            .cloned();
        let wanted = Wanted {
            issuer: &request.issuer,
            hosts: &request.hosts,
            profile: spec.profile.as_deref(),
            challenge: spec.challenge,
            secret: &request.secret,
            replaces: replaces.as_ref(),
        };
        let started = |event| self.count(&request.issuer, event);
        let issued = order::obtain(&account, &wanted, &self.answers, &self.orders, started).await?;
        if !*leading.borrow() {
            return Err(AttemptError::NotLeading);
        }
        self.write(request, issued).await
    }

    /// The issuer's account, registered once per spec; the issuer's
    /// `Ready` condition says how that went.
    async fn account(&mut self, issuer: &AcmeIssuer) -> Result<Account, AttemptError> {
        let name = issuer.metadata.name.clone().unwrap_or_default();
        let spec = &issuer.spec;
        if let Some((known, account)) = self.accounts.get(&name) {
            if known == spec {
                return Ok(account.clone());
            }
        }
        let registered = account::register(spec, &self.store, &self.namespace).await;
        if let Some(cluster) = &mut self.cluster {
            let (ready, message) = match &registered {
                Ok(account) => (true, format!("account {} at {}", account.id(), spec.server)),
                Err(e) => (false, e.to_string()),
            };
            cluster.issuer_ready(issuer, ready, message).await;
        }
        let account = registered?;
        tracing::info!(target: "gatehouse::acme", issuer = %name, server = %spec.server, "ACME account registered");
        self.accounts.insert(name, (spec.clone(), account.clone()));
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
                    let mut secret =
                        new_secret(&request.secret, "kubernetes.io/tls", data.clone().into());
                    annotate(&mut secret.metadata, &request.issuer);
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
        .insert(ISSUED_BY_ANNOTATION.to_owned(), issuer.to_owned());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA, and a leaf for `shop.test` with serial 01 02 03, with or
    /// without the authority key identifier; the CA's subject key
    /// identifier comes back too.
    fn leaf(with_aki: bool) -> (String, Vec<u8>) {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("CA");
        let (_, parsed) = x509_parser::parse_x509_certificate(ca_cert.der()).expect("CA parses");
        let ski = parsed
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
            .expect("the CA names its key");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mut params =
            rcgen::CertificateParams::new(vec!["shop.test".to_owned()]).expect("params");
        params.serial_number = Some(rcgen::SerialNumber::from(vec![1, 2, 3]));
        params.use_authority_key_identifier_extension = with_aki;
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &issuer).expect("leaf");
        (cert.pem(), ski)
    }

    #[test]
    fn a_certificate_is_identified_for_ari_by_its_issuers_key_and_its_serial() {
        use base64::Engine as _;
        let (pem, ski) = leaf(true);
        let held = Held::of_pem(pem.as_bytes()).expect("parses");
        assert_eq!(held.names, ["shop.test"]);
        let id = held.id.expect("identified");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        assert_eq!(id.authority_key_identifier, b64.encode(&ski));
        assert_eq!(id.serial, "AQID");
        assert_eq!(id.to_string(), format!("{}.AQID", b64.encode(&ski)));
    }

    #[test]
    fn a_certificate_that_does_not_name_its_issuers_key_has_no_ari_identity() {
        let (pem, _) = leaf(false);
        let held = Held::of_pem(pem.as_bytes()).expect("parses");
        assert_eq!(held.id, None);
    }
}
