//! The global settings: how connections are taken and what every request and response
//! gets, whatever its route. Built by translate from the flags and the
//! controller ConfigMap, carried by the table, so a ConfigMap change reaches
//! the next connection or request with the next table.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::connection::{canonical_ip, ForwardedHeaders};
use crate::policy::log_format::AccessLogSettings;
use crate::policy::template::Template;
use crate::policy::traces::TraceExport;
use crate::tls::TlsSettings;
use crate::upstream::UpstreamKeepalive;

/// The global settings, with ingress-nginx's defaults.
#[derive(Clone, Debug, Default)]
pub struct GlobalSettings {
    /// `use-proxy-protocol` (`--proxy-protocol`).
    pub proxy_protocol: bool,
    pub forwarded: ForwardedHeaders,
    pub keep_alive: KeepAlive,
    pub upstream: UpstreamKeepalive,
    /// `ssl-protocols`, `ssl-ciphers`; shared so that handshakes can tell
    /// by pointer whether their configuration is still current.
    pub tls: Arc<TlsSettings>,
    /// `server-tokens`: a `Server: gatehouse/<version>` header.
    pub server_tokens: bool,
    /// `block-cidrs`, `block-user-agents`, `block-referers`: 403 before
    /// anything else.
    pub block: Block,
    /// `add-headers`: set on every response.
    pub add_headers: Vec<(HeaderName, HeaderValue)>,
    /// `proxy-set-headers`: set on every request forwarded.
    pub proxy_set_headers: Vec<(HeaderName, Template)>,
    /// `hide-headers`: removed from every upstream response.
    pub hide_headers: Vec<HeaderName>,
    /// `allow-backend-server-header`: pass the endpoint's `Server` header
    /// (off, as nginx: it is removed).
    pub backend_server_header: bool,
    /// `client-header-timeout` (else `--header-read-timeout`).
    pub header_timeout: Option<Duration>,
    /// `client-body-timeout`: the longest the client may go quiet within
    /// its request body (see `client_body_timeout()`).
    pub client_body_timeout: Option<Duration>,
    /// `http2-max-concurrent-streams` (else `--h2-max-concurrent-streams`).
    pub h2_max_concurrent_streams: Option<u32>,
    /// `log-format-upstream`, `log-format-escape-json`,
    /// `log-format-escape-none`.
    pub access_log: AccessLogSettings,
    /// The OpenTelemetry collector keys: where spans go, how they are
    /// sampled.
    pub traces: TraceExport,
}

impl GlobalSettings {
    /// `client-body-timeout`, 60 s unless set, as nginx's
    /// `client_body_timeout`: the longest gap between two pieces of a
    /// request body while the client is sending it.
    pub fn client_body_timeout(&self) -> Duration {
        self.client_body_timeout.unwrap_or(Duration::from_secs(60))
    }

    /// The client body timeout of a request to `route`: the route's own
    /// (a snippet's `client_body_timeout`), else this one.
    pub fn client_body_timeout_for(&self, route: Option<&super::Route>) -> Duration {
        route
            .and_then(|r| r.policy.client_body_timeout)
            .unwrap_or_else(|| self.client_body_timeout())
    }
}

/// Client connections kept alive (`keep-alive`, `keep-alive-requests`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    /// The longest a connection may wait idle for its next request; `None`
    /// (`keep-alive: 0`) closes each HTTP/1.1 connection after one request.
    pub timeout: Option<Duration>,
    /// Requests served on one HTTP/1.1 connection before it is closed
    /// (`Connection: close` on the last response).
    pub requests: u64,
}

impl Default for KeepAlive {
    fn default() -> Self {
        KeepAlive {
            timeout: Some(Duration::from_secs(75)),
            requests: 1000,
        }
    }
}

/// Clients refused everywhere, before routing.
#[derive(Clone, Debug, Default)]
pub struct Block {
    pub cidrs: Vec<IpNet>,
    pub user_agents: Vec<Match>,
    pub referers: Vec<Match>,
}

impl Block {
    pub fn is_empty(&self) -> bool {
        self.cidrs.is_empty() && self.user_agents.is_empty() && self.referers.is_empty()
    }

    /// Whether the request is blocked (403).
    pub fn refuses(&self, client: IpAddr, headers: &HeaderMap) -> bool {
        if self.is_empty() {
            return false;
        }
        let client = canonical_ip(client);
        if self.cidrs.iter().any(|net| net.contains(&client)) {
            return true;
        }
        let matches = |list: &[Match], name: http::header::HeaderName| {
            let value = headers.get(name).and_then(|v| v.to_str().ok());
            value.is_some_and(|v| list.iter().any(|m| m.matches(v)))
        };
        matches(&self.user_agents, http::header::USER_AGENT)
            || matches(&self.referers, http::header::REFERER)
    }
}

/// One entry of an nginx `map`: a string (matched ignoring case), or a
/// regular expression (`~`, or `~*` ignoring case).
#[derive(Clone, Debug)]
pub enum Match {
    Exact(String),
    Regex(regex::Regex),
}

impl Match {
    pub fn parse(entry: &str) -> Result<Match, String> {
        let (pattern, ignore_case) = match entry.strip_prefix("~*") {
            Some(p) => (p, true),
            None => match entry.strip_prefix('~') {
                Some(p) => (p, false),
                None => return Ok(Match::Exact(entry.to_ascii_lowercase())),
            },
        };
        regex::RegexBuilder::new(pattern)
            .case_insensitive(ignore_case)
            .size_limit(1 << 20)
            .build()
            .map(Match::Regex)
            .map_err(|e| format!("{entry:?} is not a valid regular expression: {e}"))
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Match::Exact(text) => value.eq_ignore_ascii_case(text),
            Match::Regex(re) => re.is_match(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists_match_like_an_nginx_map() {
        let block = Block {
            cidrs: vec!["192.0.2.0/24".parse().unwrap()],
            user_agents: vec![
                Match::parse("BadBot/1.0").unwrap(),
                Match::parse("~*crawler").unwrap(),
            ],
            referers: vec![Match::parse("~^https://spam\\.example").unwrap()],
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(block.refuses(ip("192.0.2.9"), &HeaderMap::new()));
        assert!(block.refuses(ip("::ffff:192.0.2.9"), &HeaderMap::new()));
        assert!(!block.refuses(ip("198.51.100.1"), &HeaderMap::new()));
        let other = ip("198.51.100.1");
        assert!(block.refuses(other, &headers(&[("user-agent", "badbot/1.0")])));
        assert!(!block.refuses(other, &headers(&[("user-agent", "BadBot/1.0 x")])));
        assert!(block.refuses(other, &headers(&[("user-agent", "A Crawler")])));
        assert!(block.refuses(other, &headers(&[("referer", "https://spam.example/x")])));
        assert!(!block.refuses(other, &headers(&[("referer", "HTTPS://SPAM.example/x")])));
    }
}
