//! `return` in a snippet, alone or in an `if` block, and a `rewrite`
//! that redirects: nginx's rewrite module answers the request itself,
//! before the access phase and before the endpoint is chosen. A
//! server-snippet's runs before any location is chosen (nginx's server
//! rewrite phase), so it wins over a configuration-snippet's.

use bytes::Bytes;
use http::header::HeaderValue;
use http::StatusCode;

use super::condition::Condition;
use super::path::rewritten;
use crate::policy::template::{Facts, Template};

/// A compiled `return`, or `rewrite` that redirects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The condition of the `if` block it stands in.
    pub when: Option<Condition>,
    /// A `rewrite`'s regular expression: the path must match, and its
    /// groups fill `$1`…`$9`.
    pub path: Option<PathRegex>,
    pub status: StatusCode,
    pub with: Option<Template>,
    /// A `rewrite` keeps the request's query, after `?` or `&`.
    pub keep_query: bool,
}

/// A `rewrite`'s regular expression, compared by its text.
#[derive(Clone, Debug)]
pub struct PathRegex(pub regex::Regex);

impl PartialEq for PathRegex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for PathRegex {}

/// What the client gets for a `return`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answered {
    /// A redirect status with its `Location`.
    Redirect(StatusCode, HeaderValue),
    /// A status with the snippet's text as body (`text/html`, ingress-nginx's
    /// `default_type`).
    Text(StatusCode, Bytes),
    /// A status alone: the proxy's own page for it.
    Status(StatusCode),
}

/// The statuses whose `return` argument is a URL (nginx's rewrite module).
pub fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

impl Answer {
    /// Whether it answers: its condition holds and, for a `rewrite`, its
    /// expression matches the path.
    pub fn applies(&self, facts: &Facts<'_>) -> bool {
        self.when.as_ref().is_none_or(|c| c.holds(facts))
            && self
                .path
                .as_ref()
                .is_none_or(|p| p.0.is_match(facts.uri.path()))
    }

    pub fn answer(&self, facts: &Facts<'_>) -> Answered {
        let Some(with) = &self.with else {
            return Answered::Status(self.status);
        };
        let groups = self
            .path
            .as_ref()
            .and_then(|p| p.0.captures(facts.uri.path()));
        let text = rewritten(with, groups.as_ref(), self.keep_query, facts);
        if !is_redirect(self.status) {
            return Answered::Text(self.status, Bytes::from(text));
        }
        // nginx makes a relative URL absolute with the request's scheme
        // and host (`absolute_redirect`).
        let location = match text.starts_with('/') {
            true => {
                let scheme = if facts.tls { "https" } else { "http" };
                let host = crate::connection::normalize_host(facts.host);
                format!("{scheme}://{host}{text}")
            }
            false => text,
        };
        match HeaderValue::from_str(&location) {
            Ok(location) => Answered::Redirect(self.status, location),
            Err(_) => Answered::Status(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::template::Vars;
    use http::HeaderMap;

    #[test]
    fn redirects_carry_a_location_and_other_statuses_a_body() {
        let uri = http::Uri::from_static("/old?x=1");
        let headers = HeaderMap::new();
        let facts = Facts {
            host: "Shop.test:8080",
            ..Facts::sample(&uri, &headers)
        };
        let answer = |status: u16, with: Option<&str>| Answer {
            when: None,
            path: None,
            keep_query: false,
            status: StatusCode::from_u16(status).unwrap(),
            with: with.map(|w| Template::parse(w, Vars::Request).unwrap()),
        };
        assert_eq!(
            answer(301, Some("https://new.test$request_uri")).answer(&facts),
            Answered::Redirect(
                StatusCode::MOVED_PERMANENTLY,
                HeaderValue::from_static("https://new.test/old?x=1")
            )
        );
        assert_eq!(
            answer(302, Some("/login")).answer(&facts),
            Answered::Redirect(
                StatusCode::FOUND,
                HeaderValue::from_static("http://shop.test/login")
            )
        );
        assert_eq!(
            answer(200, Some("ok $request_method")).answer(&facts),
            Answered::Text(StatusCode::OK, Bytes::from_static(b"ok GET"))
        );
        assert_eq!(
            answer(403, None).answer(&facts),
            Answered::Status(StatusCode::FORBIDDEN)
        );
    }
}
