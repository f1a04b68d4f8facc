//! The traces family: ingress-nginx's OpenTelemetry ConfigMap keys and
//! annotations, compiled into typed values. Telemetry runs the exporter
//! they describe; the proxy starts spans only on routes that ask for them.
//!
//! Defaults are ingress-nginx's (its controller ConfigMap defaults):
//! tracing off, the collector's gRPC port 4317, service name `nginx`,
//! sampler `AlwaysOn` at ratio 0.01 when `TraceIdRatioBased`, parent-based
//! sampling on, incoming spans trusted, a 5 s export delay, batches of 512
//! and a queue of 2048 spans.

use std::time::Duration;

use super::annotations::parse_bool;
use super::template::{Template, Vars};
use super::Annotations;

/// Whether a route's requests are traced: `enable-opentelemetry` and
/// `opentelemetry-trust-incoming-span`, the ConfigMap's values unless the
/// Ingress's annotations say otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceSwitch {
    pub enabled: bool,
    /// A client's `traceparent` is continued; otherwise a new trace starts.
    pub trust_incoming: bool,
}

impl Default for TraceSwitch {
    fn default() -> Self {
        TraceSwitch {
            enabled: false,
            trust_incoming: true,
        }
    }
}

impl TraceSwitch {
    /// The annotations over these values (the ConfigMap's).
    pub fn read(&mut self, annotations: &Annotations<'_>, notes: &mut Vec<String>) {
        if let Some(on) = annotations.parsed("enable-opentelemetry", flag, notes) {
            self.enabled = on;
        }
        let trust = annotations.parsed("opentelemetry-trust-incoming-span", flag, notes);
        if let Some(trust) = trust {
            self.trust_incoming = trust;
        }
    }
}

/// `otel-sampler`: how a trace without a (trusted) parent is sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    /// `otel-sampler-ratio` of the traces, chosen by trace ID.
    TraceIdRatioBased,
}

/// Where spans go and how they are sampled: the collector ConfigMap keys.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceExport {
    /// The ConfigMap's switch, for requests no route forwards (404s,
    /// redirects); routes carry their own.
    pub global: TraceSwitch,
    /// `otlp-collector-host`; nothing is exported without it.
    pub collector_host: String,
    /// `otlp-collector-port`: OTLP over gRPC.
    pub collector_port: u16,
    /// `otel-service-name`: the `service.name` of every span.
    pub service_name: String,
    pub sampler: Sampler,
    /// `otel-sampler-ratio`, for `TraceIdRatioBased`.
    pub ratio: f64,
    /// `otel-sampler-parent-based`: a trusted parent's sampled flag decides.
    pub parent_based: bool,
    /// `opentelemetry-operation-name`: the server span's name; by default
    /// the method and the route's path.
    pub operation_name: Option<Template>,
    /// `otel-schedule-delay-millis`: the longest a span waits for export.
    pub schedule_delay: Duration,
    /// `otel-max-export-batch-size`.
    pub max_export_batch_size: usize,
    /// `otel-max-queuesize`: spans beyond it are dropped, never waited for.
    pub max_queue_size: usize,
}

impl Default for TraceExport {
    fn default() -> Self {
        TraceExport {
            global: TraceSwitch::default(),
            collector_host: String::new(),
            collector_port: 4317,
            service_name: "nginx".into(),
            sampler: Sampler::AlwaysOn,
            ratio: 0.01,
            parent_based: true,
            operation_name: None,
            schedule_delay: Duration::from_millis(5000),
            max_export_batch_size: 512,
            max_queue_size: 2048,
        }
    }
}

impl TraceExport {
    /// Whether spans can go anywhere: a collector host is set.
    pub fn exporting(&self) -> bool {
        !self.collector_host.is_empty()
    }

    /// The collector's gRPC endpoint.
    pub fn endpoint(&self) -> String {
        let host = &self.collector_host;
        // An IPv6 literal needs its brackets in a URL.
        if host.contains(':') && !host.starts_with('[') {
            format!("http://[{host}]:{}", self.collector_port)
        } else {
            format!("http://{host}:{}", self.collector_port)
        }
    }

    /// Applies one of the family's ConfigMap keys; `None` when `key` is
    /// not one of them.
    pub fn apply_key(&mut self, key: &str, value: &str) -> Option<Result<(), String>> {
        let applied = match key {
            "enable-opentelemetry" => parse_bool(value).map(|on| self.global.enabled = on),
            "opentelemetry-trust-incoming-span" => {
                parse_bool(value).map(|on| self.global.trust_incoming = on)
            }
            "otlp-collector-host" => host(value).map(|h| self.collector_host = h),
            "otlp-collector-port" => value
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .map(|p| self.collector_port = p),
            "otel-service-name" => Some(value)
                .filter(|v| !v.is_empty())
                .map(|v| self.service_name = v.to_owned()),
            "otel-sampler" => sampler(value).map(|s| self.sampler = s),
            "otel-sampler-ratio" => ratio(value).map(|r| self.ratio = r),
            "otel-sampler-parent-based" => parse_bool(value).map(|b| self.parent_based = b),
            "opentelemetry-operation-name" => {
                return Some(operation_name(value).map(|t| self.operation_name = t))
            }
            "otel-schedule-delay-millis" => value
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(|ms| self.schedule_delay = Duration::from_millis(ms)),
            "otel-max-export-batch-size" => count(value).map(|n| self.max_export_batch_size = n),
            "otel-max-queuesize" => count(value).map(|n| self.max_queue_size = n),
            _ => return None,
        };
        Some(applied.ok_or_else(|| "is not a valid value".to_owned()))
    }
}

