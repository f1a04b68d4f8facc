//! The data plane: listeners, TLS, and forwarding to the endpoints.

mod answer;
mod context;
mod handler;
mod handoff;
mod limits;
mod linger;
mod listener;
mod phase;
mod proxy_protocol;
mod request_log;
mod tls;
mod workers;

pub use handler::{Proxy, ProxyBody};
pub use limits::{parse_duration, Limits};
pub use listener::{Drain, Listeners};
pub use tls::{default_certificate, server_config, CertResolver, Handshakes, TlsSetupError};
pub use workers::Workers;
