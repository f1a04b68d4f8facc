//! What one request carries through its phases.
//!
//! A request takes the routing table once, when it arrives, and keeps that
//! snapshot until it has been answered: its decision, its edge settings,
//! its upstream header expansion and its response headers all come from
//! the same table, whatever is swapped in meanwhile. The snapshot is an
//! `Arc` (not a borrowed guard), so it may be held across awaits; a table
//! that is replaced lives on only as long as the requests that began
//! under it.

use std::borrow::Cow;
use std::sync::Arc;

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use http::Request;

use super::request_log::RequestRecord;
use crate::connection::headers::PREPARED_HEADERS;
use crate::connection::ConnInfo;
use crate::policy::access::Granted;
use crate::policy::affinity::Choice;
use crate::policy::cors::Admitted;
use crate::policy::template::Facts;
use crate::table::{RequestFacts, RouteTable};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// One request's state between its phases.
pub struct RequestContext<'c> {
    /// The connection as this request sees it: a trusted proxy may name
    /// another client (`use-forwarded-headers`).
    pub conn: Cow<'c, ConnInfo>,
    /// The host the request is for, as sent; empty when it named none
    /// (such a request is answered 400 before any route is looked up).
    pub host: HeaderValue,
    /// The table this request is decided and answered by.
    pub table: Arc<RouteTable>,
    /// What telemetry learns of the request.
    pub record: RequestRecord,
    /// The CORS origin the access phase admitted, for the response.
    pub cors: Option<Admitted>,
    /// What the access phase's credentials check granted (boxed: only
    /// routes with credentials have it, and the context moves whole).
    pub granted: Option<Box<Granted>>,
    /// The choice phase's endpoint preference and cookie.
    pub choice: Choice,
}

impl<'c> RequestContext<'c> {
    /// The connection phase for one request: the table snapshot, the
    /// client address, the request ID (set on the request, as forwarded)
    /// and the log record.
    pub fn arrive<B>(table: Arc<RouteTable>, req: &mut Request<B>, conn: &'c ConnInfo) -> Self {
        let conn = match conn.for_request(req.headers(), &table.edge.forwarded) {
            Some(seen) => Cow::Owned(seen),
            None => Cow::Borrowed(conn),
        };
        let host = request_host(req);
        let request_id = set_request_id(req.headers_mut());
        let record = RequestRecord::new(
            conn.client.ip(),
            req.method().clone(),
            req.version(),
            host.clone(),
            req.uri().clone(),
            request_id,
        );
        RequestContext {
            conn,
            host: host.unwrap_or_else(|| HeaderValue::from_static("")),
            table,
            record,
            cors: None,
            granted: None,
            choice: Choice::default(),
        }
    }

    /// Whether the request named a host (`Host` or `:authority`).
    pub fn has_host(&self) -> bool {
        self.record.host.is_some()
    }

    /// What the policies' variables are expanded from.
    pub fn facts<'a, B>(&'a self, req: &'a Request<B>) -> Facts<'a> {
        Facts {
            method: req.method(),
            uri: req.uri(),
            request_uri: &self.record.uri,
            host: self.host.to_str().unwrap_or_default(),
            tls: self.conn.tls,
            port: self.conn.local.port(),
            client: self.conn.client.ip(),
            headers: req.headers(),
        }
    }

    /// What routing looks at.
    pub fn request_facts<'a, B>(&'a self, req: &'a Request<B>) -> RequestFacts<'a> {
        RequestFacts {
            host: self.host.to_str().unwrap_or_default(),
            method: req.method(),
            headers: req.headers(),
            path: req.uri().path(),
            query: req.uri().query(),
            tls: self.conn.tls,
            port: self.conn.local.port(),
            client: self.conn.client.ip(),
            peer: self.conn.peer_cert.as_deref(),
        }
    }
}

/// The host a request is for: the `Host` header (HTTP/1.1), else the URI
/// authority (HTTP/2 `:authority`, or an absolute-form HTTP/1.1 target).
fn request_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    if let Some(host) = req.headers().get(header::HOST) {
        return Some(host.clone());
    }
    let authority = req.uri().authority()?;
    HeaderValue::from_str(authority.as_str()).ok()
}

/// The client's `X-Request-ID` when it is a sensible token, else a new one.
#[cfg(test)]
fn request_id<B>(req: &Request<B>) -> HeaderValue {
    sensible(req.headers().get(&X_REQUEST_ID)).unwrap_or_else(new_request_id)
}

/// Sets the request's `X-Request-ID`, as forwarded: the client's when it is
/// a sensible token, else a new one; either way the only value. One lookup
/// of the header, not one to read it and another to set it.
fn set_request_id(headers: &mut HeaderMap) -> HeaderValue {
    // Room for the ID and for what preparing the upstream request adds:
    // the map grows once, here, not again there.
    headers.reserve(1 + PREPARED_HEADERS);
    match headers.entry(&X_REQUEST_ID) {
        Entry::Occupied(mut given) => {
            let id = sensible(Some(given.get())).unwrap_or_else(new_request_id);
            // Also drops any further values the client sent.
            given.insert(id.clone());
            id
        }
        Entry::Vacant(slot) => slot.insert(new_request_id()).clone(),
    }
}

/// A client's request ID kept as it is: 1 to 128 visible ASCII characters.
fn sensible(given: Option<&HeaderValue>) -> Option<HeaderValue> {
    given
        .filter(|v| {
            let bytes = v.as_bytes();
            !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .cloned()
}

fn new_request_id() -> HeaderValue {
    // A user-space generator: no system call per request.
    let mut text = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().simple().encode_lower(&mut text);
    // 32 hex digits are always a valid header value.
    HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_the_host_header_else_the_authority() {
        let req = Request::get("http://b.example/x")
            .header("host", "a.example")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req).unwrap(), "a.example");
        let req = Request::get("http://b.example:8080/x").body(()).unwrap();
        assert_eq!(request_host(&req).unwrap(), "b.example:8080");
        let req = Request::get("/x").body(()).unwrap();
        assert!(request_host(&req).is_none());
    }

    #[test]
    fn a_sensible_request_id_is_kept_and_any_other_replaced() {
        let req = Request::get("/").header("x-request-id", "abc-123").body(());
        assert_eq!(request_id(&req.unwrap()), "abc-123");
        let long = "a".repeat(129);
        for bad in ["", "has space", long.as_str()] {
            let req = Request::get("/").header("x-request-id", bad).body(());
            let id = request_id(&req.unwrap());
            assert_eq!(id.len(), 32, "{bad:?} is replaced by a new ID");
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
        }
    }
}
