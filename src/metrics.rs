//! Prometheus metrics.
//!
//! Label values are bounded by configuration, never by traffic: Ingress,
//! Service and the route's host *pattern* (not the `Host` header), the status
//! class, and the method folded to a fixed set. No paths, no client IPs.
//!
//! Below the table: each route carries its request metrics
//! (`RouteMetricsSlot`). What is computed from a whole table (endpoints per
//! backend, certificate expiry) is in `telemetry::gauges`.
//!
//! With `--metrics-compat ingress-nginx`, ingress-nginx's series follow
//! (`ingress_nginx`); they add the route's path as written in its Ingress,
//! which configuration bounds too.

pub mod ingress_nginx;
mod process;

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use ingress_nginx::{ControllerLabels, IngressNginx, RouteSeries};

/// Where a request went: empty values for requests no route matched.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub namespace: String,
    pub ingress: String,
    pub host: String,
    pub service: String,
    pub method: &'static str,
    pub status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub result: &'static str,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub namespace: String,
    pub service: String,
    pub port: String,
}

/// How a table was built: `full` or `incremental`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RebuildLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WarningLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    pub host: String,
    pub secret: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AcmeStateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AcmeOrderLabels {
    pub issuer: String,
    pub event: &'static str,
}

/// One admission review: the kind it was about and what it got.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    pub kind: &'static str,
    /// `allowed`, `warned` (allowed with warnings), `refused`, or
    /// `invalid` (a body that is not a review: 4xx).
    pub verdict: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The request metrics of one route, looked up in the families on the
/// route's first request. Later requests update atomics: no label sets are
/// built and no family lock is taken. A table swap brings new routes, which
/// look theirs up again; the families keep the series.
#[derive(Default)]
pub struct RouteMetricsSlot(OnceLock<Box<RouteMetrics>>);

impl std::fmt::Debug for RouteMetricsSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteMetricsSlot")
    }
}

pub struct RouteMetrics {
    labels: RequestLabels,
    /// By method and status class, created on first use.
    requests: [OnceLock<Counter>; METHODS.len() * STATUS_CLASSES.len()],
    request_duration: Histogram,
    upstream_duration: Histogram,
    request_bytes: Counter,
    response_bytes: Counter,
    /// ingress-nginx's series of the route, when they are exported.
    ingress_nginx: Option<Box<RouteSeries>>,
}

/// What a route's series are labelled with, worked out on its first request.
pub struct RouteNames {
    pub route: RouteLabels,
    /// The route's host pattern.
    pub host: String,
    /// The route's path as written in its Ingress; `None` for the requests
    /// no route forwarded, which ingress-nginx's series leave out as it
    /// leaves out hosts no Ingress names.
    pub path: Option<String>,
}

/// One finished request, as the metrics see it.
pub struct Finished {
    pub method: usize,
    pub status: u16,
    pub duration: Duration,
    pub upstream_time: Option<Duration>,
    pub received: u64,
    pub sent: u64,
}

