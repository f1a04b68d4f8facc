//! Rate and connection limits per client address: `limit-rps`,
//! `limit-rpm`, `limit-burst-multiplier`, `limit-connections` and
//! `limit-allowlist` (or `limit-whitelist`), with ingress-nginx's meaning.
//!
//! Like ingress-nginx's zones, the limits of one Ingress share their
//! counters across its routes and are per replica. The rate limit is
//! nginx's `limit_req ... burst=<rate × multiplier> nodelay` as a generic
//! cell rate algorithm: up to `burst + 1` requests at once, then one per
//! `1 / rate`. Requests over a limit get `503` (`--limit-req-status-code`,
//! `--limit-conn-status-code`).
//!
//! Memory is bounded whatever the number of client addresses: each limit
//! keeps at most `MAX_CLIENTS` addresses, forgets those whose allowance is
//! full again, and when still full drops an arbitrary one (which at worst
//! gives that client a fresh allowance).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use ipnet::IpNet;

use super::source_range::parse_cidrs;
use super::Annotations;

/// Addresses remembered per limit (24 bytes each, plus the table's).
pub const MAX_CLIENTS: usize = 100_000;
const SHARDS: usize = 16;

/// What an Ingress's limit annotations say, for comparing builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitConfig {
    pub rps: Option<u32>,
    pub rpm: Option<u32>,
    pub connections: Option<u32>,
    pub burst_multiplier: u32,
    pub allow: Vec<IpNet>,
}

/// The compiled limits of one Ingress, with their counters.
#[derive(Debug)]
pub struct RouteLimits {
    pub config: LimitConfig,
    rates: Vec<Gcra>,
    connections: Option<ConnectionLimit>,
    statuses: Statuses,
}

/// What a refused request is answered (`--limit-req-status-code`,
/// `--limit-conn-status-code`; ingress-nginx's default is 503 for both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Statuses {
    pub rate: http::StatusCode,
    pub connections: http::StatusCode,
}

impl Default for Statuses {
    fn default() -> Self {
        Statuses {
            rate: http::StatusCode::SERVICE_UNAVAILABLE,
            connections: http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    Rate,
    Connections,
}

impl LimitConfig {
    /// The limits an Ingress sets, if any; a value that does not parse is
    /// ignored with a note.
    pub fn parse(annotations: &Annotations<'_>, notes: &mut Vec<String>) -> Option<LimitConfig> {
        let mut number = |name: &str| {
            let (key, value) = annotations.get(name)?;
            match value.parse::<u32>() {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(_) => {
                    notes.push(format!(
                        "annotation {key}: {value:?} is not a whole number; ignored"
                    ));
                    None
                }
            }
        };
        let rps = number("limit-rps");
        let rpm = number("limit-rpm");
        let connections = number("limit-connections");
        let burst_multiplier = number("limit-burst-multiplier").unwrap_or(5);
        if rps.is_none() && rpm.is_none() && connections.is_none() {
            return None;
        }
        let allow = ["limit-allowlist", "limit-whitelist"]
            .iter()
            .find_map(|name| annotations.get(name))
            .map(|(key, value)| {
                parse_cidrs(value).unwrap_or_else(|why| {
                    notes.push(format!("annotation {key}: {value:?} {why}; ignored"));
                    Vec::new()
                })
            })
            .unwrap_or_default();
        Some(LimitConfig {
            rps,
            rpm,
            connections,
            burst_multiplier,
            allow,
        })
    }

    pub fn compile(self, statuses: Statuses) -> RouteLimits {
        let mut rates = Vec::new();
        if let Some(rps) = self.rps {
            rates.push(Gcra::new(
                Duration::from_secs(1),
                rps,
                self.burst_multiplier,
            ));
        }
        if let Some(rpm) = self.rpm {
            rates.push(Gcra::new(
                Duration::from_secs(60),
                rpm,
                self.burst_multiplier,
            ));
        }
        RouteLimits {
            connections: self.connections.map(ConnectionLimit::new),
            config: self,
            rates,
            statuses,
        }
    }
}

impl RouteLimits {
    /// The access phase's limit step: `Ok` with a guard to hold while the
    /// request is served (it counts toward `limit-connections`), or why
    /// not.
    pub fn admit(self: &Arc<Self>, client: IpAddr, now: Instant) -> Result<Option<Held>, Over> {
        let client = crate::connection::canonical_ip(client);
        if self.config.allow.iter().any(|net| net.contains(&client)) {
            return Ok(None);
        }
        let (client, now) = (key(client), nanos(now));
        let held = match &self.connections {
            Some(limit) if !limit.enter(client) => return Err(Over::Connections),
            Some(_) => Some(Held {
                limits: self.clone(),
                client,
            }),
            None => None,
        };
        // A refused request does not count against the rate (nginx counts
        // only the requests it lets through).
        if self.rates.iter().all(|rate| rate.allows(client, now)) {
            for rate in &self.rates {
                rate.take(client, now);
            }
            Ok(held)
        } else {
            Err(Over::Rate)
        }
    }

    /// The status a refusal is answered with.
    pub fn status(&self, over: Over) -> http::StatusCode {
        match over {
            Over::Rate => self.statuses.rate,
            Over::Connections => self.statuses.connections,
        }
    }

    pub fn statuses(&self) -> Statuses {
        self.statuses
    }

    /// For `gatehouse routes`.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let mut parts = Vec::new();
        if let Some(rps) = c.rps {
            parts.push(format!("{rps} rps"));
        }
        if let Some(rpm) = c.rpm {
            parts.push(format!("{rpm} rpm"));
        }
        if c.rps.is_some() || c.rpm.is_some() {
            parts.push(format!("burst ×{}", c.burst_multiplier));
        }
        if let Some(n) = c.connections {
            parts.push(format!("{n} connections"));
        }
        format!("limits={}", parts.join(" "))
    }

    /// Addresses remembered by this Ingress's limits (for the memory
    /// benchmark).
    pub fn remembered(&self) -> usize {
        self.rates.iter().map(Gcra::len).sum::<usize>()
            + self.connections.as_ref().map_or(0, ConnectionLimit::len)
    }
}

/// A request's place in `limit-connections`, given back when dropped.
#[derive(Debug)]
pub struct Held {
    limits: Arc<RouteLimits>,
    client: Key,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(limit) = &self.limits.connections {
            limit.leave(self.client);
        }
    }
}

