//! What snippets do on the request path, once the table has decided with
//! them: the URI their rewrites left (set on the request, so that the
//! later phases, `$uri` and the endpoint see it), the request headers
//! edited before the later phases read them (`more_set_input_headers`),
//! the answer of a `return`, and the response headers edited on whatever
//! answer the request gets (`more_set_headers`, `add_header`).
//! `proxy_set_header` and `proxy_hide_header` run with the upstream
//! request and response.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Uri};

use crate::policy::snippet::{Answered, HeaderEdits, SnippetEdits};
use crate::policy::template::Facts;
use crate::proxy::answer::{self, Inner};
use crate::proxy::context::RequestContext;
use crate::table::{Decision, Snippeted};

/// Takes the snippets' part out of `decision`, leaving what the request
/// gets: the rewritten URI set, the request headers edited, and what the
/// response edits need kept. A request without snippets pays one match.
#[inline]
pub fn take<B>(
    cx: &mut RequestContext<'_>,
    req: &mut Request<B>,
    decision: &mut Decision,
) -> Option<Head> {
    match decision {
        Decision::Forward(forward) => {
            let snippet = forward.route.snippet.as_ref()?;
            edit_request(cx, req, &snippet.headers);
            Head::keep(SnippetEdits::Route(snippet.clone()), cx, req)
        }
        Decision::Snippet(_) => {
            let taken = std::mem::replace(decision, Decision::Respond(Default::default()));
            let Decision::Snippet(snippeted) = taken else {
                return None;
            };
            unpack(cx, req, decision, *snippeted)
        }
        _ => None,
    }
}

#[inline(never)]
fn unpack<B>(
    cx: &mut RequestContext<'_>,
    req: &mut Request<B>,
    decision: &mut Decision,
    snippeted: Snippeted,
) -> Option<Head> {
    let Snippeted {
        decision: taken,
        uri,
        edits,
        answered_by,
        left,
        quiet,
    } = snippeted;
    *decision = taken;
    // `access_log off` in the server-snippet's location that answered.
    if quiet {
        cx.record.quiet = true;
        cx.record.log = None;
    }
    if let Some(uri) = uri {
        *req.uri_mut() = uri;
    }
    if answered_by.is_some() {
        cx.record.route = answered_by;
    }
    // Each location's input edits ran at the end of its rewrite phase:
    // those the request left, then the one that forwards it (a `return`
    // ends the phase before).
    for location in &left {
        edit_request(cx, req, &location.headers);
    }
    if let (Decision::Forward(_), Some(SnippetEdits::Route(snippet))) = (&*decision, &edits) {
        edit_request(cx, req, &snippet.headers);
    }
    Head::keep(edits?, cx, req)
}

/// `more_set_input_headers`, `more_clear_input_headers`.
fn edit_request<B>(cx: &RequestContext<'_>, req: &mut Request<B>, edits: &HeaderEdits) {
    if let Some(edited) = edits.edit_request(&cx.facts(req)) {
        *req.headers_mut() = edited;
    }
}

/// What the response edits expand their variables from, kept when the
/// request itself goes on to the endpoint.
pub struct Head {
    edits: SnippetEdits,
    method: Method,
    uri: Uri,
    request_uri: Uri,
    headers: HeaderMap,
}

impl Head {
    /// Kept only when the snippet edits responses.
    fn keep<B>(edits: SnippetEdits, cx: &RequestContext<'_>, req: &Request<B>) -> Option<Head> {
        let headers = edits.headers();
        (!headers.output.is_empty() || !headers.add.is_empty()).then(|| Head {
            edits,
            method: req.method().clone(),
            uri: req.uri().clone(),
            request_uri: cx.record.uri.clone(),
            headers: req.headers().clone(),
        })
    }

    /// `more_set_headers`, `more_clear_headers`, then `add_header`.
    pub fn edit_response<B>(&self, cx: &RequestContext<'_>, response: &mut Response<B>) {
        let facts = Facts {
            method: &self.method,
            uri: &self.uri,
            request_uri: &self.request_uri,
            host: cx.host.to_str().unwrap_or_default(),
            tls: cx.conn.tls,
            port: cx.conn.local.port(),
            client: cx.conn.client.ip(),
            headers: &self.headers,
        };
        let status = response.status();
        let edits = self.edits.headers();
        edits.edit_response(status, &facts, response.headers_mut());
    }
}

static TEXT_HTML: HeaderValue = HeaderValue::from_static("text/html");

/// A snippet's `return`, or its `rewrite` that redirects, as the table
/// answered it.
pub fn answer(answered: Answered) -> Response<Inner> {
    match answered {
        Answered::Redirect(status, location) => answer::redirect(location, status),
        Answered::Status(status) => answer::status(status),
        Answered::Text(status, body) => {
            let mut response = answer::body(status, body);
            // ingress-nginx's `default_type`.
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, TEXT_HTML.clone());
            response
        }
    }
}
