//! Certificates from an ACME CA, obtained by the replica that leads: the
//! account, the orders, where certificates and answers are written, and
//! the loop that keeps every requested certificate current. What every
//! replica reads (the issuer kind, the answers, the schedule) is
//! `crate::acme`.

pub mod account;
pub mod events;
pub mod manager;
pub mod order;
pub mod orders;
pub mod renewal_info;
pub mod store;

pub use events::ClusterReport;
pub use manager::Manager;
pub use order::Answers;
pub use store::SecretStore;

/// An error and its sources, as one line: the ACME client's own message
/// often says only "client error", and the reason is further down.
fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}
