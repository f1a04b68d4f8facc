//! Attachment: which listeners take a route (its parentRefs, their
//! `sectionName` and `port`, the listener's `allowedRoutes`), the
//! hostnames it is served for under each (the spec's intersection), and
//! each parent's `Accepted` condition.

use std::collections::BTreeMap;

use foldhash::HashMap;

use super::super::gateway_status::{Condition, ParentReport, RouteReport};
use super::listeners::Open;
use super::Who;
use crate::cluster::ObjectKey;
use crate::gateway::{self, Gateway, HTTPRoute, Listener, ParentRef};
use crate::table::{HostPattern, Listeners};
use crate::translate::{Build, WarningKind};

/// The hosts of the routes each listener without a hostname took, by
/// Gateway and listener name (its certificate covers those, or, when it is
/// not programmed, they are refused).
pub(super) type ListenerHosts<'a> = HashMap<(&'a ObjectKey, &'a str), Vec<HostPattern>>;

/// Why a parent does not accept a route: the reason and its message.
type NotAccepted = (&'static str, &'static str);

impl Build<'_> {
    /// The hosts a route is served for, with the listeners of each, from
    /// every parent that accepts it; each parent that does not says why.
    pub(super) fn attach<'a>(
        &mut self,
        who: Who<'_>,
        route: &HTTPRoute,
        open: &'a [Open<'a>],
        gateways: &BTreeMap<&ObjectKey, &Gateway>,
        listener_hosts: &mut ListenerHosts<'a>,
    ) -> BTreeMap<HostPattern, Listeners> {
        let key = who.key;
        let mut hosts: BTreeMap<HostPattern, Listeners> = BTreeMap::new();
        for parent in &route.spec.parent_refs {
            if parent.group != gateway::GROUP || parent.kind != "Gateway" {
                continue;
            }
            let gateway_key = ObjectKey::new(
                parent.namespace.as_deref().unwrap_or(&key.namespace),
                &parent.name,
            );
            // Another controller's Gateway, or none: not ours to judge.
            let Some(gateway) = gateways.get(&gateway_key) else {
                continue;
            };
            let taken = self.listeners_taking(who, route, parent, (&gateway_key, gateway), open);
            let accepted = match taken {
                Ok(taken) => {
                    for (l, names) in taken {
                        self.attach_to(l, names, listener_hosts, &mut hosts);
                    }
                    Condition::yes("Accepted", "Accepted")
                }
                Err((reason, why)) => {
                    let message =
                        format!("parentRef Gateway {gateway_key}: not accepted: {why} ({reason})");
                    self.warn_object(who.kind, key, WarningKind::RouteNotAccepted, message);
                    Condition::no("Accepted", reason, why)
                }
            };
            self.add_parent_report(who, route, parent, accepted);
        }
        hosts
    }

    /// The listeners of one parent Gateway that take the route, each with
    /// the hostnames it takes it for; or why none does.
    fn listeners_taking<'a>(
        &self,
        who: Who<'_>,
        route: &HTTPRoute,
        parent: &ParentRef,
        (gateway_key, gateway): (&ObjectKey, &Gateway),
        open: &'a [Open<'a>],
    ) -> Result<Vec<(&'a Open<'a>, Vec<HostPattern>)>, NotAccepted> {
        let names_one = gateway
            .spec
            .listeners
            .iter()
            .any(|l| names_listener(parent, l));
        let mut why_not = match names_one {
            true => (
                "NotAllowedByListeners",
                "the listener it names is not served",
            ),
            false => ("NoMatchingParent", "no listener matches the parentRef"),
        };
        let mut taken = Vec::new();
        for l in open.iter().filter(|l| l.gateway == gateway_key) {
            if !names_listener(parent, l.listener) {
                continue;
            }
            if !l.kinds.contains(&who.kind) || !self.namespace_allowed(l, &who.key.namespace) {
                why_not = (
                    "NotAllowedByListeners",
                    "the listener does not allow this route",
                );
                continue;
            }
            let names = intersect(l.hostname.as_ref(), &route.spec.hostnames);
            if names.is_empty() {
                why_not = (
                    "NoMatchingListenerHostname",
                    "no hostname of the route is one of the listener's",
                );
                continue;
            }
            taken.push((l, names));
        }
        match taken.is_empty() {
            true => Err(why_not),
            false => Ok(taken),
        }
    }

    /// Counts the route on a listener that takes it, and serves it there
    /// for `names` when the listener is programmed.
    fn attach_to<'a>(
        &mut self,
        l: &'a Open<'a>,
        names: Vec<HostPattern>,
        listener_hosts: &mut ListenerHosts<'a>,
        hosts: &mut BTreeMap<HostPattern, Listeners>,
    ) {
        if let Some(gw) = self.report.gateways.get_mut(l.gateway) {
            gw.listeners[l.index].attached_routes += 1;
        }
        let this = Listeners {
            plain: !l.tls,
            tls: l.tls,
        };
        for name in names {
            if l.hostname.is_none() && name != HostPattern::Any {
                listener_hosts
                    .entry((l.gateway, l.listener.name.as_str()))
                    .or_default()
                    .push(name.clone());
            }
            // Not programmed (an HTTPS listener without a usable
            // certificate): attached, and served nowhere through it.
            if !l.programmed() {
                continue;
            }
            let entry = hosts.entry(name).or_default();
            *entry = entry.union(this);
        }
    }

    /// Records a parent's `Accepted` condition in the route's status.
    fn add_parent_report(
        &mut self,
        who: Who<'_>,
        route: &HTTPRoute,
        parent: &ParentRef,
        accepted: Condition,
    ) {
        let report = self
            .report
            .routes_of(who.kind)
            .entry(who.key.clone())
            .or_insert_with(|| RouteReport {
                generation: route.metadata.generation,
                parents: Vec::new(),
            });
        report.parents.push(ParentReport {
            parent: parent.clone(),
            conditions: vec![accepted],
        });
    }

    /// `allowedRoutes.namespaces`: `Same`, `All`, or a label `Selector`
    /// over the route's Namespace.
    fn namespace_allowed(&self, l: &Open<'_>, namespace: &str) -> bool {
        let rule = &l.listener.allowed_routes.namespaces;
        match rule.from.as_str() {
            "All" => true,
            "Selector" => {
                let Some(selector) = &rule.selector else {
                    return false;
                };
                let mut labels = self
                    .state
                    .namespaces
                    .get(namespace)
                    .and_then(|n| n.metadata.labels.clone())
                    .unwrap_or_default();
                // Set on every Namespace by the API server; applied here
                // for manifests, which may not even hold the Namespace.
                labels
                    .entry("kubernetes.io/metadata.name".to_owned())
                    .or_insert_with(|| namespace.to_owned());
                selector.matches(&labels).unwrap_or(false)
            }
            _ => namespace == l.gateway.namespace,
        }
    }
}

