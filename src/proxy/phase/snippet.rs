//! What a route's snippets do on the request path: the `return` that
//! answers in the rewrite phase, the request headers edited before the
//! later phases read them (`more_set_input_headers`), and the response
//! headers edited on whatever answer the route gives
//! (`more_set_headers`, `add_header`). `proxy_set_header` and
//! `proxy_hide_header` run with the upstream request and response.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Uri};

use crate::policy::snippet::{Answered, HeaderEdits, RouteSnippet};
use crate::policy::template::Facts;
use crate::proxy::answer::{self, Inner};
use crate::proxy::context::RequestContext;
use crate::table::{Decision, Route};

/// The snippet of the route a decision is about, with the `return` it
/// answers with, if any.
pub fn of(decision: &Decision) -> Option<(&Arc<RouteSnippet>, Option<usize>)> {
    let (route, answer) = match decision {
        Decision::Forward(forward) => (&forward.route, None),
        Decision::Answer(route, index) => (route, Some(*index)),
        Decision::Redirect { .. } | Decision::Respond(_) => return None,
    };
    route.snippet.as_ref().map(|s| (s, answer))
}

/// `more_set_input_headers`, `more_clear_input_headers`.
pub fn edit_request<B>(cx: &RequestContext<'_>, req: &mut Request<B>, snippet: &RouteSnippet) {
    if let Some(edited) = snippet.headers.edit_request(&cx.facts(req)) {
        *req.headers_mut() = edited;
    }
}

/// What the response edits expand their variables from, kept when the
/// request itself goes on to the endpoint.
pub struct Head {
    snippet: Arc<RouteSnippet>,
    /// The `return` the route answers with.
    answer: Option<usize>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Head {
    /// Kept only when the snippet edits responses.
    pub fn keep<B>(
        snippet: &Arc<RouteSnippet>,
        answer: Option<usize>,
        req: &Request<B>,
    ) -> Option<Head> {
        let edits = Self::edits_of(snippet, answer);
        (!edits.output.is_empty() || !edits.add.is_empty()).then(|| Head {
            snippet: snippet.clone(),
            answer,
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        })
    }

    /// `more_set_headers`, `more_clear_headers`, then `add_header`.
    pub fn edit_response<B>(&self, cx: &RequestContext<'_>, response: &mut Response<B>) {
        let facts = Facts {
            method: &self.method,
            uri: &self.uri,
            host: cx.host.to_str().unwrap_or_default(),
            tls: cx.conn.tls,
            client: cx.conn.client.ip(),
            headers: &self.headers,
        };
        let status = response.status();
        let edits = Self::edits_of(&self.snippet, self.answer);
        edits.edit_response(status, &facts, response.headers_mut());
    }

    fn edits_of(snippet: &RouteSnippet, answer: Option<usize>) -> &HeaderEdits {
        match answer {
            Some(index) => snippet.edits_for_answer(index),
            None => &snippet.headers,
        }
    }
}

static TEXT_HTML: HeaderValue = HeaderValue::from_static("text/html");

/// The route's `return` of that index, which the table chose.
pub fn answer<B>(
    cx: &mut RequestContext<'_>,
    req: &Request<B>,
    route: &Arc<Route>,
    index: usize,
) -> Response<Inner> {
    cx.record.route = Some(route.clone());
    let answered = route.snippet.as_ref().and_then(|s| s.answers.get(index));
    let Some(answered) = answered.map(|a| a.answer(&cx.facts(req))) else {
        // `decide` names a `return` the route has.
        return answer::status(http::StatusCode::INTERNAL_SERVER_ERROR);
    };
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
