//! Backends: a Service port and where its traffic goes, and what a route
//! does with its requests.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::EndpointSet;
use crate::cluster::ObjectKey;

/// What a route does with its requests.
#[derive(Debug)]
pub enum Action {
    /// Forward to the backend's ready endpoints (503 when there are none).
    Forward(Arc<Backend>),
    /// The backend cannot be resolved (missing Service or port): the route
    /// is kept so that its requests get 503 rather than another rule's answer.
    Unavailable,
}

/// Where a backend's requests go.
#[derive(Debug)]
pub enum Upstream {
    /// Ready endpoint addresses of a Service port.
    Endpoints(EndpointSet),
    /// An ExternalName Service: its DNS name and port, checked when the
    /// table is built and resolved per connection.
    External(http::uri::Authority),
}

/// A Service port and where its traffic goes.
///
/// Its endpoints are replaced in place when they are all that changed (a
/// rolling update), so that every route and table that holds the backend
/// sees the new ones at once, without a rebuild of the hosts that use it
/// (see `translate::backend`). Everything else about a backend is fixed.
#[derive(Debug)]
pub struct Backend {
    pub service: ObjectKey,
    /// The Service port as the Ingress named it (number or name).
    pub port: String,
    upstream: ArcSwap<Upstream>,
}

impl Backend {
    pub fn new(service: ObjectKey, port: String, upstream: Upstream) -> Self {
        Backend {
            service,
            port,
            upstream: ArcSwap::from_pointee(upstream),
        }
    }

    /// Where requests go now. A request takes this once and keeps it, so
    /// that its choice of endpoint and what it reports of it stay with one
    /// set of addresses.
    pub fn upstream(&self) -> Arc<Upstream> {
        self.upstream.load_full()
    }

    pub fn has_targets(&self) -> bool {
        match &**self.upstream.load() {
            Upstream::Endpoints(set) => !set.is_empty(),
            Upstream::External(_) => true,
        }
    }

    /// Takes the ready endpoints of a new resolution of the same Service
    /// port in place of the current ones.
    pub(crate) fn replace_upstream(&self, upstream: Upstream) {
        self.upstream.store(Arc::new(upstream));
    }
}
