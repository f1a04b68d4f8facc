//! The immutable routing table and its lookups.
//!
//! A `RouteTable` is built whole by translate and never changed afterwards;
//! the proxy reads it through one `ArcSwap::load` per request or handshake.
//! Host selection comes first (exact, then wildcard, then the rules without
//! a host); paths are matched only within the selected host, as ingress-nginx
//! does with one server block per host.

mod certs;
mod endpoints;
mod host;
mod path;

use std::sync::Arc;

pub use certs::{CertEntry, CertStore};
pub use endpoints::EndpointSet;
pub use host::{normalize as normalize_host, HostMap, HostPattern};
pub use path::{PathTable, PathTableBuilder, PathType};

use crate::cluster::ObjectKey;

/// One host+path rule of one Ingress, and what to do with matching requests.
#[derive(Debug)]
pub struct Route {
    pub ingress: ObjectKey,
    pub host: HostPattern,
    /// The path as written in the Ingress.
    pub path: String,
    pub path_type: PathType,
    pub action: Action,
}

#[derive(Debug)]
pub enum Action {
    /// Forward to the backend's ready endpoints (503 when there are none).
    Forward(Arc<Backend>),
    /// The backend cannot be resolved (missing Service or port): the route
    /// is kept so that its requests get 503 rather than another rule's answer.
    Unavailable,
}

/// A Service port and its ready endpoints.
#[derive(Debug)]
pub struct Backend {
    pub service: ObjectKey,
    /// The Service port as the Ingress named it (number or name).
    pub port: String,
    pub endpoints: EndpointSet,
}

/// What to do with a request, decided from the table alone.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Forward to one of the backend's ready endpoints.
    Forward(Arc<Backend>),
    /// Answer directly with this status (404: no route; 503: the route's
    /// backend cannot be resolved or has no ready endpoint).
    Respond(http::StatusCode),
}

/// Every route, by host then path, and the certificates.
#[derive(Debug, Default)]
pub struct RouteTable {
    hosts: HostMap<PathTable<Arc<Route>>>,
    any_host: PathTable<Arc<Route>>,
    routes: Vec<Arc<Route>>,
    pub certs: CertStore,
}

impl RouteTable {
    /// The route for a request, from its `Host` (or `:authority`) and path.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        let host = normalize_host(host);
        match self.hosts.get(&host) {
            Some(paths) => paths.lookup(path),
            None => self.any_host.lookup(path),
        }
    }

    /// The decision for a request to `host` (as sent, any case, with or
    /// without port) and `path` (without the query).
    pub fn decide(&self, host: &str, path: &str) -> Decision {
        let Some(route) = self.lookup(host, path) else {
            return Decision::Respond(http::StatusCode::NOT_FOUND);
        };
        match &route.action {
            Action::Forward(backend) if !backend.endpoints.is_empty() => {
                Decision::Forward(backend.clone())
            }
            Action::Forward(_) | Action::Unavailable => {
                Decision::Respond(http::StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }

    /// Every route in the order translate added them.
    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

/// Collects routes and certificates, then builds the lookup structures once.
#[derive(Debug, Default)]
pub struct RouteTableBuilder {
    hosts: std::collections::BTreeMap<HostPattern, PathTableBuilder<Arc<Route>>>,
    routes: Vec<Arc<Route>>,
    pub certs: CertStore,
}

impl RouteTableBuilder {
    /// Adds a route; when its host+path+type is taken, returns the route
    /// that holds it and adds nothing.
    pub fn add_route(&mut self, route: Route) -> Result<(), Arc<Route>> {
        let route = Arc::new(route);
        let paths = self.hosts.entry(route.host.clone()).or_default();
        paths
            .add(&route.path, route.path_type, route.clone())
            .map_err(Arc::clone)?;
        self.routes.push(route);
        Ok(())
    }

    pub fn build(self) -> RouteTable {
        let mut table = RouteTable {
            routes: self.routes,
            certs: self.certs,
            ..RouteTable::default()
        };
        for (host, paths) in self.hosts {
            match host {
                HostPattern::Any => table.any_host = paths.build(),
                host => {
                    table.hosts.insert_first(&host, paths.build());
                }
            }
        }
        table
    }
}
