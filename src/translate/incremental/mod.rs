//! Incremental rebuilds: a change rebuilds the hosts that depend on it and
//! shares every other host with the previous table.
//!
//! Translate decides each host from the Ingresses that name it (rules,
//! `server-alias`, `tls`) and the objects those Ingresses name (Services
//! and their EndpointSlices, Secrets, ConfigMaps). A change therefore
//! touches a set of *slots* (hosts, and the default route): those of the
//! changed Ingress before and after, and those of the Ingresses that name
//! a changed object. The Ingresses that share a touched slot are
//! translated again, together with every other Ingress that shares one of
//! their slots (the closure: an Ingress's conflicts, canaries, ownership
//! and `from-to-www-redirect` are all decided among the Ingresses of its
//! hosts), and their slots are spliced into the previous table.
//!
//! What every host depends on (IngressClasses, Namespaces, the controller
//! ConfigMap, the flags' default backend and certificate, the Gateway API
//! objects) makes the next build a full one. HTTPRoute hosts are rebuilt
//! with every change, as HTTPRoutes are few and their status is global.
//! An incremental build equals a full build of the same state; a property
//! test checks it over random change sequences.
//!
//! `dependencies` holds the index of what each Ingress decides and names;
//! this file patches the previous build with it, and `candidates` scopes
//! an admission review with it.

mod candidates;
mod dependencies;

use std::collections::BTreeSet;

use foldhash::HashSet;

use super::build::build;
use super::gateway_status::StatusReport;
use super::settings::Settings;
use super::{backend, Reuse, Summaries, TranslateOptions, Translation, Warning};
use crate::cluster::{
    certificate_secret_keys, named_config_maps, ClusterState, JournalPosition, ObjectKey,
};
use crate::table::{RouteTable, Slot};
use dependencies::{gateway_slots, twin, Dependencies};

pub use candidates::HostIndex;

/// A closure larger than this share of all Ingresses is rebuilt whole: a
/// full build is then as quick, and simpler.
const CLOSURE_SHARE_FOR_FULL: usize = 2;

/// The previous build's output and what it depended on.
#[derive(Clone, Debug)]
pub(crate) struct Last {
    position: JournalPosition,
    table: RouteTable,
    warnings: Vec<Warning>,
    summaries: Summaries,
    settings: Settings,
    gateway_status: StatusReport,
    deps: Dependencies,
}

impl Last {
    /// What a full build of `state` leaves for the next build.
    pub(crate) fn of(
        translation: &Translation,
        state: &ClusterState,
        options: &TranslateOptions,
    ) -> Last {
        let deps = Dependencies::of(state, options, &translation.table);
        Last::keep(translation, state, deps)
    }

    /// What a build of `state` leaves for the next one, with what it
    /// depended on.
    fn keep(translation: &Translation, state: &ClusterState, deps: Dependencies) -> Last {
        Last {
            position: state.journal().position(),
            table: translation.table.clone(),
            warnings: translation.warnings.clone(),
            summaries: translation.summaries.clone(),
            settings: translation.settings.clone(),
            gateway_status: translation.gateway_status.clone(),
            deps,
        }
    }
}

/// Why an incremental build gave way to a full one.
#[derive(Debug)]
pub(crate) enum Full {
    /// A change that every host may depend on.
    Global,
    /// Most Ingresses would be rebuilt anyway.
    LargeClosure,
    /// The HTTPRoutes' hosts moved.
    GatewayHosts,
}

