//! What each Ingress depends on: the slots (hosts, the default route) it
//! decides and the Services, Secrets and ConfigMaps it names, indexed both
//! ways, so that a change finds the Ingresses to translate again.

use std::collections::BTreeSet;
use std::sync::Arc;

use foldhash::HashMap;
use k8s_openapi::api::networking::v1::Ingress;

use crate::cluster::{tls_secret_keys, ClusterState, ObjectKey};
use crate::policy::objects::{annotation_config_map_keys, annotation_secret_keys};
use crate::policy::Annotations;
use crate::table::{HostPattern, RouteTable, Slot};
use crate::translate::TranslateOptions;

/// What each Ingress touches and names, and the reverse indexes. Kept
/// lean (100,000 Ingresses hold one of these): keys shared, lists as
/// vectors (mostly of one).
#[derive(Clone, Debug, Default)]
pub(super) struct Dependencies {
    pub(super) ingresses: HashMap<Arc<ObjectKey>, Needs>,
    /// The Ingresses of each slot.
    pub(super) by_slot: HashMap<Slot, Vec<Arc<ObjectKey>>>,
    /// The Ingresses that name each Service, Secret or ConfigMap.
    pub(super) by_object: HashMap<(&'static str, ObjectKey), Vec<Arc<ObjectKey>>>,
    /// The hosts HTTPRoutes and GRPCRoutes have routes for.
    pub(super) gateway_slots: BTreeSet<Slot>,
}

/// One Ingress's slots (without their `www.` twins, which the closure
/// adds) and the objects it names.
#[derive(Clone, Debug, Default)]
pub(super) struct Needs {
    pub(super) slots: Box<[Slot]>,
    pub(super) objects: Box<[(&'static str, ObjectKey)]>,
}

/// The other name of a `from-to-www-redirect` pair: an Ingress's exact
/// host and its `www.` twin are decided together.
pub(super) fn twin(slot: &Slot) -> Option<Slot> {
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
    pub(super) fn of(key: &ObjectKey, ingress: &Ingress, prefix: &str) -> Needs {
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
    pub(super) fn of(state: &ClusterState, options: &TranslateOptions, table: &RouteTable) -> Self {
        Dependencies {
            gateway_slots: gateway_slots(table),
            ..Dependencies::of_ingresses(state, &options.annotations_prefix)
        }
    }

    /// What the Ingresses alone need (no HTTPRoute hosts).
    pub(super) fn of_ingresses(state: &ClusterState, prefix: &str) -> Self {
        let mut deps = Dependencies::default();
        for (key, ingress) in &state.ingresses {
            deps.add(key, Needs::of(key, ingress, prefix));
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

    /// Takes in the changed Ingresses: what each needed before is
    /// forgotten, what it needs now added.
    pub(super) fn update(
        &mut self,
        state: &ClusterState,
        changes: &BTreeSet<(&'static str, ObjectKey)>,
        prefix: &str,
    ) {
        let changed = changes.iter().filter(|(kind, _)| *kind == "Ingress");
        for (_, key) in changed {
            self.remove(key);
            if let Some(ingress) = state.ingresses.get(key) {
                self.add(key, Needs::of(key, ingress, prefix));
            }
        }
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
pub(super) fn gateway_slots(table: &RouteTable) -> BTreeSet<Slot> {
    table.gateway_hosts().into_iter().map(Slot::Host).collect()
}