/// A client address as one number (IPv4 as its IPv4-mapped IPv6 form).
type Key = u128;

fn key(client: IpAddr) -> Key {
    match client {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn shard_of(client: Key) -> usize {
    use std::hash::BuildHasher;
    let hash = foldhash::fast::FixedState::with_seed(0x9e37).hash_one(client);
    (hash as usize) % SHARDS
}

/// Nanoseconds on a process-wide monotonic clock.
fn nanos(at: Instant) -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    // A second before first use, so that an instant taken just before
    // the first call is not clamped.
    let epoch = *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(1)).unwrap_or(now)
    });
    u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// The generic cell rate algorithm: per client, the theoretical arrival
/// time of its next request (in `nanos`).
#[derive(Debug)]
struct Gcra {
    /// Nanoseconds between requests at the steady rate.
    interval: u64,
    /// How far ahead of now the arrival time may run: the burst.
    tolerance: u64,
    shards: Vec<Mutex<Shard<u64>>>,
}

impl Gcra {
    fn new(per: Duration, count: u32, burst_multiplier: u32) -> Self {
        let interval = u64::try_from((per / count.max(1)).as_nanos()).unwrap_or(u64::MAX);
        let burst = u64::from(count.saturating_mul(burst_multiplier));
        Gcra {
            interval,
            tolerance: interval.saturating_mul(burst),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    fn allows(&self, client: Key, now: u64) -> bool {
        let Ok(shard) = self.shards[shard_of(client)].lock() else {
            return true;
        };
        match shard.map.get(&client) {
            Some(tat) => tat.saturating_sub(now) <= self.tolerance,
            None => true,
        }
    }

    fn take(&self, client: Key, now: u64) {
        let Ok(mut shard) = self.shards[shard_of(client)].lock() else {
            return;
        };
        let start = shard.map.get(&client).copied().unwrap_or(now).max(now);
        // A client whose arrival time is in the past has a full allowance:
        // it need not be remembered.
        let tat = start.saturating_add(self.interval);
        shard.insert(client, tat, now, |tat, now| *tat <= now);
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok())
            .map(|s| s.map.len())
            .sum()
    }
}

/// Concurrent requests per client.
#[derive(Debug)]
struct ConnectionLimit {
    max: u32,
    shards: Vec<Mutex<HashMap<Key, u32>>>,
}

impl ConnectionLimit {
    fn new(max: u32) -> Self {
        ConnectionLimit {
            max,
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
        }
    }

    fn enter(&self, client: Key) -> bool {
        let Ok(mut shard) = self.shards[shard_of(client)].lock() else {
            return true;
        };
        let count = shard.entry(client).or_insert(0);
        if *count >= self.max {
            return false;
        }
        *count += 1;
        true
    }

