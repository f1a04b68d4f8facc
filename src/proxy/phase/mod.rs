//! The phases a routed request passes, in ingress-nginx's order. The
//! handler calls them in turn; each is a short function over the request
//! context and the route's compiled policies, and knows no annotation.
//!
//! 1. connection: the client's address, the request ID, the table
//!    snapshot (`context`);
//! 2. routing and redirects: the table's decision (`table::decide`);
//! 3. access: CORS preflight, limits, credentials, body size (`access`);
//! 4. choice: a canary's share, then affinity or a hash key (`choice`);
//! 5. upstream request: the path, headers and body the endpoint gets
//!    (`upstream_request`), with the mirrors' copies beside it (`mirror`);
//! 6. attempts: an endpoint, the exchange under its timeouts, passive
//!    health, `proxy-next-upstream` (`attempts`);
//! 7. response: the upgrade's tunnel (`upgrade`), then what the response
//!    gets on its way back (`response`).

pub mod access;
pub mod attempts;
pub mod choice;
pub mod mirror;
pub mod response;
pub mod upgrade;
pub mod upstream_request;

use std::sync::OnceLock;
use std::time::Instant;

/// `at` in milliseconds on a process-wide monotonic clock (for endpoint
/// backoff and affinity).
fn millis(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    at.saturating_duration_since(epoch).as_millis() as u64
}
