//! Keeps the workers' shares of client connections even.
//!
//! The workers accept from one shared listening socket, and whichever is
//! awake first takes a new connection, so connections can pile up on one
//! worker while another has time to spare (one worker holding three
//! quarters of them gave the worst latency tails in the load comparison).
//! A worker that accepts a connection while another worker serves fewer
//! passes the socket to that worker, which then runs the TLS handshake and
//! serves it. The counts are exact, so the shares never differ by more
//! than one connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::connection::ConnInfo;

/// A client connection accepted by one worker, for another to serve.
pub struct Handoff {
    pub stream: std::net::TcpStream,
    pub conn: ConnInfo,
    pub permit: OwnedSemaphorePermit,
    pub tls: bool,
    pub counted: Counted,
}

/// The open client connections of every worker, and the way to each.
pub struct WorkerShares {
    open: Box<[AtomicUsize]>,
    inboxes: Box<[mpsc::UnboundedSender<Handoff>]>,
}

impl WorkerShares {
    /// Shares for `workers` workers, with the inbox each worker reads.
    pub fn new(workers: usize) -> (Arc<Self>, Vec<mpsc::UnboundedReceiver<Handoff>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let shares = WorkerShares {
            open: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            inboxes: senders.into(),
        };
        (Arc::new(shares), receivers)
    }

    /// The worker that serves a connection worker `me` accepted: `me`,
    /// unless another worker serves fewer. The connection is counted to
    /// that worker until the returned guard is dropped.
    pub fn place(self: &Arc<Self>, me: usize) -> Counted {
        let mine = self.open[me].load(Ordering::Relaxed);
        let fewest = self
            .open
            .iter()
            .map(|open| open.load(Ordering::Relaxed))
            .enumerate()
            .min_by_key(|&(_, open)| open);
        let worker = match fewest {
            Some((other, open)) if open < mine => other,
            _ => me,
        };
        self.open[worker].fetch_add(1, Ordering::Relaxed);
        Counted {
            shares: self.clone(),
            worker,
        }
    }
}

impl Handoff {
    /// Sends the connection to the worker it was counted to. Fails with the
    /// client's address (and the connection closes) if that worker has
    /// stopped.
    pub fn send(self) -> Result<(), SocketAddr> {
        let shares = self.counted.shares.clone();
        let inbox = &shares.inboxes[self.counted.worker];
        inbox.send(self).map_err(|e| e.0.conn.client)
    }
}

/// One connection counted to one worker, until dropped.
pub struct Counted {
    shares: Arc<WorkerShares>,
    worker: usize,
}

impl Counted {
    pub fn worker(&self) -> usize {
        self.worker
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.shares.open[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(shares: &WorkerShares) -> Vec<usize> {
        shares
            .open
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .collect()
    }

    #[test]
    fn connections_go_to_the_worker_with_the_fewest() {
        let (shares, _inboxes) = WorkerShares::new(3);
        // Worker 0 accepts everything; the shares stay within one.
        let held: Vec<Counted> = (0..7).map(|_| shares.place(0)).collect();
        assert_eq!(
            held.iter().map(Counted::worker).collect::<Vec<_>>(),
            [0, 1, 2, 0, 1, 2, 0]
        );
        assert_eq!(counts(&shares), [3, 2, 2]);
        // A tie keeps the connection where it was accepted.
        let tie = shares.place(1);
        assert_eq!(tie.worker(), 1);
        drop(held);
        assert_eq!(counts(&shares), [0, 1, 0]);
        drop(tie);
        assert_eq!(counts(&shares), [0, 0, 0]);
    }
}
