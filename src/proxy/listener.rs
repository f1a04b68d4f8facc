//! Accept loops for the plain and TLS listeners, and their shutdown.
//!
//! Each connection is served on its own task by hyper-util's auto builder
//! (HTTP/1.1, and HTTP/2 by preface or ALPN), on the worker the hand-off
//! picks (see `handoff`). A failed accept or handshake
//! concerns one client and never stops the loop. Every connection is watched
//! by a `GracefulShutdown`, so that draining finishes in-flight requests on
//! HTTP/1.1 and sends GOAWAY on HTTP/2.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use super::handler::Proxy;
use super::handoff::{Counted, Handoff, WorkerShares};
use super::limits::Limits;
use super::linger::{IntoTcp, Lingering};
use super::proxy_protocol;
use super::tls::{Accepted, Handshakes};
use crate::acme::challenges::ACME_TLS_ALPN;
use crate::connection::ConnInfo;
use crate::metrics::{HandshakeLabels, ListenerLabels};
use crate::table::GlobalSettings;
use crate::upstream::{Backend, LoadBalance, Upstream};

/// What the listeners share: the proxy, the HTTP settings, the connection
/// budget, and the shutdown signal.
#[derive(Clone)]
pub struct Listeners {
    proxy: Arc<Proxy>,
    /// The HTTP server for the built-in settings; connections under other
    /// settings (the controller ConfigMap's) get their own.
    server: Arc<(ConnSettings, auto::Builder<TokioExecutor>)>,
    limits: Limits,
    permits: Arc<ConnectionBudget>,
    stop: watch::Receiver<bool>,
    connections: TaskTracker,
    /// The workers' connection counts and this worker's index in them;
    /// `None` before the workers start.
    shares: Option<(Arc<WorkerShares>, usize)>,
}

/// Drives the shutdown of the listeners.
pub struct Drain {
    stop: watch::Sender<bool>,
    connections: TaskTracker,
}

impl Drain {
    /// Stops accepting, asks every connection to finish (HTTP/1.1: after the
    /// request in flight; HTTP/2: GOAWAY), and waits at most `timeout` for
    /// them and for upgraded tunnels. Returns whether all finished in time.
    pub async fn drain(self, proxy: &Proxy, timeout: Duration) -> bool {
        let _ = self.stop.send(true);
        let tunnels = proxy.tunnels().clone();
        tunnels.close();
        self.connections.close();
        let connections = self.connections;
        let everything = async move {
            connections.wait().await;
            tunnels.wait().await;
        };
        tokio::time::timeout(timeout, everything).await.is_ok()
    }
}

/// A client connection's HTTP settings: the flags, with the controller
/// ConfigMap's `keep-alive`, `client-header-timeout` and
/// `http2-max-concurrent-streams` over them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ConnSettings {
    keep_alive: bool,
    /// hyper has one timer for a request head and for the idle wait before
    /// it, so the lower of the two applies to both.
    header_timeout: Duration,
    h2_max_concurrent_streams: u32,
    /// Requests before the connection is closed (`keep-alive-requests`).
    requests: u64,
}

impl ConnSettings {
    fn new(limits: &Limits, edge: &GlobalSettings) -> Self {
        let header_timeout = edge.header_timeout.unwrap_or(limits.header_read_timeout);
        let idle = edge.keep_alive.timeout;
        ConnSettings {
            keep_alive: idle.is_some(),
            header_timeout: idle.map_or(header_timeout, |idle| idle.min(header_timeout)),
            h2_max_concurrent_streams: edge
                .h2_max_concurrent_streams
                .unwrap_or(limits.h2_max_concurrent_streams),
            requests: edge.keep_alive.requests,
        }
    }

    fn server(&self, limits: &Limits) -> auto::Builder<TokioExecutor> {
        let mut server = auto::Builder::new(TokioExecutor::new());
        server
            .http1()
            .timer(TokioTimer::new())
            .max_buf_size(limits.max_header_bytes.max(8192))
            .keep_alive(self.keep_alive)
            .header_read_timeout(self.header_timeout);
        // The head limit applies to HTTP/2 too: a header list past it is
        // refused (431) as an HTTP/1.1 head past it is.
        let header_list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
        server
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.h2_max_concurrent_streams)
            .max_header_list_size(header_list)
            // RFC 8441: WebSockets over HTTP/2 (see `phase::upgrade`).
            .enable_connect_protocol();
        server
    }
}

