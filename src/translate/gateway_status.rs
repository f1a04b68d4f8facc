//! What translate found about the Gateway API objects it read, in the
//! terms of their status: conditions with the spec's reasons, listeners'
//! attached routes, and each route's parents. The elected replica writes it
//! back (`status::gateway`).

use std::collections::BTreeMap;

use crate::cluster::ObjectKey;
use crate::gateway::ParentRef;

/// One status condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Condition {
    pub fn yes(type_: &'static str, reason: &'static str) -> Condition {
        Condition {
            type_,
            status: true,
            reason,
            message: String::new(),
        }
    }

    pub fn no(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Condition {
        Condition {
            type_,
            status: false,
            reason,
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenerReport {
    pub name: String,
    pub attached_routes: i32,
    /// `HTTPRoute`, when the listener serves it.
    pub supported_kinds: Vec<&'static str>,
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayReport {
    pub generation: Option<i64>,
    pub conditions: Vec<Condition>,
    pub listeners: Vec<ListenerReport>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParentReport {
    pub parent: ParentRef,
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteReport {
    pub generation: Option<i64>,
    pub parents: Vec<ParentReport>,
}

/// The status of every Gateway API object of ours.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusReport {
    /// Our GatewayClasses and their generations (each is `Accepted`).
    pub classes: BTreeMap<String, Option<i64>>,
    pub gateways: BTreeMap<ObjectKey, GatewayReport>,
    /// HTTPRoutes with a parent of ours.
    pub routes: BTreeMap<ObjectKey, RouteReport>,
    /// GRPCRoutes with a parent of ours.
    pub grpc_routes: BTreeMap<ObjectKey, RouteReport>,
    /// Gateways refused whole (their conditions say why; their listeners
    /// are not served).
    pub refused: std::collections::BTreeSet<ObjectKey>,
}

impl StatusReport {
    /// The routes of a kind (`HTTPRoute` or `GRPCRoute`).
    pub fn routes_of(&mut self, kind: &str) -> &mut BTreeMap<ObjectKey, RouteReport> {
        match kind {
            "GRPCRoute" => &mut self.grpc_routes,
            _ => &mut self.routes,
        }
    }
}
