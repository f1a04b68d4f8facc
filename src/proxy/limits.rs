//! Limits that protect the listeners, and the data plane's sizing, with
//! defaults close to nginx's.

use std::time::Duration;

/// Per-listener protections; one over-limit client never affects others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line + headers); past it: 431.
    pub max_header_bytes: usize,
    /// Time a client has to send a complete request head, including the
    /// wait for the next request on a kept-alive connection (slowloris).
    pub header_read_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once.
    pub h2_max_concurrent_streams: u32,
    /// Client connections open at once, over both listeners; past it a new
    /// connection waits, unserved, until another closes.
    pub max_connections: usize,
    /// Time a client has to finish its TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Data-plane threads (nginx's `worker_processes`); 0: one per core.
    pub workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 32 * 1024,
            header_read_timeout: Duration::from_secs(60),
            h2_max_concurrent_streams: 128,
            max_connections: 16_384,
            tls_handshake_timeout: Duration::from_secs(10),
            workers: 0,
        }
    }
}

/// Reads `500ms`, `5s`, `2m`, or a plain number of seconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{value:?} is not a duration like 5s"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{value:?} has an unknown unit (use ms, s or m)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_nginx_settings() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