    fn leave(&self, client: Key) {
        let Ok(mut shard) = self.shards[shard_of(client)].lock() else {
            return;
        };
        if let Some(count) = shard.get_mut(&client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                shard.remove(&client);
            }
        }
    }

    /// Only clients with requests in flight are remembered.
    fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok())
            .map(|s| s.len())
            .sum()
    }
}

/// One shard of remembered clients, bounded.
#[derive(Debug)]
struct Shard<V> {
    map: HashMap<Key, V>,
    /// When expired entries were last swept (`nanos`).
    swept: Option<u64>,
}

impl<V> Default for Shard<V> {
    fn default() -> Self {
        Shard {
            map: HashMap::default(),
            swept: None,
        }
    }
}

impl<V> Shard<V> {
    /// Inserts; when the shard is full, first forgets expired entries
    /// (at most every 100 ms), then, if still full, an arbitrary one.
    fn insert(&mut self, client: Key, value: V, now: u64, expired: impl Fn(&V, u64) -> bool) {
        let cap = MAX_CLIENTS / SHARDS;
        if self.map.len() >= cap && !self.map.contains_key(&client) {
            let due = self
                .swept
                .is_none_or(|at| now.saturating_sub(at) >= 100_000_000);
            if due {
                self.map.retain(|_, v| !expired(v, now));
                self.swept = Some(now);
            }
            if self.map.len() >= cap {
                if let Some(victim) = self.map.keys().next().copied() {
                    self.map.remove(&victim);
                }
            }
        }
        self.map.insert(client, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::annotations::nginx_annotations;

    fn limits(pairs: &[(&str, &str)]) -> Arc<RouteLimits> {
        let map = nginx_annotations(pairs);
        let mut notes = Vec::new();
        let config = LimitConfig::parse(&Annotations::new(Some(&map), "gatehouse.dev"), &mut notes)
            .expect("limits");
        assert!(notes.is_empty(), "{notes:?}");
        Arc::new(config.compile(Statuses::default()))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_of_rate_times_multiplier_plus_one_then_the_steady_rate() {
        let l = limits(&[("limit-rps", "2"), ("limit-burst-multiplier", "3")]);
        let t0 = Instant::now();
        let client = ip("192.0.2.1");
        let allowed = (0..20).filter(|_| l.admit(client, t0).is_ok()).count();
        assert_eq!(allowed, 7, "2 × 3 burst + 1");
        assert_eq!(l.admit(client, t0).err(), Some(Over::Rate));
        // Half a second later, one more (2 per second).
        assert!(l.admit(client, t0 + Duration::from_millis(500)).is_ok());
        assert!(l.admit(client, t0 + Duration::from_millis(500)).is_err());
        // Another client has its own allowance.
        assert!(l.admit(ip("192.0.2.2"), t0).is_ok());
    }

    #[test]
    fn rpm_and_rps_both_apply_and_allowlisted_clients_are_exempt() {
        let l = limits(&[
            ("limit-rps", "100"),
            ("limit-rpm", "1"),
            ("limit-burst-multiplier", "1"),
            ("limit-allowlist", "10.0.0.0/8"),
        ]);
        let t0 = Instant::now();
        assert!(l.admit(ip("192.0.2.1"), t0).is_ok());
        assert!(l.admit(ip("192.0.2.1"), t0).is_ok());
        assert!(
            l.admit(ip("192.0.2.1"), t0).is_err(),
            "1 rpm with a burst of 1"
        );
        assert!((0..100).all(|_| l.admit(ip("10.1.1.1"), t0).is_ok()));
    }

    #[test]
    fn connections_are_counted_while_held() {
        let l = limits(&[("limit-connections", "2")]);
        let t0 = Instant::now();
        let client = ip("::ffff:192.0.2.1");
        let a = l.admit(client, t0).expect("first");
        let _b = l.admit(ip("192.0.2.1"), t0).expect("second, same client");
        assert_eq!(l.admit(client, t0).err(), Some(Over::Connections));
        drop(a);
        assert!(l.admit(client, t0).is_ok());
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_addresses() {
        let l = limits(&[("limit-rps", "1")]);
        let t0 = Instant::now();
        for i in 0..300_000u32 {
            let client = IpAddr::from(std::net::Ipv6Addr::from(u128::from(i) + (1 << 100)));
            let _ = l.admit(client, t0);
        }
        assert!(l.remembered() <= MAX_CLIENTS, "{}", l.remembered());
    }
}