impl Listeners {
    pub fn new(proxy: Arc<Proxy>, limits: Limits) -> (Self, Drain) {
        let base = ConnSettings::new(&limits, &GlobalSettings::default());
        let server = Arc::new((base, base.server(&limits)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let connections = TaskTracker::new();
        let listeners = Listeners {
            proxy,
            server,
            limits,
            permits: Arc::new(ConnectionBudget::new(limits.max_connections)),
            stop: stop_rx,
            connections: connections.clone(),
            shares: None,
        };
        let drain = Drain {
            stop: stop_tx,
            connections,
        };
        (listeners, drain)
    }

    /// The same listeners for worker `index`, forwarding through that
    /// worker's own proxy and sharing its connections out by `shares`.
    pub fn for_worker(&self, proxy: Arc<Proxy>, shares: Arc<WorkerShares>, index: usize) -> Self {
        Listeners {
            proxy,
            shares: Some((shares, index)),
            ..self.clone()
        }
    }

    pub async fn serve_plain(self, listener: TcpListener) {
        while let Some((stream, conn, permit)) = self.accept(&listener, false).await {
            match self.place(stream) {
                Placed::Here(stream, counted) => self.start_plain(stream, conn, permit, counted),
                Placed::There(stream, counted) => pass(stream, conn, permit, false, counted),
            }
        }
    }

    pub async fn serve_tls(self, listener: TcpListener, acceptor: Handshakes) {
        while let Some((stream, conn, permit)) = self.accept(&listener, true).await {
            match self.place(stream) {
                Placed::Here(stream, counted) => {
                    self.start_tls(stream, conn, permit, counted, &acceptor)
                }
                Placed::There(stream, counted) => pass(stream, conn, permit, true, counted),
            }
        }
    }

    /// Serves the connections other workers pass to this one.
    pub async fn serve_handoffs(
        self,
        mut inbox: mpsc::UnboundedReceiver<Handoff>,
        acceptor: Handshakes,
    ) {
        while let Some(handoff) = inbox.recv().await {
            let Handoff {
                stream,
                conn,
                permit,
                tls,
                counted,
            } = handoff;
            let stream = match TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(client = %conn.client, "a passed connection could not be registered: {e}");
                    continue;
                }
            };
            if tls {
                self.start_tls(stream, conn, permit, Some(counted), &acceptor);
            } else {
                self.start_plain(stream, conn, permit, Some(counted));
            }
        }
    }

    /// Which worker serves a connection this one accepted.
    fn place(&self, stream: TcpStream) -> Placed {
        let Some((shares, me)) = &self.shares else {
            return Placed::Here(stream, None);
        };
        let counted = shares.place(*me);
        if counted.worker() == *me {
            Placed::Here(stream, Some(counted))
        } else {
            Placed::There(stream, counted)
        }
    }

    fn start_plain(
        &self,
        stream: TcpStream,
        conn: ConnInfo,
        permit: OwnedSemaphorePermit,
        counted: Option<Counted>,
    ) {
        let open = OpenConnection::new(&self.proxy, "http", counted);
        let me = self.clone();
        self.connections.spawn(async move {
            let Some((stream, conn)) = me.proxied(stream, conn).await else {
                return;
            };
            me.serve(Lingering::new(stream, (open, permit)), conn, false)
                .await
        });
    }

