//! ACME Renewal Information (ARI, RFC 9773): the CA says when each of its
//! certificates should be renewed, so that it can spread renewals out and
//! ask for early ones (a revocation, an incident). The leader asks for
//! every certificate it holds from a CA that offers it, renews in the
//! suggested window, and names the certificate being replaced in the new
//! order. Where the CA does not offer ARI, or does not know the
//! certificate (one from another CA), renewal follows the lifetime rule of
//! `crate::acme::schedule`.

use std::time::SystemTime;

use instant_acme::{Account, CertificateIdentifier};

use crate::acme::schedule;

/// What the CA suggested for one certificate, and when to ask again.
#[derive(Clone, Debug)]
pub struct Suggestion {
    pub certificate: CertificateIdentifier<'static>,
    /// When to renew: a point in the CA's window; `None` when the CA gave
    /// no window (no ARI, an unknown certificate, an error).
    pub renew_at: Option<SystemTime>,
    pub ask_again: SystemTime,
}

impl Suggestion {
    /// Asks the CA of `account` about `certificate`; `seed` picks the
    /// point in the window (the same on every replica).
    pub async fn ask(
        account: &Account,
        certificate: &CertificateIdentifier<'static>,
        seed: u64,
        now: SystemTime,
    ) -> Suggestion {
        let (renew_at, ask_again) = match account.renewal_info(certificate).await {
            Ok((info, retry_after)) => {
                let window = info.suggested_window;
                let renew =
                    schedule::renewal_in_window(window.start.into(), window.end.into(), seed, now);
                (Some(renew), schedule::next_window_check(retry_after, now))
            }
            // No ARI at this CA: ask again in a day, in case it starts.
            Err(instant_acme::Error::Unsupported(_)) => (None, now + schedule::ARI_LATEST),
            Err(e) => {
                tracing::debug!(target: "gatehouse::acme", certificate = %certificate, "no renewal window from the CA, renewing by the certificate's lifetime: {}", super::chain(&e));
                (None, now + schedule::ARI_AFTER_FAILURE)
            }
        };
        Suggestion {
            certificate: certificate.clone(),
            renew_at,
            ask_again,
        }
    }

    /// No window for `certificate` until `ask_again`.
    pub fn unknown(
        certificate: CertificateIdentifier<'static>,
        ask_again: SystemTime,
    ) -> Suggestion {
        Suggestion {
            certificate,
            renew_at: None,
            ask_again,
        }
    }

    /// The certificate a new order replaces: this one, when the CA knows
    /// it (it gave a window for it).
    pub fn replaces(&self) -> Option<&CertificateIdentifier<'static>> {
        self.renew_at.map(|_| &self.certificate)
    }
}
