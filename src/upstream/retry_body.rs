//! A request body that can be offered to a second upstream attempt as long
//! as the first one never started sending it.
//!
//! The body sits in a shared slot; each attempt gets a lease that takes it
//! out on its first poll. If an attempt fails before polling (the connect
//! failed: nothing was sent), the body is still in the slot for the next
//! lease. Once taken, it is gone, and a retry is impossible by construction.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};

pub struct BodySlot<B> {
    /// `None` when there is no body at all (most requests): then nothing
    /// is shared and every lease is empty.
    slot: Option<Arc<Mutex<Option<B>>>>,
    hint: SizeHint,
}

impl<B: Body + Unpin> BodySlot<B> {
    pub fn new(body: B) -> Self {
        if body.is_end_stream() {
            return BodySlot {
                slot: None,
                hint: SizeHint::with_exact(0),
            };
        }
        BodySlot {
            hint: body.size_hint(),
            slot: Some(Arc::new(Mutex::new(Some(body)))),
        }
    }

    /// A body for one attempt.
    pub fn lease(&self) -> Lease<B> {
        Lease {
            slot: self.slot.clone(),
            taken: None,
            hint: self.hint,
        }
    }

    /// Whether no attempt has started sending the body.
    pub fn untouched(&self) -> bool {
        match &self.slot {
            Some(slot) => slot.lock().map(|s| s.is_some()).unwrap_or(false),
            None => true,
        }
    }
}

pub struct Lease<B> {
    slot: Option<Arc<Mutex<Option<B>>>>,
    taken: Option<B>,
    hint: SizeHint,
}

impl<B> Lease<B> {
    /// No body at all (a subrequest of the proxy's own).
    pub fn empty() -> Self {
        Lease {
            slot: None,
            taken: None,
            hint: SizeHint::with_exact(0),
        }
    }
}

impl<B: Body + Unpin> Body for Lease<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.taken.is_none() {
            let body = self
                .slot
                .as_ref()
                .and_then(|slot| slot.lock().ok().and_then(|mut s| s.take()));
            match body {
                Some(body) => self.taken = Some(body),
                // No body, or another attempt has it: nothing to send.
                None => return Poll::Ready(None),
            }
        }
        match self.taken.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.taken {
            Some(body) => body.is_end_stream(),
            None => self.slot.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.taken {
            Some(body) => body.size_hint(),
            None => self.hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full};

    #[tokio::test]
    async fn a_body_goes_to_the_first_attempt_that_sends_it() {
        let slot = BodySlot::new(Full::new(Bytes::from_static(b"payload")));
        let (first, second) = (slot.lease(), slot.lease());
        assert!(!first.is_end_stream());
        assert_eq!(first.size_hint().exact(), Some(7));
        assert!(slot.untouched());

        let sent = first.collect().await.unwrap().to_bytes();
        assert_eq!(sent, "payload");
        assert!(!slot.untouched());
        // The body is gone: a later attempt has nothing to send.
        assert!(second.collect().await.unwrap().to_bytes().is_empty());
    }

    #[tokio::test]
    async fn no_body_shares_nothing_and_can_always_be_retried() {
        let slot = BodySlot::new(Empty::<Bytes>::new());
        assert!(slot.slot.is_none());
        let lease = slot.lease();
        assert!(lease.is_end_stream());
        assert_eq!(lease.size_hint().exact(), Some(0));
        assert!(lease.collect().await.unwrap().to_bytes().is_empty());
        assert!(slot.untouched());
    }
}
