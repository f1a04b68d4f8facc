//! Decisions snippets take part in, in nginx's order for a server block
//! and its locations as ingress-nginx writes them:
//!
//! 1. the server-snippet's script (nginx's server rewrite phase): a
//!    `return` answers; a `rewrite` (any flag) changes the URI the
//!    location is chosen with;
//! 2. the location is chosen (among the host's paths and the
//!    server-snippet's `location` blocks, as nginx chooses: `choose`; a
//!    snippet location runs its script, then answers 403 if it denies
//!    all), then its own script: a closed route stays
//!    closed (ingress-nginx's denied location runs no snippet), `app-root`
//!    (which ingress-nginx writes in the server block) before the first
//!    search only, then the configuration-snippet. `rewrite … last`, or a
//!    script that ends with the URI changed by a `rewrite` without a flag,
//!    searches the host's locations again with the new URI, and the route
//!    found runs its own snippet; the eleventh such search answers 500, as
//!    nginx. `rewrite … break` keeps the location with the new URI, and
//!    what ingress-nginx writes after the snippet (the permanent or
//!    temporal redirect's `return`, the `rewrite-target` rewrite) is then
//!    not reached;
//! 3. the route's own decision, with the URI as the scripts left it.
//!
//! Each answer carries the header edits nginx gives it: a location's
//! (server's under the configuration-snippet's) once a route is chosen,
//! the server-snippet's alone before (its own `return`s, a request no
//! route takes, a closed route, `app-root`, a client certificate refused).

use std::cell::OnceCell;
use std::sync::Arc;

use http::{StatusCode, Uri};

use super::{
    cert_refusal, ClientAuth, Decision, HostRoutes, Matched, PathType, RequestFacts, Route,
    RouteTable,
};
use crate::policy::redirect::Redirects;
use crate::policy::snippet::{Ran, RouteSnippet, ServerLocation, ServerSnippet, SnippetEdits};
use crate::policy::template::Facts;

/// The searches after a change of the URI nginx allows a request; the
/// next answers 500 ("rewrite or internal redirection cycle").
const MAX_SEARCHES: usize = 10;

/// A decision a snippet took part in, with what the proxy needs of it.
#[derive(Debug, Clone)]
pub struct Snippeted {
    /// What the request gets (never `Decision::Snippet` itself).
    pub decision: Decision,
    /// The path and query as the rewrites left them, when they changed
    /// them: the later phases, `$uri` and the endpoint see it;
    /// `$request_uri` stays as sent.
    pub uri: Option<Uri>,
    /// The header edits the response gets.
    pub edits: Option<SnippetEdits>,
    /// The route whose snippet answered, which the request is recorded
    /// under.
    pub answered_by: Option<Arc<Route>>,
    /// The locations a search left, in order: each one's
    /// `more_set_input_headers` ran before the request left it.
    pub left: Vec<Arc<RouteSnippet>>,
    /// A server-snippet's location with `access_log off` answered: no
    /// access log line.
    pub quiet: bool,
}

/// The location nginx chooses for a request: one of the host's paths, or
/// one of its server-snippet's `location` blocks.
enum Found<'t> {
    Route(Matched<'t>),
    Location(&'t ServerLocation),
}

/// How the location ingress-nginx writes for a path compares with a
/// request's path, in nginx's terms.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Generated {
    Exact,
    /// A prefix location of this length.
    Prefix(usize),
    Regex,
}

/// What a chosen location does with the request.
enum Next {
    /// It serves the request, its `rewrite-target` applied as said.
    Stay(Target),
    /// The host's locations are searched again with the new URI.
    Search(Arc<RouteSnippet>),
    Decided(Decision),
}

/// How the path sent upstream follows from the location's script.
enum Target {
    /// The route's `rewrite-target`, on the URI the location was chosen
    /// with.
    Route,
    /// `rewrite … break` ended the script before it: the URI as is.
    Skipped,
    /// The `rewrite-target` rewrite, matched after the snippet's rewrites.
    Given(String),
}

/// A request's way through the scripts.
struct Run<'t> {
    server: Option<&'t Arc<ServerSnippet>>,
    /// The URI as the rewrites left it, once they changed it.
    uri: Option<Uri>,
    left: Vec<Arc<RouteSnippet>>,
    quiet: bool,
}

