//! Upstream send and read timeouts with nginx's meaning.
//!
//! `proxy-send-timeout` bounds the gap between two successive chunks of the
//! request body going upstream; `proxy-read-timeout` bounds the wait for the
//! response once the body is sent. A healthy long upload never times out,
//! a stalled one does. The request body is wrapped so that every chunk
//! records the time; the forwarder sleeps until the nearest deadline.
//! `proxy-read-timeout` also bounds each silence within the response body.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::uri::Authority;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// When the request body last moved, and whether it is all sent.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    /// Nanoseconds after `started` of the last chunk (or of the end).
    last: AtomicU64,
    done: AtomicBool,
    /// The body is waiting for the client to send more.
    awaiting_client: AtomicBool,
    /// Body bytes taken from the client so far.
    received: AtomicU64,
    /// The body went past the route's limit (`proxy-body-size`).
    over_limit: AtomicBool,
}

impl Progress {
    /// Progress counted from `started`.
    pub fn new(body_already_done: bool, started: Instant) -> Arc<Self> {
        Arc::new(Progress {
            started,
            last: AtomicU64::new(0),
            done: AtomicBool::new(body_already_done),
            awaiting_client: AtomicBool::new(false),
            received: AtomicU64::new(0),
            over_limit: AtomicBool::new(false),
        })
    }

    /// Whether the body went past the route's limit. An HTTP/2 (or TLS)
    /// upstream exchange loses that cause in its own error, so the
    /// attempts ask here.
    pub fn body_over_limit(&self) -> bool {
        self.over_limit.load(Ordering::Acquire)
    }

    /// Whether the whole request body has been read (or there was none).
    pub fn body_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        let nanos = self.started.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.last.store(nanos, Ordering::Release);
    }

    /// The instant past which the exchange has timed out, and which of the
    /// timeouts that is. While the body waits for the client, the shorter
    /// of `send` and `client_body` (`client-body-timeout`) applies: the
    /// body streams as it arrives, so the endpoint is kept waiting too.
    pub fn deadline(
        &self,
        send: Duration,
        read: Duration,
        client_body: Duration,
    ) -> (Instant, Stalled) {
        let last = self.started + Duration::from_nanos(self.last.load(Ordering::Acquire));
        if self.done.load(Ordering::Acquire) {
            (last + read, Stalled::Response)
        } else if self.awaiting_client.load(Ordering::Acquire) {
            (last + send.min(client_body), Stalled::Client)
        } else {
            (last + send, Stalled::Upstream)
        }
    }
}

/// Which side stopped moving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stalled {
    /// The client stopped sending its request body: 408.
    Client,
    /// The upstream stopped taking the request body (proxy-send-timeout): 504.
    Upstream,
    /// The response did not come (proxy-read-timeout).
    Response,
}

/// A body that reports its progress.
pub struct Watched<B> {
    inner: B,
    progress: Arc<Progress>,
}

impl<B: Body + Unpin> Watched<B> {
    pub fn new(inner: B, started: Instant) -> (Self, Arc<Progress>) {
        let progress = Progress::new(inner.is_end_stream(), started);
        let body = Watched {
            inner,
            progress: progress.clone(),
        };
        (body, progress)
    }
}

impl<B: Body + Unpin> Body for Watched<B>
where
    B::Data: bytes::Buf,
    B::Error: AsRef<dyn std::error::Error + Send + Sync>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let waiting = polled.is_pending();
        self.progress
            .awaiting_client
            .store(waiting, Ordering::Release);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = bytes::Buf::remaining(data) as u64;
                    self.progress.received.fetch_add(len, Ordering::Relaxed);
                }
                self.progress.touch();
            }
            Poll::Ready(None) => {
                self.progress.touch();
                self.progress.done.store(true, Ordering::Release);
            }
            Poll::Ready(Some(Err(e))) => {
                if e.as_ref().is::<http_body_util::LengthLimitError>() {
                    self.progress.over_limit.store(true, Ordering::Release);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body whose endpoint may not go quiet for longer than the read
/// timeout between two chunks, as with nginx's `proxy_read_timeout`. The
/// clock runs only while the body waits for the endpoint: a client that is
/// slow to take the response never trips it, and a body that has already
/// arrived whole costs no timer.
pub struct ReadPaced<B> {
    inner: B,
    read: Duration,
    upstream: Authority,
    /// Armed at the first wait after a chunk; `None` until a wait happens.
    quiet: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<B> ReadPaced<B> {
    pub fn new(inner: B, read: Duration, upstream: Authority) -> Self {
        ReadPaced {
            inner,
            read,
            upstream,
            quiet: None,
            armed: false,
        }
    }
}

/// The endpoint stopped sending in the middle of a response body.
#[derive(Debug)]
pub struct BodyStalled(Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the upstream sent nothing for {:?} within a response body",
            self.0
        )
    }
}

impl std::error::Error for BodyStalled {}

impl<B> Body for ReadPaced<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let me = &mut *self;
        match Pin::new(&mut me.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                me.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !me.armed {
                    let deadline = tokio::time::Instant::now() + me.read;
                    match &mut me.quiet {
                        Some(quiet) => quiet.as_mut().reset(deadline),
                        None => me.quiet = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                    me.armed = true;
                }
                let Some(quiet) = me.quiet.as_mut() else {
                    return Poll::Pending;
                };
                if quiet.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                tracing::warn!(upstream = %me.upstream, timeout = ?me.read, "upstream response body stalled");
                Poll::Ready(Some(Err(Box::new(BodyStalled(me.read)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Runs `exchange` until it finishes or the progress stalls past a timeout.
/// The exchange is pinned by the caller, so that this future does not hold
/// a second copy of it.
pub async fn within<F: std::future::Future>(
    mut exchange: std::pin::Pin<&mut F>,
    progress: &Progress,
    send: Duration,
    read: Duration,
    client_body: Duration,
) -> Result<F::Output, Stalled> {
    loop {
        let (mut deadline, _) = progress.deadline(send, read, client_body);
        if !progress.body_done() {
            // Which side the body waits for changes while this sleeps (at
            // first nothing has polled it yet), and the client's timeout
            // may be the shorter: look again by then at the latest.
            deadline = deadline.min(Instant::now() + send.min(client_body));
        }
        tokio::select! {
            // The exchange first: its result stands even at the deadline.
            biased;
            output = exchange.as_mut() => return Ok(output),
            _ = tokio::time::sleep_until(deadline.into()) => {
                // Progress may have moved the deadline while we slept.
                let (now_deadline, now_stalled) = progress.deadline(send, read, client_body);
                if now_deadline <= Instant::now() {
                    return Err(now_stalled);
                }
            }
        }
    }
}
