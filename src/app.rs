//! Wiring: a source, the controller loop, the proxy listeners and the admin
//! endpoints, started together and stopped together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::acme::status::AcmeStatus;
use crate::admission::{
    self, managed, CertificateError, CertificateFiles, CertificateSource, Reviewer,
    ServingCertificate, WebhookConfig,
};
use crate::controller::Controller;
use crate::issuing::{self, SecretStore};
use crate::metrics::ingress_nginx::ControllerLabels;
use crate::metrics::Metrics;
use crate::proxy::{
    self, CertResolver, Drain, Handshakes, Limits, Listeners, Proxy, TlsSetupError, Workers,
};
use crate::source::files::{self, SourceError};
use crate::source::kube::{self as kube_source, KubeSource};
use crate::source::StateReceiver;
use crate::status::{StatusConfig, StatusWriter};
use crate::table::RouteTable;
use crate::telemetry::access_log::{AccessLog, AccessLogFormat, AccessLogTarget};
use crate::telemetry::admin::{self, AdminState, Readiness};
use crate::telemetry::traces::Traces;
use crate::telemetry::Telemetry;
use crate::translate::TranslateOptions;

/// Where the cluster's objects come from.
// Made once at start: the size of the Kubernetes variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum SourceConfig {
    /// `--manifests DIR`.
    Manifests(PathBuf),
    /// The Kubernetes API.
    Kube(KubeSource),
}

impl std::fmt::Display for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceConfig::Manifests(dir) => write!(f, "manifests in {}", dir.display()),
            SourceConfig::Kube(k) => match (k.namespaces.as_slice(), &k.namespace_selector) {
                ([], None) => f.write_str("Kubernetes API, all namespaces"),
                ([], Some(labels)) => write!(f, "Kubernetes API, namespaces labelled {labels}"),
                (names, None) => write!(f, "Kubernetes API, namespaces {}", names.join(",")),
                (names, Some(labels)) => write!(
                    f,
                    "Kubernetes API, namespaces {} labelled {labels}",
                    names.join(",")
                ),
            },
        }
    }
}

/// Everything `start` needs, already validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub source: SourceConfig,
    pub http_addr: SocketAddr,
    pub https_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// Export ingress-nginx's series too, with these controller labels.
    pub ingress_nginx_metrics: Option<ControllerLabels>,
    pub translate: TranslateOptions,
    pub access_log: AccessLogTarget,
    pub access_log_format: AccessLogFormat,
    pub limits: Limits,
    /// After SIGTERM, how long the listeners keep accepting (while the load
    /// balancer notices `/readyz` and deregisters this replica).
    pub shutdown_grace: Duration,
    /// Then, how long in-flight requests and upgraded connections get.
    pub drain_timeout: Duration,
    /// Ingress status and Events (with the Kubernetes source only).
    pub status: Option<StatusConfig>,
    /// `--validating-webhook`: the admission webhook, if served.
    pub webhook: Option<WebhookConfig>,
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
    #[error("the validating webhook's certificate: {0}")]
    WebhookCertificate(#[from] CertificateError),
    #[error("the validating webhook's TLS: {0}")]
    WebhookTls(#[from] rustls::Error),
    #[error("cannot start the worker threads: {0}")]
    Workers(std::io::Error),
    #[error("cannot open the access log {target:?}: {source}")]
    AccessLog {
        target: AccessLogTarget,
        source: std::io::Error,
    },
}

/// A started Gatehouse. Dropping it stops every task it started at once;
/// `shutdown` stops gracefully.
pub struct Running {
    pub http_addr: SocketAddr,
    pub https_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// `--validating-webhook`'s address, when served.
    pub webhook_addr: Option<SocketAddr>,
    /// The table being served, for tools and tests that inspect it.
    pub table: Arc<ArcSwap<RouteTable>>,
    readiness: Readiness,
    proxy: Arc<Proxy>,
    drain: Drain,
    shutdown_grace: Duration,
    drain_timeout: Duration,
    tasks: JoinSet<()>,
    /// The data plane's threads; stopped when this is dropped.
    workers: Workers,
    /// Flushes the access log when the server is dropped.
    _access_log: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl Running {
    /// Waits until one of the tasks or worker threads ends, which only
    /// happens on a bug.
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.tasks.join_next() => {}
            () = self.workers.any_ended() => {}
        }
    }

    /// The graceful stop: `/readyz` turns 503 at once; the listeners keep
    /// accepting for the grace period; then they stop, and in-flight
    /// requests and upgraded connections get the drain timeout. Returns
    /// whether everything finished within it.
    pub async fn shutdown(self) -> bool {
        self.readiness.set(false);
        tracing::info!(grace = ?self.shutdown_grace, "shutting down: not ready, still accepting");
        tokio::time::sleep(self.shutdown_grace).await;
        tracing::info!(timeout = ?self.drain_timeout, "shutting down: stopped accepting, draining");
        let drained = self.drain.drain(&self.proxy, self.drain_timeout).await;
        if drained {
            tracing::info!("shutting down: drained");
        } else {
            tracing::warn!("shutting down: drain timeout reached with connections still open");
        }
        // The spans still queued go to the collector.
        let traces = self.proxy.telemetry().traces.clone();
        let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
        drained
    }
}

