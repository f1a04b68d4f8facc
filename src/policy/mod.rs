//! Request policies: annotations compiled into typed values, and the code
//! of the request phase each one runs in.
//!
//! Each family owns its annotations' parsing, its compiled form and its
//! phase code, with its tests. Translate calls the compilers; the table and
//! the handler call the phases in a fixed order and know no annotation. A
//! route that uses no policy pays nothing for the ones that exist.
//!
//! Protective families (who may reach a route) fail closed: what Gatehouse
//! cannot enforce closes the Ingress's routes with 503 and a warning that
//! names the annotation, instead of serving them open.

pub mod access;
pub mod affinity;
mod annotations;
pub mod basic_auth;
pub mod body_size;
pub mod canary;
pub mod client_cert;
pub mod cors;
pub mod error_pages;
pub mod external_auth;
pub mod hsts;
mod htpasswd;
pub mod log_format;
pub mod mirror;
pub mod next_upstream;
pub mod objects;
pub mod protection;
pub mod proxy_settings;
pub mod rate_limit;
pub mod redirect;
pub mod rewrite;
pub mod snippet;
pub mod source_range;
pub mod template;
pub mod traces;
pub mod upstream_headers;

pub use access::{AccessPolicy, Admission, Refusal};
#[cfg(test)]
pub(crate) use annotations::nginx_annotations;
pub use annotations::{parse_bool, Annotations, MAX_VALUE_BYTES, NGINX_PREFIX};
pub use protection::{AccessOptions, ProtectionMode};
