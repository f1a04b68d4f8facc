//! A request's host and query as routing and templates read them
//! (nginx's `$host` and `$arg_<name>`).

use std::borrow::Cow;

/// A request's host as the maps key it: without `:port`, without a trailing
/// dot, lower case. Borrows when the host is already in that form, which is
/// the common case.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    // One branch-free pass answers the common case: no port, no upper case.
    let plain = !host
        .bytes()
        .fold(false, |seen, b| seen | (b == b':') | b.is_ascii_uppercase());
    if plain && !host.ends_with('.') {
        return Cow::Borrowed(host);
    }
    let host = strip_port(host).trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    let bytes = host.as_bytes();
    match bytes.iter().rposition(|&b| b == b':') {
        Some(colon) if bytes[colon + 1..].iter().all(u8::is_ascii_digit) => &host[..colon],
        _ => host,
    }
}

/// The first value of a query parameter, as sent (empty for a bare name).
pub fn query_value<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_host_is_normalised() {
        assert_eq!(normalize_host("Example.COM:8443"), "example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert!(matches!(normalize_host("plain.example"), Cow::Borrowed(_)));
        assert!(matches!(
            normalize_host("plain.example:8443"),
            Cow::Borrowed(_)
        ));
        assert_eq!(normalize_host("odd.example:80x"), "odd.example:80x");
    }

    #[test]
    fn query_values_are_found_by_exact_name() {
        assert_eq!(query_value(Some("a=1&b=2"), "b"), Some("2"));
        assert_eq!(query_value(Some("a=1&a=2"), "a"), Some("1"));
        assert_eq!(query_value(Some("ab=1"), "a"), None);
        assert_eq!(query_value(Some("flag"), "flag"), Some(""));
        assert_eq!(query_value(None, "a"), None);
    }
}
