//! The span exporter: OTLP over gRPC to the collector the controller
//! ConfigMap names (`otlp-collector-host`, `otlp-collector-port`), with
//! its sampler and batching.
//!
//! Built when a table first names a collector and rebuilt only when the
//! collector keys change; requests take the tracer of the moment. Spans go
//! through the SDK's batch processor, whose queue is bounded by
//! `otel-max-queuesize`: when the collector is slow or away, spans beyond
//! it are dropped, and a request never waits for the exporter.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler as SdkSampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;

use crate::policy::traces::{Sampler, TraceExport};

/// How long an export may take before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The exporter of the moment, if a collector is configured.
#[derive(Debug, Default)]
pub struct Traces {
    current: ArcSwapOption<Exporter>,
}

#[derive(Debug)]
struct Exporter {
    /// The keys it was built from.
    export: TraceExport,
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Traces {
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
            match build(export) {
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

fn build(export: &TraceExport) -> Result<Exporter, opentelemetry_otlp::ExporterBuildError> {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(export.endpoint())
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(export.max_queue_size)
        .with_max_export_batch_size(export.max_export_batch_size)
        .with_scheduled_delay(export.schedule_delay)
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
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
