//! How each requested certificate stands, as the replica that leads sees
//! it: for `/debug/certs`, `gatehouse_acme_certificates` and the logs.
//! Written by the ACME manager, read by the admin endpoints. Replicas
//! that do not lead have no entries (they place no orders).

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;

/// Where a certificate is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CertificateState {
    /// Held for exactly the names asked for, not yet due for renewal.
    Valid,
    /// Due (never issued, names changed, or renewal time reached) and
    /// not failed since.
    Pending,
    /// The last attempt failed; the next waits for its backoff.
    Failed,
}

impl CertificateState {
    pub const ALL: [CertificateState; 3] = [
        CertificateState::Valid,
        CertificateState::Pending,
        CertificateState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CertificateState::Valid => "valid",
            CertificateState::Pending => "pending",
            CertificateState::Failed => "failed",
        }
    }
}

/// One requested certificate. Times are Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertificateStatus {
    /// `NAMESPACE/NAME` of the Secret it is stored in.
    pub secret: String,
    pub issuer: String,
    /// The object that asks for it: `Ingress NAMESPACE/NAME` or
    /// `Gateway NAMESPACE/NAME`.
    pub owner: String,
    pub hosts: Vec<String>,
    pub state: CertificateState,
    /// The held certificate's notAfter, when one is held.
    pub not_after: Option<i64>,
    /// When it is renewed, or (failed) when the next attempt may start.
    pub next_attempt: Option<i64>,
    /// Failed attempts since the last success.
    pub failures: usize,
    /// The last failure, as the CA or the store put it.
    pub last_error: Option<String>,
}

/// The statuses, swapped whole on every change.
#[derive(Clone, Default)]
pub struct AcmeStatus(Arc<ArcSwap<BTreeMap<String, CertificateStatus>>>);

impl AcmeStatus {
    pub fn publish(&self, statuses: BTreeMap<String, CertificateStatus>) {
        self.0.store(Arc::new(statuses));
    }

    /// By Secret (`NAMESPACE/NAME`).
    pub fn current(&self) -> Arc<BTreeMap<String, CertificateStatus>> {
        self.0.load_full()
    }
}
