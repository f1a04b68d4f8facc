//! The loop between a source and the proxy: every new `ClusterState` is
//! translated into a table and swapped in.
//!
//! The source's `watch` channel keeps only the newest state, so a burst of
//! changes that arrives during a translation yields one more translation,
//! not one per change. Warnings are logged when they appear and when they
//! go away, not again on every rebuild.

use std::collections::BTreeSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::cluster::ClusterState;
use crate::metrics::Metrics;
use crate::source::StateReceiver;
use crate::table::RouteTable;
use crate::telemetry::admin::Readiness;
use crate::telemetry::gauges::Published;
use crate::telemetry::traces::Traces;
use crate::translate::gateway_status::StatusReport;
use crate::translate::{translate_next, BuildKind, Reuse, TranslateOptions, Warning};

/// A table and its warnings, as their gauges are published.
type Gauged = (Arc<RouteTable>, Arc<Vec<Warning>>);

/// How often, at most, the table's gauges are published again.
const GAUGES_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Publishes the gauges of the newest table it is sent (by difference with
/// the table it published before: series written only for what changed), then
/// waits `GAUGES_EVERY`, or nine times as long as publishing took if that
/// is longer: even publishing whole (about 0.4 s at 100,000 hosts) never
/// takes more than a tenth of a core.
fn gauges_task(metrics: Arc<Metrics>) -> watch::Sender<Option<Gauged>> {
    let (tx, mut rx) = watch::channel::<Option<Gauged>>(None);
    tokio::spawn(async move {
        let mut published = Published::default();
        while rx.changed().await.is_ok() {
            let Some((table, warnings)) = rx.borrow_and_update().clone() else {
                continue;
            };
            let metrics = metrics.clone();
            let started = std::time::Instant::now();
            let publish = move || {
                metrics.observe_table(&table, &warnings, &mut published);
                published
            };
            // A publication that panicked starts the next one afresh.
            published = tokio::task::spawn_blocking(publish)
                .await
                .unwrap_or_default();
            tokio::time::sleep(GAUGES_EVERY.max(started.elapsed() * 9)).await;
        }
    });
    tx
}

/// Publishes tables built from one source.
pub struct Controller {
    pub table: Arc<ArcSwap<RouteTable>>,
    pub readiness: Readiness,
    metrics: Arc<Metrics>,
    options: Arc<TranslateOptions>,
    warnings: BTreeSet<Warning>,
    /// The current warnings, for whoever reports them further (Events).
    warnings_tx: watch::Sender<Arc<BTreeSet<Warning>>>,
    /// The Gateway API objects' status, for the status writer.
    gateway_tx: watch::Sender<Arc<StatusReport>>,
    /// What the last build parsed, resolved and produced: the next build
    /// translates only what changed since.
    reuse: Reuse,
    /// The newest table and warnings, for the task that publishes their
    /// gauges (started with the first table).
    gauges: Option<watch::Sender<Option<Gauged>>>,
    /// `worker-processes` of the first table's ConfigMap: threads are
    /// started once.
    workers: Option<Option<usize>>,
    /// The span exporter, following each table's collector keys.
    traces: Option<Arc<Traces>>,
}

impl Controller {
    pub fn new(options: TranslateOptions, metrics: Arc<Metrics>) -> Self {
        Controller {
            table: Arc::new(ArcSwap::from_pointee(RouteTable::default())),
            readiness: Readiness::default(),
            metrics,
            options: Arc::new(options),
            warnings: BTreeSet::new(),
            warnings_tx: watch::channel(Arc::new(BTreeSet::new())).0,
            gateway_tx: watch::channel(Arc::new(StatusReport::default())).0,
            reuse: Reuse::default(),
            gauges: None,
            workers: None,
            traces: None,
        }
    }

    /// Keeps `traces` exporting to the collector each new table names.
    pub fn exporting_traces(mut self, traces: Arc<Traces>) -> Self {
        self.traces = Some(traces);
        self
    }

    /// The warnings of the current table, updated on every rebuild.
    pub fn warnings(&self) -> watch::Receiver<Arc<BTreeSet<Warning>>> {
        self.warnings_tx.subscribe()
    }

    /// The Gateway API objects' status of the current table.
    pub fn gateway_status(&self) -> watch::Receiver<Arc<StatusReport>> {
        self.gateway_tx.subscribe()
    }

    /// The controller ConfigMap's `worker-processes` when the first table
    /// was built (0: one per core).
    pub fn workers(&self) -> Option<usize> {
        self.workers.flatten()
    }

    pub fn options(&self) -> Arc<TranslateOptions> {
        self.options.clone()
    }

    /// Translates `state` and swaps the result in; the first call makes the
    /// controller ready.
    pub async fn rebuild(&mut self, state: Arc<ClusterState>) {
        let options = self.options.clone();
        // Handed over whole: the build patches it. After a panic the next
        // build starts from nothing.
        let previous = std::mem::take(&mut self.reuse);
        // Translation is CPU work that grows with the change (a full build
        // with the cluster); keep it off the threads that serve traffic.
        let built = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let (translation, kind) = translate_next(&state, &options, previous);
            (translation, kind, started.elapsed())
        })
        .await;
        let Ok((mut translation, kind, took)) = built else {
            tracing::error!("routing table build panicked; keeping the previous table");
            return;
        };
        tracing::debug!(
            ?kind,
            routes = translation.table.route_count(),
            certificates = translation.table.certs.len(),
            took_ms = took.as_secs_f64() * 1e3,
            "routing table rebuilt"
        );
        let workers = translation.settings.workers;
        match self.workers {
            None => self.workers = Some(workers),
            Some(started) if started != workers => tracing::warn!(
                "the controller ConfigMap's worker-processes changed; it takes effect at the next restart"
            ),
            Some(_) => {}
        }
        self.reuse = std::mem::take(&mut translation.reuse);
        let table = Arc::new(translation.table);
        let old = self.table.swap(table.clone());
        if let Some(traces) = &self.traces {
            traces.configure(&table.edge.traces);
        }
        // Traffic sees the new table now. The table's gauges (a series per
        // backend and certificate) follow on a task of their own, at most
        // once a second however often the table changes. Freeing the old
        // table takes milliseconds: not on a thread that serves traffic.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let incremental = kind == BuildKind::Incremental;
        self.metrics.observe_build(took, incremental, now);
        let gauges = self
            .gauges
            .get_or_insert_with(|| gauges_task(self.metrics.clone()));
        let superseded = gauges.send_replace(Some((table, Arc::new(translation.warnings.clone()))));
        tokio::task::spawn_blocking(move || drop((old, superseded)));
        self.report(translation.warnings);
        if **self.gateway_tx.borrow() != translation.gateway_status {
            self.gateway_tx
                .send_replace(Arc::new(translation.gateway_status));
        }
        self.readiness.set(true);
    }

    fn report(&mut self, warnings: Vec<Warning>) {
        let current: BTreeSet<Warning> = warnings.into_iter().collect();
        for new in current.difference(&self.warnings) {
            tracing::warn!(ingress = %new.ingress, kind = ?new.kind, "{}", new.message);
        }
        for gone in self.warnings.difference(&current) {
            tracing::info!(ingress = %gone.ingress, kind = ?gone.kind, "resolved: {}", gone.message);
        }
        if current != self.warnings || self.warnings_tx.borrow().is_empty() {
            self.warnings_tx.send_replace(Arc::new(current.clone()));
        }
        self.warnings = current;
    }

    /// Rebuilds on every new state the source publishes, until it stops.
    pub async fn run(mut self, mut states: StateReceiver) {
        while states.changed().await.is_ok() {
            let state = states.borrow_and_update().clone();
            self.rebuild(state).await;
        }
    }
}
