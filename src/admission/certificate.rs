//! The webhook's serving certificate from files
//! (`--validating-webhook-certificate`, `--validating-webhook-key`),
//! read again when they change.
//!
//! The files are usually a mounted Secret (cert-manager's, renewed in
//! place), which the kubelet swaps by renaming a directory: a change of
//! content is what counts, not an event on a path. So the pair is read
//! every `RELOAD_EVERY` and loaded when its bytes differ from the pair in
//! use. A pair that does not load (half-written, key of another
//! certificate) keeps the previous one serving, and is logged without
//! its content.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::tls::{certified_key_from_der, TlsError};

/// How often the files are read again.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Invalid { path: PathBuf, source: TlsError },
}

/// The certificate and key files, and what was last read from them.
pub struct CertificateFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
    loaded: ArcSwap<Loaded>,
}

struct Loaded {
    bytes: (Vec<u8>, Vec<u8>),
    key: Arc<CertifiedKey>,
}

impl fmt::Debug for CertificateFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateFiles")
            .field("certificate", &self.certificate)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl CertificateFiles {
    /// Loads the pair; an error names the file.
    pub fn load(certificate: PathBuf, key: PathBuf) -> Result<Self, CertificateError> {
        let bytes = read_pair(&certificate, &key)?;
        let loaded = parse(&certificate, bytes)?;
        Ok(CertificateFiles {
            certificate,
            key,
            loaded: ArcSwap::from_pointee(loaded),
        })
    }

    /// Reads the pair again; loads it if its bytes changed. Returns
    /// whether a new pair is now served.
    pub fn reload(&self) -> Result<bool, CertificateError> {
        let bytes = read_pair(&self.certificate, &self.key)?;
        if bytes == self.loaded.load().bytes {
            return Ok(false);
        }
        self.loaded
            .store(Arc::new(parse(&self.certificate, bytes)?));
        Ok(true)
    }

    /// Reloads every `RELOAD_EVERY`, for as long as the webhook serves.
    pub async fn follow(self: Arc<Self>) {
        let mut every = tokio::time::interval(RELOAD_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match self.reload() {
                Ok(true) => {
                    tracing::info!(target: "gatehouse::admission", certificate = %self.certificate.display(), "webhook certificate reloaded")
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(target: "gatehouse::admission", "webhook certificate not reloaded, the previous one still serves: {error}")
                }
            }
        }
    }
}

impl ResolvesServerCert for CertificateFiles {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.loaded.load().key.clone())
    }
}

fn read_pair(certificate: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), CertificateError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertificateError::Read {
            path: path.to_owned(),
            source,
        })
    };
    Ok((read(certificate)?, read(key)?))
}

fn parse(certificate: &Path, bytes: (Vec<u8>, Vec<u8>)) -> Result<Loaded, CertificateError> {
    let invalid = |source| CertificateError::Invalid {
        path: certificate.to_owned(),
        source,
    };
    let chain = CertificateDer::pem_slice_iter(&bytes.0)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(TlsError::BadCertificatePem(e.to_string())))?;
    if chain.is_empty() {
        return Err(invalid(TlsError::NoCertificate));
    }
    let key = PrivateKeyDer::from_pem_slice(&bytes.1)
        .map_err(|e| invalid(TlsError::BadKey(e.to_string())))?;
    let key = certified_key_from_der(chain, key).map_err(invalid)?;
    Ok(Loaded { bytes, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(host: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn leaf(files: &CertificateFiles) -> Vec<u8> {
        files.loaded.load().key.cert[0].to_vec()
    }

    #[test]
    fn a_changed_pair_is_served_and_a_broken_one_keeps_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let first = pair("one.test");
        std::fs::write(&crt, &first.0).unwrap();
        std::fs::write(&key, &first.1).unwrap();
        let files = CertificateFiles::load(crt.clone(), key.clone()).unwrap();
        let before = leaf(&files);
        assert!(
            !files.reload().unwrap(),
            "unchanged files are not loaded again"
        );

        // Half-written: the new certificate with the old key.
        let second = pair("two.test");
        std::fs::write(&crt, &second.0).unwrap();
        assert!(matches!(
            files.reload(),
            Err(CertificateError::Invalid { .. })
        ));
        assert_eq!(leaf(&files), before);

        std::fs::write(&key, &second.1).unwrap();
        assert!(files.reload().unwrap());
        assert_ne!(leaf(&files), before);
    }
}
