//! `RequestMirror` (Gateway API): a copy of a request to another backend,
//! sent beside it and never waited for. Only a request without a body is
//! copied: copying a body would mean holding it, or slowing the request
//! to the mirror's pace.

use http::header::{self, HeaderMap};

/// Whether a request can be copied: its body is known to be empty.
pub fn can_copy(headers: &HeaderMap, body_ended: bool) -> bool {
    body_ended
        || (headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v == "0")
            && !headers.contains_key(header::TRANSFER_ENCODING))
}

/// Whether this request is in a mirror's share (`percent` or `fraction`,
/// held in millionths).
pub fn takes_copy(per_million: u32) -> bool {
    per_million >= 1_000_000 || fastrand::u32(0..1_000_000) < per_million
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_known_to_be_bodiless_is_copied() {
        let mut headers = HeaderMap::new();
        assert!(can_copy(&headers, true));
        assert!(!can_copy(&headers, false));
        headers.insert(header::CONTENT_LENGTH, "0".parse().unwrap());
        assert!(can_copy(&headers, false));
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert!(!can_copy(&headers, false));
    }

    #[test]
    fn a_whole_share_always_and_none_never_takes_a_copy() {
        assert!((0..1000).all(|_| takes_copy(1_000_000)));
        assert!((0..1000).all(|_| !takes_copy(0)));
        let some = (0..10_000).filter(|_| takes_copy(500_000)).count();
        assert!(
            (3_000..7_000).contains(&some),
            "{some} of 10,000 at one half"
        );
    }
}
