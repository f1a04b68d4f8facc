//! A host's server-snippet and a route's snippets, as the table holds
//! them. The server-snippet's script runs once per request of the host,
//! before any location is chosen (nginx's server rewrite phase); a
//! location's header edits are the server-snippet's under its
//! configuration-snippet's, merged as nginx merges a server block's
//! directives into a location's.

use std::sync::Arc;

use super::{HeaderEdits, LocationMatch, Script, Snippet, TargetRewrite};
use crate::policy::template::RouteNames;

/// What a host's server-snippet does: its script before the location is
/// chosen, and its header edits on the answers given before one is (its
/// own `return`s, a request no path matches).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerSnippet {
    pub headers: HeaderEdits,
    pub script: Script,
    /// Its `location` blocks, in order, which take part in the choice of
    /// a location with the host's paths.
    pub locations: Vec<ServerLocation>,
}

/// A server-snippet's `location`, as the table holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerLocation {
    pub matcher: LocationMatch,
    /// Its script, and its header edits under the server's.
    pub snippet: Arc<RouteSnippet>,
    /// The script's end is answered 403 (`deny all`).
    pub denies_all: bool,
    /// `access_log off`.
    pub quiet: bool,
}

impl ServerSnippet {
    /// `None` when it does nothing before a location is chosen: no
    /// script, no response edits (its other edits are merged into each
    /// location's).
    pub fn of(snippet: &Snippet) -> Option<ServerSnippet> {
        let edits = &snippet.headers;
        let responds = !edits.output.is_empty() || !edits.add.is_empty();
        let acts = !snippet.script.is_empty() || responds || !snippet.locations.is_empty();
        let locations = snippet.locations.iter().map(|location| ServerLocation {
            matcher: location.matcher.clone(),
            snippet: Arc::new(RouteSnippet {
                headers: HeaderEdits::under(&snippet.headers, &location.headers),
                script: location.script.clone(),
                target: None,
            }),
            denies_all: location.denies_all,
            quiet: location.quiet,
        });
        acts.then(|| ServerSnippet {
            headers: snippet.headers.clone(),
            script: snippet.script.clone(),
            locations: locations.collect(),
        })
    }
}

/// What a route's snippets do on its requests: the server-snippet of its
/// host under the configuration-snippet of its Ingress.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteSnippet {
    pub headers: HeaderEdits,
    /// The configuration-snippet's script, run when the location is
    /// chosen (again after each search).
    pub script: Script,
    /// The route's `rewrite-target`, as ingress-nginx's `rewrite … break`
    /// after the snippet, when the script may end with the URI changed.
    pub target: Option<TargetRewrite>,
}

impl RouteSnippet {
    /// The two merged; `None` when neither does anything on a request of
    /// the route.
    pub fn merge(server: Option<&Snippet>, location: Option<&Snippet>) -> Option<RouteSnippet> {
        let none = HeaderEdits::default();
        let headers = HeaderEdits::under(
            server.map_or(&none, |s| &s.headers),
            location.map_or(&none, |s| &s.headers),
        );
        let script = location.map(|s| s.script.clone()).unwrap_or_default();
        let acts = !script.is_empty() || !headers.is_empty();
        acts.then_some(RouteSnippet {
            headers,
            script,
            target: None,
        })
    }
}

impl RouteSnippet {
    /// ingress-nginx's location variables (`$namespace`, `$ingress_name`,
    /// `$service_name`, `$service_port`) filled in for the route.
    pub fn bind(&mut self, names: &RouteNames) {
        let headers = self.headers.templates_mut();
        for template in headers.chain(self.script.templates_mut()) {
            template.bind(names);
        }
    }
}

/// Whose header edits a response gets.
#[derive(Clone, Debug)]
pub enum SnippetEdits {
    /// A location's: its route was chosen.
    Route(Arc<RouteSnippet>),
    /// The server-snippet's alone: the answer was given before any
    /// location was chosen, or without one.
    Server(Arc<ServerSnippet>),
}

impl SnippetEdits {
    pub fn headers(&self) -> &HeaderEdits {
        match self {
            SnippetEdits::Route(route) => &route.headers,
            SnippetEdits::Server(server) => &server.headers,
        }
    }
}
