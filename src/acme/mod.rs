//! ACME (RFC 8555) certificates, the parts that need no CA: the
//! `AcmeIssuer` kind, the store of challenge answers that every replica
//! serves, and when to renew and retry. Placing orders is not here yet.

pub mod challenges;
pub mod issuer;
pub mod schedule;

pub use challenges::{ChallengeAnswers, CHALLENGES_SECRET};
pub use issuer::{AcmeIssuer, AcmeIssuerSpec, AcmeIssuerStatus, ChallengeType};
