//! ingress-nginx's metric names beside Gatehouse's (`--metrics-compat
//! ingress-nginx`): dashboards and alert rules written for
//! `nginx_ingress_controller_*` keep working.
//!
//! Names, labels, types and histogram buckets are ingress-nginx's
//! (`internal/ingress/metric/collectors`: `socket.go`, `controller.go`,
//! `process.go`, `nginx_status.go`). The request series are finer than
//! Gatehouse's (by route path and status code, with ingress-nginx's
//! buckets), so each route's handles keep them beside Gatehouse's: the
//! request that records one records the other, and after a series' first
//! request only atomics and histogram buckets are touched. What describes
//! the controller (reloads, connections, the process) is read at scrape
//! time from Gatehouse's own series and `/proc/self`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{linear_buckets, Histogram};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use super::{process, Finished, ListenerLabels, RebuildLabels, METHODS};

/// `--metrics-compat`: whose metric names `/metrics` carries beside
/// Gatehouse's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsCompat {
    /// ingress-nginx's `nginx_ingress_controller_*` series.
    IngressNginx,
}

/// Who exports the series: ingress-nginx's constant labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerLabels {
    pub namespace: String,
    pub class: String,
    pub pod: String,
}

impl ControllerLabels {
    /// As ingress-nginx reads them: `POD_NAMESPACE` (`default` when unset),
    /// `POD_NAME` (empty when unset), and the IngressClass controller value
    /// this controller serves.
    pub fn from_env(class: &str) -> Self {
        let namespace = std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        ControllerLabels {
            namespace,
            class: class.to_owned(),
            pod: std::env::var("POD_NAME").unwrap_or_default(),
        }
    }

    fn pairs(&self) -> impl Iterator<Item = (Cow<'static, str>, Cow<'static, str>)> + '_ {
        [
            ("controller_namespace", &self.namespace),
            ("controller_class", &self.class),
            ("controller_pod", &self.pod),
        ]
        .into_iter()
        .map(|(k, v)| (Cow::Borrowed(k), Cow::Owned(v.clone())))
    }
}

/// ingress-nginx's `requestTags` with `--metrics-per-host` (its default).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub status: String,
    pub method: &'static str,
    /// The route's path as written in the Ingress, never the request's.
    pub path: String,
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    /// ingress-nginx's alternative upstream; Gatehouse counts a canary's
    /// requests under its main route, so this is always empty.
    pub canary: &'static str,
    /// The route's host pattern, as ingress-nginx counts only hosts an
    /// Ingress names.
    pub host: String,
}

/// `ssl_expire_time_seconds`'s labels (without `identifier`, which would
/// need every certificate parsed again for its serial number).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SslLabels {
    /// The Secret's namespace.
    pub namespace: String,
    pub class: String,
    pub host: String,
    pub secret_name: String,
}

/// A counter exposed with type `unknown`, so that its sample keeps its
/// name: OpenMetrics names a counter's sample `NAME_total`, and
/// ingress-nginx's `requests` and `success` (Prometheus text format, where
/// counters need no suffix) have none.
#[derive(Clone, Debug, Default)]
pub struct Untyped(Counter);

impl TypedMetric for Untyped {
    const TYPE: MetricType = MetricType::Unknown;
}

impl EncodeMetric for Untyped {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.0.get())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// `prometheus.DefBuckets`, ingress-nginx's `--time-buckets` default.
const TIME_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn time_histogram() -> Histogram {
    Histogram::new(TIME_BUCKETS)
}

/// `prometheus.LinearBuckets(10, 10, 10)`, ingress-nginx's
/// `--length-buckets` default.
fn length_histogram() -> Histogram {
    Histogram::new(linear_buckets(10.0, 10.0, 10))
}

type HistogramFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// The `nginx_ingress_controller_*` families.
pub struct IngressNginx {
    registry: Registry,
    requests: Family<RequestLabels, Untyped>,
    request_duration: HistogramFamily,
    response_duration: HistogramFamily,
    request_size: HistogramFamily,
    response_size: HistogramFamily,
    ssl_expire: Family<SslLabels, Gauge<i64, AtomicI64>>,
    class: String,
}

/// Gatehouse's series the controller's compat series are read from.
pub struct Sources {
    pub rebuilds: Family<RebuildLabels, Counter>,
    pub last_rebuild: Gauge<f64, AtomicU64>,
    pub open_connections: Family<ListenerLabels, Gauge<i64, AtomicI64>>,
}

impl IngressNginx {
    pub fn new(controller: &ControllerLabels, sources: Sources) -> Self {
        let mut m = IngressNginx {
            registry: Registry::with_prefix("nginx_ingress_controller"),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(time_histogram),
            response_duration: Family::new_with_constructor(time_histogram),
            request_size: Family::new_with_constructor(length_histogram),
            response_size: Family::new_with_constructor(length_histogram),
            ssl_expire: Family::default(),
            class: controller.class.clone(),
        };
        // ingress-nginx gives this one no controller labels: `class` and the
        // Secret's `namespace` instead.
        m.registry.register(
            "ssl_expire_time_seconds",
            "Number of seconds since 1970 to the SSL Certificate expire",
            m.ssl_expire.clone(),
        );
        let r = m.registry.sub_registry_with_labels(controller.pairs());
        r.register(
            "requests",
            "The total number of client requests",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "The request processing time in seconds",
            m.request_duration.clone(),
        );
        r.register(
            "response_duration_seconds",
            "The time spent on receiving the response headers from the upstream server",
            m.response_duration.clone(),
        );
        r.register(
            "request_size",
            "The request body length",
            m.request_size.clone(),
        );
        r.register(
            "response_size",
            "The response body length",
            m.response_size.clone(),
        );
        r.register_collector(Box::new(Reloads {
            rebuilds: sources.rebuilds,
            last_rebuild: sources.last_rebuild,
        }));
        r.register_collector(Box::new(Process {
            open_connections: sources.open_connections,
        }));
        m
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A certificate's `notAfter` (Unix time), served for `host`.
    pub fn set_ssl_expiry(&self, host: String, secret: (&str, &str), not_after: i64) {
        self.ssl_expire
            .get_or_create(&self.ssl_labels(host, secret))
            .set(not_after);
    }

    pub fn remove_ssl_expiry(&self, host: String, secret: (&str, &str)) {
        self.ssl_expire.remove(&self.ssl_labels(host, secret));
    }

    pub fn clear_ssl_expiry(&self) {
        self.ssl_expire.clear();
    }

    fn ssl_labels(&self, host: String, (namespace, name): (&str, &str)) -> SslLabels {
        SslLabels {
            namespace: namespace.to_owned(),
            class: self.class.clone(),
            host,
            secret_name: name.to_owned(),
        }
    }
}

/// The request series of one route, by method and status code, each made
/// on its first request. Later requests find theirs in a short list with
/// one atomic load, and take no lock.
pub struct RouteSeries {
    labels: RequestLabels,
    series: ArcSwap<Vec<(Key, Arc<Series>)>>,
}

/// Method index and status code.
type Key = (usize, u16);

struct Series {
    requests: Untyped,
    request_duration: Histogram,
    response_duration: Histogram,
    request_size: Histogram,
    response_size: Histogram,
}

impl RouteSeries {
    /// `labels` with empty `status` and `method`, filled per series.
    pub fn new(labels: RequestLabels) -> Self {
        RouteSeries {
            labels,
            series: ArcSwap::from_pointee(Vec::new()),
        }
    }