/// Whether a parentRef's `sectionName` and `port` pick this listener.
fn names_listener(parent: &ParentRef, listener: &Listener) -> bool {
    parent
        .section_name
        .as_deref()
        .is_none_or(|s| s == listener.name)
        && parent.port.is_none_or(|p| p == listener.port)
}

/// The hostnames a route is served for under a listener: the spec's
/// intersection. Empty: none in common.
fn intersect(listener: Option<&HostPattern>, route: &[String]) -> Vec<HostPattern> {
    let route: Vec<HostPattern> = route
        .iter()
        .map(|h| HostPattern::parse_gateway(Some(h)))
        .collect();
    match (listener, route.is_empty()) {
        (None, true) => vec![HostPattern::Any],
        (None, false) => route,
        (Some(l), true) => vec![l.clone()],
        (Some(l), false) => route.into_iter().filter_map(|r| narrower(l, &r)).collect(),
    }
}

/// The more specific of two host patterns when one covers the other.
fn narrower(a: &HostPattern, b: &HostPattern) -> Option<HostPattern> {
    let covers = |wild: &str, name: &str| {
        name.strip_suffix(wild)
            .is_some_and(|label| label.ends_with('.') && label.len() > 1)
    };
    match (a, b) {
        (x, y) if x == y => Some(x.clone()),
        (HostPattern::Suffix(w), HostPattern::Exact(n))
        | (HostPattern::Exact(n), HostPattern::Suffix(w)) => {
            covers(w, n).then(|| HostPattern::Exact(n.clone()))
        }
        (HostPattern::Suffix(x), HostPattern::Suffix(y)) => {
            if covers(x, y) {
                Some(HostPattern::Suffix(y.clone()))
            } else if covers(y, x) {
                Some(HostPattern::Suffix(x.clone()))
            } else {
                None
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(h: &str) -> HostPattern {
        HostPattern::parse_gateway(Some(h))
    }

    #[test]
    fn hostnames_intersect_as_the_spec_says() {
        let hosts = |l: Option<&str>, r: &[&str]| {
            let r: Vec<String> = r.iter().map(|s| s.to_string()).collect();
            intersect(l.map(p).as_ref(), &r)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(hosts(None, &[]), ["*"]);
        assert_eq!(hosts(Some("a.example.com"), &[]), ["a.example.com"]);
        assert_eq!(
            hosts(Some("*.example.com"), &["a.example.com", "other.org"]),
            ["a.example.com"]
        );
        assert_eq!(
            hosts(Some("a.example.com"), &["*.example.com"]),
            ["a.example.com"]
        );
        assert_eq!(
            hosts(Some("*.example.com"), &["x.a.example.com"]),
            ["x.a.example.com"]
        );
        assert_eq!(
            hosts(Some("*.example.com"), &["*.a.example.com"]),
            ["*.a.example.com (any depth)"]
        );
        assert!(hosts(Some("example.com"), &["*.example.com"]).is_empty());
    }
}
