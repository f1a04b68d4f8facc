//! `rewrite REGEX REPLACEMENT break` in a configuration-snippet: the path
//! sent to the endpoint. ingress-nginx writes the snippet before the
//! `rewrite … break` it generates for `rewrite-target`, so a snippet's
//! `break` that matches stops nginx's rewrite module there: its path is
//! sent, and `rewrite-target` is not applied. One that does not match
//! leaves the path to what follows.

use super::answer::PathRegex;
use crate::policy::rewrite::append_query;
use crate::policy::template::{Facts, Template};

/// A compiled `rewrite … break`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRewrite {
    pub path: PathRegex,
    pub to: Template,
    /// The request's query follows the replacement (after `?` or `&`),
    /// unless the replacement ends with `?`.
    pub keep_query: bool,
}

impl PathRewrite {
    /// The path and query sent upstream, when the request's path matches.
    pub fn apply(&self, facts: &Facts<'_>) -> Option<String> {
        let groups = self.path.0.captures(facts.uri.path())?;
        Some(rewritten(&self.to, Some(&groups), self.keep_query, facts))
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

    fn apply(rewrite: &PathRewrite, uri: &'static str) -> Option<String> {
        let uri = http::Uri::from_static(uri);
        let headers = HeaderMap::new();
        let facts = Facts {
            method: &http::Method::GET,
            uri: &uri,
            host: "shop.test",
            tls: false,
            client: "192.0.2.1".parse().unwrap(),
            headers: &headers,
        };
        rewrite.apply(&facts)
    }

    #[test]
    fn a_matching_path_is_replaced_with_its_groups_and_the_query_kept_unless_told() {
        let rewrite = |regex: &str, to: &str, keep_query| PathRewrite {
            path: PathRegex(regex::Regex::new(regex).unwrap()),
            to: Template::parse(to, Vars::Captures).unwrap(),
            keep_query,
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
}
