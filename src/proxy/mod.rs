//! The data plane: listeners, TLS, and forwarding to the endpoints.

mod balance;
mod handler;
mod limits;
mod linger;
mod listener;
mod observed;
mod progress;
mod proxy_protocol;
mod retry_body;
mod tls;
mod upstream;
mod workers;

pub use handler::{Proxy, ProxyBody};
pub use limits::{parse_duration, Limits};
pub use listener::{Drain, Listeners};
pub use tls::{default_certificate, server_config, CertResolver, Handshakes, TlsSetupError};
pub use workers::Workers;
// For requests of the policies' own (external authentication, error pages).
pub(crate) use upstream::{OwnRequest, UpstreamResponse, Upstreams};
