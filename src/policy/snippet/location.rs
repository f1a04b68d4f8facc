//! `location` blocks of a server-snippet, as real ones are written: to
//! refuse or answer some paths of a host (`location = /metrics { deny
//! all; }`, `location = /favicon.ico { return 404; access_log off; }`,
//! `location = /.well-known/carddav { return 301 …; }`). ingress-nginx
//! writes the server-snippet before the locations it generates, so these
//! take part in nginx's choice of a location with the host's paths (the
//! table's `snippet` module makes that choice).
//!
//! Such a location forwards nothing: whatever reaches nginx's content
//! phase there is answered from its static files. So a body is read only
//! when every request ends before that: with a `return` that always
//! answers, or with `deny all` (403) after the script. Its body may hold
//! the script's directives (`return`, `rewrite` without `break`, `if`),
//! response header edits, `allow`/`deny`, `access_log off` and
//! `log_not_found` (which says whether nginx logs a missing static file,
//! and Gatehouse serves none). Anything else refuses the location, and
//! with it the server-snippet.

use super::answer::PathRegex;
use super::headers::HeaderEdits;
use super::script::{Flag, Script, Step};
use super::syntax::Statement;
use super::Snippet;

/// A server-snippet's `location`, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub matcher: LocationMatch,
    /// `more_set_headers`, `more_clear_headers`, `add_header`.
    pub headers: HeaderEdits,
    pub script: Script,
    /// The script's end is answered 403: every rule is a `deny`, the
    /// last one `deny all`.
    pub denies_all: bool,
    /// `access_log off`: its requests write no access log line.
    pub quiet: bool,
}

/// How a location's path is compared with a request's, as nginx does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocationMatch {
    /// `= PATH`.
    Exact(String),
    /// `PATH`, or `^~ PATH` (`no_regex`: when it is the longest prefix,
    /// no regular expression is tried).
    Prefix { path: String, no_regex: bool },
    /// `~ REGEX`, `~* REGEX` (case-insensitive).
    Regex(PathRegex),
}

impl LocationMatch {
    pub fn is_exact(&self, path: &str) -> bool {
        matches!(self, LocationMatch::Exact(exact) if exact == path)
    }

    /// The length of the prefix, when it is one of `path`, and whether
    /// it is `^~`.
    pub fn prefix_of(&self, path: &str) -> Option<(usize, bool)> {
        match self {
            LocationMatch::Prefix {
                path: prefix,
                no_regex,
            } if path.starts_with(prefix.as_str()) => Some((prefix.len(), *no_regex)),
            _ => None,
        }
    }

    pub fn regex_matches(&self, path: &str) -> bool {
        matches!(self, LocationMatch::Regex(regex) if regex.0.is_match(path))
    }
}

/// A `location` statement of a server-snippet, or why it is refused.
pub fn read(statement: &Statement) -> Result<Location, String> {
    let matcher = matcher(statement)?;
    let body = statement
        .block
        .as_deref()
        .ok_or("location without a block")?;
    let mut inner = Snippet::default();
    let mut quiet = false;
    for directive in body {
        let args: Vec<&str> = directive.args().iter().map(|w| w.text.as_str()).collect();
        match (directive.name(), args.as_slice()) {
            ("access_log", ["off"]) => quiet = true,
            ("log_not_found", ["on" | "off"]) => {}
            ("access_log" | "log_not_found", _) => {
                return Err(format!(
                    "{} is read only as off (access_log) or on/off (log_not_found)",
                    directive.name()
                ))
            }
            _ => inner.add(directive),
        }
    }
    if let Some(why) = inner.refused.first() {
        return Err(why.clone());
    }
    let forwards = !inner.headers.input.is_empty()
        || !inner.headers.upstream.is_empty()
        || !inner.headers.hide.is_empty();
    let limits = !inner.timeouts.is_empty()
        || !inner.grpc_timeouts.is_empty()
        || inner.body_size.is_some()
        || inner.client_body_timeout.is_some()
        || inner.satisfy.is_some();
    if forwards || limits {
        return Err("it forwards nothing, so only response header edits, return, rewrite, if, allow, deny, access_log and log_not_found are read".into());
    }
    let breaks = inner
        .script
        .steps()
        .iter()
        .any(|s| matches!(s, Step::Rewrite(r) if r.flag == Flag::Break));
    if breaks {
        return Err("rewrite … break would serve nginx's static files".into());
    }
    let denies_all =
        inner.access.last() == Some(&(false, None)) && inner.access.iter().all(|(allow, _)| !allow);
    let answers = inner.script.steps().iter().any(
        |s| matches!(s, Step::Answer(answer) if answer.when.is_none() && answer.path.is_none()),
    );
    if !(answers || denies_all) {
        return Err("some requests would reach nginx's static files: the block needs a return that always answers, or deny all".into());
    }
    Ok(Location {
        matcher,
        headers: inner.headers,
        script: inner.script,
        denies_all,
        quiet,
    })
}

