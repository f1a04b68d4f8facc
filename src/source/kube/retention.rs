//! Secret and ConfigMap data retention: only the objects something
//! references (an Ingress, a Gateway listener, the controller ConfigMap,
//! or a flag) keep their data, counted reference by reference; one that
//! becomes referenced while held without it is fetched. Also keeps the
//! published state up to date, change by change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use tokio::sync::mpsc;

use super::watchers::{trimmed, trimmed_config_map};
use super::{object_kind, Change, Kind, KindCache, Stream};
use crate::cluster::{named_config_maps, tls_secret_keys, ClusterState, Object, ObjectKey};
use crate::policy::objects::{annotation_config_map_keys, annotation_secret_keys};

/// Objects kept whatever references them: the default certificate and the
/// controller ConfigMap.
pub(super) struct Pinned {
    pub(super) secret: Option<ObjectKey>,
    pub(super) config_map: Option<ObjectKey>,
}

/// Keeps the data of referenced Secrets and ConfigMaps only, and fetches
/// one that becomes referenced while held without it; keeps the published
/// state up to date change by change.
///
/// Every step is proportional to the change: references are counted per
/// Secret and ConfigMap (added and taken away as Ingresses, Gateways and
/// the controller ConfigMap come and go), only the objects whose count
/// crossed zero or that just arrived are checked for data, and only the
/// objects that changed are put into the state, whose persistent maps
/// make the published copy O(1). A relist or a new namespace selection
/// costs in proportion to what it lists.
pub(super) struct DataScope {
    client: Client,
    pinned: Pinned,
    annotations_prefix: String,
    fetches: mpsc::UnboundedSender<(Stream, Change)>,
    /// Objects fetched (or being fetched) since their last watch event.
    fetched: BTreeSet<(Kind, ObjectKey)>,
    /// How many objects name each Secret and ConfigMap (the pinned ones
    /// count once more).
    references: BTreeMap<(Kind, ObjectKey), u32>,
    /// Secrets and ConfigMaps whose data may have to go or come.
    dirty: BTreeSet<(Kind, ObjectKey)>,
    /// Objects (kind, key) changed since the last published state.
    touched: BTreeSet<(&'static str, ObjectKey)>,
    /// The state as last published, or `None` until the first (and after
    /// the namespace selection changes): then it is built whole.
    state: Option<ClusterState>,
    /// Secrets pinned besides `pinned`'s (`pin_secret`).
    pinned_secrets: Vec<ObjectKey>,
}

impl DataScope {
    pub(super) fn new(
        client: Client,
        pinned: Pinned,
        annotations_prefix: String,
        fetches: mpsc::UnboundedSender<(Stream, Change)>,
    ) -> Self {
        let mut references = BTreeMap::new();
        if let Some(key) = &pinned.secret {
            references.insert((Kind::Secret, key.clone()), 1);
        }
        if let Some(key) = &pinned.config_map {
            references.insert((Kind::ConfigMap, key.clone()), 1);
        }
        DataScope {
            client,
            pinned,
            annotations_prefix,
            fetches,
            fetched: BTreeSet::new(),
            references,
            dirty: BTreeSet::new(),
            touched: BTreeSet::new(),
            state: None,
            pinned_secrets: Vec::new(),
        }
    }

    /// Keeps a further Secret's data whatever references it, in scope
    /// whatever namespaces are selected: the ACME challenge answers,
    /// which every replica serves. It is watched with the other Secrets:
    /// `--watch-namespace` must list its namespace (no call leaves the
    /// namespaces listed, so a Role in each suffices).
    pub(super) fn pin_secret(&mut self, key: ObjectKey) {
        *self
            .references
            .entry((Kind::Secret, key.clone()))
            .or_default() += 1;
        self.dirty.insert((Kind::Secret, key.clone()));
        self.pinned_secrets.push(key);
    }

    pub(super) fn apply(
        &mut self,
        caches: &mut BTreeMap<Stream, KindCache>,
        selected: &mut Option<BTreeSet<String>>,
        (stream, change): (Stream, Change),
    ) {
        match change {
            Change::Namespaces(names) => {
                if selected.as_ref() != Some(&names) {
                    *selected = Some(names);
                    self.state = None;
                }
            }
            // To whichever watch of the kind holds the object.
            Change::Fetched(object) => {
                let id = (object.kind(), object.key());
                for (_, cache) in caches.iter_mut().filter(|(s, _)| s.kind == stream.kind) {
                    if cache.apply(Change::Fetched(object.clone())) {
                        self.touched.insert(id.clone());
                    }
                }
            }
            change => self.apply_watched(caches.entry(stream).or_default(), stream.kind, change),
        }
    }

