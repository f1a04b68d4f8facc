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
//!
//! When a new CA must be made (the old one is missing, unusable or near
//! its end), the API server is first told to trust it beside what it
//! trusted until then, and only then is the Secret written: replicas take
//! the new pair in their own time, and until `OVERLAP` has passed the
//! `caBundle` holds both, so that none of them is distrusted meanwhile.

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
/// How long the `caBundle` trusts the CA replaced beside the new one:
/// far longer than replicas take to serve from the new Secret.
const OVERLAP: Duration = Duration::from_secs(10 * 60);

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
    /// After a new CA: what the API server trusted before it (PEM), kept
    /// in the `caBundle` beside it until the time given.
    pub overlap: Option<(Vec<u8>, SystemTime)>,
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
        let now = SystemTime::now();
        // An overlap under way bounds the wait; one that has ended is
        // dropped.
        let overlap_left = self.overlap.as_ref().and_then(|(_, until)| {
            let left = until.duration_since(now).ok();
            left.filter(|left| !left.is_zero())
        });
        if overlap_left.is_none() {
            self.overlap = None;
        }
        let trust = trust(&ca, self.overlap.as_ref(), now);
        let until_due = due.duration_since(now).unwrap_or_default();
        let wait = until_due.min(RECHECK).min(overlap_left.unwrap_or(RECHECK));
        let Some(bundle) = &self.bundle else {
            self.recovered();
            return wait;
        };
        let config = bundle.name.clone();
        let kept = bundle.keep(&trust).await;
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
    async fn keep_secret(
        &mut self,
        seen: Option<&Secret>,
    ) -> Result<(Vec<u8>, SystemTime), KeepError> {
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
        let stored_data = stored
            .as_ref()
            .and_then(|s| s.data.clone())
            .unwrap_or_default();
        let upkeep = authority::upkeep(&stored_data, &self.names, now);
        let (data, why) = match upkeep.map_err(|e| KeepError::Issue(key.clone(), e))? {
            Upkeep::Current { due } => return Ok((ca_of(&stored_data), due)),
            Upkeep::Write { data, why } => (data, why),
        };
        let why = match &stored {
            None => "the Secret does not exist".to_owned(),
            Some(_) => why,
        };
        let ca = ca_of(&data);
        if ca != ca_of(&stored_data) {
            if let Some(overlap) = self.trust_beside(&ca, now).await {
                self.overlap = Some(overlap);
            }
        }
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

    /// Before the Secret of a new CA is written: the `caBundle` trusts it
    /// beside what the API server trusted until now (what of that is
    /// still valid); returns that overlap, to last `OVERLAP`. Nothing to
    /// do at the first CA. When the configuration cannot be read or
    /// patched, the Secret is written all the same (a webhook with a new
    /// CA beats one with none), and the rounds that follow set the
    /// caBundle.
    async fn trust_beside(&self, ca: &[u8], now: SystemTime) -> Option<(Vec<u8>, SystemTime)> {
        let bundle = self.bundle.as_ref()?;
        let before = match bundle.trusted().await {
            Ok(before) => authority::unexpired_certificates(&before.unwrap_or_default(), now),
            Err(error) => {
                overlap_failed(&bundle.name, &error);
                return None;
            }
        };
        if before.is_empty() {
            return None;
        }
        let overlap = (before, now + OVERLAP);
        if let Err(error) = bundle.keep(&trust(ca, Some(&overlap), now)).await {
            overlap_failed(&bundle.name, &error);
        }
        // Kept either way: the rounds that follow set both.
        Some(overlap)
    }
}

fn overlap_failed(config: &str, error: &kube::Error) {
    tracing::warn!(target: "gatehouse::admission", configuration = %config, "the caBundle could not trust the new CA beside the old one before the Secret changed: {error}");
}

/// What the `caBundle` must hold at `now`: the CA (PEM), and until an
/// overlap ends, what was trusted before it.
fn trust(ca: &[u8], overlap: Option<&(Vec<u8>, SystemTime)>, now: SystemTime) -> Vec<u8> {
    match overlap {
        Some((before, until)) if *until > now && !before.is_empty() => {
            let mut both = ca.to_vec();
            if !both.ends_with(b"\n") {
                both.push(b'\n');
            }
            both.extend_from_slice(before);
            both
        }
        _ => ca.to_vec(),
    }
}

fn ca_of(data: &authority::Data) -> Vec<u8> {
    data.get(CA_CERTIFICATE)
        .map(|b| b.0.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_holds_the_old_trust_beside_the_new_ca_until_the_overlap_ends() {
        let now = SystemTime::now();
        let overlap = (b"OLD\n".to_vec(), now + OVERLAP);
        assert_eq!(trust(b"NEW\n", Some(&overlap), now), b"NEW\nOLD\n");
        assert_eq!(trust(b"NEW", Some(&overlap), now), b"NEW\nOLD\n");
        assert_eq!(trust(b"NEW\n", Some(&overlap), now + OVERLAP), b"NEW\n");
        assert_eq!(trust(b"NEW\n", None, now), b"NEW\n");
        let nothing_before = (Vec::new(), now + OVERLAP);
        assert_eq!(trust(b"NEW\n", Some(&nothing_before), now), b"NEW\n");
    }
}
