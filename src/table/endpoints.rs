//! The ready addresses of one Service port, and the choice among them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::policy::LoadBalance;

/// Ready endpoint addresses. Round-robin turns and latency averages are the
/// only mutable parts of a routing table; they are atomics, never locks.
#[derive(Debug)]
pub struct EndpointSet {
    addrs: Box<[SocketAddr]>,
    /// Peak-EWMA of response times in microseconds, one per address.
    latency: Box<[AtomicU64]>,
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
        EndpointSet {
            addrs: addrs.into_boxed_slice(),
            latency,
            next: AtomicUsize::new(0),
        }
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
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
