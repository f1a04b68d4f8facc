//! ACME (RFC 8555) certificates, the parts every layer reads: the
//! `AcmeIssuer` kind, the challenge answers every replica serves, when
//! to renew and retry, and how each certificate stands. Talking to the CA is `crate::issuing`'s.

pub mod challenges;
pub mod issuer;
pub mod schedule;
pub mod status;

/// The annotation on a Secret Gatehouse issued, naming the `AcmeIssuer`.
pub const ISSUED_BY_ANNOTATION: &str = "gatehouse.dev/acme-issuer";

pub use challenges::{ChallengeAnswers, CHALLENGES_SECRET};
pub use issuer::{AcmeIssuer, AcmeIssuerSpec, AcmeIssuerStatus, ChallengeType};
