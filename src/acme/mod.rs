//! ACME (RFC 8555) certificates: the `AcmeIssuer` kind, the accounts,
//! the orders the leading replica places, the challenge answers every
//! replica serves, and when to renew and retry.

pub mod account;
pub mod challenges;
pub mod issuer;
pub mod manager;
pub mod order;
pub mod schedule;
pub mod store;

pub use challenges::{ChallengeAnswers, CHALLENGES_SECRET};
pub use issuer::{AcmeIssuer, AcmeIssuerSpec, AcmeIssuerStatus, ChallengeType};
pub use manager::Manager;
pub use order::Answers;
pub use store::SecretStore;