fn flag(value: &str) -> Result<bool, String> {
    parse_bool(value).ok_or_else(|| "is not a boolean".to_owned())
}

fn sampler(value: &str) -> Option<Sampler> {
    match value {
        "AlwaysOn" => Some(Sampler::AlwaysOn),
        "AlwaysOff" => Some(Sampler::AlwaysOff),
        "TraceIdRatioBased" => Some(Sampler::TraceIdRatioBased),
        _ => None,
    }
}

/// A fraction from 0 to 1.
fn ratio(value: &str) -> Option<f64> {
    value
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
}

fn count(value: &str) -> Option<usize> {
    value.parse::<usize>().ok().filter(|n| *n > 0)
}

/// A host name or IP address: no scheme, port or path (the port has its
/// own key). Empty turns exporting off.
fn host(value: &str) -> Option<String> {
    let bare = value.trim_start_matches('[').trim_end_matches(']');
    let valid = bare
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    valid.then(|| bare.to_owned())
}

/// `opentelemetry-operation-name`: nginx variables of the request's place
/// (`$request_method`, `$host`, `$request_uri`, ...); empty is the default.
fn operation_name(value: &str) -> Result<Option<Template>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    Template::parse(value, Vars::Location).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::nginx_annotations;

    fn applied(pairs: &[(&str, &str)]) -> (TraceExport, Vec<String>) {
        let mut export = TraceExport::default();
        let mut problems = Vec::new();
        for (key, value) in pairs {
            match export.apply_key(key, value) {
                Some(Ok(())) => {}
                Some(Err(why)) => problems.push(format!("{key}: {why}")),
                None => problems.push(format!("{key}: not ours")),
            }
        }
        (export, problems)
    }

    #[test]
    fn the_defaults_are_ingress_nginxs() {
        let export = TraceExport::default();
        assert_eq!(export.global, TraceSwitch::default());
        assert!(!export.exporting());
        assert_eq!(export.collector_port, 4317);
        assert_eq!(export.service_name, "nginx");
        assert_eq!(export.sampler, Sampler::AlwaysOn);
        assert_eq!(export.ratio, 0.01);
        assert!(export.parent_based);
        assert_eq!(export.schedule_delay, Duration::from_secs(5));
        assert_eq!(
            (export.max_export_batch_size, export.max_queue_size),
            (512, 2048)
        );
        assert!(TraceSwitch::default().trust_incoming);
        assert!(!TraceSwitch::default().enabled);
    }

    #[test]
    fn the_collector_keys_are_typed_and_a_bad_value_is_named() {
        let (export, problems) = applied(&[
            ("enable-opentelemetry", "true"),
            ("otlp-collector-host", "otel.observability.svc"),
            ("otlp-collector-port", "14317"),
            ("otel-service-name", "edge"),
            ("otel-sampler", "TraceIdRatioBased"),
            ("otel-sampler-ratio", "0.25"),
            ("otel-sampler-parent-based", "false"),
            ("opentelemetry-operation-name", "$request_method $host"),
            ("otel-schedule-delay-millis", "50"),
            ("otel-sampler-ratio", "2"),
            ("otel-sampler", "Sometimes"),
            ("otlp-collector-host", "http://otel:4317/"),
        ]);
        assert!(export.global.enabled && export.exporting());
        assert_eq!(export.endpoint(), "http://otel.observability.svc:14317");
        assert_eq!(export.service_name, "edge");
        assert_eq!(
            (export.sampler, export.ratio),
            (Sampler::TraceIdRatioBased, 0.25)
        );
        assert!(!export.parent_based);
        let name = export.operation_name.as_ref().map(Template::as_str);
        assert_eq!(name, Some("$request_method $host"));
        assert_eq!(export.schedule_delay, Duration::from_millis(50));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("otel-sampler-ratio"));
        assert!(problems[1].starts_with("otel-sampler"));
        assert!(problems[2].starts_with("otlp-collector-host"));
    }

    #[test]
    fn an_ipv6_collector_gets_brackets() {
        let (export, _) = applied(&[("otlp-collector-host", "fd00::1")]);
        assert_eq!(export.endpoint(), "http://[fd00::1]:4317");
    }

    #[test]
    fn the_annotations_win_over_the_configmap() {
        let map = nginx_annotations(&[
            ("enable-opentelemetry", "true"),
            ("opentelemetry-trust-incoming-span", "false"),
        ]);
        let mut switch = TraceSwitch::default();
        let mut notes = Vec::new();
        switch.read(&Annotations::new(Some(&map), "gatehouse.dev"), &mut notes);
        assert!(switch.enabled && !switch.trust_incoming);
        let map = nginx_annotations(&[("enable-opentelemetry", "maybe")]);
        let mut on = TraceSwitch {
            enabled: true,
            trust_incoming: true,
        };
        on.read(&Annotations::new(Some(&map), "gatehouse.dev"), &mut notes);
        assert!(on.enabled, "a bad value leaves the ConfigMap's");
        assert_eq!(notes.len(), 1, "{notes:?}");
    }
}