impl RouteTable {
    /// A request on a host with a server-snippet (`first` is `None`), or
    /// whose route (`first`) has a snippet.
    pub(super) fn decide_with_snippets(
        &self,
        routes: &HostRoutes,
        first: Option<Matched<'_>>,
        client_auth: Option<&Arc<ClientAuth>>,
        req: &RequestFacts<'_>,
    ) -> Decision {
        let sent = OnceCell::new();
        let mut run = Run {
            server: routes.server.as_ref(),
            uri: None,
            left: Vec::new(),
            quiet: false,
        };
        if first.is_none() {
            if let Some(decided) = run.server_phase(&sent, client_auth, req) {
                return decided;
            }
        }
        let mut first = first;
        let mut searches = 0;
        loop {
            let found = match first.take() {
                Some(matched) => Some(Found::Route(matched)),
                None => self.choose(routes, &run.request(req)),
            };
            let matched = match found {
                Some(Found::Route(matched)) => {
                    run.quiet = false;
                    matched
                }
                Some(Found::Location(location)) => match run.snippet_location(&sent, location, req)
                {
                    Next::Decided(decision) => return decision,
                    Next::Search(_) if searches == MAX_SEARCHES => {
                        return run.cycle(location.snippet.clone());
                    }
                    Next::Search(_) | Next::Stay(_) => {
                        searches += 1;
                        continue;
                    }
                },
                None => {
                    let edits = run.server_edits();
                    return run.finish(Decision::Respond(StatusCode::NOT_FOUND), edits, None);
                }
            };
            match run.location(&sent, matched.route, searches == 0, req) {
                Next::Decided(decision) => return decision,
                Next::Stay(target) => {
                    return self.served(run, &matched, target, client_auth, req);
                }
                Next::Search(left) if searches == MAX_SEARCHES => return run.cycle(left),
                Next::Search(left) => {
                    searches += 1;
                    run.left.push(left);
                }
            }
        }
    }

    /// The location nginx chooses, with a server-snippet's `location`
    /// blocks written before the host's paths, as ingress-nginx writes
    /// them: an exact match (`=`) first; else the longest prefix, and if
    /// that is a snippet's `^~` it is taken; else the regular expressions
    /// in order (the snippet's first, then the paths'), the first that
    /// matches; else the longest prefix.
    fn choose<'t>(&'t self, routes: &'t HostRoutes, req: &RequestFacts<'_>) -> Option<Found<'t>> {
        let matched = self.find(routes, req);
        let locations = match &routes.server {
            Some(server) if !server.locations.is_empty() => &server.locations,
            _ => return matched.map(Found::Route),
        };
        let path = req.path;
        if let Some(exact) = locations.iter().find(|l| l.matcher.is_exact(path)) {
            return Some(Found::Location(exact));
        }
        let generated = matched.as_ref().map(|m| generated(m, path, routes));
        if generated == Some(Generated::Exact) {
            return matched.map(Found::Route);
        }
        let mut longest: Option<(&ServerLocation, usize, bool)> = None;
        for location in locations {
            if let Some((len, no_regex)) = location.matcher.prefix_of(path) {
                if longest.is_none_or(|(_, longer, _)| len > longer) {
                    longest = Some((location, len, no_regex));
                }
            }
        }
        let generated_len = match generated {
            Some(Generated::Prefix(len)) => len,
            _ => 0,
        };
        let prefix = longest.filter(|(_, len, _)| *len > generated_len);
        if let Some((location, _, true)) = prefix {
            return Some(Found::Location(location));
        }
        if let Some(regex) = locations.iter().find(|l| l.matcher.regex_matches(path)) {
            return Some(Found::Location(regex));
        }
        if generated == Some(Generated::Regex) {
            return matched.map(Found::Route);
        }
        match prefix {
            Some((location, _, _)) => Some(Found::Location(location)),
            None => matched.map(Found::Route),
        }
    }

    /// The chosen route's own decision, with the URI the scripts left.
    fn served(
        &self,
        mut run: Run<'_>,
        matched: &Matched<'_>,
        target: Target,
        client_auth: Option<&Arc<ClientAuth>>,
        req: &RequestFacts<'_>,
    ) -> Decision {
        let route = matched.route;
        // `app-root` was the server's; a `break` skips the location's
        // permanent or temporal redirect, written after the snippet.
        let redirects = Redirects {
            app_root: None,
            fixed: route
                .policy
                .redirect
                .as_ref()
                .filter(|_| !matches!(target, Target::Skipped)),
            ..route.redirects()
        };
        let now = run.request(req);
        let mut decision = self.route_decision(matched, client_auth, &now, redirects, req);
        if let Decision::Forward(forward) = &mut decision {
            match target {
                Target::Route => {}
                Target::Skipped => forward.rewritten = None,
                Target::Given(path) => forward.rewritten = Some(path),
            }
        }
        let edits = match &route.snippet {
            Some(snippet) => Some(SnippetEdits::Route(snippet.clone())),
            None => run.server_edits(),
        };
        run.finish(decision, edits, None)
    }
}