/// `location [= | ^~ | ~ | ~*] PATH`; `=PATH` too, as nginx reads it.
fn matcher(statement: &Statement) -> Result<LocationMatch, String> {
    let args: Vec<&str> = statement.args().iter().map(|w| w.text.as_str()).collect();
    let regex = |text: &str, insensitive: bool| {
        regex::RegexBuilder::new(text)
            .case_insensitive(insensitive)
            .size_limit(64 * 1024)
            .build()
            .map(|r| LocationMatch::Regex(PathRegex(r)))
            .map_err(|_| format!("{text:?} is not a regular expression Gatehouse reads"))
    };
    let prefix = |path: &str, no_regex: bool| {
        Ok(LocationMatch::Prefix {
            path: path.to_owned(),
            no_regex,
        })
    };
    match args.as_slice() {
        ["=", path] => Ok(LocationMatch::Exact((*path).to_owned())),
        ["^~", path] => prefix(path, true),
        ["~", path] => regex(path, false),
        ["~*", path] => regex(path, true),
        [path] if path.starts_with('@') => Err("a named location is not read".into()),
        [path] => match path.strip_prefix('=') {
            Some(exact) => Ok(LocationMatch::Exact(exact.to_owned())),
            None if path.starts_with('/') => prefix(path, false),
            None => Err(format!("{path:?} is not a path")),
        },
        _ => Err("location takes an optional =, ^~, ~ or ~* and a path".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::syntax::parse;
    use super::*;

    fn one(text: &str) -> Result<Location, String> {
        read(&parse(text).unwrap()[0])
    }

    #[test]
    fn the_published_path_blocks_are_read() {
        for text in [
            "location = /metrics { deny all; }",
            r#"location ~* "^/_metrics" { deny all; return 403; }"#,
            "location = /favicon.ico { return 404; access_log off; log_not_found off; }",
            r#"location /test { return 418 "teapot"; }"#,
            "location = /.well-known/carddav { return 301 https://$host/remote.php/dav; }",
            "location ^~ /admin { allow 10.0.0.0/8; deny all; return 404; }",
            "location /old { rewrite ^/old/(.*)$ /new/$1 last; deny all; }",
            "location /x { more_set_headers 'X-A: b'; add_header X-B c always; return 200 ok; }",
        ] {
            assert!(one(text).is_ok(), "{text}: {:?}", one(text));
        }
        let favicon = one("location = /favicon.ico { return 404; access_log off; }").unwrap();
        assert!(favicon.quiet && !favicon.denies_all);
        assert_eq!(favicon.matcher, LocationMatch::Exact("/favicon.ico".into()));
        assert!(
            one("location = /m { deny 10.0.0.1; deny all; }")
                .unwrap()
                .denies_all
        );
    }

    #[test]
    fn bodies_that_forward_or_reach_static_files_are_refused() {
        for text in [
            "location /api { proxy_pass http://upstream_balancer; }",
            "location /api { proxy_set_header X-A b; return 200; }",
            "location /a { location /a/b { return 404; } return 403; }",
            "location /a { try_files $uri /index.html; }",
            "location /a { allow 10.0.0.0/8; deny all; }",
            "location /a { deny 10.0.0.1; }",
            "location /a { if ($http_x) { return 403; } }",
            "location /a { rewrite ^ /b break; deny all; }",
            "location @named { return 404; }",
            "location ~ (?<=a)b { return 404; }",
            "location /a { access_log /tmp/x; return 404; }",
            "location /a;",
        ] {
            let parsed = parse(text);
            let Ok(parsed) = parsed else { continue };
            assert!(read(&parsed[0]).is_err(), "{text}");
        }
    }

    #[test]
    fn paths_compare_as_nginx_compares_them() {
        let prefix = one("location ^~ /static { return 404; }").unwrap().matcher;
        assert_eq!(prefix.prefix_of("/static/a"), Some((7, true)));
        assert_eq!(prefix.prefix_of("/staticky"), Some((7, true)));
        assert_eq!(prefix.prefix_of("/Static"), None);
        let regex = one("location ~* ^/_METRICS { return 404; }")
            .unwrap()
            .matcher;
        assert!(regex.regex_matches("/_metrics/x"));
        let exact = one("location =/health { return 200; }").unwrap().matcher;
        assert!(exact.is_exact("/health") && !exact.is_exact("/health/"));
    }
}
