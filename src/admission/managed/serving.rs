//! Every replica serves the pair the managed Secret holds (`tls.crt`,
//! `tls.key`), from each version of it, whether or not it leads: reading
//! is all it takes. Until the Secret holds a pair that loads, the webhook
//! refuses every handshake; a version that does not load, or the
//! Secret's deletion, leaves the last pair that loaded serving. Each is
//! logged with the Secret's name and what is wrong, never its content.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;

use super::authority::{CERTIFICATE, KEY};
use super::feed::SecretFeed;
use crate::admission::certificate::ServingCertificate;
use crate::cluster::ObjectKey;
use crate::tls::TlsError;

/// Offers each version of the Secret to `serving`, for as long as the
/// feed runs.
pub async fn follow(serving: Arc<ServingCertificate>, mut feed: SecretFeed, key: ObjectKey) {
    loop {
        let seen = feed.borrow_and_update().clone();
        offer(&serving, seen.as_deref(), &key);
        if feed.changed().await.is_err() {
            return;
        }
    }
}

/// Offers one version of the Secret (or its absence), and says what
/// became of it.
pub fn offer(serving: &ServingCertificate, secret: Option<&Secret>, key: &ObjectKey) {
    let before = serving.serving();
    let Some(secret) = secret else {
        match before {
            true => {
                tracing::warn!(target: "gatehouse::admission", secret = %key, "the webhook's Secret is gone; its last pair keeps serving until the elected replica writes it again")
            }
            false => {
                tracing::info!(target: "gatehouse::admission", secret = %key, "the webhook answers no handshake until its Secret exists (the elected replica creates it)")
            }
        }
        return;
    };
    match pair(secret).and_then(|(crt, key)| serving.offer(crt, key)) {
        Ok(true) => {
            tracing::info!(target: "gatehouse::admission", secret = %key, "webhook certificate loaded from its Secret")
        }
        Ok(false) => {}
        Err(error) if before => {
            tracing::error!(target: "gatehouse::admission", secret = %key, "the webhook's Secret does not load, the previous pair still serves: {error}")
        }
        Err(error) => {
            tracing::error!(target: "gatehouse::admission", secret = %key, "the webhook's Secret does not load, so the webhook answers no handshake: {error}")
        }
    }
}

fn pair(secret: &Secret) -> Result<(&[u8], &[u8]), TlsError> {
    let field = |name: &'static str| {
        let data = secret.data.as_ref();
        let bytes = data.and_then(|d| d.get(name)).map(|b| b.0.as_slice());
        bytes
            .filter(|b| !b.is_empty())
            .ok_or(TlsError::MissingField(name))
    };
    Ok((field(CERTIFICATE)?, field(KEY)?))
}