/// Patches `last` with the changes since it was built. `reuse` is the
/// previous build's, and becomes this one's.
pub(crate) fn patch(
    state: &ClusterState,
    options: &TranslateOptions,
    reuse: &mut Reuse,
    mut last: Last,
) -> Result<Translation, Full> {
    let Some(changes) = state.journal().since(last.position) else {
        return Err(Full::Global);
    };
    // Each object once: an EndpointSlice change journals its Service, so a
    // burst over one Service's slices names it many times, and each would
    // resolve its endpoints again.
    let changes: BTreeSet<(&'static str, ObjectKey)> = changes.cloned().collect();
    if changes.is_empty() {
        return Ok(unchanged(reuse, last));
    }
    if changes
        .iter()
        .any(|(kind, key)| is_global(kind, key, state, options))
    {
        return Err(Full::Global);
    }
    let (mut slots, seeds) = touched(state, reuse, &last.deps, &changes);
    last.deps
        .update(state, &changes, &options.annotations_prefix);
    for key in &seeds {
        if let Some(needs) = last.deps.ingresses.get(key) {
            slots.extend(needs.slots.iter().cloned());
        }
    }
    let closure = closure(state, &last.deps, &seeds, &mut slots)?;

    let part = build(state, options, reuse, Some(&closure));
    if gateway_slots(&part.table) != last.deps.gateway_slots {
        return Err(Full::GatewayHosts);
    }
    // The Ingresses whose warnings, summaries and limits are this build's:
    // the closure, and those deleted.
    let mut rebuilt = closure;
    rebuilt.extend(seeds);
    let table = last.table.splice(&part.table, &slots);
    let warnings = merged_warnings(last.warnings, part.warnings, &rebuilt);
    let mut summaries = last.summaries;
    for key in &rebuilt {
        summaries.remove(key);
    }
    for (key, summary) in &part.summaries {
        summaries.insert(key.clone(), summary.clone());
    }
    carry_over(reuse, part.reuse, state, &changes, &rebuilt);

    let translation = Translation {
        table,
        warnings,
        summaries,
        settings: part.settings,
        reuse: std::mem::take(reuse),
        gateway_status: part.gateway_status,
    };
    let next = Last::keep(&translation, state, last.deps);
    Ok(with_last(translation, next))
}

/// The previous build's output again, when nothing changed.
fn unchanged(reuse: &mut Reuse, last: Last) -> Translation {
    let translation = Translation {
        table: last.table.clone(),
        warnings: last.warnings.clone(),
        summaries: last.summaries.clone(),
        settings: last.settings.clone(),
        reuse: std::mem::take(reuse),
        gateway_status: last.gateway_status.clone(),
    };
    with_last(translation, last)
}

/// The slots the changes touch (a changed Ingress's before the change;
/// every HTTPRoute host) and the Ingresses to translate again. A Service
/// whose endpoints alone changed has them refreshed in `reuse` in place.
fn touched(
    state: &ClusterState,
    reuse: &mut Reuse,
    deps: &Dependencies,
    changes: &BTreeSet<(&'static str, ObjectKey)>,
) -> (BTreeSet<Slot>, BTreeSet<ObjectKey>) {
    let mut slots: BTreeSet<Slot> = deps.gateway_slots.clone();
    let mut seeds: BTreeSet<ObjectKey> = BTreeSet::new();
    for (kind, key) in changes {
        match *kind {
            "Ingress" => {
                // Its slots before (the deps are updated after).
                if let Some(before) = deps.ingresses.get(key) {
                    slots.extend(before.slots.iter().cloned());
                }
                seeds.insert(key.clone());
            }
            // Only its endpoints changed, and they are now in place in its
            // backends: no route changes.
            "Service" if backend::refresh_endpoints(state, &mut reuse.backends, key) => {}
            "Service" | "Secret" | "ConfigMap" => {
                if let Some(named) = deps.by_object.get(&(*kind, key.clone())) {
                    seeds.extend(named.iter().map(|k| (**k).clone()));
                }
            }
            _ => {}
        }
    }
    (slots, seeds)
}

/// The Ingresses to translate again: the seeds, and every Ingress that
/// shares a slot with one of them, transitively (even a seed with no slot
/// has warnings and a summary to rebuild). `slots` grows to theirs.
fn closure(
    state: &ClusterState,
    deps: &Dependencies,
    seeds: &BTreeSet<ObjectKey>,
    slots: &mut BTreeSet<Slot>,
) -> Result<HashSet<ObjectKey>, Full> {
    let mut closure: HashSet<ObjectKey> = seeds
        .iter()
        .filter(|k| state.ingresses.contains_key(*k))
        .cloned()
        .collect();
    let mut pending: Vec<Slot> = slots.iter().cloned().collect();
    while let Some(slot) = pending.pop() {
        if let Some(other) = twin(&slot) {
            if slots.insert(other.clone()) {
                pending.push(other);
            }
        }
        let Some(ingresses) = deps.by_slot.get(&slot) else {
            continue;
        };
        for key in ingresses {
            if !closure.insert((**key).clone()) {
                continue;
            }
            let needs = deps.ingresses.get(&**key).into_iter();
            for other in needs.flat_map(|n| n.slots.iter()) {
                if slots.insert(other.clone()) {
                    pending.push(other.clone());
                }
            }
        }
        if closure.len() > 64 && closure.len() * CLOSURE_SHARE_FOR_FULL > state.ingresses.len() {
            return Err(Full::LargeClosure);
        }
    }
    Ok(closure)
}

/// The previous warnings but those about rebuilt Ingresses, with this
/// build's.
fn merged_warnings(
    last: Vec<Warning>,
    part: Vec<Warning>,
    rebuilt: &HashSet<ObjectKey>,
) -> Vec<Warning> {
    let is_rebuilt = |w: &Warning| w.object != "Ingress" || rebuilt.contains(&w.ingress);
    let mut warnings: Vec<Warning> = last.into_iter().filter(|w| !is_rebuilt(w)).collect();
    warnings.extend(part);
    warnings.sort();
    warnings.dedup();
    warnings
}

/// What the next build may reuse: this part's, over the previous ones,
/// less what was deleted.
fn carry_over(
    reuse: &mut Reuse,
    part: Reuse,
    state: &ClusterState,
    changes: &BTreeSet<(&'static str, ObjectKey)>,
    rebuilt: &HashSet<ObjectKey>,
) {
    for (kind, key) in changes {
        match *kind {
            "Secret" if !state.secrets.contains_key(key) => drop(reuse.secrets.remove(key)),
            "Service" if !state.services.contains_key(key) => {
                reuse.backends.retain(|(service, _), _| service != key)
            }
            _ => {}
        }
    }
    for key in rebuilt {
        reuse.limits.remove(key);
    }
    let Reuse {
        secrets,
        backends,
        limits,
        ..
    } = part;
    reuse.secrets.extend(secrets);
    reuse.backends.extend(backends);
    reuse.limits.extend(limits);
}

/// The translation, carrying `last` for the next build.
pub(crate) fn with_last(mut translation: Translation, last: Last) -> Translation {
    translation.reuse.last = Some(Box::new(last));
    translation
}

/// Whether a change may affect hosts that do not name the object: then
/// the next build is a full one.
fn is_global(
    kind: &str,
    key: &ObjectKey,
    state: &ClusterState,
    options: &TranslateOptions,
) -> bool {
    match kind {
        "Ingress" | "EndpointSlice" => false,
        "Service" => options.default_backend_service.as_ref() == Some(key),
        // Besides those Ingresses name: the default certificate, and the
        // Gateways' certificates.
        "Secret" => {
            options.default_ssl_certificate.as_ref() == Some(key)
                || state
                    .gateways
                    .values()
                    .any(|g| certificate_secret_keys(g).any(|k| k == *key))
        }
        // Besides those Ingresses name: the controller ConfigMap and the
        // ConfigMaps it names.
        "ConfigMap" => options.config_map.as_ref().is_some_and(|own| {
            own == key
                || state
                    .config_maps
                    .get(own)
                    .is_some_and(|map| named_config_maps(own, map).contains(key))
        }),
        _ => true,
    }
}