/// The location ingress-nginx writes for the path found, as nginx
/// compares it with `path`: `= PATH` for Exact; for Prefix `PATH/`, and
/// `= PATH` beside it (not for `/`, nor with `rewrite-target` or a regular
/// expression); a prefix as written for ImplementationSpecific; a regular
/// expression with `use-regex`. Any other route (the Ingress's default
/// backend, an HTTPRoute) counts as the shortest prefix.
fn generated(matched: &Matched<'_>, path: &str, routes: &HostRoutes) -> Generated {
    let route = matched.route;
    if matched.regex.is_some() {
        return Generated::Regex;
    }
    let is_path = routes
        .fallback
        .as_ref()
        .is_none_or(|f| !Arc::ptr_eq(f, route))
        && route.gateway.is_none()
        && routes.routes.iter().any(|r| Arc::ptr_eq(r, route));
    if !is_path {
        return Generated::Prefix(0);
    }
    match route.path_type {
        PathType::Exact => Generated::Exact,
        PathType::Prefix if route.path == "/" || route.rewrite.is_some() => {
            Generated::Prefix(route.path.len())
        }
        PathType::Prefix if route.path == path => Generated::Exact,
        PathType::Prefix => {
            let slash = usize::from(!route.path.ends_with('/'));
            Generated::Prefix(route.path.len() + slash)
        }
        PathType::ImplementationSpecific => Generated::Prefix(route.path.len()),
    }
}

impl<'t> Run<'t> {
    /// A server-snippet's location: its script, then `deny all`'s 403.
    /// (Its body was read only when one of them always ends the request.)
    fn snippet_location(
        &mut self,
        sent: &OnceCell<Uri>,
        location: &ServerLocation,
        req: &RequestFacts<'_>,
    ) -> Next {
        let snippet = &location.snippet;
        let edits = || Some(SnippetEdits::Route(snippet.clone()));
        let facts = facts(sent, req);
        self.quiet = location.quiet;
        match snippet.script.run(&facts, &mut self.uri) {
            Ran::Answer(answered) => {
                Next::Decided(self.finish(Decision::Answer(answered), edits(), None))
            }
            Ran::Last | Ran::End { changed: true } => Next::Search(snippet.clone()),
            Ran::Break | Ran::End { changed: false } => {
                let refused = Decision::Respond(StatusCode::FORBIDDEN);
                Next::Decided(self.finish(refused, edits(), None))
            }
        }
    }

    /// A client certificate refused over TLS, then the server-snippet's
    /// script: an answer, or `None` with the URI it left.
    fn server_phase(
        &mut self,
        sent: &OnceCell<Uri>,
        client_auth: Option<&Arc<ClientAuth>>,
        req: &RequestFacts<'_>,
    ) -> Option<Decision> {
        if req.tls {
            if let Some(refused) = client_auth.and_then(|ca| cert_refusal(ca, req)) {
                let edits = self.server_edits();
                return Some(self.finish(refused, edits, None));
            }
        }
        let server = self.server.filter(|s| !s.script.is_empty())?;
        let facts = facts(sent, req);
        match server.script.run(&facts, &mut self.uri) {
            Ran::Answer(answered) => {
                let edits = self.server_edits();
                Some(self.finish(Decision::Answer(answered), edits, None))
            }
            // In the server block `last`, `break` and the end alike lead
            // to the location's search.
            Ran::Last | Ran::Break | Ran::End { .. } => None,
        }
    }

