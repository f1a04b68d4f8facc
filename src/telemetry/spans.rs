//! One request's spans: the server span from arrival to the last byte of
//! the response, a span for the external auth subrequest, and one per
//! upstream attempt (so that `proxy-next-upstream` retries show), with the
//! attributes of OpenTelemetry's HTTP semantic conventions and the route's
//! Ingress and Service.
//!
//! A request is traced only on a route with `enable-opentelemetry` (or,
//! unrouted, with the ConfigMap's), so that a route without it pays one
//! branch. An unsampled request still gets a span context (its IDs, not
//! its recording), so that what it sends upstream carries the trace.
//! W3C trace context: the client's `traceparent` and `tracestate` are
//! continued when `opentelemetry-trust-incoming-span` trusts them;
//! otherwise a new trace starts. Each subrequest and attempt is sent with
//! a `traceparent` naming its own span (or the server span when unsampled)
//! as parent, replacing the client's.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Request, StatusCode};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, Span};

use crate::policy::template::{Facts, Template};
use crate::table::Route;
use crate::upstream::Backend;

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The server span of one request.
pub struct RequestTrace {
    span: Span,
    /// For the child spans.
    tracer: SdkTracer,
}

impl std::fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RequestTrace")
            .field(self.span.span_context())
            .finish()
    }
}

/// What the server span says of its request.
pub struct Arrival<'a> {
    pub facts: Facts<'a>,
    /// When the request arrived, on the monotonic clock.
    pub started: Instant,
    /// The address the connection came from.
    pub peer: IpAddr,
    /// `opentelemetry-operation-name`.
    pub operation_name: Option<&'a Template>,
    /// The client's `traceparent` is continued.
    pub trust_incoming: bool,
}

impl RequestTrace {
    /// Starts the server span of a request that arrived at `started`,
    /// the child of the client's span when trusted. Its attributes are
    /// worked out only when it is sampled.
    pub fn start(tracer: SdkTracer, arrival: &Arrival<'_>, route: Option<&Route>) -> Self {
        let parent = if arrival.trust_incoming {
            let headers = Headers(arrival.facts.headers);
            TraceContextPropagator::new().extract_with_context(&Context::new(), &headers)
        } else {
            Context::new()
        };
        let start = SystemTime::now() - arrival.started.elapsed();
        let builder = tracer
            .span_builder("HTTP")
            .with_kind(SpanKind::Server)
            .with_start_time(start);
        let mut span = tracer.build_with_context(builder, &parent);
        if span.is_recording() {
            span.update_name(server_span_name(arrival, route));
            span.set_attributes(server_attributes(arrival, route));
        }
        RequestTrace { span, tracer }
    }

    /// The route's Service, once the canary choice has been made.
    pub fn backend(&mut self, backend: &Backend) {
        if self.span.is_recording() {
            let service = backend.service.name.clone();
            self.span
                .set_attribute(KeyValue::new("k8s.service.name", service));
        }
    }

    /// A client span under the server span, when the request is sampled.
    fn child(&self, name: impl Into<Cow<'static, str>>) -> Option<Span> {
        if !self.span.is_recording() {
            return None;
        }
        let tracer = &self.tracer;
        let parent = Context::new().with_remote_span_context(self.span.span_context().clone());
        let builder = tracer.span_builder(name).with_kind(SpanKind::Client);
        Some(tracer.build_with_context(builder, &parent))
    }

    /// The span of the external auth subrequest, whose request `headers`
    /// name it as parent.
    pub fn auth(&self, url: &str, headers: &mut HeaderMap) -> ChildSpan {
        let mut span = self.child("external auth");
        if let Some(span) = &mut span {
            span.set_attribute(KeyValue::new("url.template", url.to_owned()));
        }
        propagate(span.as_ref().unwrap_or(&self.span), headers);
        ChildSpan { span }
    }

    /// The span of one upstream attempt (the first is number 1), whose
    /// request `headers` name it as parent.
    pub fn attempt<B>(
        &self,
        request: &mut Request<B>,
        target: &Authority,
        number: u32,
    ) -> ChildSpan {
        let method = request.method();
        let mut span = self.child(method.as_str().to_owned());
        if let Some(span) = &mut span {
            let mut attributes = vec![
                KeyValue::new("http.request.method", method.as_str().to_owned()),
                KeyValue::new("server.address", target.host().to_owned()),
            ];
            if let Some(port) = target.port_u16() {
                attributes.push(KeyValue::new("server.port", i64::from(port)));
            }
            if number > 1 {
                let resends = i64::from(number - 1);
                attributes.push(KeyValue::new("http.request.resend_count", resends));
            }
            span.set_attributes(attributes);
        }
        propagate(span.as_ref().unwrap_or(&self.span), request.headers_mut());
        ChildSpan { span }
    }

    /// Ends the server span with the status the client got.
    pub fn end(mut self, status: u16) {
        if self.span.is_recording() {
            self.span.set_attribute(status_attribute(status));
            if status >= 500 {
                self.span.set_status(Status::error(""));
            }
        }
        self.span.end();
    }
}