    /// An object to be put into the next state (or taken out, if no
    /// cache holds it by then).
    pub(super) fn touch(&mut self, object: &Object) {
        self.touched.insert((object.kind(), object.key()));
    }

    /// A watch event for one stream's cache.
    fn apply_watched(&mut self, cache: &mut KindCache, kind: Kind, change: Change) {
        match change {
            Change::Apply(ref object) | Change::Delete(ref object) => {
                let key = object.key();
                let id = (object.kind(), key.clone());
                self.fetched.remove(&(kind, key.clone()));
                let old = cache.live.get(&key).cloned();
                cache.apply(change);
                let new = cache.live.get(&key).cloned();
                self.account(kind, &key, old.as_ref(), new.as_ref());
                self.touched.insert(id);
            }
            Change::InitApply(object) => {
                let key = object.key();
                self.fetched.remove(&(kind, key.clone()));
                if matches!(kind, Kind::Secret | Kind::ConfigMap) {
                    self.dirty.insert((kind, key));
                }
                cache.apply(Change::InitApply(object));
            }
            Change::InitDone => {
                // The relist replaces the live view whole.
                let old = std::mem::take(&mut cache.live);
                cache.apply(Change::InitDone);
                let keys: BTreeSet<&ObjectKey> = old.keys().chain(cache.live.keys()).collect();
                for key in keys {
                    let (before, now) = (old.get(key), cache.live.get(key));
                    self.account(kind, key, before, now);
                    if let Some(object) = before.or(now) {
                        self.touched.insert((object.kind(), key.clone()));
                    }
                }
            }
            other => drop(cache.apply(other)),
        }
    }

    /// Moves the reference counts from what `old` named to what `new`
    /// names; a count that crosses zero, and a Secret or ConfigMap that
    /// changed, is checked for data by `enforce`.
    fn account(&mut self, kind: Kind, key: &ObjectKey, old: Option<&Object>, new: Option<&Object>) {
        if matches!(kind, Kind::Secret | Kind::ConfigMap) {
            self.dirty.insert((kind, key.clone()));
        }
        for named in old.map(|o| self.names(o)).unwrap_or_default() {
            let count = self.references.entry(named.clone()).or_default();
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.references.remove(&named);
                self.dirty.insert(named);
            }
        }
        for named in new.map(|o| self.names(o)).unwrap_or_default() {
            let count = self.references.entry(named.clone()).or_default();
            *count += 1;
            if *count == 1 {
                self.dirty.insert(named);
            }
        }
    }

