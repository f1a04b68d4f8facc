//! Wiring: a source, the controller loop, the proxy listeners and the
//! health endpoints, started together and stopped together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::controller::Controller;
use crate::proxy::{self, CertResolver, Proxy, TlsSetupError};
use crate::source::files::{self, SourceError};
use crate::table::RouteTable;
use crate::telemetry::access_log::{AccessLog, AccessLogFormat, AccessLogTarget};
use crate::telemetry::admin::{self, AdminState};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::Telemetry;
use crate::translate::TranslateOptions;

/// Everything `start` needs, already validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub manifests: PathBuf,
    pub http_addr: SocketAddr,
    pub https_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub translate: TranslateOptions,
    pub access_log: AccessLogTarget,
    pub access_log_format: AccessLogFormat,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("cannot open the access log {target:?}: {source}")]
    AccessLog {
        target: AccessLogTarget,
        source: std::io::Error,
    },
}

/// A started Gatehouse. Dropping it stops every task it started.
pub struct Running {
    pub http_addr: SocketAddr,
    pub https_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// The table being served, for tools and tests that inspect it.
    pub table: Arc<ArcSwap<RouteTable>>,
    tasks: JoinSet<()>,
    /// Flushes the access log when the server is dropped.
    _access_log: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl Running {
    /// Waits until one of the tasks ends, which only happens on a bug.
    pub async fn wait(&mut self) {
        self.tasks.join_next().await;
    }
}

/// Reads the source, builds the first table, then starts listening: the
/// first request already sees every route.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let (states, errors) = files::watch_dir(&config.manifests)?;
    for error in &errors {
        tracing::error!(target: "gatehouse::source", "manifest skipped: {error}");
    }
    let metrics = Arc::new(Metrics::new());
    let (access_log, access_log_guard) =
        match AccessLog::open(&config.access_log, config.access_log_format) {
            Ok(Some((log, guard))) => (Some(log), Some(guard)),
            Ok(None) => (None, None),
            Err(source) => {
                return Err(StartError::AccessLog {
                    target: config.access_log.clone(),
                    source,
                })
            }
        };
    let telemetry = Arc::new(Telemetry {
        metrics: metrics.clone(),
        access_log,
    });
    let mut controller = Controller::new(config.translate.clone(), metrics.clone());
    let initial = states.borrow().clone();
    controller.rebuild(initial).await;
    let table = controller.table.clone();
    let readiness = controller.readiness.clone();

    let resolver = CertResolver::new(table.clone(), proxy::default_certificate()?);
    let acceptor = TlsAcceptor::from(proxy::server_config(Arc::new(resolver))?);
    let proxy = Arc::new(Proxy::new(table.clone(), telemetry));

    let http = bind("HTTP", config.http_addr).await?;
    let https = bind("HTTPS", config.https_addr).await?;
    let metrics_listener = bind("metrics", config.metrics_addr).await?;
    let running_addrs = (local(&http)?, local(&https)?, local(&metrics_listener)?);

    let mut tasks = JoinSet::new();
    tasks.spawn(controller.run(states));
    tasks.spawn(proxy::serve_plain(http, proxy.clone()));
    tasks.spawn(proxy::serve_tls(https, proxy, acceptor));
    let admin_state = AdminState {
        readiness,
        metrics,
        table: table.clone(),
    };
    tasks.spawn(admin::serve(metrics_listener, admin_state));

    tracing::info!(
        http = %running_addrs.0, https = %running_addrs.1, metrics = %running_addrs.2,
        manifests = %config.manifests.display(), "gatehouse serving"
    );
    Ok(Running {
        http_addr: running_addrs.0,
        https_addr: running_addrs.1,
        metrics_addr: running_addrs.2,
        table,
        tasks,
        _access_log: access_log_guard,
    })
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

fn local(listener: &TcpListener) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind {
        what: "a listener",
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}
