//! ReferenceGrants: whether an object may refer to one in another
//! namespace (a route to a Service, a Gateway to its certificate's
//! Secret).

use crate::cluster::ClusterState;
use crate::gateway;

/// Whether a ReferenceGrant in `to_namespace` lets `from_kind` objects of
/// `from_namespace` refer to the `to_kind` object `name`.
pub(super) fn granted(
    state: &ClusterState,
    from_namespace: &str,
    from_kind: &str,
    to_namespace: &str,
    to_group: &str,
    to_kind: &str,
    name: &str,
) -> bool {
    state
        .reference_grants
        .iter()
        .filter(|(k, _)| k.namespace == to_namespace)
        .any(|(_, grant)| {
            let from = grant.spec.from.iter().any(|f| {
                f.group == gateway::GROUP && f.kind == from_kind && f.namespace == from_namespace
            });
            let to = grant.spec.to.iter().any(|t| {
                t.group == to_group
                    && t.kind == to_kind
                    && t.name.as_deref().is_none_or(|n| n == name)
            });
            from && to
        })
}
