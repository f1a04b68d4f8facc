//! `proxy-body-size` (nginx's `client_max_body_size`): a request body
//! over the route's limit gets 413. A declared `Content-Length` is judged
//! before anything is forwarded; a streamed body is counted as it goes
//! and cut at the limit.

use http::header::{self, HeaderMap};

/// The access phase: whether the declared length is over the limit
/// (`None`: unlimited, `proxy-body-size: 0`).
pub fn declared_over(limit: Option<u64>, headers: &HeaderMap) -> bool {
    let Some(limit) = limit else {
        return false;
    };
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|len| len > limit)
}

/// The limit a streamed body is held to, in bytes.
pub fn streaming_limit(limit: Option<u64>) -> usize {
    limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declaring(length: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, length.parse().unwrap());
        headers
    }

    #[test]
    fn only_a_declared_length_over_the_limit_is_refused() {
        assert!(declared_over(Some(10), &declaring("11")));
        assert!(!declared_over(Some(10), &declaring("10")));
        assert!(!declared_over(None, &declaring("99999999")));
        assert!(!declared_over(Some(10), &HeaderMap::new()));
        assert!(
            !declared_over(Some(10), &declaring("ten")),
            "a length that does not parse is hyper's to refuse"
        );
    }

    #[test]
    fn an_unlimited_body_streams_without_a_cap() {
        assert_eq!(streaming_limit(None), usize::MAX);
        assert_eq!(streaming_limit(Some(1024)), 1024);
    }
}
