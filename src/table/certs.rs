//! Certificates by server name, read by the TLS resolver on every handshake.

use std::fmt;
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::host::{HostMap, HostPattern};
use crate::cluster::ObjectKey;
use crate::connection::normalize_host;

/// What a handshake gets for its server name.
#[derive(Debug)]
pub enum Handshake<'a> {
    /// The certificate of the name, or the configured default.
    Cert(&'a CertEntry),
    /// The certificate Gatehouse generated at start.
    Generated,
    /// No certificate: the handshake fails.
    Refused,
}

/// A usable certificate and the Secret it came from.
#[derive(Clone)]
pub struct CertEntry {
    pub key: Arc<CertifiedKey>,
    pub secret: ObjectKey,
    /// The leaf's notAfter (Unix time), read once when the Secret is parsed.
    pub not_after: Option<i64>,
    /// The `AcmeIssuer` that issued it, when Gatehouse did (the Secret's
    /// `gatehouse.dev/acme-issuer` annotation).
    pub acme_issuer: Option<String>,
}

/// Names the Secret only: the key must never reach a log.
impl fmt::Debug for CertEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertEntry({})", self.secret)
    }
}

/// Server name → certificate: exact name, then wildcard. Names with no entry
/// get the default certificate, which the resolver owns, unless they are
/// refused.
#[derive(Debug, Default, Clone)]
pub struct CertStore {
    /// Shared entries: the map's nodes stay small.
    hosts: HostMap<Arc<CertEntry>>,
    /// Names no handshake is completed for when no certificate covers
    /// them: the hostnames of a Gateway HTTPS listener whose certificate
    /// cannot be used (it is not programmed; the default certificate
    /// would serve it as if it were).
    refused: HostMap<()>,
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

    /// Refuses handshakes for the names of `host` that no certificate
    /// covers (`Any` is never refused).
    pub fn refuse(&mut self, host: &HostPattern) {
        self.refused.insert_first(host, ());
    }

    /// Makes this TLS host's certificate (or refusal) what it is in
    /// `from`, or none.
    pub(super) fn copy_pattern(&mut self, from: &CertStore, host: &HostPattern) {
        self.hosts.copy_pattern(&from.hosts, host);
        self.refused.copy_pattern(&from.refused, host);
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

    /// The certificate for a name: by name, else the configured default;
    /// `None` leaves the choice to the generated certificate. Refused
    /// names are not told apart here; handshakes ask `for_handshake`.
    pub fn resolve_or_default(&self, server_name: Option<&str>) -> Option<&CertEntry> {
        match self.for_handshake(server_name) {
            Handshake::Cert(entry) => Some(entry),
            Handshake::Generated | Handshake::Refused => None,
        }
    }

    /// What a handshake for `server_name` gets: a certificate that covers
    /// the name; else, for a refused name, nothing; else the default.
    pub fn for_handshake(&self, server_name: Option<&str>) -> Handshake<'_> {
        let Some(name) = server_name else {
            return self.default_or_generated();
        };
        let name = normalize_host(name);
        if let Some(entry) = self.hosts.get(&name) {
            return Handshake::Cert(entry);
        }
        if !self.refused.is_empty() && self.refused.get(&name).is_some() {
            return Handshake::Refused;
        }
        self.default_or_generated()
    }

    fn default_or_generated(&self) -> Handshake<'_> {
        match &self.default {
            Some(entry) => Handshake::Cert(entry),
            None => Handshake::Generated,
        }
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
