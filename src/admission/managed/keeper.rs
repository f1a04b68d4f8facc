//! The elected replica keeps the managed Secret and the configuration's
//! `caBundle` current; the others never write (they read the Secret, see
//! `serving`).
//!
//! A round decides from the Secret as the feed shows it, which costs no
//! request. When something must be written, it reads the Secret again
//! from the store and decides again on that version, then writes
//! conditionally on it: `create` fails if another replica created it
//! first, `replace` if anyone changed it since. A writer that lost (a
//! stale leader, a race at election) writes nothing and looks again. The
//! CA is kept whenever it is usable, so replacing the serving
//! certificate never changes what the API server must trust.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use tokio::sync::watch;

use super::authority::{self, IssueError, Renewal, Upkeep, CA_CERTIFICATE};
use super::bundle::{CaBundle, Kept};
use super::feed::SecretFeed;
use crate::cluster::ObjectKey;
use crate::issuing::store::{new_secret, SecretStore, StoreError};

/// With nothing due sooner, how often a round runs: the caBundle is
/// checked again, in case the configuration was applied again without it.
const RECHECK: Duration = Duration::from_secs(60);
/// After a failed write, or while the configuration does not exist.
const RETRY: Duration = Duration::from_secs(5);
/// After a write that another writer's came before.
const RACE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
enum KeepError {
    #[error("Secret {0}: {1}")]
    Store(ObjectKey, StoreError),
    #[error("Secret {0}: {1}")]
    Issue(ObjectKey, IssueError),
}

/// The elected replica's part: the Secret and the caBundle.
pub struct CertificateKeeper {
    pub store: SecretStore,
    pub secret: ObjectKey,
    /// The serving certificate's DNS names (the Service's).
    pub names: Vec<String>,
    /// The configuration to keep trusting the CA (with the API server).
    pub bundle: Option<CaBundle>,
    /// Whether the configuration was found missing last time (warned
    /// about once, not at every look).
    pub bundle_absent: bool,
    /// The last failure warned about, so that one that persists is
    /// warned about once, not at every retry.
    pub failing: Option<String>,
}

impl CertificateKeeper {
    /// Runs while the feed and the election do; writes only while
    /// `leading` says so.
    pub async fn run(mut self, mut feed: SecretFeed, mut leading: watch::Receiver<bool>) {
        loop {
            let mut wait = RECHECK;
            if *leading.borrow_and_update() {
                let seen = feed.borrow_and_update().clone();
                wait = self.round(seen.as_deref()).await;
            }
            tokio::select! {
                r = feed.changed() => if r.is_err() { return },
                r = leading.changed() => if r.is_err() { return },
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One round; returns how long until the next.
    async fn round(&mut self, seen: Option<&Secret>) -> Duration {
        let (ca, due) = match self.keep_secret(seen).await {
            Ok(kept) => kept,
            Err(KeepError::Store(key, StoreError::Conflict)) => {
                tracing::info!(target: "gatehouse::admission", secret = %key, "the webhook's Secret changed while it was being written; reading it again");
                return RACE;
            }
            Err(error) => {
                self.failed(format!("the webhook's certificate is not current: {error}"));
                return RETRY;
            }
        };
        let until_due = due.duration_since(SystemTime::now()).unwrap_or_default();
        let wait = until_due.min(RECHECK);
        let Some(bundle) = &self.bundle else {
            self.recovered();
            return wait;
        };
        let config = bundle.name.clone();
        let kept = bundle.keep(&ca).await;
        let was_absent =
            std::mem::replace(&mut self.bundle_absent, matches!(kept, Ok(Kept::Absent)));
        match kept {
            Ok(Kept::Current) => {
                self.recovered();
                wait
            }
            Ok(Kept::Patched(webhooks)) => {
                tracing::info!(target: "gatehouse::admission", configuration = %config, webhooks, "caBundle set to the webhook's CA");
                self.recovered();
                wait
            }
            Ok(Kept::Absent) => {
                if !was_absent {
                    tracing::warn!(target: "gatehouse::admission", configuration = %config, "no ValidatingWebhookConfiguration {config} to set the caBundle of; looking again every {}s", RETRY.as_secs());
                }
                RETRY
            }
            Err(error) => {
                self.failed(format!("the caBundle of {config} is not set: {error}"));
                RETRY
            }
        }
    }

    fn failed(&mut self, failure: String) {
        if self.failing.as_ref() != Some(&failure) {
            tracing::warn!(target: "gatehouse::admission", "{failure}; trying again every {}s", RETRY.as_secs());
            self.failing = Some(failure);
        }
    }

    fn recovered(&mut self) {
        if self.failing.take().is_some() {
            tracing::info!(target: "gatehouse::admission", "the webhook's certificate and caBundle are current again");
        }
    }

    /// Brings the Secret up to date; returns its CA (PEM) and when it
    /// falls due next.
    async fn keep_secret(&self, seen: Option<&Secret>) -> Result<(Vec<u8>, SystemTime), KeepError> {
        let now = SystemTime::now();
        if let Some(secret) = seen {
            let data = secret.data.clone().unwrap_or_default();
            if let Renewal::Current { due } = authority::renewal(&data, &self.names, now) {
                return Ok((ca_of(&data), due));
            }
        }
        let key = &self.secret;
        let store_error = |e| KeepError::Store(key.clone(), e);
        let stored = self.store.get(key).await.map_err(store_error)?;
        let data = stored
            .as_ref()
            .and_then(|s| s.data.clone())
            .unwrap_or_default();
        let upkeep = authority::upkeep(&data, &self.names, now);
        let (data, why) = match upkeep.map_err(|e| KeepError::Issue(key.clone(), e))? {
            Upkeep::Current { due } => return Ok((ca_of(&data), due)),
            Upkeep::Write { data, why } => (data, why),
        };
        let why = match &stored {
            None => "the Secret does not exist".to_owned(),
            Some(_) => why,
        };
        let ca = ca_of(&data);
        match stored {
            None => {
                self.store
                    .create(&new_secret(key, "kubernetes.io/tls", data))
                    .await
            }
            // Its type is kept: the API server refuses to change it.
            Some(mut secret) => {
                secret.data = Some(data);
                self.store.replace(&secret).await
            }
        }
        .map_err(store_error)?;
        tracing::info!(target: "gatehouse::admission", secret = %key, "webhook certificate issued: {why}");
        let due = now + authority::SERVING_LIFETIME * 2 / 3;
        Ok((ca, due))
    }
}

fn ca_of(data: &authority::Data) -> Vec<u8> {
    data.get(CA_CERTIFICATE)
        .map(|b| b.0.clone())
        .unwrap_or_default()
}
