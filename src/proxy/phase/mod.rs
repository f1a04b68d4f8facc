//! The phases a routed request passes, in ingress-nginx's order. The
//! handler calls them in turn; each is a short function over the request
//! context and the route's compiled policies, and knows no annotation.
//!
//! 1. connection: the client's address, the request ID, the table
//!    snapshot (`context`);
//! 2. routing and redirects: the table's decision (`table::decide`,
//!    snippets' scripts included), then what snippets decided: the URI
//!    their rewrites left, a `return`'s answer, the request header edits
//!    (`snippet`);
//! 3. access: CORS preflight, limits, credentials, body size (`access`);
//! 4. choice: a canary's share, then affinity or a hash key (`choice`);
//! 5. upstream request: the path, headers and body the endpoint gets
//!    (`upstream_request`), with the mirrors' copies beside it (`mirror`);
//! 6. attempts: an endpoint, the exchange under its timeouts, passive
//!    health, `proxy-next-upstream` (`attempts`);
//! 7. response: the upgrade's tunnel (`upgrade`), then what the response
//!    gets on its way back (`response`).

pub mod access;
pub mod attempts;
pub mod choice;
pub mod mirror;
pub mod response;
pub mod snippet;
pub mod upgrade;
pub mod upstream_request;

use std::sync::OnceLock;
use std::time::Instant;

/// `at` in milliseconds on a process-wide monotonic clock (for endpoint
/// backoff and affinity).
fn millis(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    at.saturating_duration_since(epoch).as_millis() as u64
}

/// A routed request's parts, built as translate would, for the phases'
/// tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use crate::cluster::ObjectKey;
    use crate::connection::ConnInfo;
    use crate::policy::proxy_settings::ProxySettings;
    use crate::proxy::context::RequestContext;
    use crate::table::{Forward, HostPattern, PathType, Route, RouteTable};
    use crate::upstream::{Action, Backend, EndpointSet, Upstream};

    /// A connection from 192.0.2.1 over plain HTTP.
    pub fn conn() -> ConnInfo {
        let client = "192.0.2.1:40000".parse().expect("addr");
        ConnInfo::new(client, "127.0.0.1:8080".parse().expect("addr"), false)
    }

    /// A request's context under an empty table.
    pub fn context<'c, B>(req: &mut http::Request<B>, conn: &'c ConnInfo) -> RequestContext<'c> {
        RequestContext::arrive(Arc::new(RouteTable::default()), req, conn)
    }

    /// A backend with one endpoint per address.
    pub fn backend(addrs: &[&str]) -> Arc<Backend> {
        let addrs = addrs.iter().map(|a| a.parse().expect("addr")).collect();
        let upstream = Upstream::Endpoints(EndpointSet::new(addrs));
        Arc::new(Backend::new(
            ObjectKey::new("test", "web"),
            "80".into(),
            upstream,
        ))
    }

    /// `/` of `shop.test` to `backend`, its route shaped by `shape`.
    pub fn forward(backend: Arc<Backend>, shape: impl FnOnce(&mut Route)) -> Forward {
        let host = HostPattern::Exact("shop.test".into());
        let action = Action::Forward(backend.clone());
        let mut route = Route::bare(
            host,
            "/",
            PathType::Prefix,
            action,
            Arc::new(ProxySettings::default()),
        );
        shape(&mut route);
        Forward {
            route: Arc::new(route),
            backend,
            rewritten: None,
            authenticate: false,
            client_auth: None,
            load_balance: Default::default(),
            canary: false,
        }
    }
}