    /// The Secrets and ConfigMaps an object names: an Ingress in `spec.tls`
    /// and its annotations, a Gateway in its listeners, the controller
    /// ConfigMap in `add-headers` and `proxy-set-headers`.
    fn names(&self, object: &Object) -> Vec<(Kind, ObjectKey)> {
        let prefix = &self.annotations_prefix;
        match object {
            Object::Ingress(ingress) => {
                let secrets =
                    tls_secret_keys(ingress).chain(annotation_secret_keys(ingress, prefix));
                let maps = annotation_config_map_keys(ingress, prefix);
                secrets
                    .map(|k| (Kind::Secret, k))
                    .chain(maps.into_iter().map(|k| (Kind::ConfigMap, k)))
                    .collect()
            }
            Object::Gateway(gateway) => crate::cluster::certificate_secret_keys(gateway)
                .map(|k| (Kind::Secret, k))
                .collect(),
            Object::ConfigMap(map) => {
                let key = object.key();
                match &self.pinned.config_map {
                    Some(own) if *own == key => named_config_maps(own, map)
                        .into_iter()
                        .map(|k| (Kind::ConfigMap, k))
                        .collect(),
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    /// Whether the objects the pinned ones and the others name include this one.
    fn referenced(&self, kind: Kind, key: &ObjectKey) -> bool {
        self.references.contains_key(&(kind, key.clone()))
    }

    /// Drops the data of the checked objects that are not referenced;
    /// fetches the referenced ones held without data.
    pub(super) fn enforce(&mut self, caches: &mut BTreeMap<Stream, KindCache>) {
        let mut wanted = Vec::new();
        for (kind, key) in std::mem::take(&mut self.dirty) {
            let referenced = self.referenced(kind, &key);
            for (_, cache) in caches.iter_mut().filter(|(s, _)| s.kind == kind) {
                let live = cache.live.get_mut(&key);
                let relisted = cache.relist.as_mut().and_then(|r| r.get_mut(&key));
                for object in live.into_iter().chain(relisted) {
                    match (has_data(object), referenced) {
                        (true, false) => {
                            drop_data(object);
                            self.touched.insert((object.kind(), key.clone()));
                        }
                        (false, true) => wanted.push((kind, key.clone())),
                        _ => {}
                    }
                }
            }
        }
        for wanted in wanted {
            if self.fetched.insert(wanted.clone()) {
                self.fetch(wanted);
            }
        }
    }

    /// The state to publish, when anything changed since the last one:
    /// the last state with the touched objects put in or taken out (the
    /// whole state from the caches the first time, and after the
    /// namespace selection changed).
    pub(super) fn publish(
        &mut self,
        caches: &BTreeMap<Stream, KindCache>,
        selected: Option<&BTreeSet<String>>,
    ) -> Option<ClusterState> {
        let touched = std::mem::take(&mut self.touched);
        let (pinned, pinned_secrets) = (&self.pinned, &self.pinned_secrets);
        let in_scope = |o: &Object| {
            in_scope(pinned, o, selected)
                || matches!(o, Object::Secret(_)) && pinned_secrets.contains(&o.key())
        };
        let Some(state) = self.state.as_mut() else {
            let objects = caches.values().flat_map(|c| c.live.values().cloned());
            let objects = objects.filter(|o| in_scope(o));
            let mut state = ClusterState::from_objects(objects);
            // A change of selection drops the state: it is set here only.
            state.selected_namespaces = selected.cloned().map(Arc::new);
            self.state = Some(state.clone());
            return Some(state);
        };
        if touched.is_empty() {
            return None;
        }
        for (kind, key) in touched {
            // As a whole rebuild would: the last stream holding it wins.
            let current = caches
                .iter()
                .filter(|(s, _)| object_kind(s.kind) == kind)
                .filter_map(|(_, c)| c.live.get(&key))
                .next_back()
                .filter(|o| in_scope(o));
            match current {
                Some(object) if !state.holds(object) => drop(state.insert(object.clone())),
                Some(_) => {}
                None => state.remove_key(kind, &key),
            }
        }
        Some(state.clone())
    }

    fn fetch(&self, (kind, key): (Kind, ObjectKey)) {
        let (client, tx) = (self.client.clone(), self.fetches.clone());
        tokio::spawn(async move {
            let fetched = match kind {
                Kind::ConfigMap => Api::<ConfigMap>::namespaced(client, &key.namespace)
                    .get(&key.name)
                    .await
                    .map(|c| Object::ConfigMap(Arc::new(trimmed_config_map(c)))),
                _ => Api::<Secret>::namespaced(client, &key.namespace)
                    .get(&key.name)
                    .await
                    .map(|s| Object::Secret(Arc::new(trimmed(s)))),
            };
            match fetched {
                Ok(object) => {
                    let _ = tx.send((Stream { kind, index: 0 }, Change::Fetched(object)));
                }
                Err(e) => {
                    tracing::warn!(target: "gatehouse::source", ?kind, object = %key, "cannot read a referenced object: {e}")
                }
            }
        });
    }
}

/// Whether an object belongs to the namespaces the selector picks (the
/// pinned objects and the cluster-scoped kinds always do).
fn in_scope(pinned: &Pinned, object: &Object, selected: Option<&BTreeSet<String>>) -> bool {
    let Some(selected) = selected else {
        return true;
    };
    let key = object.key();
    let pinned = match object {
        Object::IngressClass(_)
        | Object::GatewayClass(_)
        | Object::Namespace(_)
        | Object::AcmeIssuer(_) => return true,
        Object::Secret(_) => pinned.secret.as_ref() == Some(&key),
        Object::ConfigMap(_) => pinned.config_map.as_ref() == Some(&key),
        _ => false,
    };
    pinned || selected.contains(&key.namespace)
}

fn has_data(object: &Object) -> bool {
    match object {
        Object::Secret(s) => s.data.as_ref().is_some_and(|d| !d.is_empty()),
        Object::ConfigMap(c) => {
            c.data.as_ref().is_some_and(|d| !d.is_empty())
                || c.binary_data.as_ref().is_some_and(|d| !d.is_empty())
        }
        _ => false,
    }
}

fn drop_data(object: &mut Object) {
    match object {
        Object::Secret(s) => Arc::make_mut(s).data = None,
        Object::ConfigMap(c) => {
            let c = Arc::make_mut(c);
            c.data = None;
            c.binary_data = None;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(yaml: &str) -> Object {
        crate::source::manifest::parse(yaml)
            .expect("manifest")
            .pop()
            .expect("one object")
    }

    fn ingress(name: &str, secret: &str) -> Object {
        object(&format!(
            "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: a}}
spec:
  tls: [{{hosts: [{name}.test], secretName: {secret}}}]
  rules: [{{host: {name}.test}}]
"
        ))
    }

    fn secret(name: &str, namespace: &str) -> Object {
        object(&format!(
            "apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: {namespace}}}
type: kubernetes.io/tls
data: {{tls.crt: eA==, tls.key: eA==}}
"
        ))
    }

    fn service(name: &str, namespace: &str, port: u16) -> Object {
        object(&format!(
            "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{ports: [{{port: {port}}}]}}
"
        ))
    }

    /// The state a whole rebuild from the caches would publish.
    fn rebuilt(
        scope: &DataScope,
        caches: &BTreeMap<Stream, KindCache>,
        selected: Option<&BTreeSet<String>>,
    ) -> ClusterState {
        let objects = caches.values().flat_map(|c| c.live.values().cloned());
        ClusterState::from_objects(objects.filter(|o| in_scope(&scope.pinned, o, selected)))
    }

    /// The same objects (the very same `Arc`s), kind by kind.
    fn same(a: &ClusterState, b: &ClusterState) -> bool {
        let counts = |s: &ClusterState| {
            (
                s.ingresses.len(),
                s.services.len(),
                s.secrets.len(),
                s.namespaces.len(),
            )
        };
        let objects = |s: &ClusterState| -> Vec<Object> {
            let ingresses = s.ingresses.values().cloned().map(Object::Ingress);
            let services = s.services.values().cloned().map(Object::Service);
            let secrets = s.secrets.values().cloned().map(Object::Secret);
            ingresses.chain(services).chain(secrets).collect()
        };
        counts(a) == counts(b) && objects(b).iter().all(|o| a.holds(o))
    }

    /// Changes applied one at a time publish what a rebuild from the
    /// caches would: the Secrets an Ingress names keep their data, the
    /// others lose it, relists replace a kind, a selection rescopes.
    #[tokio::test]
    async fn the_published_state_is_the_one_a_rebuild_would_make() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        let (tx, _rx) = mpsc::unbounded_channel();
        let pinned = Pinned {
            secret: None,
            config_map: None,
        };
        let mut scope = DataScope::new(client, pinned, "gatehouse.dev".into(), tx);
        let mut caches: BTreeMap<Stream, KindCache> = BTreeMap::new();
        let mut selected: Option<BTreeSet<String>> = None;
        let stream = |kind, index| Stream { kind, index };
        let (ingresses, services, secrets) = (
            stream(Kind::Ingress, 1),
            stream(Kind::Service, 2),
            stream(Kind::Secret, 3),
        );
        for s in [ingresses, services, secrets] {
            scope.apply(&mut caches, &mut selected, (s, Change::Init));
            scope.apply(&mut caches, &mut selected, (s, Change::InitDone));
        }
        let steps: Vec<(Stream, Change)> = vec![
            (secrets, Change::Apply(secret("one", "a"))),
            (ingresses, Change::Apply(ingress("web", "one"))),
            (services, Change::Apply(service("web", "a", 80))),
            (services, Change::Apply(service("web", "a", 81))),
            (secrets, Change::Apply(secret("two", "a"))),
            (ingresses, Change::Apply(ingress("web", "two"))),
            (services, Change::Apply(service("other", "b", 80))),
            (services, Change::Delete(service("web", "a", 81))),
            (secrets, Change::Init),
            (secrets, Change::InitApply(secret("two", "a"))),
            (secrets, Change::InitApply(secret("three", "b"))),
            (secrets, Change::InitDone),
            (ingresses, Change::Delete(ingress("web", "two"))),
            (
                stream(Kind::Namespace, 4),
                Change::Namespaces(["b".to_owned()].into()),
            ),
            (services, Change::Apply(service("third", "b", 80))),
        ];
        for (step, change) in steps.into_iter().enumerate() {
            scope.apply(&mut caches, &mut selected, change);
            scope.enforce(&mut caches);
            if let Some(published) = scope.publish(&caches, selected.as_ref()) {
                let whole = rebuilt(&scope, &caches, selected.as_ref());
                assert!(same(&published, &whole), "step {step}");
                let said = published.selected_namespaces.as_deref();
                assert_eq!(
                    said,
                    selected.as_ref(),
                    "step {step}: the selection published"
                );
            }
            let with_data: Vec<String> = caches[&secrets]
                .live
                .values()
                .filter(|o| has_data(o))
                .map(|o| o.key().to_string())
                .collect();
            let named = caches[&ingresses]
                .live
                .values()
                .flat_map(|o| scope.names(o));
            let named: Vec<String> = named.map(|(_, k)| k.to_string()).collect();
            assert!(
                with_data.iter().all(|k| named.contains(k)),
                "step {step}: {with_data:?} {named:?}"
            );
        }
    }
}