    /// A chosen location's part before the route's own decision.
    fn location(
        &mut self,
        sent: &OnceCell<Uri>,
        route: &Arc<Route>,
        first: bool,
        req: &RequestFacts<'_>,
    ) -> Next {
        if route.access.denied.is_some() {
            let edits = self.server_edits();
            let closed = Decision::Respond(StatusCode::SERVICE_UNAVAILABLE);
            return Next::Decided(self.finish(closed, edits, None));
        }
        if let Some(app_root) = route.policy.app_root.as_deref().filter(|_| first) {
            let app_root = Redirects {
                app_root: Some(app_root),
                ..Redirects::default()
            };
            if let Some(redirect) = app_root.apply(&self.request(req).asked()) {
                let edits = self.server_edits();
                return Next::Decided(self.finish(redirected(redirect), edits, None));
            }
        }
        let Some(snippet) = route.snippet.as_ref().filter(|s| !s.script.is_empty()) else {
            return Next::Stay(Target::Route);
        };
        let facts = facts(sent, req);
        let ran = snippet.script.run(&facts, &mut self.uri);
        let edits = || Some(SnippetEdits::Route(snippet.clone()));
        match ran {
            Ran::Answer(answered) => {
                let answered = Decision::Answer(answered);
                Next::Decided(self.finish(answered, edits(), Some(route.clone())))
            }
            Ran::Break => Next::Stay(Target::Skipped),
            Ran::Last => Next::Search(snippet.clone()),
            Ran::End { changed: false } => Next::Stay(Target::Route),
            // What ingress-nginx writes after the snippet runs next: the
            // permanent or temporal redirect's `return`, then the
            // `rewrite-target` rewrite, whose `break` keeps the location.
            Ran::End { changed: true } => {
                if let Some(fixed) = &route.policy.redirect {
                    let redirect = Decision::Redirect {
                        location: fixed.location.clone(),
                        status: fixed.status,
                    };
                    return Next::Decided(self.finish(redirect, edits(), None));
                }
                let target = snippet.target.as_ref().zip(self.uri.as_ref());
                match target.and_then(|(target, uri)| target.apply(uri)) {
                    Some(path) => Next::Stay(Target::Given(path)),
                    None => Next::Search(snippet.clone()),
                }
            }
        }
    }

    /// The request as the rewrites left it.
    fn request<'r>(&'r self, req: &RequestFacts<'r>) -> RequestFacts<'r> {
        match &self.uri {
            Some(uri) => RequestFacts {
                path: uri.path(),
                query: uri.query(),
                ..*req
            },
            None => *req,
        }
    }

    fn server_edits(&self) -> Option<SnippetEdits> {
        self.server.map(|s| SnippetEdits::Server(s.clone()))
    }

    /// One search too many, left by the location of `snippet`: 500, as
    /// nginx's "rewrite or internal redirection cycle", with that
    /// location's header edits.
    fn cycle(&mut self, snippet: Arc<RouteSnippet>) -> Decision {
        let failed = Decision::Respond(StatusCode::INTERNAL_SERVER_ERROR);
        self.finish(failed, Some(SnippetEdits::Route(snippet)), None)
    }

    /// The decision, with the snippets' part when there is one the proxy
    /// cannot find on the decision itself.
    fn finish(
        &mut self,
        decision: Decision,
        edits: Option<SnippetEdits>,
        answered_by: Option<Arc<Route>>,
    ) -> Decision {
        let edits = edits.filter(|e| !e.headers().is_empty());
        let found_on_route = match (&decision, &edits) {
            (_, None) => true,
            (Decision::Forward(forward), Some(SnippetEdits::Route(snippet))) => forward
                .route
                .snippet
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s, snippet)),
            _ => false,
        };
        let plain =
            self.uri.is_none() && self.left.is_empty() && answered_by.is_none() && !self.quiet;
        if plain && found_on_route {
            return decision;
        }
        Decision::Snippet(Box::new(Snippeted {
            decision,
            uri: self.uri.take(),
            edits,
            answered_by,
            left: std::mem::take(&mut self.left),
            quiet: self.quiet,
        }))
    }
}

