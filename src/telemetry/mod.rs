//! What operators see: metrics, the access log, logs, admin endpoints.

pub mod access_log;
pub mod admin;
pub mod certs;
pub mod debug;
pub mod gauges;
pub mod log_line;
pub mod logging;
pub mod spans;
pub mod traces;

use crate::metrics::Metrics;
use access_log::AccessLog;

/// What the data plane reports to, shared by every connection.
#[derive(Debug, Default)]
pub struct Telemetry {
    pub metrics: std::sync::Arc<Metrics>,
    pub access_log: Option<AccessLog>,
    pub traces: std::sync::Arc<traces::Traces>,
}
