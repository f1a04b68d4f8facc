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
    slot: Arc<Mutex<Option<B>>>,
    end_stream: bool,
    hint: SizeHint,
}

impl<B: Body + Unpin> BodySlot<B> {
    pub fn new(body: B) -> Self {
        BodySlot {
            end_stream: body.is_end_stream(),
            hint: body.size_hint(),
            slot: Arc::new(Mutex::new(Some(body))),
        }
    }

    /// A body for one attempt.
    pub fn lease(&self) -> Lease<B> {
        Lease {
            slot: self.slot.clone(),
            taken: None,
            end_stream: self.end_stream,
            hint: self.hint,
        }
    }

    /// Whether no attempt has started sending the body.
    pub fn untouched(&self) -> bool {
        self.slot.lock().map(|s| s.is_some()).unwrap_or(false)
    }
}

pub struct Lease<B> {
    slot: Arc<Mutex<Option<B>>>,
    taken: Option<B>,
    end_stream: bool,
    hint: SizeHint,
}

impl<B: Body + Unpin> Body for Lease<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.taken.is_none() {
            let body = self.slot.lock().ok().and_then(|mut s| s.take());
            match body {
                Some(body) => self.taken = Some(body),
                // Another attempt has it; this one has nothing to send.
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
            None => self.end_stream,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.taken {
            Some(body) => body.size_hint(),
            None => self.hint,
        }
    }
}