/// Reads the source, builds the first table, then starts listening: the
/// first request already sees every route.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let metrics = Arc::new(match &config.ingress_nginx_metrics {
        Some(controller) => Metrics::with_ingress_nginx(controller),
        None => Metrics::new(),
    });
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
        traces: Arc::new(Traces::counting_drops(metrics.trace_spans_dropped.clone())),
    });
    let mut controller = Controller::new(config.translate.clone(), metrics.clone())
        .exporting_traces(telemetry.traces.clone());
    let table = controller.table.clone();
    let readiness = controller.readiness.clone();

    // The admin endpoints answer from the start: /readyz says 503 while the
    // source is still syncing.
    let mut tasks = JoinSet::new();
    let admin_listener = bind("metrics", config.metrics_addr).await?;
    let metrics_addr = local(&admin_listener)?;
    let acme_status = AcmeStatus::default();
    let admin_state = AdminState {
        readiness: readiness.clone(),
        metrics: metrics.clone(),
        table: table.clone(),
        acme: acme_status.clone(),
    };
    tasks.spawn(admin::serve(admin_listener, admin_state));

    let states = match &config.source {
        SourceConfig::Manifests(dir) => {
            let (states, errors) = files::watch_dir(dir)?;
            for error in &errors {
                tracing::error!(target: "gatehouse::source", "manifest skipped: {error}");
            }
            states
        }
        SourceConfig::Kube(source) => {
            tracing::info!(target: "gatehouse::source", "listing Ingresses, IngressClasses, Services, EndpointSlices and Secrets");
            kube_source::watch_cluster(source.clone()).await
        }
    };
    let initial = states.borrow().clone();
    controller.rebuild(initial).await;

    let resolver = CertResolver::new(table.clone(), proxy::default_certificate()?);
    let acceptor = Handshakes::new(table.clone(), Arc::new(resolver))?;
    let proxy = Arc::new(Proxy::new(table.clone(), telemetry));
    let (listeners, drain) = Listeners::new(proxy.clone(), config.limits);

    let http = bind("HTTP", config.http_addr).await?;
    let https = bind("HTTPS", config.https_addr).await?;
    let addrs = (local(&http)?, local(&https)?, metrics_addr);

    // One replica leads: it writes status and Events, orders ACME
    // certificates and keeps the webhook's own certificate.
    let leadership = elect(&config, &states, &controller, &mut tasks);
    let webhook_addr = match &config.webhook {
        Some(webhook) => {
            // Reviews judge what the source reads, and allow the rest.
            let served = match &config.source {
                SourceConfig::Kube(source) => source.namespaces.clone(),
                SourceConfig::Manifests(_) => Vec::new(),
            };
            let reviewer = Reviewer::new(
                states.clone(),
                controller.options(),
                webhook.admission,
                metrics.clone(),
            )
            .serving_namespaces(served);
            let place = managed::Place {
                store: match &leadership {
                    Some(leadership) => leadership.store.clone(),
                    None => secret_store(&config.source, &states),
                },
                leading: leadership.as_ref().map(|l| l.leading.clone()),
            };
            Some(start_webhook(webhook, reviewer, place, &mut tasks).await?)
        }
        None => None,
    };
    if let Some(leadership) = leadership {
        let answers = issuing::Answers {
            store: leadership.store.clone(),
            secret: config.translate.acme.challenges.clone(),
            table: table.clone(),
        };
        let mut manager = issuing::Manager::new(
            leadership.store,
            crate::source::controller_namespace(),
            controller.options(),
            answers,
            (acme_status.clone(), metrics.clone()),
        );
        if let Some(report) = leadership.report {
            manager = manager.reporting_to(report);
        }
        let (states, leading, always) = (states.clone(), leadership.leading, leadership.always);
        tasks.spawn(async move {
            // With manifests, nothing ever takes the lead away.
            let _always = always;
            manager.run(states, leading).await;
        });
    }
    // `worker-processes` of the controller ConfigMap wins over the flag.
    let workers = controller.workers().unwrap_or(config.limits.workers);
    tasks.spawn(controller.run(states));
    let count = match workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let workers = Workers::start(count, &listeners, &proxy, (http, https), acceptor)
        .map_err(StartError::Workers)?;

    tracing::info!(
        http = %addrs.0, https = %addrs.1, metrics = %addrs.2, workers = count,
        source = %config.source, "gatehouse serving"
    );
    Ok(Running {
        http_addr: addrs.0,
        https_addr: addrs.1,
        metrics_addr: addrs.2,
        webhook_addr,
        table,
        readiness,
        proxy,
        drain,
        shutdown_grace: config.shutdown_grace,
        drain_timeout: config.drain_timeout,
        tasks,
        workers,
        _access_log: access_log_guard,
    })
}