    pub fn record(&self, families: &IngressNginx, request: &Finished) {
        let key = (request.method, request.status);
        let series = match self.series.load().iter().find(|(k, _)| *k == key) {
            Some((_, series)) => series.clone(),
            None => self.create(families, key),
        };
        series.requests.0.inc();
        series
            .request_duration
            .observe(request.duration.as_secs_f64());
        // As ingress-nginx, which skips the upstream times of requests
        // that did not go upstream.
        if let Some(upstream_time) = request.upstream_time {
            series
                .response_duration
                .observe(upstream_time.as_secs_f64());
        }
        series.request_size.observe(request.received as f64);
        series.response_size.observe(request.sent as f64);
    }

    /// The series of `key`, from the families (which two racing requests
    /// get the same series from), added to the route's list.
    fn create(&self, families: &IngressNginx, key: Key) -> Arc<Series> {
        let labels = RequestLabels {
            status: key.1.to_string(),
            method: METHODS[key.0],
            ..self.labels.clone()
        };
        let series = Arc::new(Series {
            requests: families.requests.get_or_create_owned(&labels),
            request_duration: families.request_duration.get_or_create_owned(&labels),
            response_duration: families.response_duration.get_or_create_owned(&labels),
            request_size: families.request_size.get_or_create_owned(&labels),
            response_size: families.response_size.get_or_create_owned(&labels),
        });
        self.series.rcu(|list| {
            let mut list = Vec::clone(list);
            if !list.iter().any(|(k, _)| *k == key) {
                list.push((key, series.clone()));
            }
            list
        });
        series
    }
}

/// ingress-nginx's reload series, from Gatehouse's table builds: a table
/// swapped in is a successful reload. A build that panics keeps the table
/// before and is not counted, so `config_last_reload_successful` is 1 from
/// the first table on.
#[derive(Debug)]
struct Reloads {
    rebuilds: Family<RebuildLabels, Counter>,
    last_rebuild: Gauge<f64, AtomicU64>,
}

impl Reloads {
    fn tables(&self) -> u64 {
        ["full", "incremental"]
            .into_iter()
            .filter_map(|kind| self.rebuilds.get(&RebuildLabels { kind }).map(|c| c.get()))
            .sum()
    }
}

impl Collector for Reloads {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let tables = self.tables();
        let success = Untyped::default();
        success.0.inc_by(tables);
        encode(
            &mut encoder,
            "success",
            "Cumulative number of Ingress controller reload operations (routing tables swapped in).",
            &success,
        )?;
        encode(
            &mut encoder,
            "config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            &ConstGauge::new(i64::from(tables > 0)),
        )?;
        encode(
            &mut encoder,
            "config_last_reload_successful_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            &ConstGauge::new(self.last_rebuild.get()),
        )?;
        encode(
            &mut encoder,
            "config_hash",
            "Running configuration hash actually running (the number of routing tables built: it changes with every table).",
            &ConstGauge::new(tables as f64),
        )
    }
}

/// ingress-nginx's nginx process series, for Gatehouse's own process.
#[derive(Debug)]
struct Process {
    open_connections: Family<ListenerLabels, Gauge<i64, AtomicI64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // The listeners `proxy::listener` counts open connections of.
        let open: i64 = ["http", "https"]
            .into_iter()
            .filter_map(|listener| {
                self.open_connections
                    .get(&ListenerLabels { listener })
                    .map(|g| g.get())
            })
            .sum();
        let connections = Family::<StateLabels, Gauge<i64, AtomicI64>>::default();
        connections
            .get_or_create(&StateLabels { state: "active" })
            .set(open);
        encode(
            &mut encoder,
            "nginx_process_connections",
            "current number of client connections with state {active}.",
            &connections,
        )?;
        let Some(usage) = process::read_self() else {
            return Ok(());
        };
        encode(
            &mut encoder,
            "nginx_process_cpu_seconds",
            "Cpu usage in seconds (user and system).",
            &ConstCounter::new(usage.cpu_seconds),
        )?;
        encode(
            &mut encoder,
            "nginx_process_resident_memory_bytes",
            "number of bytes of memory in use.",
            &ConstGauge::new(usage.resident_bytes as i64),
        )
    }
}

