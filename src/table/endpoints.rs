//! The ready addresses of one Service port, and the choice among them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Ready endpoint addresses, picked round-robin. The counter is the only
/// mutable part of a routing table; it needs no lock.
#[derive(Debug)]
pub struct EndpointSet {
    addrs: Box<[SocketAddr]>,
    next: AtomicUsize,
}

impl EndpointSet {
    pub fn new(mut addrs: Vec<SocketAddr>) -> Self {
        addrs.sort();
        addrs.dedup();
        EndpointSet {
            addrs: addrs.into_boxed_slice(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// The next address in turn, or `None` when nothing is ready.
    pub fn pick(&self) -> Option<SocketAddr> {
        if self.addrs.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        Some(self.addrs[turn % self.addrs.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_visits_every_address_in_turn() {
        let a: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let set = EndpointSet::new(vec![b, a, b]);
        let picks: Vec<_> = (0..4).map(|_| set.pick().unwrap()).collect();
        assert_eq!(picks, [a, b, a, b]);
    }

    #[test]
    fn empty_set_picks_nothing() {
        assert_eq!(EndpointSet::new(Vec::new()).pick(), None);
    }
}
