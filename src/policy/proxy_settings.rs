//! Typed per-Ingress behaviour, parsed from annotations at translate time.
//! The proxy executes these values; it never sees annotation text.

use http::HeaderValue;

use crate::policy::next_upstream::NextUpstream;
pub use crate::policy::redirect::Redirect;
use crate::upstream::{LoadBalance, Timeouts};

/// How to talk to the endpoints (`backend-protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BackendProtocol {
    #[default]
    Http,
    /// HTTP/1.1 over TLS; the endpoint's certificate is not verified, as
    /// ingress-nginx does by default.
    Https,
    /// gRPC over cleartext HTTP/2 (h2c).
    Grpc,
    /// gRPC over HTTP/2 with TLS.
    Grpcs,
}

impl BackendProtocol {
    pub fn is_tls(self) -> bool {
        matches!(self, BackendProtocol::Https | BackendProtocol::Grpcs)
    }

    pub fn is_http2(self) -> bool {
        matches!(self, BackendProtocol::Grpc | BackendProtocol::Grpcs)
    }
}

/// ingress-nginx's default `proxy-body-size` (its `client_max_body_size`).
pub const DEFAULT_BODY_LIMIT: u64 = 1024 * 1024;

/// Everything an Ingress's annotations ask of its routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `app-root`: `/` is redirected (302) to this path.
    pub app_root: Option<String>,
    pub redirect: Option<Redirect>,
    pub force_ssl_redirect: bool,
    pub protocol: BackendProtocol,
    pub timeouts: Timeouts,
    /// Request body limit in bytes; `None` is unlimited (`proxy-body-size: 0`).
    pub body_limit: Option<u64>,
    pub upstream_vhost: Option<HeaderValue>,
    pub x_forwarded_prefix: Option<HeaderValue>,
    pub load_balance: LoadBalance,
    /// `proxy-next-upstream*`: when another endpoint is tried.
    pub next_upstream: NextUpstream,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            app_root: None,
            redirect: None,
            force_ssl_redirect: false,
            protocol: BackendProtocol::default(),
            timeouts: Timeouts::default(),
            body_limit: Some(DEFAULT_BODY_LIMIT),
            upstream_vhost: None,
            x_forwarded_prefix: None,
            load_balance: LoadBalance::default(),
            next_upstream: NextUpstream::default(),
        }
    }
}

/// How the upstream path is derived from the request path (`rewrite-target`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// No capture groups: the whole path becomes the target, as nginx's
    /// `rewrite` replaces the whole URI.
    Replace(String),
    /// `$1`…`$9` in the target are replaced by the groups of the route's
    /// regular expression.
    Captures(String),
}

/// Expands `$1`…`$9` in `template` from `groups` (group 0 is the whole
/// match); a group that did not take part expands to nothing, as in nginx.
pub fn expand_captures(template: &str, groups: &regex::Captures<'_>) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut chars = template.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c == '$' {
            if let Some(&(_, d)) = chars.peek() {
                if let Some(n) = d.to_digit(10).filter(|n| *n >= 1) {
                    chars.next();
                    out.push_str(groups.get(n as usize).map_or("", |m| m.as_str()));
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// Whether a rewrite target refers to capture groups.
pub fn has_captures(template: &str) -> bool {
    template
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && (b'1'..=b'9').contains(&w[1]))
}
