//! Lingering close, as nginx's: a client connection that is closed while
//! the client is still sending (a head too large answered 431, a body
//! answered early with 413) would be reset by the kernel, and the client
//! could lose the answer already sent. So when the connection's stream is
//! dropped with unread input, its socket is kept for a while: FIN is sent,
//! and what still arrives is read and thrown away.
//!
//! The stream hyper serves is wrapped; its `Drop` looks (one non-blocking
//! peek) for unread input and, if there is some, hands the socket to a
//! task. Nothing else changes for the connection and no descriptor is
//! duplicated.
//!
//! A request body the client is still sending when its response is
//! complete lingers the same way, with the same bounds (`unread_body`):
//! an HTTP/2 stream is read and dropped, then reset with `NO_ERROR` (RFC
//! 9113 §8.1); an HTTP/1.1 connection is closed after the response, and
//! lingers as above.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Version;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::upstream::client_body::Unread;

/// How long, and how much, a closing connection's unread input is read
/// and thrown away: a client uploading a large body answered early (413)
/// must finish sending before it reads the answer. nginx's
/// `lingering_time` is 30 s; reading and dropping is cheap, and the byte
/// bound keeps one client from holding a socket longer.
const LINGER_FOR: Duration = Duration::from_secs(10);
const LINGER_BYTES: usize = 64 << 20;

/// Ends a request body that the client may still be sending now that its
/// response is complete (the endpoint answered without reading it all, or
/// the proxy answered without forwarding it): the body is withdrawn from
/// the upstream exchange, which ends its upstream request.
///
/// Over HTTP/2 the stream goes on being read and dropped, within the
/// bounds of a lingering close, and is then reset with `NO_ERROR`. A reset
/// sent at once with the response can reach the client in the same read as
/// the response, while it is still uploading; some clients (curl 7.x) then
/// report a stream error and drop the response. Read on, the client sees
/// its answer, stops sending and ends the stream itself; the bounds keep
/// one that does not from holding the stream. Over HTTP/1.1 the body is
/// dropped: hyper closes the connection after the response (the message
/// cannot be cut short otherwise), and the connection lingers.
pub fn unread_body(unread: Unread, version: Version, quiet: Duration) {
    let Some(body) = unread.withdraw() else {
        return;
    };
    if version != Version::HTTP_2 {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(discard(body, quiet));
    }
}

/// Reads and drops what a stream still brings, for a bounded time and
/// amount, and while the client never goes `quiet` for longer
/// (`client-body-timeout`); the body is then dropped, which resets the
/// stream if the client has not ended it.
async fn discard(mut body: Incoming, quiet: Duration) {
    let drain = async {
        let mut total = 0;
        while total < LINGER_BYTES {
            match tokio::time::timeout(quiet, body.frame()).await {
                Ok(Some(Ok(frame))) => total += frame.data_ref().map_or(0, bytes::Bytes::len),
                Ok(Some(Err(_)) | None) | Err(_) => break,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_FOR, drain).await;
}

/// A stream whose TCP socket can be taken back when it is dropped.
pub trait IntoTcp {
    fn into_tcp(self) -> TcpStream;
}

impl IntoTcp for TcpStream {
    fn into_tcp(self) -> TcpStream {
        self
    }
}

impl IntoTcp for TlsStream<TcpStream> {
    fn into_tcp(self) -> TcpStream {
        self.into_inner().0
    }
}

/// A client stream that lingers when dropped with unread input; `held`
/// (the connection's slot and count) stays with it until then.
pub struct Lingering<S: IntoTcp, H: Send + 'static> {
    stream: Option<S>,
    held: Option<H>,
}

impl<S: IntoTcp, H: Send + 'static> Lingering<S, H> {
    pub fn new(stream: S, held: H) -> Self {
        Lingering {
            stream: Some(stream),
            held: Some(held),
        }
    }

    fn inner(self: Pin<&mut Self>) -> Pin<&mut S>
    where
        S: Unpin,
        H: Unpin,
    {
        // Taken only by `Drop`, after which nothing polls it.
        let stream = self
            .get_mut()
            .stream
            .as_mut()
            .expect("present until dropped");
        Pin::new(stream)
    }
}

impl<S: IntoTcp, H: Send + 'static> Drop for Lingering<S, H> {
    fn drop(&mut self) {
        let (Some(stream), held) = (self.stream.take(), self.held.take()) else {
            return;
        };
        let Ok(socket) = stream.into_tcp().into_std() else {
            return;
        };
        let mut byte = [0u8; 1];
        let pending = matches!(socket.peek(&mut byte), Ok(n) if n > 0);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if pending {
            runtime.spawn(linger(socket, held));
        }
    }
}

/// Sends FIN, then reads and discards what the client still sends, for a
/// bounded time and amount, before the socket closes.
async fn linger<H>(socket: std::net::TcpStream, _held: Option<H>) {
    use tokio::io::AsyncReadExt;
    let _ = socket.shutdown(std::net::Shutdown::Write);
    let Ok(mut socket) = TcpStream::from_std(socket) else {
        return;
    };
    let drain = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0;
        while total < LINGER_BYTES {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_FOR, drain).await;
}

impl<S, H> AsyncRead for Lingering<S, H>
where
    S: IntoTcp + AsyncRead + Unpin,
    H: Send + Unpin + 'static,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.inner().poll_read(cx, buf)
    }
}

impl<S, H> AsyncWrite for Lingering<S, H>
where
    S: IntoTcp + AsyncWrite + Unpin,
    H: Send + Unpin + 'static,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.inner().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_shutdown(cx)
    }
}
