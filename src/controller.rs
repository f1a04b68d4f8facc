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
use crate::gateway::report::StatusReport;
use crate::source::StateReceiver;
use crate::table::RouteTable;
use crate::telemetry::admin::Readiness;
use crate::telemetry::metrics::Metrics;
use crate::translate::{translate_next, BuildKind, Reuse, TranslateOptions, Warning};

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
    /// Tables built so far, and the newest one whose metrics are published.
    generation: u64,
    observed: Arc<std::sync::Mutex<u64>>,
    /// `worker-processes` of the first table's ConfigMap: threads are
    /// started once.
    workers: Option<Option<usize>>,
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
            generation: 0,
            observed: Arc::default(),
            workers: None,
        }
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
        // Traffic sees the new table now. The table's metrics (a series per
        // backend and certificate) and freeing the old table take
        // milliseconds: after the swap, and not on a thread that serves
        // traffic.
        let (metrics, warnings) = (self.metrics.clone(), translation.warnings.clone());
        self.generation += 1;
        let (generation, observed) = (self.generation, self.observed.clone());
        tokio::task::spawn_blocking(move || {
            // In build order: an older table never overwrites a newer one's.
            let mut last = observed.lock().unwrap_or_else(|e| e.into_inner());
            if *last < generation {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                let incremental = kind == BuildKind::Incremental;
                metrics.observe_table(&table, &warnings, took, incremental, now);
                *last = generation;
            }
            drop(last);
            drop(old);
        });
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
