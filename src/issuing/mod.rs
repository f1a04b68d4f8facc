//! Certificates from an ACME CA, obtained by the replica that leads: the
//! account, the orders, where certificates and answers are written, and
//! the loop that keeps every requested certificate current. What every
//! replica reads (the issuer kind, the answers, the schedule) is
//! `crate::acme`.

pub mod account;
pub mod manager;
pub mod order;
pub mod orders;
pub mod store;

pub use manager::Manager;
pub use order::Answers;
pub use store::SecretStore;
