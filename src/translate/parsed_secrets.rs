//! TLS Secrets parsed once per build however many hosts name them, in
//! parallel at the start of a build, and kept for the next build, which
//! parses again only the Secrets whose certificate or key changed.

use std::sync::Arc;

use foldhash::{HashSet, HashSetExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;

use super::{Build, TranslateOptions};
use crate::cluster::{tls_secret_keys, ObjectKey};
use crate::table::CertEntry;
use crate::tls::{self, certified_key, TlsError};

/// One parsed Secret: the object it came from (unchanged objects are the
/// same `Arc`, which is checked first), the fingerprint of its bytes (for a
/// re-read object with the same content), and the outcome.
#[derive(Clone, Debug)]
pub(super) struct Parsed {
    source: Arc<Secret>,
    fingerprint: u64,
    result: Result<CertEntry, TlsError>,
}

impl Parsed {
    fn fresh(key: &ObjectKey, secret: &Arc<Secret>) -> Self {
        Parsed {
            source: secret.clone(),
            fingerprint: fingerprint(secret),
            result: parse_secret(key, secret),
        }
    }

    fn reusable_for(&self, secret: &Arc<Secret>) -> bool {
        Arc::ptr_eq(&self.source, secret) || self.fingerprint == fingerprint(secret)
    }
}

/// A fingerprint of what a Secret's certificate depends on.
fn fingerprint(secret: &Secret) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    secret.type_.hash(&mut hasher);
    for key in ["tls.crt", "tls.key"] {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| &b.0)
            .hash(&mut hasher);
    }
    hasher.finish()
}

impl Build<'_> {
    /// Parses, on every core, the referenced Secrets the previous build
    /// cannot provide: at start-up that is all of them, and certificate
    /// parsing is most of a cold build.
    pub(super) fn preparse(
        &mut self,
        ingresses: &[(&ObjectKey, &Ingress)],
        options: &TranslateOptions,
    ) {
        let mut wanted: Vec<(ObjectKey, Arc<Secret>)> = Vec::new();
        let mut queued = HashSet::new();
        let names = ingresses
            .iter()
            .flat_map(|(_, ingress)| tls_secret_keys(ingress));
        for key in names.chain(options.default_ssl_certificate.clone()) {
            if self.certs.contains_key(&key) || queued.contains(&key) {
                continue;
            }
            let Some(secret) = self.state.secrets.get(&key) else {
                continue;
            };
            match self.reused(&key, secret) {
                Some(parsed) => {
                    self.certs.insert(key, parsed);
                }
                None => {
                    queued.insert(key.clone());
                    wanted.push((key, secret.clone()));
                }
            }
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = wanted.len().div_ceil(threads).max(16);
        let parsed: Vec<Vec<(ObjectKey, Parsed)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = wanted
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(key, secret)| (key.clone(), Parsed::fresh(key, secret)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().filter_map(|w| w.join().ok()).collect()
        });
        // A Secret a failed worker did not return is parsed by `cert`.
        self.certs.extend(parsed.into_iter().flatten());
    }

    /// The previous build's result for this Secret, if it still applies.
    fn reused(&self, key: &ObjectKey, secret: &Arc<Secret>) -> Option<Parsed> {
        let parsed = self
            .previous
            .secrets
            .get(key)
            .filter(|p| p.reusable_for(secret))?;
        Some(Parsed {
            source: secret.clone(),
            ..parsed.clone()
        })
    }

    pub(super) fn cert(&mut self, secret: &ObjectKey) -> Result<CertEntry, TlsError> {
        if let Some(done) = self.certs.get(secret) {
            return done.result.clone();
        }
        let Some(object) = self.state.secrets.get(secret) else {
            return Err(TlsError::NotFound);
        };
        let parsed = self
            .reused(secret, object)
            .unwrap_or_else(|| Parsed::fresh(secret, object));
        let result = parsed.result.clone();
        self.certs.insert(secret.clone(), parsed);
        result
    }
}

fn parse_secret(key: &ObjectKey, secret: &Secret) -> Result<CertEntry, TlsError> {
    certified_key(secret).map(|certified| CertEntry {
        not_after: tls::not_after(&certified),
        key: certified,
        secret: key.clone(),
        acme_issuer: secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::acme::ISSUED_BY_ANNOTATION))
            .cloned(),
    })
}