/// An auth subrequest's or attempt's span; nothing when unsampled.
pub struct ChildSpan {
    span: Option<Span>,
}

impl ChildSpan {
    /// Ends the span with the status it came to, or the failure that
    /// left it without one (`error.type`, as the metrics name it).
    pub fn end(self, outcome: Result<StatusCode, &'static str>) {
        let Some(mut span) = self.span else {
            return;
        };
        match outcome {
            Ok(status) => {
                span.set_attribute(status_attribute(status.as_u16()));
                if status.is_server_error() {
                    span.set_status(Status::error(""));
                }
            }
            Err(kind) => {
                span.set_attribute(KeyValue::new("error.type", kind));
                span.set_status(Status::error(kind));
            }
        }
        span.end();
    }
}

/// `opentelemetry-operation-name` when set; otherwise the method and the
/// route's path as written (the semantic conventions' `{method}
/// {http.route}`), or the method alone when no route took the request.
fn server_span_name(arrival: &Arrival<'_>, route: Option<&Route>) -> String {
    let method = arrival.facts.method.as_str();
    match (arrival.operation_name, route) {
        (Some(name), _) => name.expand(&arrival.facts),
        (None, Some(route)) => format!("{method} {}", route.path),
        (None, None) => method.to_owned(),
    }
}

fn server_attributes(arrival: &Arrival<'_>, route: Option<&Route>) -> Vec<KeyValue> {
    let facts = &arrival.facts;
    // Without its port (an IPv6 literal keeps its brackets).
    let host = match facts.host.parse::<Authority>() {
        Ok(authority) => authority.host().to_owned(),
        Err(_) => facts.host.to_owned(),
    };
    let mut attributes = vec![
        KeyValue::new("http.request.method", facts.method.as_str().to_owned()),
        KeyValue::new("url.path", facts.uri.path().to_owned()),
        KeyValue::new("url.scheme", if facts.tls { "https" } else { "http" }),
        KeyValue::new("server.address", host),
        KeyValue::new("client.address", facts.client.to_string()),
        KeyValue::new("network.peer.address", arrival.peer.to_string()),
    ];
    let agent = facts.headers.get(http::header::USER_AGENT);
    if let Some(agent) = agent.and_then(|a| a.to_str().ok()) {
        attributes.push(KeyValue::new("user_agent.original", agent.to_owned()));
    }
    if let Some(route) = route {
        attributes.push(KeyValue::new("http.route", route.path.clone()));
        let origin = route
            .ingress
            .as_ref()
            .or(route.gateway.as_ref().map(|g| &g.origin));
        if let Some(origin) = origin {
            let namespace = origin.namespace.clone();
            attributes.push(KeyValue::new("k8s.namespace.name", namespace));
        }
        if let Some(ingress) = &route.ingress {
            let name = ingress.name.clone();
            attributes.push(KeyValue::new("k8s.ingress.name", name));
        }
    }
    attributes
}

fn status_attribute(status: u16) -> KeyValue {
    KeyValue::new("http.response.status_code", i64::from(status))
}

/// Sets `traceparent` (and the trace's `tracestate`, if any) naming
/// `span` as the parent, replacing whatever the client sent.
fn propagate(span: &Span, headers: &mut HeaderMap) {
    let context = span.span_context();
    if !context.is_valid() {
        return;
    }
    if let Ok(value) = HeaderValue::from_bytes(&traceparent(context)) {
        headers.insert(TRACEPARENT.clone(), value);
    }
    let state = context.trace_state().header();
    match HeaderValue::from_str(&state) {
        Ok(value) if !state.is_empty() => {
            headers.insert(TRACESTATE.clone(), value);
        }
        _ => {
            headers.remove(&TRACESTATE);
        }
    }
}

/// W3C `traceparent`, version 00: `00-TRACE-SPAN-FLAGS` in lower-case
/// hex. Written by hand: every traced request sends one, sampled or not,
/// and `format!` took ten times as long.
fn traceparent(context: &SpanContext) -> [u8; 55] {
    let mut text = [b'-'; 55];
    text[..2].copy_from_slice(b"00");
    hex(&context.trace_id().to_bytes(), &mut text[3..35]);
    hex(&context.span_id().to_bytes(), &mut text[36..52]);
    let sampled = context.trace_flags() & TraceFlags::SAMPLED;
    hex(&[sampled.to_u8()], &mut text[53..]);
    text
}

fn hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

/// A request's headers, as the propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{SpanId, TraceId, TraceState};

    use super::*;

    #[test]
    fn traceparent_is_what_the_w3c_propagator_writes() {
        for flags in [TraceFlags::SAMPLED, TraceFlags::default()] {
            let context = SpanContext::new(
                TraceId::from_bytes(
                    *b"\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36",
                ),
                SpanId::from_bytes([0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]),
                flags,
                false,
                TraceState::default(),
            );
            let mut written = HashMap::new();
            let cx = Context::new().with_remote_span_context(context.clone());
            TraceContextPropagator::new().inject_context(&cx, &mut written);
            let ours = traceparent(&context);
            assert_eq!(std::str::from_utf8(&ours).unwrap(), written["traceparent"]);
        }
    }
}
