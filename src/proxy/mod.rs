//! The data plane: listeners, TLS, and forwarding to the endpoints.

mod balance;
mod handler;
mod limits;
mod linger;
mod listener;
mod observed;
mod proxy_protocol;
mod tls;
mod workers;

pub use handler::{Proxy, ProxyBody};
pub use limits::{parse_duration, Limits};
pub use listener::{Drain, Listeners};
pub use tls::{default_certificate, server_config, CertResolver, Handshakes, TlsSetupError};
pub use workers::Workers;
