//! `rewrite REGEX REPLACEMENT [break|last]` to a path: the request's URI
//! changed, the query kept after the replacement's unless it ends with
//! `?` (nginx's rewrite module). What follows is the script's (`Flag`):
//! the location stays (`break`) or is searched again.
//!
//! In a location, ingress-nginx writes the configuration-snippet before
//! the `rewrite "(?i)PATH" TARGET break;` it generates for
//! `rewrite-target` (`TargetRewrite`): a snippet's `break` or `last` that
//! matches ends the script before it, and when the snippet's rewrites
//! without a flag changed the URI, it is tried on the new one.

use http::Uri;

use super::answer::PathRegex;
use super::condition::Condition;
use super::script::Flag;
use crate::policy::rewrite::{append_query, expand_captures};
use crate::policy::template::{Facts, Template};

/// A compiled `rewrite` to a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UriRewrite {
    /// The condition of the `if` block it stands in.
    pub when: Option<Condition>,
    pub path: PathRegex,
    pub to: Template,
    /// The request's query follows the replacement (after `?` or `&`),
    /// unless the replacement ends with `?`.
    pub keep_query: bool,
    pub flag: Flag,
}

impl UriRewrite {
    /// The new path and query, when the condition holds and the path
    /// matches.
    pub fn apply(&self, facts: &Facts<'_>) -> Option<String> {
        if self.when.as_ref().is_some_and(|c| !c.holds(facts)) {
            return None;
        }
        let groups = self.path.0.captures(facts.uri.path())?;
        Some(rewritten(&self.to, Some(&groups), self.keep_query, facts))
    }
}

/// ingress-nginx's `rewrite "(?i)PATH" TARGET break;` for a route's
/// `rewrite-target`: unanchored, case-insensitive, on the URI as the
/// configuration-snippet left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRewrite {
    pub path: PathRegex,
    pub target: String,
}

impl TargetRewrite {
    /// The path and query sent upstream, when the URI matches.
    pub fn apply(&self, uri: &Uri) -> Option<String> {
        let groups = self.path.0.captures(uri.path())?;
        let mut path = expand_captures(&self.target, &groups);
        if path.is_empty() {
            path.push('/');
        }
        if let Some(query) = uri.query() {
            append_query(&mut path, query);
        }
        Some(path)
    }
}

/// `to` with `$1`…`$9` from `groups` and the request's variables filled
/// in, and the request's query after it when `keep_query` (nginx's
/// `rewrite`, whether it redirects or not).
pub fn rewritten(
    to: &Template,
    groups: Option<&regex::Captures<'_>>,
    keep_query: bool,
    facts: &Facts<'_>,
) -> String {
    let mut text = to.expand_with(facts, groups);
    if let Some(query) = facts.uri.query().filter(|_| keep_query) {
        append_query(&mut text, query);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::template::Vars;
    use http::HeaderMap;

    fn apply(rewrite: &UriRewrite, uri: &'static str) -> Option<String> {
        let uri = http::Uri::from_static(uri);
        let headers = HeaderMap::new();
        rewrite.apply(&Facts::sample(&uri, &headers))
    }

    #[test]
    fn a_matching_path_is_replaced_with_its_groups_and_the_query_kept_unless_told() {
        let rewrite = |regex: &str, to: &str, keep_query| UriRewrite {
            when: None,
            path: PathRegex(regex::Regex::new(regex).unwrap()),
            to: Template::parse(to, Vars::Captures).unwrap(),
            keep_query,
            flag: Flag::Break,
        };
        let api = rewrite("^/api/(.*)$", "/v2/$1", true);
        assert_eq!(
            apply(&api, "/api/items?x=1").as_deref(),
            Some("/v2/items?x=1")
        );
        assert_eq!(apply(&api, "/shop/items"), None);
        let with_args = rewrite("^/old$", "/new?from=old", true);
        assert_eq!(
            apply(&with_args, "/old?x=1").as_deref(),
            Some("/new?from=old&x=1")
        );
        let dropped = rewrite("^/old$", "/new", false);
        assert_eq!(apply(&dropped, "/old?x=1").as_deref(), Some("/new"));
    }

    #[test]
    fn the_rewrite_target_rewrite_is_unanchored_and_fills_its_groups() {
        let target = TargetRewrite {
            path: PathRegex(regex::Regex::new("(?i)(?:/api/(.*))").unwrap()),
            target: "/base/$1".into(),
        };
        let apply = |uri: &'static str| target.apply(&Uri::from_static(uri));
        assert_eq!(apply("/API/x?q=1").as_deref(), Some("/base/x?q=1"));
        assert_eq!(apply("/v1/api/y").as_deref(), Some("/base/y"));
        assert_eq!(apply("/other"), None);
    }
}
