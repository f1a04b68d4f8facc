//! The span exporter: OTLP over gRPC to the collector the controller
//! ConfigMap names (`otlp-collector-host`, `otlp-collector-port`), with
//! its sampler and batching.
//!
//! Built when a table first names a collector and rebuilt only when the
//! collector keys change; requests take the tracer of the moment. Spans go
//! through the SDK's batch processor, on a thread of its own, so a request
//! never waits for the exporter. The spans waiting for export (queued, or
//! in the batch being sent) are bounded by `otel-max-queuesize`: when the
//! collector is slow or away, finished spans beyond it are dropped and
//! counted (`gatehouse_trace_spans_dropped_total`). The SDK keeps its own
//! count of the spans its queue drops to itself, so the bound is kept here,
//! in front of it, where a drop can be counted; its queue, as large, then
//! never fills.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Context;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler as SdkSampler, SdkTracer, SdkTracerProvider,
    Span, SpanData, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use prometheus_client::metrics::counter::Counter;

use crate::policy::traces::{Sampler, TraceExport};

/// How long an export may take before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The exporter of the moment, if a collector is configured.
#[derive(Debug, Default)]
pub struct Traces {
    current: ArcSwapOption<Exporter>,
    /// Spans dropped on a full queue.
    dropped: Counter,
}

#[derive(Debug)]
struct Exporter {
    /// The keys it was built from.
    export: TraceExport,
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Traces {
    /// Traces whose dropped spans are counted in `dropped`.
    pub fn counting_drops(dropped: Counter) -> Self {
        Traces {
            current: ArcSwapOption::default(),
            dropped,
        }
    }

    /// The tracer requests start their spans with; `None` while no
    /// collector is configured.
    pub fn tracer(&self) -> Option<SdkTracer> {
        self.current.load().as_ref().map(|e| e.tracer.clone())
    }

    /// Follows a new table's collector keys: the exporter is built,
    /// replaced or stopped when they changed, and left alone otherwise.
    /// Must run within the Tokio runtime (the gRPC channel's tasks live
    /// there).
    pub fn configure(&self, export: &TraceExport) {
        let current = self.current.load();
        let unchanged = match current.as_deref() {
            Some(running) => running.export == *export,
            None => !export.exporting(),
        };
        if unchanged {
            return;
        }
        let next = if export.exporting() {
            match build(export, &self.dropped) {
                Ok(exporter) => {
                    tracing::info!(collector = %export.endpoint(), "exporting traces");
                    Some(Arc::new(exporter))
                }
                Err(error) => {
                    tracing::warn!(collector = %export.endpoint(), %error, "cannot export traces");
                    None
                }
            }
        } else {
            None
        };
        if let Some(old) = self.current.swap(next) {
            // Shutting down sends what is queued, which blocks.
            tokio::task::spawn_blocking(move || {
                if let Err(error) = old.provider.shutdown() {
                    tracing::debug!(%error, "stopping the previous trace exporter");
                }
            });
        }
    }

    /// Sends what is queued and stops exporting, for a clean exit.
    pub fn shutdown(&self) {
        if let Some(old) = self.current.swap(None) {
            let _ = old.provider.shutdown();
        }
    }
}

fn build(
    export: &TraceExport,
    dropped: &Counter,
) -> Result<Exporter, opentelemetry_otlp::ExporterBuildError> {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(export.endpoint())
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let waiting = Arc::new(AtomicUsize::new(0));
    let exporter = Leaving {
        inner: exporter,
        waiting: waiting.clone(),
    };
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(export.max_queue_size)
        .with_max_export_batch_size(export.max_export_batch_size)
        .with_scheduled_delay(export.schedule_delay)
        .build();
    let processor = Bounded {
        inner: BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build(),
        waiting,
        limit: export.max_queue_size,
        dropped: dropped.clone(),
    };
    let resource = Resource::builder_empty()
        .with_service_name(export.service_name.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler(export))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("gatehouse");
    Ok(Exporter {
        export: export.clone(),
        provider,
        tracer,
    })
}

/// `otel-sampler` and `otel-sampler-ratio`, under the parent's decision
/// when `otel-sampler-parent-based`.
fn sampler(export: &TraceExport) -> SdkSampler {
    let root = match export.sampler {
        Sampler::AlwaysOn => SdkSampler::AlwaysOn,
        Sampler::AlwaysOff => SdkSampler::AlwaysOff,
        Sampler::TraceIdRatioBased => SdkSampler::TraceIdRatioBased(export.ratio),
    };
    if export.parent_based {
        SdkSampler::ParentBased(Box::new(root))
    } else {
        root
    }
}

/// The batch processor behind a bound on the spans waiting for export,
/// which counts what it drops.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    /// Spans handed on and not yet through an export.
    waiting: Arc<AtomicUsize>,
    limit: usize,
    dropped: Counter,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            self.dropped.inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, telling `Bounded` of the spans each export took
/// (sent or failed, they no longer wait).
#[derive(Debug)]
struct Leaving {
    inner: SpanExporter,
    waiting: Arc<AtomicUsize>,
}

impl opentelemetry_sdk::trace::SpanExporter for Leaving {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len();
        let result = self.inner.export(batch).await;
        self.waiting.fetch_sub(count, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
