//! The data plane: listeners, TLS, and forwarding to the endpoints.

mod handler;
mod headers;
mod listener;
mod observed;
mod progress;
mod tls;
mod upstream;

pub use handler::{Proxy, ProxyBody};
pub use headers::ConnInfo;
pub use listener::{serve_plain, serve_tls};
pub use tls::{default_certificate, server_config, CertResolver, TlsSetupError};