/// Who leads, and where what the leader writes goes.
struct Leadership {
    store: SecretStore,
    leading: watch::Receiver<bool>,
    /// Events and conditions (with the Kubernetes source).
    report: Option<issuing::ClusterReport>,
    /// With manifests, the one replica always leads: held for as long as
    /// the leader's tasks run.
    always: Option<watch::Sender<bool>>,
}

/// The election (with the Kubernetes source and a status configuration)
/// and the status writer, started; with manifests there is one replica,
/// which leads.
fn elect(
    config: &Config,
    states: &StateReceiver,
    controller: &Controller,
    tasks: &mut JoinSet<()>,
) -> Option<Leadership> {
    match (&config.source, &config.status) {
        (SourceConfig::Kube(source), Some(status)) => {
            let (leading, election) = StatusWriter::elect(&source.client, status);
            tasks.spawn(election);
            let writer =
                StatusWriter::new(source.client.clone(), status.clone(), controller.options());
            tasks.spawn(writer.run(
                states.clone(),
                controller.warnings(),
                controller.gateway_status(),
                leading.clone(),
            ));
            let report =
                issuing::ClusterReport::new(source.client.clone(), status.identity.clone());
            Some(Leadership {
                store: secret_store(&config.source, states),
                leading,
                report: Some(report),
                always: None,
            })
        }
        (SourceConfig::Manifests(_), _) => {
            let (always, leading) = watch::channel(true);
            Some(Leadership {
                store: secret_store(&config.source, states),
                leading,
                report: None,
                always: Some(always),
            })
        }
        (SourceConfig::Kube(_), None) => None,
    }
}

/// Where Secrets are read and written, for the source in use.
fn secret_store(source: &SourceConfig, states: &StateReceiver) -> SecretStore {
    match source {
        SourceConfig::Kube(source) => SecretStore::Kube(source.client.clone()),
        SourceConfig::Manifests(dir) => SecretStore::Directory(dir.clone(), states.clone()),
    }
}

/// Every replica answers reviews, from its own view of the cluster; none
/// needs to lead. Until its certificate loads, it refuses every handshake.
async fn start_webhook(
    config: &WebhookConfig,
    reviewer: Reviewer,
    place: managed::Place,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, StartError> {
    let serving = Arc::new(ServingCertificate::default());
    match &config.certificate {
        CertificateSource::Files { certificate, key } => {
            let files = CertificateFiles::load(certificate.clone(), key.clone(), serving.clone())?;
            tasks.spawn(Arc::new(files).follow());
        }
        CertificateSource::Managed(managed) => {
            managed::start(managed, serving.clone(), place, tasks);
        }
    }
    let tls = admission::tls_config(serving)?;
    let listener = bind("the validating webhook", config.addr).await?;
    let addr = local(&listener)?;
    tasks.spawn(admission::serve(listener, tls, reviewer, config.limits));
    tracing::info!(webhook = %addr, "validating webhook serving");
    Ok(addr)
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