    /// With `--proxy-protocol`, reads the header and takes the client
    /// address from it; `None` when the connection must be closed.
    async fn proxied(
        &self,
        mut stream: TcpStream,
        mut conn: ConnInfo,
    ) -> Option<(TcpStream, ConnInfo)> {
        if !self.proxy.table().load().edge.proxy_protocol {
            return Some((stream, conn));
        }
        match proxy_protocol::read_header(&mut stream, self.limits.header_read_timeout).await {
            Ok(Some(client)) => {
                conn = ConnInfo::new(client, conn.local, conn.tls);
                Some((stream, conn))
            }
            Ok(None) => Some((stream, conn)),
            Err(e) => {
                self.proxy.telemetry().metrics.proxy_protocol_rejected.inc();
                tracing::debug!(peer = %conn.client, "connection closed: {e}");
                None
            }
        }
    }

    fn start_tls(
        &self,
        stream: TcpStream,
        conn: ConnInfo,
        permit: OwnedSemaphorePermit,
        counted: Option<Counted>,
        acceptor: &Handshakes,
    ) {
        let open = OpenConnection::new(&self.proxy, "https", counted);
        let (me, acceptor) = (self.clone(), acceptor.clone());
        self.connections.spawn(async move {
            let Some((stream, mut conn)) = me.proxied(stream, conn).await else {
                return;
            };
            let timeout = me.limits.tls_handshake_timeout;
            let outcome = tokio::time::timeout(timeout, acceptor.accept(stream)).await;
            let reason = match &outcome {
                Ok(Ok(Accepted::Passthrough(..))) => "passthrough".to_owned(),
                Ok(Ok(_)) => String::new(),
                Ok(Err(e)) => handshake_failure(e),
                Err(_) => "timeout".to_owned(),
            };
            let result = match reason.as_str() {
                "" => "ok",
                "passthrough" => "passthrough",
                _ => "error",
            };
            let labels = HandshakeLabels { result, reason };
            me.proxy
                .telemetry()
                .metrics
                .tls_handshakes
                .get_or_create(&labels)
                .inc();
            match outcome {
                Ok(Ok(Accepted::Tls(mut tls, _)))
                    if tls.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) =>
                {
                    // A TLS-ALPN-01 validation: the handshake was the answer.
                    let _ = tls.shutdown().await;
                }
                Ok(Ok(Accepted::Tls(tls, peer))) => {
                    conn.peer_cert = peer.map(Arc::new);
                    conn.tls_names = crate::tls::openssl_names(tls.get_ref().1);
                    // RFC 9113 §3.3: a connection that chose `h2` by ALPN
                    // speaks only HTTP/2 (anything else is a bad preface).
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    me.serve(Lingering::new(*tls, (open, permit)), conn, h2)
                        .await
                }
                Ok(Ok(Accepted::Passthrough(stream, backend))) => {
                    let _held = (open, permit);
                    pass_through(stream, &backend, &conn).await
                }
                Ok(Err(e)) => {
                    tracing::debug!(client = %conn.client, "TLS handshake failed: {e}")
                }
                Err(_) => tracing::debug!(client = %conn.client, "TLS handshake timed out"),
            }
        });
    }

    /// The next connection, or `None` once shutdown stops accepting. A
    /// connection accepted while every slot is taken waits for one, and
    /// this loop accepts nothing more meanwhile (a slot is never held by a
    /// loop waiting to accept, which would keep it from the connections
    /// of the other listener).
    async fn accept(
        &self,
        listener: &TcpListener,
        tls: bool,
    ) -> Option<(tokio::net::TcpStream, ConnInfo, OwnedSemaphorePermit)> {
        let mut stop = self.stop.clone();
        loop {
            if *stop.borrow() {
                return None;
            }
            let accepted = tokio::select! {
                _ = stop.changed() => continue,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, client)) => {
                    let permit = tokio::select! {
                        _ = stop.changed() => continue,
                        permit = self.permits.acquire() => permit?,
                    };
                    let _ = stream.set_nodelay(true);
                    let Ok(local) = stream.local_addr() else {
                        continue;
                    };
                    return Some((stream, ConnInfo::new(client, local, tls), permit));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Serves one client connection; its stream holds the connection's
    /// slot and count until it is dropped (or has lingered, see `linger`).
    /// `h2_only`: TLS chose `h2`, so HTTP/1.1 is not served on it.
    async fn serve<S>(
        self,
        stream: Lingering<S, (OpenConnection, OwnedSemaphorePermit)>,
        conn: ConnInfo,
        h2_only: bool,
    ) where
        S: IntoTcp + AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let proxy = self.proxy.clone();
        let settings = ConnSettings::new(&self.limits, &proxy.table().load().edge);
        let own;
        let server = match (settings == self.server.0, h2_only) {
            (true, false) => &self.server.1,
            (false, false) => {
                own = settings.server(&self.limits);
                &own
            }
            (same, true) => {
                let server = match same {
                    true => self.server.1.clone(),
                    false => settings.server(&self.limits),
                };
                own = server.http2_only();
                &own
            }
        };
        let conn = Arc::new(conn);
        let info = conn.clone();
        // `keep-alive-requests`: an HTTP/1.1 connection is shut down
        // gracefully once it has taken that many (the last response says
        // `Connection: close`). HTTP/2 connections are not counted: a
        // GOAWAY every thousand streams would cost multiplexing clients
        // (gRPC above all) a new connection and handshake for nothing.
        let counts = Arc::new(StreamCounts::default());
        let shut = counts.clone();
        let service = service_fn(move |req| {
            let (proxy, conn) = (proxy.clone(), info.clone());
            let http1 = req.version() < http::Version::HTTP_2;
            let served = counts.served.fetch_add(1, Ordering::Relaxed) + 1;
            if http1 && served == settings.requests {
                counts.enough.notify_one();
            }
            let mut answer = Unanswered {
                counts: counts.clone(),
                answered: false,
            };
            // Boxed: HTTP/2 spawns a task per stream, and the future would
            // otherwise be moved whole several times on the way there.
            Box::pin(async move {
                let response = proxy.handle(req, &conn).await;
                answer.answered();
                Ok::<_, Infallible>(response)
            })
        });
        let shutting = shutting(self.stop.clone(), shut);
        let io = TokioIo::new(stream);
        // An HTTP/2-only connection has no HTTP/1.1 upgrades to offer
        // (hyper-util's upgradeable connection would also accept HTTP/1.1).
        let result = if h2_only {
            drive(server.serve_connection(io, service), shutting).await
        } else {
            drive(server.serve_connection_with_upgrades(io, service), shutting).await
        };
        if let Err(e) = &result {
            tracing::debug!(client = %conn.client, "connection ended with an error: {e}");
        }
    }
}

