//! The rewrite module's part of a snippet (`return`, `rewrite`, and an
//! `if` around one) as nginx runs it: one script, directive by directive,
//! each over the URI as the rewrites before it left it. A `return`, or a
//! `rewrite` that redirects, answers and ends it; `rewrite … break` and
//! `rewrite … last` change the URI and end it; a `rewrite` without a flag
//! changes the URI and the script goes on. What follows the script (the
//! location's search, once more after `last`) is the table's.

use http::{StatusCode, Uri};

use super::answer::{Answer, Answered};
use super::path::UriRewrite;
use crate::policy::template::{Facts, Template};

/// A snippet's rewrite-module directives, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Script {
    steps: Vec<Step>,
}

/// One directive of the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `return`, or a `rewrite` whose replacement is a URL or that has
    /// `redirect` or `permanent`.
    Answer(Answer),
    /// A `rewrite` to a path, with `break`, `last` or no flag.
    Rewrite(UriRewrite),
}

/// What a `rewrite` to a path does once it has changed the URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    /// The script ends; the location stays.
    Break,
    /// The script ends; the location is searched again.
    Last,
    /// No flag: the script goes on, and the location is searched again
    /// at its end.
    Next,
}

/// How a script ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ran {
    /// A `return` or a redirecting `rewrite` answers the request.
    Answer(Answered),
    /// `rewrite … last` changed the URI.
    Last,
    /// `rewrite … break` changed the URI.
    Break,
    /// It ran to its end; `changed` when a `rewrite` without a flag
    /// changed the URI.
    End { changed: bool },
}

impl Script {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Adds a directive; nothing after a `return` that always answers is
    /// ever reached, so nothing is added after one.
    pub fn push(&mut self, step: Step) {
        let always_answers = |s: &Step| match s {
            Step::Answer(answer) => answer.when.is_none() && answer.path.is_none(),
            Step::Rewrite(_) => false,
        };
        if !self.steps.iter().any(always_answers) {
            self.steps.push(step);
        }
    }

    /// The values that use a location variable (`$namespace`, …).
    pub fn templates_mut(&mut self) -> impl Iterator<Item = &mut Template> {
        self.steps.iter_mut().filter_map(|step| match step {
            Step::Answer(answer) => answer.with.as_mut(),
            Step::Rewrite(rewrite) => Some(&mut rewrite.to),
        })
    }

    /// Whether the script may run to its end with the URI changed (a
    /// `rewrite` without a flag).
    pub fn may_end_changed(&self) -> bool {
        let next = |s: &Step| matches!(s, Step::Rewrite(r) if r.flag == Flag::Next);
        self.steps.iter().any(next)
    }

    /// Runs the script on the request; `uri` is the URI earlier rewrites
    /// left (`None`: `facts.uri`), and this script's rewrites change it.
    /// A rewrite whose result is no path (`$1` of an empty group) finds
    /// no location (404), or with `break` is no URI to send (400), as in
    /// nginx.
    pub fn run(&self, facts: &Facts<'_>, uri: &mut Option<Uri>) -> Ran {
        let mut changed = false;
        for step in &self.steps {
            let now = Facts {
                uri: uri.as_ref().unwrap_or(facts.uri),
                ..*facts
            };
            let rewrite = match step {
                Step::Answer(answer) if answer.applies(&now) => {
                    return Ran::Answer(answer.answer(&now));
                }
                Step::Answer(_) => continue,
                Step::Rewrite(rewrite) => rewrite,
            };
            let Some(new) = rewrite.apply(&now) else {
                continue;
            };
            match Uri::try_from(new)
                .ok()
                .filter(|u| u.path().starts_with('/'))
            {
                Some(new) => *uri = Some(new),
                None if rewrite.flag == Flag::Break => {
                    return Ran::Answer(Answered::Status(StatusCode::BAD_REQUEST))
                }
                None => return Ran::Answer(Answered::Status(StatusCode::NOT_FOUND)),
            }
            match rewrite.flag {
                Flag::Break => return Ran::Break,
                Flag::Last => return Ran::Last,
                Flag::Next => changed = true,
            }
        }
        Ran::End { changed }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Snippet;
    use super::*;
    use http::HeaderMap;

    fn run(snippet: &str, sent: &'static str) -> (Ran, Option<String>) {
        let snippet = Snippet::read(snippet);
        assert!(snippet.applies(), "{:?}", snippet.refused);
        let uri = Uri::from_static(sent);
        let headers = HeaderMap::new();
        let facts = Facts::sample(&uri, &headers);
        let mut now = None;
        let ran = snippet.script.run(&facts, &mut now);
        (ran, now.map(|u| u.to_string()))
    }

    #[test]
    fn rewrites_without_a_flag_go_on_over_the_new_uri_and_the_flags_stop() {
        let chain = "rewrite ^/a/(.*)$ /b/$1;\nrewrite ^/b/(.*)$ /c/$1;";
        assert_eq!(
            run(chain, "/a/x?q=1"),
            (Ran::End { changed: true }, Some("/c/x?q=1".into()))
        );
        assert_eq!(run(chain, "/other"), (Ran::End { changed: false }, None));
        let stops = "rewrite ^/a/(.*)$ /b/$1 last;\nrewrite ^/b/(.*)$ /c/$1;";
        assert_eq!(run(stops, "/a/x"), (Ran::Last, Some("/b/x".into())));
        let breaks = "rewrite ^/a/(.*)$ /b/$1;\nrewrite ^/b/(.*)$ /d/$1 break;\nreturn 403;";
        assert_eq!(run(breaks, "/a/x"), (Ran::Break, Some("/d/x".into())));
        let (answered, _) = run(breaks, "/z");
        assert_eq!(
            answered,
            Ran::Answer(Answered::Status(StatusCode::FORBIDDEN))
        );
    }

    #[test]
    fn a_return_after_a_rewrite_answers_with_the_new_uri_and_the_query_follows_the_rules() {
        let (answered, uri) = run(
            "rewrite ^/a/(.*)$ /b/$1?from=a;\nreturn 200 '$uri $args $request_uri';",
            "/a/x?q=1",
        );
        assert_eq!(uri.as_deref(), Some("/b/x?from=a&q=1"));
        let Ran::Answer(Answered::Text(_, body)) = answered else {
            panic!("{answered:?}");
        };
        assert_eq!(&body[..], b"/b/x from=a&q=1 /a/x?q=1");
        let dropped = run("rewrite ^/a$ /b? last;", "/a?q=1");
        assert_eq!(dropped, (Ran::Last, Some("/b".into())));
    }

    #[test]
    fn an_if_around_a_rewrite_tests_the_uri_the_rewrites_before_left() {
        let script =
            "rewrite ^/old/(.*)$ /new/$1;\nif ($uri ~ ^/new/) { rewrite ^/new/(.*)$ /v2/$1 last; }";
        assert_eq!(run(script, "/old/x"), (Ran::Last, Some("/v2/x".into())));
        assert_eq!(run(script, "/new/x").0, Ran::Last);
        assert_eq!(run(script, "/x").0, Ran::End { changed: false });
    }
}
