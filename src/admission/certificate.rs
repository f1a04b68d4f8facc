//! The webhook's serving certificate: one resolver, whichever source
//! feeds it (the files of `--validating-webhook-certificate` and `-key`,
//! `files`; or the Secret Gatehouse manages itself, `managed`).
//!
//! A source offers each pair it reads; one whose bytes differ from the
//! pair in use is loaded and served from the next handshake on. A pair
//! that does not load (half-written, key of another certificate) leaves
//! the one in use serving. Until a first pair loads there is none, and
//! every handshake is refused: the webhook answers nothing rather than
//! present a certificate the API server was never told to trust.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::tls::{certified_key_from_pem, TlsError};

/// The pair the webhook serves, swapped whole.
#[derive(Default)]
pub struct ServingCertificate {
    loaded: ArcSwapOption<Loaded>,
}

struct Loaded {
    /// The PEM certificate chain and key it was loaded from.
    bytes: (Vec<u8>, Vec<u8>),
    key: Arc<CertifiedKey>,
}

impl std::fmt::Debug for ServingCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCertificate")
            .field("serving", &self.serving())
            .finish_non_exhaustive()
    }
}

impl ServingCertificate {
    /// Serves the PEM chain (leaf first) and key from the next handshake,
    /// unless they are the pair in use. Returns whether a new pair is
    /// now served; an error leaves the pair in use (or none) serving.
    pub fn offer(&self, certificate: &[u8], key: &[u8]) -> Result<bool, TlsError> {
        let unchanged = self.loaded.load().as_ref().is_some_and(|loaded| {
            loaded.bytes.0.as_slice() == certificate && loaded.bytes.1.as_slice() == key
        });
        if unchanged {
            return Ok(false);
        }
        let loaded = Loaded {
            bytes: (certificate.to_vec(), key.to_vec()),
            key: certified_key_from_pem(certificate, key)?,
        };
        self.loaded.store(Some(Arc::new(loaded)));
        Ok(true)
    }

    /// Whether a pair has loaded (handshakes are answered).
    pub fn serving(&self) -> bool {
        self.loaded.load().is_some()
    }
}

impl ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.loaded.load().as_ref().map(|loaded| loaded.key.clone())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A self-signed certificate for `host` and its key, in PEM.
    pub fn pair(host: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn leaf(serving: &ServingCertificate) -> Option<Vec<u8>> {
        let loaded = serving.loaded.load();
        loaded.as_ref().map(|l| l.key.cert[0].to_vec())
    }

    #[test]
    fn nothing_is_served_until_a_pair_loads_and_a_broken_pair_keeps_the_last_good_one() {
        let serving = ServingCertificate::default();
        let (first_crt, first_key) = pair("one.test");
        let (second_crt, second_key) = pair("two.test");
        assert!(serving
            .offer(second_crt.as_bytes(), first_key.as_bytes())
            .is_err());
        assert!(!serving.serving(), "a mismatched first pair serves nothing");

        assert!(serving
            .offer(first_crt.as_bytes(), first_key.as_bytes())
            .unwrap());
        let first = leaf(&serving);
        assert!(!serving
            .offer(first_crt.as_bytes(), first_key.as_bytes())
            .unwrap());
        assert!(matches!(
            serving.offer(second_crt.as_bytes(), first_key.as_bytes()),
            Err(TlsError::KeyMismatch)
        ));
        assert!(matches!(
            serving.offer(b"", first_key.as_bytes()),
            Err(TlsError::NoCertificate)
        ));
        assert_eq!(leaf(&serving), first);

        assert!(serving
            .offer(second_crt.as_bytes(), second_key.as_bytes())
            .unwrap());
        assert_ne!(leaf(&serving), first);
    }
}