/// Ready when the process drains, or when the connection has had enough
/// (`keep-alive-requests`, cancelled streams): then it shuts down
/// gracefully.
async fn shutting(mut stop: watch::Receiver<bool>, counts: Arc<StreamCounts>) {
    let draining = async move {
        while !*stop.borrow_and_update() {
            if stop.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = draining => {}
        () = counts.enough.notified() => {}
    }
}

/// Serves a connection to its end; once `shutting` is ready it finishes
/// what it has begun and takes nothing new.
async fn drive<C: GracefulConnection>(
    connection: C,
    shutting: impl Future<Output = ()>,
) -> Result<(), C::Error> {
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        () = shutting => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// `--max-connections`: a slot per open client connection. Reaching the
/// limit, and leaving it, are each logged once.
struct ConnectionBudget {
    slots: Arc<Semaphore>,
    max: usize,
    full: AtomicBool,
}

impl ConnectionBudget {
    fn new(max: usize) -> Self {
        ConnectionBudget {
            slots: Arc::new(Semaphore::new(max)),
            max,
            full: AtomicBool::new(false),
        }
    }

    /// A slot, once one is free; `None` if the budget is closed.
    async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Some(slot);
        }
        if !self.full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max = self.max,
                "--max-connections reached: a new connection waits, unserved, until one closes"
            );
        }
        let slot = self.slots.clone().acquire_owned().await.ok()?;
        if self.full.swap(false, Ordering::Relaxed) {
            tracing::info!(
                max = self.max,
                "below --max-connections again: accepting new connections"
            );
        }
        Some(slot)
    }
}

/// Streams a client may cancel before their answer (as an HTTP/2 rapid
/// reset does, CVE-2023-44487) before its connection is shut down, when
/// they are also most of its streams. Browsers cancel a few when a page is
/// left; a flood cancels thousands, each of which may already have reached
/// an endpoint.
const CANCELLED_STREAMS: u64 = 256;

