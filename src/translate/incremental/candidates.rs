//! The scope of a candidate: which Ingresses translate must see to judge
//! one that is not stored yet.
//!
//! A candidate Ingress's warnings are decided among the Ingresses of its
//! hosts, transitively, as an incremental build's are (conflicts,
//! canaries, ownership, `www.` twins). `HostIndex` keeps the index of the
//! incremental build, the Ingresses of each host, current with the served
//! state by its journal, so that judging a candidate translates a few
//! Ingresses whatever the cluster's size.

use std::collections::BTreeSet;

use foldhash::HashSet;
use k8s_openapi::api::networking::v1::Ingress;

use super::closure;
use super::dependencies::{Dependencies, Needs};
use crate::cluster::{ClusterState, JournalPosition, ObjectKey};
use crate::table::Slot;

/// The Ingresses of each host of a served state.
#[derive(Debug, Default)]
pub struct HostIndex {
    /// Where the served state's journal stood when the index was brought
    /// up to it; `None` before the first state.
    position: Option<JournalPosition>,
    deps: Dependencies,
}

impl HostIndex {
    /// Brings the index up to `served`, by the changes its journal holds
    /// since the last call, else whole. `served` must not hold a
    /// candidate: the journal of a state that does is not the cluster's.
    pub fn follow(&mut self, served: &ClusterState, prefix: &str) {
        let changes = self
            .position
            .and_then(|at| served.journal().since(at))
            .map(|changes| changes.cloned().collect::<BTreeSet<_>>());
        match changes {
            Some(changes) => self.deps.update(served, &changes, prefix),
            None => self.deps = Dependencies::of_ingresses(served, prefix),
        }
        self.position = Some(served.journal().position());
    }

    /// The Ingresses to translate with `candidate`, which `state` holds
    /// under `key`: itself and those that share a host with it, around.
    /// `None` when that is most of them: then translate them all.
    pub fn scope(
        &self,
        state: &ClusterState,
        key: &ObjectKey,
        candidate: &Ingress,
        prefix: &str,
    ) -> Option<HashSet<ObjectKey>> {
        let needs = Needs::of(key, candidate, prefix);
        let mut slots: BTreeSet<Slot> = needs.slots.iter().cloned().collect();
        let seeds = BTreeSet::from([key.clone()]);
        closure(state, &self.deps, &seeds, &mut slots).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Object;
    use std::sync::Arc;

    fn ingress(name: &str, host: &str) -> Object {
        let yaml = format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  rules:\n  - host: {host}\n"
        );
        Object::Ingress(Arc::new(serde_yaml_ng::from_str(&yaml).unwrap()))
    }

    fn keys(scope: &HashSet<ObjectKey>) -> BTreeSet<String> {
        scope.iter().map(|k| k.name.clone()).collect()
    }

    #[test]
    fn a_candidate_is_scoped_to_the_ingresses_of_its_hosts_as_the_state_changes() {
        let mut served = ClusterState::default();
        served.insert(ingress("a", "a.test"));
        served.insert(ingress("b", "b.test"));
        let mut index = HostIndex::default();
        index.follow(&served, "gatehouse.dev");
        // Changes after the first look arrive by the journal.
        served.insert(ingress("a2", "a.test"));
        index.follow(&served, "gatehouse.dev");

        let mut state = served.clone();
        let candidate = ingress("new", "a.test");
        state.insert(candidate.clone());
        let Object::Ingress(new) = &candidate else {
            unreachable!()
        };
        let scope = index
            .scope(&state, &candidate.key(), new, "gatehouse.dev")
            .unwrap();
        assert_eq!(
            keys(&scope),
            BTreeSet::from(["a".into(), "a2".into(), "new".into()])
        );
    }
}
