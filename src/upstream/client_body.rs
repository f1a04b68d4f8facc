//! The client's request body, lent to the upstream exchange and taken back
//! once the client's response is complete.
//!
//! An endpoint may answer before it has read the whole body (a 413, an
//! early error, a handler that never reads), and the proxy may answer
//! without forwarding at all. Either way, what the client still sends
//! after its answer belongs to no one: RFC 9113 §8.1 lets the server stop
//! reading it. So the body is shared between the request (which the
//! exchange polls) and an `Unread` handle the proxy keeps; when the
//! response is complete the proxy withdraws the body, the exchange sees an
//! error (and ends its upstream request), and the proxy decides how long
//! it goes on reading what the client sends (`proxy::linger`).

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use hyper::body::{Body, Frame, Incoming, SizeHint};

/// The error a body's boxed errors share.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Shared<B> {
    /// `None` once the body has ended, or has been withdrawn.
    body: Option<B>,
    withdrawn: bool,
    /// The exchange's waker while it waits for the client, so that a
    /// withdrawal wakes it (the body's own waker goes with the body).
    waker: Option<Waker>,
}

/// The request body as the exchange reads it.
pub struct ClientBody<B = Incoming> {
    /// `None` when there is no body at all (most requests): then nothing
    /// is shared or allocated.
    shared: Option<Arc<Mutex<Shared<B>>>>,
    hint: SizeHint,
}

/// The proxy's hold on a request body, to take it back.
pub struct Unread<B = Incoming> {
    shared: Option<Arc<Mutex<Shared<B>>>>,
}

/// The exchange's body was taken back: its response was complete.
#[derive(Debug, thiserror::Error)]
#[error("the request body was withdrawn once its response was complete")]
pub struct Withdrawn;

/// Shares `body` between the request and the proxy.
pub fn share<B: Body>(body: B) -> (ClientBody<B>, Unread<B>) {
    let hint = body.size_hint();
    let shared = (!body.is_end_stream()).then(|| {
        Arc::new(Mutex::new(Shared {
            body: Some(body),
            withdrawn: false,
            waker: None,
        }))
    });
    let unread = Unread {
        shared: shared.clone(),
    };
    (ClientBody { shared, hint }, unread)
}

#[cfg(test)]
impl ClientBody {
    /// No body at all, as a request without one has.
    pub fn empty() -> Self {
        ClientBody {
            shared: None,
            hint: SizeHint::with_exact(0),
        }
    }
}

fn lock<B>(shared: &Mutex<Shared<B>>) -> MutexGuard<'_, Shared<B>> {
    // Nothing panics while holding the lock; a poisoned one is still whole.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B> Unread<B> {
    /// Takes the body back, if the client has not sent all of it yet;
    /// whoever still reads it gets `Withdrawn`.
    pub fn withdraw(self) -> Option<B> {
        let mut shared = lock(self.shared.as_ref()?);
        let body = shared.body.take()?;
        shared.withdrawn = true;
        if let Some(waker) = shared.waker.take() {
            waker.wake();
        }
        Some(body)
    }
}

impl<B> Body for ClientBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let Some(shared) = &self.shared else {
            return Poll::Ready(None);
        };
        let mut shared = lock(shared);
        let Some(body) = shared.body.as_mut() else {
            return match shared.withdrawn {
                true => Poll::Ready(Some(Err(Box::new(Withdrawn)))),
                false => Poll::Ready(None),
            };
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Pending => {
                match &mut shared.waker {
                    Some(waker) => waker.clone_from(cx.waker()),
                    None => shared.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Poll::Ready(None) => {
                shared.body = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let shared = lock(shared);
        match &shared.body {
            Some(body) => body.is_end_stream(),
            None => !shared.withdrawn,
        }
    }

    fn size_hint(&self) -> SizeHint {
        let Some(shared) = &self.shared else {
            return self.hint;
        };
        match &lock(shared).body {
            Some(body) => body.size_hint(),
            None => self.hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, StreamBody};

    type Sent = Result<Frame<Bytes>, std::convert::Infallible>;
    type Chunks = StreamBody<std::pin::Pin<Box<dyn futures_util::Stream<Item = Sent> + Send>>>;

    /// A body whose chunks the test sends as it goes.
    fn chunks() -> (tokio::sync::mpsc::Sender<Sent>, Chunks) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|sent| (sent, rx))
        });
        (tx, StreamBody::new(Box::pin(stream)))
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_leaves_nothing_to_withdraw() {
        let (tx, body) = chunks();
        let (mut lent, unread) = share(body);
        tx.send(Ok(Frame::data(Bytes::from_static(b"abc"))))
            .await
            .unwrap();
        drop(tx);
        let got = (&mut lent).collect().await.unwrap().to_bytes();
        assert_eq!(got, "abc");
        assert!(unread.withdraw().is_none());
        assert!(lent.is_end_stream());
    }

    #[tokio::test]
    async fn a_withdrawn_body_wakes_its_reader_with_an_error() {
        let (tx, body) = chunks();
        let (mut lent, unread) = share(body);
        let reader = tokio::spawn(async move { lent.frame().await.map(|f| f.is_err()) });
        tokio::task::yield_now().await;
        let mut taken = unread.withdraw().expect("the client was still sending");
        assert_eq!(
            reader.await.unwrap(),
            Some(true),
            "the exchange sees an error"
        );
        // What the client sends next is the withdrawer's to read.
        tx.send(Ok(Frame::data(Bytes::from_static(b"more"))))
            .await
            .unwrap();
        let frame = taken.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "more");
    }

    #[test]
    fn no_body_has_nothing_to_withdraw() {
        let (lent, unread) = share(Empty::<Bytes>::new());
        assert!(lent.is_end_stream());
        assert!(lent.shared.is_none(), "nothing shared for no body");
        assert!(unread.withdraw().is_none());
    }
}
