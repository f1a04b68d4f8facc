//! The ready addresses of one Service port, and the choice among them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use http::uri::Authority;
use std::time::Duration;

use crate::upstream::LoadBalance;

/// Ready endpoint addresses. Round-robin turns and latency averages are
/// the only mutable parts of a set (atomics, never locks); a new set
/// replaces it whole when the endpoints change.
#[derive(Debug)]
pub struct EndpointSet {
    addrs: Box<[SocketAddr]>,
    /// Each address as a URI authority, formatted on first use.
    authorities: Box<[OnceLock<Authority>]>,
    /// Peak-EWMA of response times in microseconds, one per address.
    latency: Box<[AtomicU64]>,
    /// Until when (caller's clock, milliseconds) an address is skipped
    /// because it refused a connection.
    down_until: Box<[AtomicU64]>,
    next: AtomicUsize,
}

/// An address chosen for one request; report its latency with `observe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    pub index: usize,
    pub addr: SocketAddr,
}

impl EndpointSet {
    pub fn new(mut addrs: Vec<SocketAddr>) -> Self {
        addrs.sort();
        addrs.dedup();
        let latency = addrs.iter().map(|_| AtomicU64::new(0)).collect();
        let down_until = addrs.iter().map(|_| AtomicU64::new(0)).collect();
        EndpointSet {
            authorities: addrs.iter().map(|_| OnceLock::new()).collect(),
            addrs: addrs.into_boxed_slice(),
            latency,
            down_until,
            next: AtomicUsize::new(0),
        }
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// The picked address as a URI authority (`10.0.0.7:8080`,
    /// `[fd00::7]:8080`), formatted once per table.
    pub fn authority(&self, pick: Pick) -> Authority {
        self.authorities[pick.index]
            .get_or_init(|| {
                Authority::try_from(pick.addr.to_string())
                    .expect("a socket address is a valid authority")
            })
            .clone()
    }

    /// The next address by the route's policy, skipping addresses marked
    /// down at `now_ms` (and `avoid`, an address that just failed) while
    /// another is available; `None` when nothing is ready.
    pub fn pick_healthy(
        &self,
        policy: LoadBalance,
        now_ms: u64,
        avoid: Option<Pick>,
    ) -> Option<Pick> {
        let first = self.pick(policy)?;
        let usable = |i: usize| {
            self.down_until[i].load(Ordering::Relaxed) <= now_ms
                && avoid.is_none_or(|a| a.index != i)
        };
        if usable(first.index) {
            return Some(first);
        }
        let len = self.addrs.len();
        (1..len)
            .map(|step| (first.index + step) % len)
            .find(|&i| usable(i))
            .map(|index| Pick {
                index,
                addr: self.addrs[index],
            })
            .or(Some(first))
    }

    /// Skips `pick`'s address until `until_ms` (passive health: it refused
    /// a connection).
    /// Address `index`, unless it is marked down at `now_ms`.
    pub fn pick_index(&self, index: usize, now_ms: u64) -> Option<Pick> {
        let addr = *self.addrs.get(index)?;
        let up = self.down_until[index].load(Ordering::Relaxed) <= now_ms;
        up.then_some(Pick { index, addr })
    }

    pub fn mark_down(&self, pick: Pick, until_ms: u64) {
        if let Some(slot) = self.down_until.get(pick.index) {
            slot.store(until_ms, Ordering::Relaxed);
        }
    }

    /// The next address by the route's policy, or `None` when nothing is ready.
    pub fn pick(&self, policy: LoadBalance) -> Option<Pick> {
        let len = self.addrs.len();
        if len == 0 {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let index = match policy {
            LoadBalance::RoundRobin => turn % len,
            LoadBalance::Ewma if len == 1 => 0,
            LoadBalance::Ewma => {
                // Two distinct candidates from a mixed counter, lower average wins.
                let mixed = splitmix64(turn as u64);
                let a = (mixed % len as u64) as usize;
                let b = (a + 1 + ((mixed >> 32) % (len as u64 - 1)) as usize) % len;
                let cost = |i: usize| self.latency[i].load(Ordering::Relaxed);
                if cost(b) < cost(a) {
                    b
                } else {
                    a
                }
            }
        };
        Some(Pick {
            index,
            addr: self.addrs[index],
        })
    }

    /// Folds one response time into the address's average. Peak-sensitive:
    /// a slower sample counts at once, faster ones are blended in.
    pub fn observe(&self, pick: Pick, took: Duration) {
        let Some(slot) = self.latency.get(pick.index) else {
            return;
        };
        let sample = took.as_micros().min(u64::MAX as u128) as u64;
        let old = slot.load(Ordering::Relaxed);
        let new = if sample >= old {
            sample
        } else {
            old - (old - sample) / 5
        };
        slot.store(new, Ordering::Relaxed);
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 80))
    }

    #[test]
    fn round_robin_visits_every_address_in_turn() {
        let set = EndpointSet::new(vec![addr(2), addr(1), addr(2)]);
        let picks: Vec<_> = (0..4)
            .map(|_| set.pick(LoadBalance::RoundRobin).unwrap().addr)
            .collect();
        assert_eq!(picks, [addr(1), addr(2), addr(1), addr(2)]);
    }

    #[test]
    fn empty_set_picks_nothing() {
        assert_eq!(EndpointSet::new(Vec::new()).pick(LoadBalance::Ewma), None);
    }

    #[test]
    fn an_address_marked_down_is_skipped_until_its_backoff_ends() {
        let set = EndpointSet::new(vec![addr(1), addr(2)]);
        let down = set.pick(LoadBalance::RoundRobin).unwrap();
        set.mark_down(down, 1_000);
        for _ in 0..4 {
            let pick = set
                .pick_healthy(LoadBalance::RoundRobin, 500, None)
                .unwrap();
            assert_ne!(pick.addr, down.addr);
        }
        let after: Vec<_> = (0..4)
            .map(|_| {
                set.pick_healthy(LoadBalance::RoundRobin, 1_000, None)
                    .unwrap()
                    .addr
            })
            .collect();
        assert!(after.contains(&down.addr));
    }

    #[test]
    fn when_everything_is_down_something_is_still_tried() {
        let set = EndpointSet::new(vec![addr(1)]);
        let only = set.pick(LoadBalance::RoundRobin).unwrap();
        set.mark_down(only, u64::MAX);
        assert_eq!(
            set.pick_healthy(LoadBalance::RoundRobin, 0, None),
            Some(only)
        );
    }

    #[test]
    fn ewma_prefers_the_faster_endpoint() {
        let set = EndpointSet::new(vec![addr(1), addr(2), addr(3)]);
        for _ in 0..30 {
            let pick = set.pick(LoadBalance::Ewma).unwrap();
            let took = if pick.addr == addr(3) { 1 } else { 50 };
            set.observe(pick, Duration::from_millis(took));
        }
        let fast = (0..300)
            .filter(|_| set.pick(LoadBalance::Ewma).unwrap().addr == addr(3))
            .count();
        // With two choices the fastest of three wins every pair it is in: 2/3.
        assert!(fast > 150, "fast endpoint picked {fast} of 300 times");
    }
}
