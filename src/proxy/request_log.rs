//! Per-request telemetry: a record filled in while the request is handled,
//! finished when the response body ends (or is dropped, when the client
//! goes away), so that durations and byte counts cover the whole response.

use std::net::IpAddr;

use crate::policy::rate_limit::Held;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Buf;
use http::{HeaderValue, Method, Uri, Version};
use hyper::body::{Body, Frame, SizeHint};

use crate::table::Route;

use super::linger;
use crate::metrics::{method_index, Finished, RouteLabels, RouteNames};
use crate::telemetry::access_log::AccessEntry;
use crate::telemetry::log_line::{Captured, Line};
use crate::telemetry::spans::RequestTrace;
use crate::telemetry::Telemetry;
use crate::upstream::client_body::Unread;
use crate::upstream::exchange_timeouts::Progress;
use crate::upstream::Backend;

/// What is known about one request.
pub struct RequestRecord {
    /// Arrival on the monotonic clock. The wall-clock arrival time is
    /// worked out only if an access log line is written.
    pub started: Instant,
    pub client: IpAddr,
    pub method: Method,
    pub version: Version,
    /// Host and URI are kept as sent (shared buffers, no copies); only the
    /// access log reads them.
    pub host: Option<HeaderValue>,
    pub uri: Uri,
    pub request_id: HeaderValue,
    pub route: Option<Arc<Route>>,
    pub backend: Option<Arc<Backend>>,
    pub upstream: Option<http::uri::Authority>,
    pub upstream_time: Option<Duration>,
    pub progress: Option<Arc<Progress>>,
    pub status: u16,
    /// The request's place in `limit-connections`, held until its
    /// response has been sent.
    pub held: Option<Held>,
    /// What an ingress-nginx-style access log line needs besides the
    /// above; only while such a line is written.
    pub log: Option<Box<Captured>>,
    /// The server span, on a traced request; it ends with the response.
    pub trace: Option<Box<RequestTrace>>,
    /// No access log line (a snippet's `access_log off`).
    pub quiet: bool,
}

impl RequestRecord {
    pub fn new(
        client: IpAddr,
        method: Method,
        version: Version,
        host: Option<HeaderValue>,
        uri: Uri,
        request_id: HeaderValue,
    ) -> Self {
        RequestRecord {
            started: Instant::now(),
            client,
            method,
            version,
            host,
            uri,
            request_id,
            route: None,
            backend: None,
            upstream: None,
            upstream_time: None,
            progress: None,
            status: 0,
            held: None,
            log: None,
            trace: None,
            quiet: false,
        }
    }

    fn finish(self, sent: u64, telemetry: &Telemetry) {
        if let Some(trace) = self.trace {
            trace.end(self.status);
        }
        let duration = self.started.elapsed();
        let ingress = self.route.as_ref().and_then(|r| r.ingress.as_ref());
        // The Ingress's namespace, or the HTTPRoute's.
        let origin = self
            .route
            .as_ref()
            .and_then(|r| r.ingress.as_ref().or(r.gateway.as_ref().map(|g| &g.origin)));
        let namespace = origin.map_or("", |k| k.namespace.as_str());
        let received = self.progress.as_ref().map_or(0, |p| p.received());
        let finished = Finished {
            method: method_index(&self.method),
            status: self.status,
            duration,
            upstream_time: self.upstream_time,
            received,
            sent,
        };
        let m = &telemetry.metrics;
        let slot = self.route.as_ref().map_or(&m.unrouted, |r| &r.metrics);
        let names = || {
            let route = RouteLabels {
                namespace: namespace.to_owned(),
                ingress: ingress.map(|k| k.name.clone()).unwrap_or_default(),
                service: self
                    .backend
                    .as_ref()
                    .map(|b| b.service.name.clone())
                    .unwrap_or_default(),
            };
            let host = self.route.as_ref().map(|r| r.host.to_string());
            RouteNames {
                route,
                host: host.unwrap_or_default(),
                path: self.route.as_ref().map(|r| r.path.clone()),
            }
        };
        m.route(slot, names).record(m, &finished);

        if self.quiet {
            return;
        }
        if let (Some(log), Some(captured)) = (&telemetry.access_log, &self.log) {
            let backend = self.route.as_ref().and(self.backend.as_deref());
            log.write_line(&Line {
                captured,
                client: self.client,
                method: &self.method,
                protocol: version_label(self.version),
                uri: &self.uri,
                host: self.host.as_ref().and_then(|h| h.to_str().ok()),
                scheme: if captured.https { "https" } else { "http" },
                status: self.status,
                body_sent: sent,
                body_received: received,
                duration,
                finished: self.started + duration,
                request_id: self.request_id.to_str().unwrap_or_default(),
                origin: origin.map(|k| (k.namespace.as_str(), k.name.as_str())),
                backend,
                now: time::OffsetDateTime::now_utc(),
            });
        } else if let Some(log) = &telemetry.access_log {
            let arrived = time::OffsetDateTime::now_utc() - duration;
            let time = arrived
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let ingress_name = ingress.map(|k| k.to_string());
            let service = self
                .route
                .as_ref()
                .and(self.backend.as_ref())
                .map(|b| b.service.to_string());
            log.write(&AccessEntry {
                time: &time,
                client: self.client,
                method: self.method.as_str(),
                host: self
                    .host
                    .as_ref()
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default(),
                path: self.uri.path(),
                protocol: version_label(self.version),
                status: self.status,
                bytes_sent: sent,
                bytes_received: received,
                duration_ms: duration.as_secs_f64() * 1e3,
                upstream: self.upstream.as_ref().map(|a| a.as_str()),
                upstream_ms: self.upstream_time.map(|t| t.as_secs_f64() * 1e3),
                ingress: ingress_name.as_deref(),
                service: service.as_deref(),
                request_id: self.request_id.to_str().unwrap_or_default(),
            });
        }
    }
}

fn version_label(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// A response body that counts what it sends and finishes the record.
pub struct LoggedBody<B> {
    inner: B,
    sent: u64,
    record: Option<Box<RequestRecord>>,
    telemetry: Arc<Telemetry>,
    /// The request body the client may still be sending, handed to
    /// `linger::unread_body` when the response is complete, and the
    /// longest the client may go quiet within it (`client-body-timeout`).
    unread: Option<(Unread, Duration)>,
}

impl<B> LoggedBody<B> {
    pub fn new(inner: B, record: RequestRecord, telemetry: Arc<Telemetry>) -> Self {
        LoggedBody {
            inner,
            sent: 0,
            record: Some(Box::new(record)),
            telemetry,
            unread: None,
        }
    }

    /// The same body, which ends the request's `unread` body when the
    /// response is complete (or dropped), reading on while the client
    /// never goes quiet for longer than `quiet`.
    pub fn leaving(mut self, unread: Unread, quiet: Duration) -> Self {
        self.unread = Some((unread, quiet));
        self
    }

    fn finish(&mut self) {
        if let Some(record) = self.record.take() {
            let version = record.version;
            record.finish(self.sent, &self.telemetry);
            if let Some((unread, quiet)) = self.unread.take() {
                linger::unread_body(unread, version, quiet);
            }
        }
    }
}

impl<B> Drop for LoggedBody<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B: Body + Unpin> Body for LoggedBody<B>
where
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.remaining() as u64;
                }
            }
            Poll::Ready(None) => self.finish(),
            _ => {}
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
