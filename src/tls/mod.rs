//! TLS helpers shared by translate, policy and the proxy: the crypto
//! provider, certificates and keys loaded from Secrets or DER, and the
//! versions and suites offered (`ssl-protocols`, `ssl-ciphers`).
//!
//! A leaf: it imports no other module of Gatehouse.

mod keys;
mod settings;

pub use keys::{certified_key, certified_key_from_der, not_after, provider, TlsError};
pub use settings::{tls_choice, TlsSettings};
