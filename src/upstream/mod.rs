//! Where requests go and how they get there: backends and their ready
//! endpoints, the choice among them, timeouts, and the pooled client
//! connections that the proxy and the policies with requests of their own
//! (external authentication, error pages) send through.
//!
//! Below the table, policy and the proxy: it imports only `cluster` (a
//! backend names its Service) and `tls`.

mod backend;
pub(crate) mod client_body;
mod endpoints;
pub(crate) mod exchange_timeouts;
mod pool;
pub(crate) mod retry_body;
mod settings;

pub use backend::{Action, Backend, Upstream};
pub use endpoints::{EndpointSet, Pick};
pub(crate) use pool::{
    Failure, OwnRequest, Target, UpstreamBody, UpstreamError, UpstreamResponse, Upstreams,
};
pub use settings::{LoadBalance, Timeouts, UpstreamKeepalive};
