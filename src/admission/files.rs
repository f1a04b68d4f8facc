//! The webhook's serving certificate from files
//! (`--validating-webhook-certificate`, `--validating-webhook-key`),
//! read again when they change.
//!
//! The files are usually a mounted Secret (cert-manager's, renewed in
//! place), which the kubelet swaps by renaming a directory: a change of
//! content is what counts, not an event on a path. So the pair is read
//! every `RELOAD_EVERY` and offered to the serving certificate, which
//! loads it when its bytes differ from the pair in use. A pair that does
//! not load keeps the previous one serving, and is logged without its
//! content.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::certificate::ServingCertificate;
use crate::tls::TlsError;

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

/// The certificate and key files, and the certificate they feed.
#[derive(Debug)]
pub struct CertificateFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
    serving: Arc<ServingCertificate>,
}

impl CertificateFiles {
    /// Loads the pair into `serving`; an error names the file.
    pub fn load(
        certificate: PathBuf,
        key: PathBuf,
        serving: Arc<ServingCertificate>,
    ) -> Result<Self, CertificateError> {
        let files = CertificateFiles {
            certificate,
            key,
            serving,
        };
        files.reload()?;
        Ok(files)
    }

    /// Reads the pair again and offers it. Returns whether a new pair is
    /// now served.
    pub fn reload(&self) -> Result<bool, CertificateError> {
        let (certificate, key) = read_pair(&self.certificate, &self.key)?;
        self.serving
            .offer(&certificate, &key)
            .map_err(|source| CertificateError::Invalid {
                path: self.certificate.clone(),
                source,
            })
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

fn read_pair(certificate: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), CertificateError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertificateError::Read {
            path: path.to_owned(),
            source,
        })
    };
    Ok((read(certificate)?, read(key)?))
}

#[cfg(test)]
mod tests {
    use super::super::certificate::tests::pair;
    use super::*;

    #[test]
    fn a_changed_pair_is_served_and_a_half_written_one_keeps_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let first = pair("one.test");
        std::fs::write(&crt, &first.0).unwrap();
        std::fs::write(&key, &first.1).unwrap();
        let serving = Arc::new(ServingCertificate::default());
        let files = CertificateFiles::load(crt.clone(), key.clone(), serving.clone()).unwrap();
        assert!(serving.serving());
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
        std::fs::write(&key, &second.1).unwrap();
        assert!(files.reload().unwrap());
    }

    #[test]
    fn a_pair_that_does_not_load_at_start_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&crt, "not a certificate").unwrap();
        std::fs::write(&key, pair("one.test").1).unwrap();
        let serving = Arc::new(ServingCertificate::default());
        let error = CertificateFiles::load(crt.clone(), key, serving.clone()).unwrap_err();
        assert!(error.to_string().contains("tls.crt"), "{error}");
        assert!(!serving.serving());
    }
}