/// A connection's requests so far, those the client gave up before their
/// answer, and the signal that it has had enough (shut it down).
#[derive(Default)]
struct StreamCounts {
    served: AtomicU64,
    cancelled: AtomicU64,
    enough: Notify,
}

/// Held by a request until it is answered; dropped before, it counts the
/// request as cancelled by the client, and a connection that cancels too
/// many is shut down (HTTP/2: GOAWAY, so no further stream is taken).
struct Unanswered {
    counts: Arc<StreamCounts>,
    answered: bool,
}

impl Unanswered {
    fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let cancelled = self.counts.cancelled.fetch_add(1, Ordering::Relaxed) + 1;
        let served = self.counts.served.load(Ordering::Relaxed);
        if cancelled > CANCELLED_STREAMS && cancelled * 2 > served {
            tracing::debug!(
                "a client cancelled {cancelled} of {served} streams: closing its connection"
            );
            self.counts.enough.notify_one();
        }
    }
}

/// Counts a client connection as open until dropped: in the metrics, and
/// in the workers' shares.
struct OpenConnection {
    gauge: Gauge<i64, AtomicI64>,
    /// Held for its drop, which gives the worker's count back.
    _counted: Option<Counted>,
}

impl OpenConnection {
    fn new(proxy: &Proxy, listener: &'static str, counted: Option<Counted>) -> Self {
        let gauge = proxy
            .telemetry()
            .metrics
            .open_connections
            .get_or_create(&ListenerLabels { listener })
            .clone();
        gauge.inc();
        OpenConnection {
            gauge,
            _counted: counted,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// `ssl-passthrough`: the connection, ClientHello included, joined byte
/// for byte to one of the backend's endpoints.
async fn pass_through(mut client: TcpStream, backend: &Backend, conn: &ConnInfo) {
    let target = match &*backend.upstream() {
        Upstream::Endpoints(set) => match set.pick(LoadBalance::RoundRobin) {
            Some(pick) => pick.addr.to_string(),
            None => {
                tracing::debug!(client = %conn.client, service = %backend.service, "passthrough: no ready endpoint");
                return;
            }
        },
        Upstream::External(authority) => authority.to_string(),
    };
    let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&target));
    match connect
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    {
        Ok(mut upstream) => {
            let _ = upstream.set_nodelay(true);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(client = %conn.client, "passthrough ended: {e}");
            }
        }
        Err(e) => {
            tracing::debug!(client = %conn.client, upstream = %target, "passthrough connect failed: {e}")
        }
    }
}

/// A bounded label for why a handshake failed: the rustls error's kind
/// (`alert_received`, `peer_incompatible`, ...) or the I/O error's.
fn handshake_failure(error: &std::io::Error) -> String {
    if let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        let debug = format!("{tls:?}");
        let variant = debug.split(['(', ' ', '{']).next().unwrap_or("other");
        return snake_case(variant);
    }
    match error.kind() {
        std::io::ErrorKind::UnexpectedEof => "eof".into(),
        std::io::ErrorKind::ConnectionReset => "reset".into(),
        _ => "io".into(),
    }
}

fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Hands a connection to the worker it was counted to. Should that worker
/// have stopped (the process is ending), the connection closes.
fn pass(
    stream: TcpStream,
    conn: ConnInfo,
    permit: OwnedSemaphorePermit,
    tls: bool,
    counted: Counted,
) {
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(client = %conn.client, "a connection could not be passed on: {e}");
            return;
        }
    };
    let handoff = Handoff {
        stream,
        conn,
        permit,
        tls,
        counted,
    };
    if let Err(client) = handoff.send() {
        tracing::debug!(%client, "the worker to serve a connection has stopped");
    }
}

/// Where an accepted connection is served.
enum Placed {
    /// By the worker that accepted it (counted to it when balancing).
    Here(TcpStream, Option<Counted>),
    /// By the worker it was counted to.
    There(TcpStream, Counted),
}
