//! `rewrite-target`: the upstream path from the request path, the whole
//! path replaced (nginx's `rewrite` of the URI) or, with capture groups,
//! the route's regular expression's groups filled in.

/// `rewrite-target`'s value: a path, with `$1`…`$9` and nothing else of
/// nginx's variables.
pub fn parse_target(value: &str) -> Result<String, String> {
    // Only $1…$9 are allowed: capture groups of the route's own path.
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        let next = rest.as_bytes().get(at + 1);
        if !next.is_some_and(|d| (b'1'..=b'9').contains(d)) {
            return Err(
                "uses nginx variables other than $1…$9, which Gatehouse does not expand".into(),
            );
        }
        rest = &rest[at + 2..];
    }
    if !value.starts_with('/') && !value.starts_with('$') {
        return Err("does not start with '/'".into());
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains white space".into());
    }
    Ok(value.to_owned())
}

/// How the upstream path is derived from the request path (`rewrite-target`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// No capture groups: the whole path becomes the target, as nginx's
    /// `rewrite` replaces the whole URI.
    Replace(String),
    /// `$1`…`$9` in the target are replaced by the groups of the route's
    /// regular expression.
    Captures(String),
}

/// Expands `$1`…`$9` in `template` from `groups` (group 0 is the whole
/// match); a group that did not take part expands to nothing, as in nginx.
pub fn expand_captures(template: &str, groups: &regex::Captures<'_>) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut chars = template.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c == '$' {
            if let Some(&(_, d)) = chars.peek() {
                if let Some(n) = d.to_digit(10).filter(|n| *n >= 1) {
                    chars.next();
                    out.push_str(groups.get(n as usize).map_or("", |m| m.as_str()));
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// Appends `query` after `?`, or after `&` when `url` has a query already,
/// as nginx appends the request's arguments to a rewritten URI.
pub fn append_query(url: &mut String, query: &str) {
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(query);
}

/// Whether a rewrite target refers to capture groups.
pub fn has_captures(template: &str) -> bool {
    template
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'$' && (b'1'..=b'9').contains(&w[1]))
}
