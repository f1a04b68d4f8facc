//! How Gatehouse talks to endpoints: the choice among them, the timeouts,
//! and the idle connections kept.

use std::time::Duration;

/// How to pick among endpoints (`load-balance`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalance {
    #[default]
    RoundRobin,
    /// Power of two choices on a moving average of response times.
    Ewma,
}

/// Upstream timeouts (`proxy-*-timeout`), defaults as ingress-nginx.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub send: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(60),
            send: Duration::from_secs(60),
        }
    }
}

/// Idle connections to endpoints (`upstream-keepalive-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamKeepalive {
    /// Idle connections each worker keeps per endpoint.
    pub connections: usize,
    /// How long one is kept idle.
    pub timeout: Duration,
    /// Requests sent over one connection before it is closed.
    pub requests: u32,
}

impl Default for UpstreamKeepalive {
    fn default() -> Self {
        UpstreamKeepalive {
            connections: 320,
            timeout: Duration::from_secs(60),
            requests: 10_000,
        }
    }
}
