//! The access log: one line per request, JSON by default; `text` is
//! ingress-nginx's default line, and the controller ConfigMap's
//! `log-format-upstream` replaces either (see `log_line`).
//!
//! Lines go through tracing-appender's non-blocking writer: a bounded queue
//! drained by its own thread. When the queue is full, lines are dropped
//! rather than making a request wait for the disk.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use http::HeaderMap;
use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};

use super::log_line::{Captured, Line};
use crate::policy::log_format::{AccessLogSettings, LogFormat};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLogFormat {
    Json,
    Text,
}

/// Where access log lines go (`--access-log`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    Stderr,
    File(PathBuf),
}

impl FromStr for AccessLogTarget {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        Ok(match value {
            "off" => AccessLogTarget::Off,
            "stdout" | "-" => AccessLogTarget::Stdout,
            "stderr" => AccessLogTarget::Stderr,
            "" => return Err("empty access log target".into()),
            path => AccessLogTarget::File(PathBuf::from(path)),
        })
    }
}

/// One finished request.
#[derive(Debug, serde::Serialize)]
pub struct AccessEntry<'a> {
    /// When the request arrived, RFC 3339 UTC.
    pub time: &'a str,
    pub client: IpAddr,
    pub method: &'a str,
    pub host: &'a str,
    /// The path without the query string (queries often carry secrets).
    pub path: &'a str,
    pub protocol: &'a str,
    pub status: u16,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub duration_ms: f64,
    pub upstream: Option<&'a str>,
    pub upstream_ms: Option<f64>,
    pub ingress: Option<&'a str>,
    pub service: Option<&'a str>,
    pub request_id: &'a str,
}

pub struct AccessLog {
    format: AccessLogFormat,
    /// ingress-nginx's default line, compiled once, for `text`.
    default_line: Arc<LogFormat>,
    writer: NonBlocking,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessLog({:?})", self.format)
    }
}

impl AccessLog {
    /// Opens the target. The guard flushes the queue when dropped; keep it
    /// for as long as the log is written.
    pub fn open(
        target: &AccessLogTarget,
        format: AccessLogFormat,
    ) -> std::io::Result<Option<(AccessLog, WorkerGuard)>> {
        let (writer, guard) = match target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stdout => tracing_appender::non_blocking(std::io::stdout()),
            AccessLogTarget::Stderr => tracing_appender::non_blocking(std::io::stderr()),
            AccessLogTarget::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                tracing_appender::non_blocking(file)
            }
        };
        let default_line = Arc::new(LogFormat::ingress_nginx_default());
        let log = AccessLog {
            format,
            default_line,
            writer,
        };
        Ok(Some((log, guard)))
    }

    /// What a request keeps for its line, when the line is a template:
    /// the ConfigMap's `log-format-upstream`, else for `text`
    /// ingress-nginx's default. `None` for Gatehouse's JSON.
    pub fn capture(&self, settings: &AccessLogSettings, headers: &HeaderMap) -> Option<Captured> {
        let format = match (&settings.upstream, self.format) {
            (Some(format), _) => format.clone(),
            (None, AccessLogFormat::Text) => self.default_line.clone(),
            (None, AccessLogFormat::Json) => return None,
        };
        Some(Captured::new(format, settings.escape(), headers))
    }

    /// Gatehouse's JSON line.
    pub fn write(&self, entry: &AccessEntry<'_>) {
        let mut line = serde_json::to_string(entry).unwrap_or_default();
        line.push('\n');
        self.send(line.as_bytes());
    }

    /// A templated line.
    pub fn write_line(&self, line: &Line<'_>) {
        self.send(&line.render());
    }

    fn send(&self, line: &[u8]) {
        // Non-blocking: a full queue drops the line instead of waiting.
        let _ = self.writer.clone().write_all(line);
    }
}
