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

use std::collections::BTreeSet;

use std::sync::Arc;

use foldhash::{HashMap, HashSet};
use k8s_openapi::api::networking::v1::Ingress;

use super::gateway_status::StatusReport;
use super::{backend, build, Reuse, Summaries, TranslateOptions, Translation, Warning};
use crate::cluster::{
    certificate_secret_keys, named_config_maps, tls_secret_keys, ClusterState, JournalPosition,
    ObjectKey,
};
use crate::policy::access::{annotation_config_map_keys, annotation_secret_keys};
use crate::policy::Annotations;
use crate::table::{HostPattern, RouteTable, Slot};

use super::settings::Settings;

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

/// What each Ingress touches and names, and the reverse indexes. Kept
/// lean (100,000 Ingresses hold one of these): keys shared, lists as
/// vectors (mostly of one).
#[derive(Clone, Debug, Default)]
struct Dependencies {
    ingresses: HashMap<Arc<ObjectKey>, Needs>,
    /// The Ingresses of each slot.
    by_slot: HashMap<Slot, Vec<Arc<ObjectKey>>>,
    /// The Ingresses that name each Service, Secret or ConfigMap.
    by_object: HashMap<(&'static str, ObjectKey), Vec<Arc<ObjectKey>>>,
    /// The hosts HTTPRoutes and GRPCRoutes have routes for.
    gateway_slots: BTreeSet<Slot>,
}

/// One Ingress's slots (without their `www.` twins, which the closure
/// adds) and the objects it names.
#[derive(Clone, Debug, Default)]
struct Needs {
    slots: Box<[Slot]>,
    objects: Box<[(&'static str, ObjectKey)]>,
}

/// The other name of a `from-to-www-redirect` pair: an Ingress's exact
/// host and its `www.` twin are decided together.
fn twin(slot: &Slot) -> Option<Slot> {
    let Slot::Host(HostPattern::Exact(name)) = slot else {
        return None;
    };
    let other = match name.strip_prefix("www.") {
        Some(bare) => bare.to_owned(),
        None => format!("www.{name}"),
    };
    Some(Slot::Host(HostPattern::Exact(other)))
}

impl Needs {
    /// Over-approximates: a slot or object too many costs a little work,
    /// one too few a wrong table.
    fn of(key: &ObjectKey, ingress: &Ingress, prefix: &str) -> Needs {
        let annotations = Annotations::new(ingress.metadata.annotations.as_ref(), prefix);
        let spec = ingress.spec.as_ref();
        let rules = spec.and_then(|s| s.rules.as_ref()).into_iter().flatten();
        let mut hosts: Vec<HostPattern> = Vec::new();
        let mut objects: Vec<(&'static str, ObjectKey)> = Vec::new();
        let service = |name: &str| ("Service", ObjectKey::new(&key.namespace, name));
        for rule in rules {
            hosts.push(HostPattern::parse(rule.host.as_deref()));
            let paths = rule.http.iter().flat_map(|h| h.paths.iter());
            for backend in paths.filter_map(|p| p.backend.service.as_ref()) {
                objects.push(service(&backend.name));
            }
        }
        if let Some((_, aliases)) = annotations.get("server-alias") {
            let names = aliases.split(',').map(str::trim).filter(|n| !n.is_empty());
            hosts.extend(names.map(|n| HostPattern::parse(Some(n))));
        }
        let tls = spec.and_then(|s| s.tls.as_ref()).into_iter().flatten();
        hosts.extend(
            tls.flat_map(|t| t.hosts.iter().flatten())
                .map(|h| HostPattern::parse(Some(h))),
        );
        hosts.sort();
        hosts.dedup();
        let mut slots: Vec<Slot> = hosts.into_iter().map(Slot::Host).collect();
        let default = spec.and_then(|s| s.default_backend.as_ref());
        if let Some(backend) = default.and_then(|b| b.service.as_ref()) {
            objects.push(service(&backend.name));
        }
        let has_rules = spec
            .and_then(|s| s.rules.as_ref())
            .is_some_and(|r| !r.is_empty());
        if default.is_some() && !has_rules {
            slots.push(Slot::Default);
        }
        if let Some((_, name)) = annotations.get("default-backend") {
            objects.push(service(name));
        }
        let secrets = tls_secret_keys(ingress).chain(annotation_secret_keys(ingress, prefix));
        objects.extend(secrets.map(|k| ("Secret", k)));
        let maps = annotation_config_map_keys(ingress, prefix);
        objects.extend(maps.into_iter().map(|k| ("ConfigMap", k)));
        objects.sort();
        objects.dedup();
        Needs {
            slots: slots.into_boxed_slice(),
            objects: objects.into_boxed_slice(),
        }
    }
}

impl Dependencies {
    fn of(state: &ClusterState, options: &TranslateOptions, table: &RouteTable) -> Self {
        let mut deps = Dependencies {
            gateway_slots: gateway_slots(table),
            ..Dependencies::default()
        };
        for (key, ingress) in &state.ingresses {
            deps.add(key, Needs::of(key, ingress, &options.annotations_prefix));
        }
        deps
    }

    fn add(&mut self, key: &ObjectKey, needs: Needs) {
        let key = Arc::new(key.clone());
        for slot in &needs.slots {
            self.by_slot
                .entry(slot.clone())
                .or_default()
                .push(key.clone());
        }
        for object in &needs.objects {
            let ingresses = self.by_object.entry(object.clone()).or_default();
            ingresses.push(key.clone());
        }
        self.ingresses.insert(key, needs);
    }

    /// Forgets an Ingress; returns what it needed.
    fn remove(&mut self, key: &ObjectKey) -> Option<Needs> {
        let needs = self.ingresses.remove(key)?;
        fn forget<K: std::hash::Hash + Eq>(
            index: &mut HashMap<K, Vec<Arc<ObjectKey>>>,
            at: &K,
            key: &ObjectKey,
        ) {
            if let Some(ingresses) = index.get_mut(at) {
                ingresses.retain(|k| **k != *key);
                if ingresses.is_empty() {
                    index.remove(at);
                }
            }
        }
        for slot in &needs.slots {
            forget(&mut self.by_slot, slot, key);
        }
        for object in &needs.objects {
            forget(&mut self.by_object, object, key);
        }
        Some(needs)
    }
}

/// The hosts with HTTPRoute or GRPCRoute matches.
fn gateway_slots(table: &RouteTable) -> BTreeSet<Slot> {
    table.gateway_hosts().into_iter().map(Slot::Host).collect()
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
        let translation = Translation {
            table: last.table.clone(),
            warnings: last.warnings.clone(),
            summaries: last.summaries.clone(),
            settings: last.settings.clone(),
            reuse: std::mem::take(reuse),
            gateway_status: last.gateway_status.clone(),
        };
        return Ok(with_last(translation, last));
    }
    if changes
        .iter()
        .any(|(kind, key)| is_global(kind, key, state, options))
    {
        return Err(Full::Global);
    }
    // The slots the changes touch, and the Ingresses to translate again.
    let mut slots: BTreeSet<Slot> = last.deps.gateway_slots.clone();
    let mut seeds: BTreeSet<ObjectKey> = BTreeSet::new();
    for (kind, key) in &changes {
        match *kind {
            "Ingress" => {
                // Its slots before (the deps are updated below).
                if let Some(before) = last.deps.ingresses.get(key) {
                    slots.extend(before.slots.iter().cloned());
                }
                seeds.insert(key.clone());
            }
            // Only its endpoints changed, and they are now in place in its
            // backends: no route changes.
            "Service" if backend::refresh_endpoints(state, &mut reuse.backends, key) => {}
            "Service" | "Secret" | "ConfigMap" => {
                if let Some(named) = last.deps.by_object.get(&(*kind, key.clone())) {
                    seeds.extend(named.iter().map(|k| (**k).clone()));
                }
            }
            _ => {}
        }
    }
    let prefix = &options.annotations_prefix;
    let changed_ingresses: BTreeSet<&ObjectKey> = changes
        .iter()
        .filter(|(kind, _)| *kind == "Ingress")
        .map(|(_, key)| key)
        .collect();
    for key in changed_ingresses {
        last.deps.remove(key);
        if let Some(ingress) = state.ingresses.get(key) {
            last.deps.add(key, Needs::of(key, ingress, prefix));
        }
    }
    for key in &seeds {
        if let Some(needs) = last.deps.ingresses.get(key) {
            slots.extend(needs.slots.iter().cloned());
        }
    }
    // Close over shared slots, starting from the seeds themselves (even one
    // with no slot has warnings and a summary to rebuild).
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
        let Some(ingresses) = last.deps.by_slot.get(&slot) else {
            continue;
        };
        for key in ingresses {
            if !closure.insert((**key).clone()) {
                continue;
            }
            let needs = last.deps.ingresses.get(&**key).into_iter();
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

    let part = build(state, options, reuse, Some(&closure));
    if gateway_slots(&part.table) != last.deps.gateway_slots {
        return Err(Full::GatewayHosts);
    }
    // The Ingresses whose warnings, summaries and limits are this build's:
    // the closure, and those deleted.
    let mut rebuilt = closure;
    rebuilt.extend(seeds);
    let table = last.table.splice(&part.table, &slots);

    let is_rebuilt = |w: &Warning| w.object != "Ingress" || rebuilt.contains(&w.ingress);
    let mut warnings: Vec<Warning> = last
        .warnings
        .into_iter()
        .filter(|w| !is_rebuilt(w))
        .collect();
    warnings.extend(part.warnings);
    warnings.sort();
    warnings.dedup();

    let mut summaries = last.summaries;
    for key in &rebuilt {
        summaries.remove(key);
    }
    for (key, summary) in &part.summaries {
        summaries.insert(key.clone(), summary.clone());
    }

    // What the next build may reuse: this part's, over the previous ones.
    for (kind, key) in &changes {
        match *kind {
            "Secret" if !state.secrets.contains_key(key) => drop(reuse.secrets.remove(key)),
            "Service" if !state.services.contains_key(key) => {
                reuse.backends.retain(|(service, _), _| service != key)
            }
            _ => {}
        }
    }
    for key in &rebuilt {
        reuse.limits.remove(key);
    }
    let Reuse {
        secrets,
        backends,
        limits,
        ..
    } = part.reuse;
    reuse.secrets.extend(secrets);
    reuse.backends.extend(backends);
    reuse.limits.extend(limits);

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
