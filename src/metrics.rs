//! Prometheus metrics.
//!
//! Label values are bounded by configuration, never by traffic: Ingress,
//! Service and the route's host *pattern* (not the `Host` header), the status
//! class, and the method folded to a fixed set. No paths, no client IPs.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::table::{CertEntry, HostPattern, Route, RouteTable};

use crate::translate::Warning;
use crate::upstream::{Action, Backend, Upstream};

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
    fn new(metrics: &Metrics, route: RouteLabels, host: String) -> Self {
        RouteMetrics {
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
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~32 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
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
    pub backend_endpoints: Family<BackendLabels, Gauge<i64, AtomicI64>>,
    pub rebuilds: Family<RebuildLabels, Counter>,
    pub rebuild_duration: Histogram,
    pub last_rebuild: FloatGauge,
    pub warnings: Family<WarningLabels, Gauge<i64, AtomicI64>>,
    pub cert_expiry: Family<CertLabels, Gauge<i64, AtomicI64>>,
    /// The request metrics of requests no route forwarded (404, redirects).
    pub unrouted: RouteMetricsSlot,
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
        labels: impl FnOnce() -> (RouteLabels, String),
    ) -> &'a RouteMetrics {
        slot.0.get_or_init(|| {
            let (route, host) = labels();
            Box::new(RouteMetrics::new(self, route, host))
        })
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
            backend_endpoints: Family::default(),
            rebuilds: Family::default(),
            rebuild_duration: latency_histogram(),
            last_rebuild: FloatGauge::default(),
            warnings: Family::default(),
            unrouted: RouteMetricsSlot::default(),
            cert_expiry: Family::default(),
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
        m
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
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

    /// The table's gauges: endpoints per backend, warnings by kind, and
    /// certificate expiry per host. The first time (and with a fresh
    /// `published`) every series; then by difference with the table
    /// published before: a pointer comparison per host, and series
    /// written only for the hosts that changed.
    pub fn observe_table(
        &self,
        table: &Arc<RouteTable>,
        warnings: &[Warning],
        published: &mut Published,
    ) {
        match published.table.take() {
            Some(before) => self.publish_difference(&before, table, published),
            None => self.publish_whole(table, published),
        }
        published.table = Some(table.clone());

        self.warnings.clear();
        for warning in warnings {
            let kind = serde_json::to_value(warning.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            self.warnings.get_or_create(&WarningLabels { kind }).inc();
        }
    }

    fn publish_whole(&self, table: &RouteTable, published: &mut Published) {
        self.backend_endpoints.clear();
        published.backends.clear();
        for route in table.iter_routes() {
            published.add(self, route);
        }
        self.cert_expiry.clear();
        for (host, entry) in table.certs.iter() {
            self.set_cert(&host, entry);
        }
    }

    fn publish_difference(
        &self,
        before: &RouteTable,
        table: &RouteTable,
        published: &mut Published,
    ) {
        let diff = before.differences(table);
        // Every route that went first, so that a backend still in use
        // after the change keeps its series.
        for (gone, _) in &diff.routes {
            for route in gone.iter() {
                published.remove(self, route);
            }
        }
        for (_, came) in &diff.routes {
            for route in came.iter() {
                published.add(self, route);
            }
        }
        for (host, gone, came) in diff.certs {
            if let Some(entry) = gone {
                self.cert_expiry.remove(&cert_labels(&host, entry));
            }
            if let Some(entry) = came {
                self.set_cert(&host, entry);
            }
        }
        // Endpoints replaced in place (a rolling update) change no route.
        published.refresh(self);
    }

    fn set_cert(&self, host: &HostPattern, entry: &CertEntry) {
        if let Some(not_after) = entry.not_after {
            let labels = cert_labels(host, entry);
            self.cert_expiry.get_or_create(&labels).set(not_after);
        }
    }
}

fn cert_labels(host: &HostPattern, entry: &CertEntry) -> CertLabels {
    CertLabels {
        host: host.to_string(),
        secret: entry.secret.to_string(),
    }
}

/// What the published gauges were computed from: the table, and how many
/// of its routes forward to each backend (a backend's series goes when
/// the last route to it does), with the backend and the count published.
#[derive(Default)]
pub struct Published {
    table: Option<Arc<RouteTable>>,
    backends: std::collections::HashMap<BackendLabels, PublishedBackend>,
}

struct PublishedBackend {
    routes: usize,
    backend: Arc<Backend>,
    endpoints: i64,
}

impl Published {
    fn labels(route: &Route) -> Option<(BackendLabels, &Arc<Backend>)> {
        let Action::Forward(backend) = &route.action else {
            return None;
        };
        let labels = BackendLabels {
            namespace: backend.service.namespace.clone(),
            service: backend.service.name.clone(),
            port: backend.port.clone(),
        };
        Some((labels, backend))
    }

    fn endpoints(backend: &Backend) -> i64 {
        match &*backend.upstream() {
            Upstream::Endpoints(set) => set.addrs().len() as i64,
            Upstream::External(_) => 1,
        }
    }

    fn add(&mut self, metrics: &Metrics, route: &Route) {
        let Some((labels, backend)) = Self::labels(route) else {
            return;
        };
        let endpoints = Self::endpoints(backend);
        metrics
            .backend_endpoints
            .get_or_create(&labels)
            .set(endpoints);
        let entry = self
            .backends
            .entry(labels)
            .or_insert_with(|| PublishedBackend {
                routes: 0,
                backend: backend.clone(),
                endpoints,
            });
        entry.routes += 1;
        entry.backend = backend.clone();
        entry.endpoints = endpoints;
    }

    fn remove(&mut self, metrics: &Metrics, route: &Route) {
        let Some((labels, _)) = Self::labels(route) else {
            return;
        };
        if let Some(entry) = self.backends.get_mut(&labels) {
            entry.routes -= 1;
            if entry.routes == 0 {
                self.backends.remove(&labels);
                metrics.backend_endpoints.remove(&labels);
            }
        }
    }

    /// Publishes again the backends whose endpoints were replaced in place
    /// since they were published: one look per backend.
    fn refresh(&mut self, metrics: &Metrics) {
        for (labels, entry) in &mut self.backends {
            let endpoints = Self::endpoints(&entry.backend);
            if endpoints != entry.endpoints {
                metrics
                    .backend_endpoints
                    .get_or_create(labels)
                    .set(endpoints);
                entry.endpoints = endpoints;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterState;
    use crate::translate::{translate_next, BuildKind, Reuse, TranslateOptions};

    fn host(i: usize, service: &str) -> String {
        format!(
            "---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: i{i}, namespace: ns}}
spec:
  ingressClassName: gatehouse
  rules:
  - host: h{i}.test
    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: {service}, port: {{number: 80}}}}}}}}]}}
