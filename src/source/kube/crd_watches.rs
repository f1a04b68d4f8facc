//! The watches of the kinds CRDs define (the Gateway API's, AcmeIssuers),
//! started and stopped while Gatehouse runs, group by group, as the API
//! server starts and stops serving them (their CRDs installed or removed;
//! `discovery` says when).
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
//! Every set of watches gets stream numbers its group never used before,
//! and no two groups watch the same kind, so an event always tells which
//! set it came from.

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::discovery::{Group, Served};
use super::retention::DataScope;
use super::watchers::spawn_group_watchers;
use super::{Change, Kind, KindCache, KubeSource, Stream};

/// Every group's watches.
pub(super) struct CrdWatches {
    groups: Vec<GroupWatches>,
}

impl CrdWatches {
    /// Starts the watches of each group the API server serves now; their
    /// streams count among those the first state waits for. Stream
    /// numbers continue after `last`.
    pub(super) fn start(
        source: &KubeSource,
        served: Served,
        tx: &mpsc::UnboundedSender<(Stream, Change)>,
        last: usize,
    ) -> Self {
        let start = |group| GroupWatches::start(group, source, served, tx, last);
        CrdWatches {
            groups: Group::ALL.into_iter().map(start).collect(),
        }
    }

    /// How many streams feed the state.
    pub(super) fn active_streams(&self) -> usize {
        self.groups.iter().map(|g| g.active.streams.len()).sum()
    }

    /// Applies one change: a new discovery result starts or stops each
    /// group's watches; an event of a group's watches goes to that group;
    /// anything else to the state's caches.
    pub(super) fn apply(
        &mut self,
        scope: &mut DataScope,
        caches: &mut BTreeMap<Stream, KindCache>,
        selected: &mut Option<BTreeSet<String>>,
        (stream, change): (Stream, Change),
    ) {
        if let Change::Served(served) = change {
            for group in &mut self.groups {
                group.follow(served, scope, caches, selected);
            }
            return;
        }
        // Number 0 is for objects read on demand, which no group watches.
        let watched = group_of(stream.kind).filter(|_| stream.index != 0);
        match self.groups.iter_mut().find(|g| Some(g.group) == watched) {
            Some(group) => group.apply(scope, caches, selected, (stream, change)),
            None => scope.apply(caches, selected, (stream, change)),
        }
    }
}

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

/// One group's watches and what the API server serves of it.
struct GroupWatches {
    group: Group,
    source: KubeSource,
    tx: mpsc::UnboundedSender<(Stream, Change)>,
    /// What the watches are for: the group's kinds served, as last
    /// discovered.
    served: Served,
    /// The watches whose objects are in the state.
    active: WatchSet,
    /// Watches being started, with their caches kept aside until every
    /// one has listed.
    starting: Option<(WatchSet, BTreeMap<Stream, KindCache>)>,
    /// The last stream number used.
    last: usize,
}

impl GroupWatches {
    /// Starts the watches for what the API server serves now of `group`
    /// (none when it does not serve it).
    fn start(
        group: Group,
        source: &KubeSource,
        served: Served,
        tx: &mpsc::UnboundedSender<(Stream, Change)>,
        last: usize,
    ) -> Self {
        let served = served.of(group);
        let mut watches = GroupWatches {
            group,
            source: source.clone(),
            tx: tx.clone(),
            served,
            active: WatchSet::default(),
            starting: None,
            last,
        };
        if served.serves(group) {
            watches.active = watches.spawn(served);
        }
        watches
    }

    /// Applies an event of one of the group's watches: to the state's
    /// caches if its set is the active one, else to the caches of the set
    /// being started (dropped if its set was stopped).
    fn apply(
        &mut self,
        scope: &mut DataScope,
        caches: &mut BTreeMap<Stream, KindCache>,
        selected: &mut Option<BTreeSet<String>>,
        (stream, change): (Stream, Change),
    ) {
        if self.active.streams.contains(&stream) {
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

    /// What the API server serves changed: starts the watches for what it
    /// serves of the group now (those of before keep serving until they
    /// have listed), or stops them all when the group is gone.
    fn follow(
        &mut self,
        served: Served,
        scope: &mut DataScope,
        caches: &mut BTreeMap<Stream, KindCache>,
        selected: &mut Option<BTreeSet<String>>,
    ) {
        let served = served.of(self.group);
        if served == self.served {
            return;
        }
        self.served = served;
        if let Some((set, mut aside)) = self.starting.take() {
            set.stop();
            empty(&set, scope, &mut aside, selected);
        }
        if served.serves(self.group) {
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

    fn spawn(&mut self, served: Served) -> WatchSet {
        let (group, source, tx) = (self.group, &self.source, &self.tx);
        let (streams, tasks) = spawn_group_watchers(group, source, served, tx, self.last);
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

/// The group whose watches deliver a kind, if any does.
fn group_of(kind: Kind) -> Option<Group> {
    match kind {
        Kind::GatewayClass
        | Kind::Gateway
        | Kind::HTTPRoute
        | Kind::GRPCRoute
        | Kind::ReferenceGrant
        | Kind::NamespaceLabels => Some(Group::GatewayApi),
        Kind::AcmeIssuer => Some(Group::AcmeIssuers),
        Kind::Ingress
        | Kind::IngressClass
        | Kind::Service
        | Kind::EndpointSlice
        | Kind::Secret
        | Kind::ConfigMap
        | Kind::Namespace => None,
    }
}
