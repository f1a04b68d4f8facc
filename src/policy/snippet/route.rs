//! A route's snippets together: the server-snippet of its host under the
//! configuration-snippet of its Ingress, merged as nginx merges a server
//! block's directives into a location's.

use super::condition::Asked;
use super::{Answer, HeaderEdits, PathRewrite, Snippet};
use crate::policy::template::Facts;

/// What a route's snippets do on its requests: the server-snippet of its
/// host under the configuration-snippet of its Ingress.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteSnippet {
    pub headers: HeaderEdits,
    /// The server-snippet's edits alone: an answer of its `return` is
    /// given before any location is entered, so no location's edit runs.
    pub server_headers: HeaderEdits,
    /// How many of `answers` are the server-snippet's.
    pub server_answers: usize,
    /// The server-snippet's `return`s (nginx's server rewrite phase runs
    /// first), then the configuration-snippet's.
    pub answers: Vec<Answer>,
    /// The configuration-snippet's `rewrite … break`s (a server-snippet's
    /// are refused where it is read).
    pub path_rewrites: Vec<PathRewrite>,
}

impl RouteSnippet {
    /// The two merged; `None` when neither does anything on a request.
    pub fn merge(server: Option<&Snippet>, location: Option<&Snippet>) -> Option<RouteSnippet> {
        let none = HeaderEdits::default();
        let headers = HeaderEdits::under(
            server.map_or(&none, |s| &s.headers),
            location.map_or(&none, |s| &s.headers),
        );
        let answers: Vec<Answer> = [server, location]
            .into_iter()
            .flatten()
            .flat_map(|s| s.answers.iter().cloned())
            .collect();
        let snippet = RouteSnippet {
            headers,
            server_headers: server.map(|s| s.headers.clone()).unwrap_or_default(),
            server_answers: server.map_or(0, |s| s.answers.len()),
            answers,
            path_rewrites: location
                .map(|s| s.path_rewrites.clone())
                .unwrap_or_default(),
        };
        let acts = !snippet.answers.is_empty()
            || !snippet.headers.is_empty()
            || !snippet.path_rewrites.is_empty();
        acts.then_some(snippet)
    }

    /// The header edits for an answer of the `return` of this index:
    /// the server-snippet's alone when it is the server's.
    pub fn edits_for_answer(&self, index: usize) -> &HeaderEdits {
        match index < self.server_answers {
            true => &self.server_headers,
            false => &self.headers,
        }
    }

    /// The path sent upstream by the first `rewrite … break` that
    /// matches, if any (then `rewrite-target` is not applied).
    pub fn upstream_path(&self, facts: &Facts<'_>) -> Option<String> {
        self.path_rewrites.iter().find_map(|r| r.apply(facts))
    }

    /// The `return` that answers the request, if any: the first whose
    /// condition holds (and, for a `rewrite`, whose expression matches
    /// the path).
    pub fn answering(&self, asked: &Asked<'_>) -> Option<&Answer> {
        self.answers.iter().find(|a| {
            a.when.as_ref().is_none_or(|c| c.holds(asked))
                && a.path.as_ref().is_none_or(|p| p.0.is_match(asked.path))
        })
    }
}
