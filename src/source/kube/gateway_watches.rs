//! The Gateway API's watches, started and stopped while Gatehouse runs, as
//! the API server starts and stops serving the group (its CRDs installed
//! or removed; `discovery` says when).
//!
//! Neither step drops traffic or stalls the Ingress side:
//! - Watches being started fill caches of their own; their objects enter
//!   the published state together, in one state, once every one of them
//!   has listed, so a Gateway never serves without its routes. Meanwhile
//!   the watches of before, if any, keep serving.
//! - Watches stopped are aborted, and their objects leave the state in
//!   one change (with the references they counted), whether or not the
//!   API server sent their deletions first. Events still queued from them
//!   are dropped.
//!
//! Every set of watches gets stream numbers never used before, so an
//! event always tells which set it came from.

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::retention::DataScope;
use super::watchers::spawn_gateway_watchers;
use super::{Change, GatewayApi, Kind, KindCache, KubeSource, Stream};

/// One set of watches, started together.
#[derive(Default)]
struct WatchSet {
    streams: BTreeSet<Stream>,
    tasks: Vec<AbortHandle>,
}

impl WatchSet {
    fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The Gateway API's watches and what the API server serves.
pub(super) struct GatewayWatches {
    source: KubeSource,
    tx: mpsc::UnboundedSender<(Stream, Change)>,
    /// What the watches are for: the kinds served, as last discovered.
    served: GatewayApi,
    /// The watches whose objects are in the state.
    active: WatchSet,
    /// Watches being started, with their caches kept aside until every
    /// one has listed.
    starting: Option<(WatchSet, BTreeMap<Stream, KindCache>)>,
    /// The last stream number used.
    last: usize,
}

impl GatewayWatches {
    /// Starts the watches for what the API server serves now (none when
    /// it does not serve the group); their streams count among those the
    /// first state waits for. Stream numbers continue after `last`.
    pub(super) fn start(
        source: &KubeSource,
        served: GatewayApi,
        tx: &mpsc::UnboundedSender<(Stream, Change)>,
        last: usize,
    ) -> Self {
        let mut watches = GatewayWatches {
            source: source.clone(),
            tx: tx.clone(),
            served,
            active: WatchSet::default(),
            starting: None,
            last,
        };
        if served.routes {
            watches.active = watches.spawn(served);
        }
        watches
    }

    /// How many streams feed the state.
    pub(super) fn active_streams(&self) -> usize {
        self.active.streams.len()
    }

    /// Applies one change: a new discovery result starts or stops
    /// watches; an event of one of these watches goes to the caches of
    /// its set (dropped if the set was stopped); anything else to the
    /// state's caches.
    pub(super) fn apply(
        &mut self,
        scope: &mut DataScope,
        caches: &mut BTreeMap<Stream, KindCache>,
        selected: &mut Option<BTreeSet<String>>,
        (stream, change): (Stream, Change),
    ) {
        if let Change::GatewayApi(served) = change {
            self.follow(served, scope, caches, selected);
            return;
        }
        if self.active.streams.contains(&stream) || !of_gateway_api(stream) {
            scope.apply(caches, selected, (stream, change));
            return;
        }
        let Some((set, aside)) = self.starting.as_mut() else {
            return;
        };
        if !set.streams.contains(&stream) {
            return;
        }
        scope.apply(aside, selected, (stream, change));
        let listed = set
            .streams
            .iter()
            .all(|s| aside.get(s).is_some_and(|c| c.synced));
        if listed {
            self.promote(scope, caches, selected);
        }
    }

    /// What the API server serves changed: starts the watches for it
    /// (those of before keep serving until they have listed), or stops
    /// them all when the group is gone.
    fn follow(
        &mut self,
        served: GatewayApi,
        scope: &mut DataScope,
        caches: &mut BTreeMap<Stream, KindCache>,
        selected: &mut Option<BTreeSet<String>>,
    ) {
        if served == self.served {
            return;
        }
        self.served = served;
        if let Some((set, mut aside)) = self.starting.take() {
            set.stop();
            empty(&set, scope, &mut aside, selected);
        }
        if served.routes {
            let set = self.spawn(served);
            self.starting = Some((set, BTreeMap::new()));
        } else {
            let gone = std::mem::take(&mut self.active);
            gone.stop();
            empty(&gone, scope, caches, selected);
        }
    }

    /// The watches being started have all listed: their objects replace
    /// those of the watches of before, in one state.
    fn promote(
        &mut self,
        scope: &mut DataScope,
        caches: &mut BTreeMap<Stream, KindCache>,
        selected: &mut Option<BTreeSet<String>>,
    ) {
        let Some((set, aside)) = self.starting.take() else {
            return;
        };
        let before = std::mem::replace(&mut self.active, set);
        before.stop();
        empty(&before, scope, caches, selected);
        for (stream, cache) in aside {
            for object in cache.live.values() {
                scope.touch(object);
            }
            caches.insert(stream, cache);
        }
    }

    fn spawn(&mut self, served: GatewayApi) -> WatchSet {
        let (streams, tasks) = spawn_gateway_watchers(&self.source, served, &self.tx, self.last);
        self.last += streams.len();
        WatchSet {
            streams: streams.into_iter().collect(),
            tasks,
        }
    }
}

/// Takes a stopped set's objects out of `caches`, as an empty relist of
/// each of its streams would (so the references they counted go too),
/// and forgets the streams.
fn empty(
    set: &WatchSet,
    scope: &mut DataScope,
    caches: &mut BTreeMap<Stream, KindCache>,
    selected: &mut Option<BTreeSet<String>>,
) {
    for stream in &set.streams {
        if caches.contains_key(stream) {
            scope.apply(caches, selected, (*stream, Change::Init));
            scope.apply(caches, selected, (*stream, Change::InitDone));
            caches.remove(stream);
        }
    }
}

/// Whether a stream is one of the Gateway API's watches (whose set may
/// have been stopped). Number 0 is for objects read on demand.
fn of_gateway_api(stream: Stream) -> bool {
    let kinds = matches!(
        stream.kind,
        Kind::GatewayClass
            | Kind::Gateway
            | Kind::HTTPRoute
            | Kind::GRPCRoute
            | Kind::ReferenceGrant
            | Kind::NamespaceLabels
    );
    kinds && stream.index != 0
}
