//! The proxy-settings family: `backend-protocol`, `proxy-*-timeout`,
//! `proxy-body-size`, `upstream-vhost`, `x-forwarded-prefix`,
//! `load-balance` and `proxy-next-upstream*`, parsed from annotations (and
//! the controller ConfigMap's keys of the same names) into typed values.
//! The proxy executes these values; it never sees annotation text.

use std::time::Duration;

use http::HeaderValue;

use super::next_upstream::NextUpstream;
use super::redirect::no_variables;
use super::redirect::Redirect;
use super::traces::TraceSwitch;
use super::Annotations;
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

/// What an Ingress's annotations (over the controller ConfigMap's
/// defaults) ask of how its routes talk to their endpoints, and the
/// redirect family's values that ride with them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySettings {
    /// `app-root`: `/` is redirected (302) to this path.
    pub app_root: Option<String>,
    pub redirect: Option<Redirect>,
    pub force_ssl_redirect: bool,
    pub protocol: BackendProtocol,
    pub timeouts: Timeouts,
    /// Request body limit in bytes; `None` is unlimited (`proxy-body-size: 0`).
    pub body_limit: Option<u64>,
    /// A snippet's `client_body_timeout`; `None` is the ConfigMap's
    /// `client-body-timeout`.
    pub client_body_timeout: Option<Duration>,
    pub upstream_vhost: Option<HeaderValue>,
    pub x_forwarded_prefix: Option<HeaderValue>,
    pub load_balance: LoadBalance,
    /// `proxy-next-upstream*`: when another endpoint is tried.
    pub next_upstream: NextUpstream,
    /// `enable-opentelemetry`, `opentelemetry-trust-incoming-span`.
    pub traces: TraceSwitch,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            app_root: None,
            redirect: None,
            force_ssl_redirect: false,
            protocol: BackendProtocol::default(),
            timeouts: Timeouts::default(),
            body_limit: Some(DEFAULT_BODY_LIMIT),
            client_body_timeout: None,
            upstream_vhost: None,
            x_forwarded_prefix: None,
            load_balance: LoadBalance::default(),
            next_upstream: NextUpstream::default(),
            traces: TraceSwitch::default(),
        }
    }
}

impl ProxySettings {
    /// Reads the family's annotations over these settings (the
    /// ConfigMap's defaults); a value that does not parse leaves the
    /// default, with a note.
    pub fn read(&mut self, annotations: &Annotations<'_>, notes: &mut Vec<String>) {
        if let Some(protocol) = annotations.parsed("backend-protocol", parse_protocol, notes) {
            self.protocol = protocol;
        }
        let timeouts = &mut self.timeouts;
        if let Some(t) = annotations.parsed("proxy-connect-timeout", parse_seconds, notes) {
            timeouts.connect = t;
        }
        if let Some(t) = annotations.parsed("proxy-read-timeout", parse_seconds, notes) {
            timeouts.read = t;
        }
        if let Some(t) = annotations.parsed("proxy-send-timeout", parse_seconds, notes) {
            timeouts.send = t;
        }
        if let Some(limit) = annotations.parsed("proxy-body-size", parse_size, notes) {
            self.body_limit = (limit > 0).then_some(limit);
        }
        self.upstream_vhost = annotations.parsed("upstream-vhost", parse_vhost, notes);
        let prefix = annotations.parsed("x-forwarded-prefix", parse_prefix_header, notes);
        self.x_forwarded_prefix = prefix;
        if let Some(lb) = annotations.parsed("load-balance", parse_load_balance, notes) {
            self.load_balance = lb;
        }
        self.next_upstream = next_upstream(annotations, self.next_upstream.clone(), notes);
        self.traces.read(annotations, notes);
    }
}

/// `proxy-next-upstream`, `-tries` and `-timeout`, over `next`.
fn next_upstream(
    annotations: &Annotations<'_>,
    mut next: NextUpstream,
    notes: &mut Vec<String>,
) -> NextUpstream {
    let conditions = |v: &str| next.clone().with_conditions(v);
    if let Some(n) = annotations.parsed("proxy-next-upstream", conditions, notes) {
        next = n;
    }
    if let Some(tries) = annotations.parsed("proxy-next-upstream-tries", parse_count, notes) {
        next = next.with_tries(tries);
    }
    if let Some(seconds) = annotations.parsed("proxy-next-upstream-timeout", parse_count, notes) {
        next = next.with_total(u64::from(seconds));
    }
    next
}

pub fn parse_count(value: &str) -> Result<u32, String> {
    let digits = value.strip_suffix('s').unwrap_or(value);
    digits
        .parse::<u32>()
        .map_err(|_| "is not a whole number".into())
}

pub fn parse_seconds(value: &str) -> Result<Duration, String> {
    let digits = value.strip_suffix('s').unwrap_or(value);
    match digits.parse::<u64>() {
        Ok(n) if n > 0 && n <= 24 * 3600 => Ok(Duration::from_secs(n)),
        _ => Err("is not a whole number of seconds between 1 and 86400".into()),
    }
}

/// nginx sizes: bytes, or a number with `k`, `m` or `g` (either case).
pub fn parse_size(value: &str) -> Result<u64, String> {
    let (digits, unit) = match value.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&value[..i], c.to_ascii_lowercase()),
        _ => (value, 'b'),
    };
    let multiplier: u64 = match unit {
        'b' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return Err("has an unknown unit (use k, m or g)".into()),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| "is not a size like 8m".into())
}

pub fn parse_protocol(value: &str) -> Result<BackendProtocol, String> {
    match value.to_ascii_uppercase().as_str() {
        "HTTP" => Ok(BackendProtocol::Http),
        "HTTPS" => Ok(BackendProtocol::Https),
        "GRPC" => Ok(BackendProtocol::Grpc),
        "GRPCS" => Ok(BackendProtocol::Grpcs),
        _ => Err("is not supported (HTTP, HTTPS, GRPC or GRPCS)".into()),
    }
}

pub fn parse_load_balance(value: &str) -> Result<LoadBalance, String> {
    match value {
        "round_robin" => Ok(LoadBalance::RoundRobin),
        "ewma" => Ok(LoadBalance::Ewma),
        _ => Err("is not supported (round_robin or ewma)".into()),
    }
}

pub fn parse_vhost(value: &str) -> Result<HeaderValue, String> {
    no_variables(value)?;
    let valid = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !valid {
        return Err("is not a host name".into());
    }
    HeaderValue::from_str(value).map_err(|_| "is not a host name".into())
}

pub fn parse_prefix_header(value: &str) -> Result<HeaderValue, String> {
    no_variables(value)?;
    if !value.starts_with('/') {
        return Err("is not a path like /api".into());
    }
    HeaderValue::from_str(value).map_err(|_| "is not a valid header value".into())
}
