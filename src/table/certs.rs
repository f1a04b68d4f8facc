//! Certificates by server name, read by the TLS resolver on every handshake.

use std::fmt;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::host::{HostMap, HostPattern};
use crate::cluster::ObjectKey;
use crate::connection::normalize_host;

/// A usable certificate and the Secret it came from.
#[derive(Clone)]
pub struct CertEntry {
    pub key: Arc<CertifiedKey>,
    pub secret: ObjectKey,
    /// The leaf's notAfter (Unix time), read once when the Secret is parsed.
    pub not_after: Option<i64>,
}

/// Names the Secret only: the key must never reach a log.
impl fmt::Debug for CertEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertEntry({})", self.secret)
    }
}

/// Server name → certificate: exact name, then wildcard. Names with no entry
/// get the default certificate, which the resolver owns.
#[derive(Debug, Default, Clone)]
pub struct CertStore {
    /// Shared entries: the map's nodes stay small.
    hosts: HostMap<Arc<CertEntry>>,
    /// `--default-ssl-certificate`, when set and usable; else the
    /// certificate of a Gateway HTTPS listener without a hostname.
    default: Option<CertEntry>,
}

impl CertStore {
    /// Adds a certificate for a TLS host unless one is already there (the
    /// oldest Ingress wins). Returns false when the host was taken.
    pub fn insert_first(&mut self, host: &HostPattern, entry: CertEntry) -> bool {
        self.hosts.insert_first(host, Arc::new(entry))
    }

    pub fn resolve(&self, server_name: &str) -> Option<&CertEntry> {
        self.hosts.get(&normalize_host(server_name)).map(|e| &**e)
    }

    /// Makes this TLS host's certificate what it is in `from`, or none.
    pub(super) fn copy_pattern(&mut self, from: &CertStore, host: &HostPattern) {
        self.hosts.copy_pattern(&from.hosts, host);
    }

    /// Takes `from`'s default certificate (or its absence).
    pub(super) fn copy_default(&mut self, from: &CertStore) {
        self.default = from.default.clone();
    }

    pub fn set_default(&mut self, entry: CertEntry) {
        self.default = Some(entry);
    }

    pub fn has_default(&self) -> bool {
        self.default.is_some()
    }

    /// The certificate for a handshake: by name, else the configured
    /// default; `None` leaves the choice to the generated certificate.
    pub fn resolve_or_default(&self, server_name: Option<&str>) -> Option<&CertEntry> {
        server_name
            .and_then(|name| self.resolve(name))
            .or(self.default.as_ref())
    }

    /// The TLS hosts whose entry differs (by identity) between this store
    /// and `newer`, with the entry of each side.
    pub fn diff<'a>(
        &'a self,
        newer: &'a CertStore,
    ) -> Vec<(HostPattern, Option<&'a CertEntry>, Option<&'a CertEntry>)> {
        let changed = self.hosts.diff(&newer.hosts, Arc::ptr_eq);
        changed
            .into_iter()
            .map(|(host, before, after)| (host, before.map(|e| &**e), after.map(|e| &**e)))
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (HostPattern, &CertEntry)> {
        self.hosts.iter().map(|(host, entry)| (host, &**entry))
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}