/// What the scripts expand their variables from: the request as sent
/// (each script runs over the URI the rewrites before it left).
fn facts<'r>(sent: &'r OnceCell<Uri>, req: &RequestFacts<'r>) -> Facts<'r> {
    let sent = sent.get_or_init(|| sent_uri(req));
    Facts {
        method: req.method,
        uri: sent,
        request_uri: sent,
        host: req.host,
        tls: req.tls,
        port: req.port,
        client: req.client,
        headers: req.headers,
    }
}

/// The request's path and query as one URI (they came from one).
fn sent_uri(req: &RequestFacts<'_>) -> Uri {
    let text = match req.query {
        Some(query) => format!("{}?{query}", req.path),
        None => req.path.to_owned(),
    };
    Uri::try_from(text).unwrap_or_else(|_| Uri::from_static("/"))
}

fn redirected(redirect: crate::policy::redirect::Redirected) -> Decision {
    match redirect {
        (Ok(location), status) => Decision::Redirect { location, status },
        // The host came from a valid header.
        (Err(_), _) => Decision::Respond(StatusCode::BAD_REQUEST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ObjectKey;
    use crate::policy::proxy_settings::ProxySettings;
    use crate::policy::snippet::{Answered, Snippet};
    use crate::table::{Action, Backend, HostPattern, PathType, RouteTableBuilder, Upstream};
    use crate::upstream::EndpointSet;

    /// `shop.test` with a server-snippet and Prefix paths, each to a
    /// Service of its own name with one endpoint.
    fn table(server: &str, paths: &[(&str, &str)]) -> RouteTable {
        let host = HostPattern::Exact("shop.test".into());
        let read = |text: &str| {
            let snippet = Snippet::read_as("server-snippet", text);
            assert!(snippet.applies(), "{text}: {:?}", snippet.refused);
            snippet
        };
        let server = read(server);
        let mut builder = RouteTableBuilder::default();
        if let Some(snippet) = ServerSnippet::of(&server) {
            builder.set_server_snippet(&host, Arc::new(snippet));
        }
        for (path, snippet) in paths {
            let name = match path.trim_start_matches('/') {
                "" => "root",
                name => name,
            };
            let addrs = vec!["10.0.0.1:80".parse().unwrap()];
            let upstream = Upstream::Endpoints(EndpointSet::new(addrs));
            let backend = Backend::new(ObjectKey::new("shop", name), "80".into(), upstream);
            let action = Action::Forward(Arc::new(backend));
            let settings = Arc::new(ProxySettings::default());
            let mut route = Route::bare(host.clone(), path, PathType::Prefix, action, settings);
            let location = read(snippet);
            route.snippet = RouteSnippet::merge(Some(&server), Some(&location)).map(Arc::new);
            builder.add_route(route, None).unwrap();
        }
        builder.build()
    }

    fn decide(table: &RouteTable, uri: &str) -> Decision {
        let (path, query) = match uri.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (uri, None),
        };
        let headers = http::HeaderMap::new();
        table.decide(&RequestFacts {
            host: "shop.test",
            method: &http::Method::GET,
            headers: &headers,
            path,
            query,
            tls: false,
            port: 80,
            client: "192.0.2.1".parse().unwrap(),
            peer: None,
        })
    }

    /// The Service the request is forwarded to, and the URI it is
    /// forwarded with when a rewrite changed it.
    fn forwarded(decision: &Decision) -> (String, Option<String>) {
        let (decision, uri) = match decision {
            Decision::Snippet(part) => (&part.decision, part.uri.as_ref()),
            other => (other, None),
        };
        let Decision::Forward(forward) = decision else {
            panic!("not forwarded: {decision:?}");
        };
        let service = forward.backend.service.name.clone();
        (service, uri.map(ToString::to_string))
    }

    #[test]
    fn rewrite_last_looks_the_paths_up_again_and_the_path_found_runs_its_own_snippet() {
        let table = table(
            "",
            &[
                (
                    "/",
                    "rewrite ^/old/(.*)$ /api/$1 last;\nmore_set_input_headers 'X-Root: 1';",
                ),
                ("/api", "rewrite ^/api/moved$ /api/final?by=api;"),
            ],
        );
        let decision = decide(&table, "/old/x?q=1");
        let expected = ("api".to_owned(), Some("/api/x?q=1".to_owned()));
        assert_eq!(forwarded(&decision), expected);
        let Decision::Snippet(part) = &decision else {
            unreachable!()
        };
        assert_eq!(part.left.len(), 1, "the root path's input edits ran");
        let again = decide(&table, "/api/moved?x=1");
        let expected = ("api".to_owned(), Some("/api/final?by=api&x=1".to_owned()));
        assert_eq!(forwarded(&again), expected);
        assert_eq!(
            forwarded(&decide(&table, "/plain")),
            ("root".to_owned(), None)
        );
    }

    #[test]
    fn ten_searches_are_allowed_and_the_eleventh_answers_500() {
        let table = table(
            "",
            &[
                ("/", r#"rewrite "^/c(x{0,9})$" /c$1x last;"#),
                ("/loop", "rewrite ^/loop/(.*)$ /loop/$1 last;"),
            ],
        );
        let (_, uri) = forwarded(&decide(&table, "/c"));
        assert_eq!(uri.as_deref(), Some("/cxxxxxxxxxx"));
        let Decision::Snippet(part) = decide(&table, "/loop/a") else {
            panic!("not a snippet's decision");
        };
        assert!(matches!(
            part.decision,
            Decision::Respond(StatusCode::INTERNAL_SERVER_ERROR)
        ));
    }

    #[test]
    fn the_server_snippet_runs_before_a_path_is_chosen_and_edits_what_no_path_takes() {
        let table = table(
            "more_set_headers 'X-Server: s';\nrewrite ^/s/(.*)$ /api/$1 break;\nif ($uri = /teapot) { return 418 'short'; }",
            &[("/api", "")],
        );
        assert_eq!(
            forwarded(&decide(&table, "/s/x?q=1")),
            ("api".to_owned(), Some("/api/x?q=1".to_owned()))
        );
        let server_edits = |decision: Decision| match decision {
            Decision::Snippet(part) => {
                assert!(matches!(part.edits, Some(SnippetEdits::Server(_))));
                part.decision
            }
            other => panic!("without the server's edits: {other:?}"),
        };
        let teapot = server_edits(decide(&table, "/teapot"));
        let status = StatusCode::IM_A_TEAPOT;
        let answered = Answered::Text(status, bytes::Bytes::from_static(b"short"));
        assert!(matches!(teapot, Decision::Answer(a) if a == answered));
        let nowhere = server_edits(decide(&table, "/nowhere"));
        assert!(matches!(nowhere, Decision::Respond(StatusCode::NOT_FOUND)));
    }

    /// The status of a snippet's answer, else the Service forwarded to.
    fn outcome(decision: &Decision) -> String {
        let inner = match decision {
            Decision::Snippet(part) => &part.decision,
            other => other,
        };
        match inner {
            Decision::Answer(answered) => format!("{answered:?}"),
            Decision::Respond(status) => status.as_u16().to_string(),
            _ => forwarded(decision).0,
        }
    }

    #[test]
    fn snippet_locations_are_chosen_with_the_paths_as_nginx_chooses_locations() {
        let table = table(
            "location /ap { return 418; }\nlocation ~ ^/api/r { return 410; }\nlocation = /api/e { deny all; }",
            &[("/", ""), ("/api", "")],
        );
        // A Prefix path is `location /api/` and `location = /api`.
        assert_eq!(outcome(&decide(&table, "/api")), "api");
        assert!(outcome(&decide(&table, "/apx")).contains("418"));
        assert_eq!(outcome(&decide(&table, "/api/x")), "api");
        assert!(outcome(&decide(&table, "/api/r")).contains("410"));
        assert_eq!(outcome(&decide(&table, "/api/e")), "403");
        assert_eq!(outcome(&decide(&table, "/other")), "root");
    }
}
