//! TLS helpers shared by translate, policy and the proxy: the crypto
//! provider, certificates and keys loaded from Secrets or DER, the
//! versions and suites offered (`ssl-protocols`, `ssl-ciphers`) in the
//! server's order, and session resumption (tickets and their keys).
//!
//! A leaf: it imports no other module of Gatehouse.

mod keys;
mod names;
mod resumption;
mod settings;

pub use keys::{
    certified_key, certified_key_from_der, certified_key_from_pem, load_signing_key, not_after,
    provider, TlsError,
};
pub use names::openssl_names;
pub use resumption::{session_cache, ticketer, SESSION_LIFETIME, TICKET_KEY_ROTATION};
pub use settings::{
    preference, server_config, tls_choice, Preference, TlsSettings, TLS12_ORDER, TLS13_ORDER,
};
