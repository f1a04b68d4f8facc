//! The data plane's threads: one single-threaded Tokio runtime per worker,
//! as nginx runs one event loop per worker process.
//!
//! Every worker accepts from the same listening sockets; a connection is
//! served by the worker with the fewest (the one that accepted it, or one
//! it passes the socket to: see `handoff`), on that worker's thread from
//! start to end, with its own upstream connection pools. A request never
//! changes thread: the client connection, the handler and the upstream
//! connection wake one another on one thread, without cross-thread
//! wake-ups or work stealing. The control plane (sources, translate,
//! admin, status) stays on the main runtime.

use std::net::TcpListener as StdListener;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::handler::Proxy;
use super::handoff::{Handoff, WorkerShares};
use super::listener::Listeners;
use super::tls::Handshakes;

/// The running workers; dropping this stops them, and every connection
/// still open on them.
pub struct Workers {
    _stop: DropGuard,
    /// One receiver per worker, completed when that worker's thread ends.
    ended: Vec<oneshot::Receiver<()>>,
}

impl Workers {
    /// Starts `count` workers serving `http` and `https`. The first forwards
    /// through `proxy`; each other worker gets its own `Proxy` (own upstream
    /// pools) made from it.
    pub fn start(
        count: usize,
        listeners: &Listeners,
        proxy: &Arc<Proxy>,
        (http, https): (TcpListener, TcpListener),
        acceptor: Handshakes,
    ) -> std::io::Result<Self> {
        let http = http.into_std()?;
        let https = https.into_std()?;
        let stop = CancellationToken::new();
        let count = count.max(1);
        let mut ended = Vec::with_capacity(count);
        let (shares, inboxes) = WorkerShares::new(count);
        for (index, inbox) in inboxes.into_iter().enumerate() {
            let sockets = (http.try_clone()?, https.try_clone()?);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let own = match index {
                0 => proxy.clone(),
                _ => Arc::new(proxy.for_worker()),
            };
            let listeners = listeners.for_worker(own, shares.clone(), index);
            let (done, done_rx) = oneshot::channel();
            let (stop, acceptor) = (stop.clone(), acceptor.clone());
            std::thread::Builder::new()
                .name(format!("gatehouse-worker-{index}"))
                .spawn(move || {
                    runtime.block_on(serve(listeners, sockets, inbox, acceptor, stop));
                    drop(done);
                })?;
            ended.push(done_rx);
        }
        Ok(Workers {
            _stop: stop.drop_guard(),
            ended,
        })
    }

    /// Completes when any worker thread has ended, which only happens when
    /// its accept loop failed (a bug), or once the workers are stopped.
    pub async fn any_ended(&mut self) {
        if self.ended.is_empty() {
            return std::future::pending().await;
        }
        let ended = self.ended.iter_mut();
        let _ = futures_util::future::select_all(ended).await;
    }
}

async fn serve(
    listeners: Listeners,
    (http, https): (StdListener, StdListener),
    inbox: mpsc::UnboundedReceiver<Handoff>,
    acceptor: Handshakes,
    stop: CancellationToken,
) {
    let (http, https) = match (TcpListener::from_std(http), TcpListener::from_std(https)) {
        (Ok(http), Ok(https)) => (http, https),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("a worker could not register the listening sockets: {e}");
            return;
        }
    };
    tokio::spawn(listeners.clone().serve_handoffs(inbox, acceptor.clone()));
    let plain = tokio::spawn(listeners.clone().serve_plain(http));
    let tls = tokio::spawn(listeners.serve_tls(https, acceptor));
    tokio::select! {
        () = stop.cancelled() => return,
        accepted = async { tokio::try_join!(plain, tls) } => {
            if let Err(e) = accepted {
                tracing::error!("a worker's accept loop failed: {e}");
                return;
            }
        }
    }
    // The accept loops end when draining starts; the connections they
    // started keep this runtime busy until the workers are stopped.
    stop.cancelled().await;
}
