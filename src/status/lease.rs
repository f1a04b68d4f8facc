//! Leader election on a `coordination.k8s.io/v1` Lease, so that of N
//! replicas exactly one writes Ingress status and Events (all serve traffic).
//!
//! The holder renews the Lease every `RENEW` seconds; another replica takes
//! it over only when it has not been renewed for `DURATION`. Every write
//! carries the Lease's resourceVersion, so two replicas racing for an
//! expired Lease cannot both win: the API server refuses the second (409).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// How long a Lease stays valid without renewal.
pub const DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews (and others check).
pub const RENEW: Duration = Duration::from_secs(5);

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

impl Elector {
    pub fn new(api: Api<Lease>, name: String, identity: String) -> Self {
        Elector {
            api,
            name,
            identity,
        }
    }

    /// Runs the election forever, publishing whether we lead.
    pub async fn run(self, leading: watch::Sender<bool>, every: Duration) {
        let mut failing = false;
        loop {
            let outcome = self.try_lead().await;
            match outcome {
                Ok(lead) => {
                    if failing {
                        tracing::info!(target: "gatehouse::status", "leader election works again");
                        failing = false;
                    }
                    if *leading.borrow() != lead {
                        tracing::info!(target: "gatehouse::status", identity = %self.identity, lease = %self.name, "{}", if lead { "became leader" } else { "lost leadership" });
                    }
                    let _ = leading.send(lead);
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(target: "gatehouse::status", "leader election failed, not writing status until it works: {e}");
                        failing = true;
                    }
                    // Without a renewal we cannot be sure we still lead.
                    let _ = leading.send(false);
                }
            }
            tokio::time::sleep(every).await;
        }
    }

    /// One round: create, renew or take over the Lease. `Ok(true)` when we
    /// hold it afterwards.
    async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = match self.api.get_opt(&self.name).await? {
            Some(lease) => lease,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(now, now, 0)),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                };
            }
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref();
        let renewed = spec.renew_time.as_ref().map(|t| t.0);
        let duration = SignedDuration::from_secs(i64::from(
            spec.lease_duration_seconds
                .unwrap_or(DURATION.as_secs() as i32),
        ));
        let expired = renewed.is_none_or(|t| t + duration < now);
        let (acquired, transitions) = match holder {
            Some(me) if me == self.identity => (
                spec.acquire_time.map_or(now, |t| t.0),
                spec.lease_transitions.unwrap_or(0),
            ),
            _ if expired => (now, spec.lease_transitions.unwrap_or(0) + 1),
            _ => return Ok(false),
        };
        let mut lease = current;
        lease.spec = Some(self.spec(acquired, now, transitions));
        // `replace` sends metadata.resourceVersion: a concurrent writer wins
        // and we get 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(DURATION.as_secs() as i32),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}