impl RouteMetrics {
    fn new(metrics: &Metrics, names: RouteNames) -> Self {
        let RouteNames { route, host, path } = names;
        let ingress_nginx = metrics.ingress_nginx.as_ref().zip(path).map(|(_, path)| {
            Box::new(RouteSeries::new(ingress_nginx::RequestLabels {
                status: String::new(),
                method: "",
                path,
                namespace: route.namespace.clone(),
                ingress: route.ingress.clone(),
                service: route.service.clone(),
                canary: "",
                host: host.clone(),
            }))
        });
        RouteMetrics {
            ingress_nginx,
            request_duration: metrics.request_duration.get_or_create(&route).clone(),
            upstream_duration: metrics.upstream_duration.get_or_create(&route).clone(),
            request_bytes: metrics.request_bytes.get_or_create(&route).clone(),
            response_bytes: metrics.response_bytes.get_or_create(&route).clone(),
            labels: RequestLabels {
                namespace: route.namespace,
                ingress: route.ingress,
                host,
                service: route.service,
                method: "",
                status_class: "",
            },
            requests: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    pub fn record(&self, metrics: &Metrics, request: &Finished) {
        let class = status_class_index(request.status);
        let counter =
            self.requests[request.method * STATUS_CLASSES.len() + class].get_or_init(|| {
                let labels = RequestLabels {
                    method: METHODS[request.method],
                    status_class: STATUS_CLASSES[class],
                    ..self.labels.clone()
                };
                metrics.requests.get_or_create(&labels).clone()
            });
        counter.inc();
        self.request_duration
            .observe(request.duration.as_secs_f64());
        self.response_bytes.inc_by(request.sent);
        self.request_bytes.inc_by(request.received);
        if let Some(upstream_time) = request.upstream_time {
            self.upstream_duration.observe(upstream_time.as_secs_f64());
        }
        if let (Some(series), Some(families)) = (&self.ingress_nginx, &metrics.ingress_nginx) {
            series.record(families, request);
        }
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~32 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn review_histogram() -> Histogram {
    // 0.1 ms … ~3 s: a review takes about a millisecond.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub upstream_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub request_bytes: Family<RouteLabels, Counter>,
    pub response_bytes: Family<RouteLabels, Counter>,
    pub open_connections: Family<ListenerLabels, Gauge<i64, AtomicI64>>,
    pub tls_handshakes: Family<HandshakeLabels, Counter>,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub upstream_retries: Counter,
    /// Connections closed for a missing or bad PROXY protocol header.
    pub proxy_protocol_rejected: Counter,
    /// Finished spans dropped because the export queue was full.
    pub trace_spans_dropped: Counter,
    pub backend_endpoints: Family<BackendLabels, Gauge<i64, AtomicI64>>,
    pub rebuilds: Family<RebuildLabels, Counter>,
    pub rebuild_duration: Histogram,
    pub last_rebuild: FloatGauge,
    pub warnings: Family<WarningLabels, Gauge<i64, AtomicI64>>,
    pub cert_expiry: Family<CertLabels, Gauge<i64, AtomicI64>>,
    /// ACME certificates asked for, by state (on the leading replica).
    pub acme_certificates: Family<AcmeStateLabels, Gauge<i64, AtomicI64>>,
    /// ACME orders this replica placed or resumed, and how they ended.
    pub acme_orders: Family<AcmeOrderLabels, Counter>,
    /// Admission reviews answered, by kind and verdict.
    pub admission_reviews: Family<AdmissionLabels, Counter>,
    /// From a review's body read to its answer.
    pub admission_review_duration: Histogram,
    /// The request metrics of requests no route forwarded (404, redirects).
    pub unrouted: RouteMetricsSlot,
    /// ingress-nginx's series (`--metrics-compat ingress-nginx`).
    pub ingress_nginx: Option<IngressNginx>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The route's handles, looked up on its first request.
    pub fn route<'a>(
        &self,
        slot: &'a RouteMetricsSlot,
        names: impl FnOnce() -> RouteNames,
    ) -> &'a RouteMetrics {
        slot.0
            .get_or_init(|| Box::new(RouteMetrics::new(self, names())))
    }

    /// Gatehouse's series, and ingress-nginx's, exported by `controller`.
    pub fn with_ingress_nginx(controller: &ControllerLabels) -> Self {
        let mut metrics = Self::new();
        let sources = ingress_nginx::Sources {
            rebuilds: metrics.rebuilds.clone(),
            last_rebuild: metrics.last_rebuild.clone(),
            open_connections: metrics.open_connections.clone(),
        };
        metrics.ingress_nginx = Some(IngressNginx::new(controller, sources));
        metrics
    }

    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("gatehouse"),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            upstream_duration: Family::new_with_constructor(latency_histogram),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
            open_connections: Family::default(),
            tls_handshakes: Family::default(),
            upstream_errors: Family::default(),
            upstream_retries: Counter::default(),
            proxy_protocol_rejected: Counter::default(),
            trace_spans_dropped: Counter::default(),
            backend_endpoints: Family::default(),
            rebuilds: Family::default(),
            rebuild_duration: latency_histogram(),
            last_rebuild: FloatGauge::default(),
            warnings: Family::default(),
            unrouted: RouteMetricsSlot::default(),
            cert_expiry: Family::default(),
            acme_certificates: Family::default(),
            acme_orders: Family::default(),
            admission_reviews: Family::default(),
            admission_review_duration: review_histogram(),
            ingress_nginx: None,
        };
        let r = &mut m.registry;
        r.register(
            "requests",
            "Requests answered, by route and status class",
            m.requests.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "Time from request to the end of the response",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        r.register_with_unit(
            "upstream_response_duration",
            "Time from sending a request upstream to its response headers",
            Unit::Seconds,
            m.upstream_duration.clone(),
        );
        r.register_with_unit(
            "request",
            "Request body bytes received",
            Unit::Bytes,
            m.request_bytes.clone(),
        );
        r.register_with_unit(
            "response",
            "Response body bytes sent",
            Unit::Bytes,
            m.response_bytes.clone(),
        );
        r.register(
            "open_connections",
            "Client connections open, by listener",
            m.open_connections.clone(),
        );
        r.register(
            "tls_handshakes",
            "TLS handshakes, by result and failure reason",
            m.tls_handshakes.clone(),
        );
        r.register(
            "upstream_errors",
            "Upstream requests that failed, by kind",
            m.upstream_errors.clone(),
        );
        r.register(
            "upstream_retries",
            "Upstream requests retried on another endpoint",
            m.upstream_retries.clone(),
        );
        r.register(
            "proxy_protocol_rejected",
            "Connections closed for a missing or invalid PROXY protocol header",
            m.proxy_protocol_rejected.clone(),
        );
        r.register(
            "trace_spans_dropped",
            "Finished spans dropped because the export queue (otel-max-queuesize) was full",
            m.trace_spans_dropped.clone(),
        );
        r.register(
            "backend_endpoints",
            "Ready endpoints per Service port in the current table",
            m.backend_endpoints.clone(),
        );
        r.register(
            "table_rebuilds",
            "Routing tables built, in full or incrementally (only the hosts a change touches)",
            m.rebuilds.clone(),
        );
        r.register_with_unit(
            "table_rebuild_duration",
            "Time to build a routing table",
            Unit::Seconds,
            m.rebuild_duration.clone(),
        );
        r.register_with_unit(
            "table_last_rebuild_timestamp",
            "When the current table was built (Unix time)",
            Unit::Seconds,
            m.last_rebuild.clone(),
        );
        r.register(
            "warnings",
            "Warnings raised by the current table, by kind",
            m.warnings.clone(),
        );
        r.register_with_unit(
            "certificate_expiry_timestamp",
            "notAfter of the certificate served for a TLS host (Unix time)",
            Unit::Seconds,
            m.cert_expiry.clone(),
        );
        r.register(
            "acme_certificates",
            "Certificates Ingresses ask the ACME issuers for, by state (valid, pending, failed), on the leading replica",
            m.acme_certificates.clone(),
        );
        r.register(
            "acme_orders",
            "ACME orders, by issuer and event: placed, resumed (recorded by an earlier attempt or leader), issued, failed",
            m.acme_orders.clone(),
        );
        r.register(
            "admission_reviews",
            "Admission reviews answered, by kind and verdict (allowed, warned, refused, invalid)",
            m.admission_reviews.clone(),
        );
        r.register_with_unit(
            "admission_review_duration",
            "Time to judge one admission review, from its body read to its answer",
            Unit::Seconds,
            m.admission_review_duration.clone(),
        );
        m
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        if let Some(compat) = &self.ingress_nginx {
            let _ = encode_registry(&mut out, compat.registry());
        }
        let _ = encode_eof(&mut out);
        out
    }

    /// One table built: counted by kind, timed. `now_unix` is passed in so
    /// that the caller owns the clock.
    pub fn observe_build(&self, took: Duration, incremental: bool, now_unix: f64) {
        let kind = if incremental { "incremental" } else { "full" };
        self.rebuilds.get_or_create(&RebuildLabels { kind }).inc();
        self.rebuild_duration.observe(took.as_secs_f64());
        self.last_rebuild.set(now_unix);
    }
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn status_class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

/// The method's place in the fixed set; methods outside the standard set
/// are counted as `OTHER`.
pub fn method_index(method: &http::Method) -> usize {
    use http::Method as M;
    match *method {
        M::GET => 0,
        M::HEAD => 1,
        M::POST => 2,
        M::PUT => 3,
        M::DELETE => 4,
        M::PATCH => 5,
        M::OPTIONS => 6,
        M::CONNECT => 7,
        M::TRACE => 8,
        _ => 9,
    }
}