"
        )
    }

    fn service(name: &str, addresses: &[&str]) -> String {
        format!(
            "---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: ns}}
spec: {{ports: [{{port: 80}}]}}
{}",
            slice(name, addresses)
        )
    }

    /// The Service's EndpointSlice alone: a change of it is applied to the
    /// backend in place.
    fn slice(name: &str, addresses: &[&str]) -> String {
        let addresses: Vec<String> = addresses.iter().map(|a| format!("\"{a}\"")).collect();
        format!(
            "---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: ns, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{port: 8080}}]
endpoints: [{{addresses: [{}]}}]
",
            addresses.join(", ")
        )
    }

    fn gauges(metrics: &Metrics) -> Vec<String> {
        let mut lines: Vec<String> = metrics
            .encode()
            .lines()
            .filter(|l| {
                l.starts_with("gatehouse_backend_endpoints{")
                    || l.starts_with("gatehouse_certificate_expiry")
            })
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    /// Gauges published by difference after incremental builds equal
    /// gauges published whole from the same table: a backend's series
    /// follows its endpoints (replaced with the backend's routes, or in
    /// place), and goes with the last route to it.
    #[test]
    fn gauges_by_difference_equal_gauges_published_whole() {
        let class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: gatehouse}\nspec: {controller: gatehouse.dev/ingress-controller}\n";
        let text = [
            class.to_owned(),
            service("a", &["198.18.0.1"]),
            service("b", &["198.18.0.2", "198.18.0.3"]),
            host(1, "a"),
            host(2, "a"),
            host(3, "b"),
        ]
        .concat();
        let parse = |t: &str| crate::source::manifest::parse(t).expect("manifests");
        let mut state = ClusterState::from_objects(parse(&text));
        let options = TranslateOptions::default();
        let (first, _) = translate_next(&state, &options, Reuse::default());
        let metrics = Metrics::new();
        let mut published = Published::default();
        let mut table = Arc::new(first.table);
        let mut reuse = first.reuse;
        metrics.observe_table(&table, &[], &mut published);
        let changes = [
            service("a", &["198.18.0.1", "198.18.0.4", "198.18.0.5"]),
            slice("b", &["198.18.0.2"]),
            slice("a", &["198.18.0.1", "198.18.0.6"]),
            host(3, "a"),
            host(1, "b"),
            host(2, "b"),
            host(3, "b"),
        ];
        for change in changes {
            for object in parse(&change) {
                state.insert(object);
            }
            let (mut next, kind) = translate_next(&state, &options, reuse);
            assert_eq!(kind, BuildKind::Incremental);
            reuse = std::mem::take(&mut next.reuse);
            table = Arc::new(next.table);
            metrics.observe_table(&table, &[], &mut published);
            let whole = Metrics::new();
            whole.observe_table(&table, &[], &mut Published::default());
            assert_eq!(gauges(&metrics), gauges(&whole), "after {change}");
        }
        // Service a is no longer used by any route: its series is gone.
        let last = gauges(&metrics);
        assert_eq!(last.len(), 1, "{last:?}");
        assert!(
            last.iter().all(|l| !l.contains("service=\"a\"")),
            "{last:?}"
        );
        assert!(last.iter().any(|l| l.contains("service=\"b\"")), "{last:?}");
    }
}