fn encode(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let metric_encoder = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(metric_encoder)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{method_index, Metrics, RouteLabels, RouteMetricsSlot, RouteNames};
    use super::*;

    fn controller() -> ControllerLabels {
        ControllerLabels {
            namespace: "ingress".into(),
            class: "gatehouse.dev/ingress-controller".into(),
            pod: "gatehouse-0".into(),
        }
    }

    fn names(path: Option<&str>) -> RouteNames {
        RouteNames {
            route: RouteLabels {
                namespace: "shop".into(),
                ingress: "web".into(),
                service: "web".into(),
            },
            host: "shop.test".into(),
            path: path.map(str::to_owned),
        }
    }

    fn finished(method: &http::Method, status: u16, upstream: bool) -> Finished {
        Finished {
            method: method_index(method),
            status,
            duration: Duration::from_millis(30),
            upstream_time: upstream.then(|| Duration::from_millis(20)),
            received: 15,
            sent: 42,
        }
    }

    /// The lines of the exposition that start with `prefix`.
    fn lines(metrics: &Metrics, prefix: &str) -> Vec<String> {
        metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    const LABELS: &str = r#"controller_namespace="ingress",controller_class="gatehouse.dev/ingress-controller",controller_pod="gatehouse-0""#;

    #[test]
    fn requests_are_exposed_under_ingress_nginx_name_without_a_total_suffix() {
        let metrics = Metrics::with_ingress_nginx(&controller());
        let slot = RouteMetricsSlot::default();
        let route = metrics.route(&slot, || names(Some("/api")));
        for _ in 0..2 {
            route.record(&metrics, &finished(&http::Method::GET, 200, true));
        }
        route.record(&metrics, &finished(&http::Method::POST, 503, false));
        let text = metrics.encode();
        assert!(text.contains("# TYPE nginx_ingress_controller_requests unknown\n"));
        let series = |status, method| {
            format!("nginx_ingress_controller_requests{{{LABELS},status=\"{status}\",method=\"{method}\",path=\"/api\",namespace=\"shop\",ingress=\"web\",service=\"web\",canary=\"\",host=\"shop.test\"}}")
        };
        assert_eq!(
            lines(&metrics, &series(200, "GET")),
            [series(200, "GET") + " 2"]
        );
        assert_eq!(
            lines(&metrics, &series(503, "POST")),
            [series(503, "POST") + " 1"]
        );
        assert!(!text.contains("nginx_ingress_controller_requests_total"));
        // Gatehouse's own series still count every request.
        assert_eq!(
            lines(&metrics, "gatehouse_requests_total{").len(),
            2,
            "{text}"
        );
    }

    #[test]
    fn histograms_have_ingress_nginx_default_buckets() {
        let metrics = Metrics::with_ingress_nginx(&controller());
        let slot = RouteMetricsSlot::default();
        let route = metrics.route(&slot, || names(Some("/")));
        route.record(&metrics, &finished(&http::Method::GET, 200, true));
        let bounds = |name: &str| -> Vec<String> {
            lines(
                &metrics,
                &format!("nginx_ingress_controller_{name}_bucket{{"),
            )
            .iter()
            .map(|l| {
                l.split("le=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
        };
        let time = [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0",
            "+Inf",
        ];
        let length = [
            "10.0", "20.0", "30.0", "40.0", "50.0", "60.0", "70.0", "80.0", "90.0", "100.0", "+Inf",
        ];
        assert_eq!(bounds("request_duration_seconds"), time);
        assert_eq!(bounds("response_duration_seconds"), time);
        assert_eq!(bounds("request_size"), length);
        assert_eq!(bounds("response_size"), length);
        let sum = |name: &str| lines(&metrics, &format!("nginx_ingress_controller_{name}_sum{{"));
        assert!(sum("request_size")[0].ends_with(" 15.0"));
        assert!(sum("response_size")[0].ends_with(" 42.0"));
        assert!(sum("response_duration_seconds")[0].ends_with(" 0.02"));
    }

    #[test]
    fn requests_no_route_forwarded_are_left_out() {
        let metrics = Metrics::with_ingress_nginx(&controller());
        let slot = RouteMetricsSlot::default();
        let unrouted = metrics.route(&slot, || names(None));
        unrouted.record(&metrics, &finished(&http::Method::GET, 404, false));
        assert!(lines(&metrics, "nginx_ingress_controller_requests{").is_empty());
        assert_eq!(lines(&metrics, "gatehouse_requests_total{").len(), 1);
    }

    #[test]
    fn without_the_flag_there_is_no_ingress_nginx_series() {
        let metrics = Metrics::new();
        let slot = RouteMetricsSlot::default();
        let route = metrics.route(&slot, || names(Some("/")));
        route.record(&metrics, &finished(&http::Method::GET, 200, true));
        let text = metrics.encode();
        assert!(!text.contains("nginx_"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_table_swapped_in_is_a_successful_reload() {
        let metrics = Metrics::with_ingress_nginx(&controller());
        let reloaded =
            format!("nginx_ingress_controller_config_last_reload_successful{{{LABELS}}}");
        assert_eq!(lines(&metrics, &reloaded), [format!("{reloaded} 0")]);
        metrics.observe_build(Duration::from_millis(3), false, 1_700_000_000.0);
        metrics.observe_build(Duration::from_millis(1), true, 1_700_000_060.0);
        let text = metrics.encode();
        let success = format!("nginx_ingress_controller_success{{{LABELS}}}");
        assert!(text.contains("# TYPE nginx_ingress_controller_success unknown\n"));
        assert_eq!(lines(&metrics, &success), [format!("{success} 2")]);
        assert_eq!(lines(&metrics, &reloaded), [format!("{reloaded} 1")]);
        let when = format!(
            "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds{{{LABELS}}}"
        );
        assert_eq!(lines(&metrics, &when), [format!("{when} 1700000060.0")]);
        let hash = format!("nginx_ingress_controller_config_hash{{{LABELS}}}");
        assert_eq!(lines(&metrics, &hash), [format!("{hash} 2.0")]);
    }

    #[test]
    fn process_series_describe_this_process() {
        let metrics = Metrics::with_ingress_nginx(&controller());
        metrics
            .open_connections
            .get_or_create(&ListenerLabels { listener: "https" })
            .set(3);
        metrics
            .open_connections
            .get_or_create(&ListenerLabels { listener: "http" })
            .set(2);
        let active = format!(
            "nginx_ingress_controller_nginx_process_connections{{{LABELS},state=\"active\"}}"
        );
        assert_eq!(lines(&metrics, &active), [format!("{active} 5")]);
        let cpu = format!("nginx_ingress_controller_nginx_process_cpu_seconds_total{{{LABELS}}} ");
        assert_eq!(lines(&metrics, &cpu).len(), 1);
        let rss =
            format!("nginx_ingress_controller_nginx_process_resident_memory_bytes{{{LABELS}}} ");
        let rss = lines(&metrics, &rss);
        let bytes: f64 = rss[0]
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("value");
        assert!(bytes > 1e6, "{rss:?}");
    }

    #[test]
    fn certificate_expiry_carries_ingress_nginx_labels() {
        let metrics = Metrics::with_ingress_nginx(&controller());
        let compat = metrics.ingress_nginx.as_ref().expect("compat");
        compat.set_ssl_expiry("shop.test".into(), ("shop", "shop-tls"), 1_800_000_000);
        let series = r#"nginx_ingress_controller_ssl_expire_time_seconds{namespace="shop",class="gatehouse.dev/ingress-controller",host="shop.test",secret_name="shop-tls"}"#;
        assert_eq!(lines(&metrics, series), [format!("{series} 1800000000")]);
        compat.remove_ssl_expiry("shop.test".into(), ("shop", "shop-tls"));
        assert!(lines(&metrics, series).is_empty());
    }
}
