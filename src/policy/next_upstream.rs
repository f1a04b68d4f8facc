//! When a failed exchange is tried again on another endpoint:
//! `proxy-next-upstream`, `proxy-next-upstream-tries` and
//! `proxy-next-upstream-timeout`, with nginx's meaning and ingress-nginx's
//! defaults (`error timeout`, 3 tries, no time limit).
//!
//! A request is only ever sent again when it can be sent whole: nothing of
//! its body was sent yet, or it has none. A request that was sent is sent
//! again only when idempotent, or with `non_idempotent`. Gatehouse streams
//! request bodies and keeps no copy, so a request whose body went out is
//! never retried.

use std::time::Duration;

/// What an attempt came to, as `proxy-next-upstream` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Connecting, sending, or reading the response head failed.
    Error,
    /// The same, timed out.
    Timeout,
    /// The endpoint answered with this status.
    Status(u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextUpstream {
    error: bool,
    timeout: bool,
    statuses: Vec<u16>,
    non_idempotent: bool,
    /// Attempts in all; 0 is as many as there are endpoints.
    tries: u32,
    /// Time for all attempts; `None` is no limit.
    total: Option<Duration>,
}

impl Default for NextUpstream {
    fn default() -> Self {
        NextUpstream {
            error: true,
            timeout: true,
            statuses: Vec::new(),
            non_idempotent: false,
            tries: 3,
            total: None,
        }
    }
}

impl NextUpstream {
    /// `proxy-next-upstream`: space-separated conditions, or `off`.
    pub fn with_conditions(mut self, value: &str) -> Result<Self, String> {
        let words: Vec<&str> = value.split_whitespace().collect();
        if words.is_empty() {
            return Err("lists no condition".into());
        }
        self.error = false;
        self.timeout = false;
        self.statuses.clear();
        self.non_idempotent = false;
        for word in words {
            match word {
                "off" => {}
                "error" => self.error = true,
                "timeout" => self.timeout = true,
                "non_idempotent" => self.non_idempotent = true,
                "http_500" | "http_502" | "http_503" | "http_504" | "http_403" | "http_404"
                | "http_429" => self.statuses.push(word[5..].parse().unwrap_or(502)),
                "invalid_header" => self.error = true,
                other => {
                    return Err(format!(
                        "has {other:?}, which is not a condition nginx knows"
                    ))
                }
            }
        }
        Ok(self)
    }

    pub fn with_tries(mut self, tries: u32) -> Self {
        self.tries = tries;
        self
    }

    /// `proxy-next-upstream-timeout` in seconds; 0 is no limit.
    pub fn with_total(mut self, seconds: u64) -> Self {
        self.total = (seconds > 0).then(|| Duration::from_secs(seconds));
        self
    }

    /// Whether attempt number `attempt` (from 1), which came to `outcome`
    /// after `elapsed` since the first, is followed by another, given how
    /// many endpoints there are and whether the request can be sent again.
    pub fn again(
        &self,
        outcome: Outcome,
        attempt: u32,
        elapsed: Duration,
        endpoints: usize,
        resend: Resend,
    ) -> bool {
        let wanted = match outcome {
            Outcome::Error => self.error,
            Outcome::Timeout => self.timeout,
            Outcome::Status(status) => self.statuses.contains(&status),
        };
        let tries = match self.tries {
            0 => u32::try_from(endpoints).unwrap_or(u32::MAX).max(1),
            n => n,
        };
        let allowed = match resend {
            Resend::NothingSent => true,
            Resend::Whole { idempotent } => idempotent || self.non_idempotent,
            Resend::Impossible => false,
        };
        wanted && allowed && attempt < tries && self.total.is_none_or(|total| elapsed < total)
    }

    /// Whether attempt number `attempt` can be followed by no other,
    /// whatever its outcome: then the request need not be kept for it.
    pub fn is_last(&self, attempt: u32, endpoints: usize) -> bool {
        let tries = match self.tries {
            0 => u32::try_from(endpoints).unwrap_or(u32::MAX).max(1),
            n => n,
        };
        attempt >= tries
    }

    pub fn is_default(&self) -> bool {
        *self == NextUpstream::default()
    }

    pub fn describe(&self) -> String {
        let mut words = Vec::new();
        if self.error {
            words.push("error".to_owned());
        }
        if self.timeout {
            words.push("timeout".to_owned());
        }
        words.extend(self.statuses.iter().map(|s| format!("http_{s}")));
        if self.non_idempotent {
            words.push("non_idempotent".to_owned());
        }
        if words.is_empty() {
            words.push("off".to_owned());
        }
        format!(
            "proxy-next-upstream={} tries {}",
            words.join(" "),
            self.tries
        )
    }
}

/// Whether a request can be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resend {
    /// Nothing reached the endpoint (the connection failed).
    NothingSent,
    /// It was sent, and can be again whole (no body, or none of it read).
    Whole { idempotent: bool },
    /// Part of its body is gone.
    Impossible,
}

impl Resend {
    /// Whether a request that just failed or was answered can be sent
    /// again: the connection failed before anything of its body was read,
    /// or the body is empty or untouched (then only an idempotent method
    /// counts as safe, unless `non_idempotent`).
    pub fn classify(
        connect_failed: bool,
        body_untouched: bool,
        bodiless: bool,
        method: &http::Method,
    ) -> Resend {
        if connect_failed && body_untouched {
            Resend::NothingSent
        } else if bodiless || body_untouched {
            Resend::Whole {
                idempotent: is_idempotent(method),
            }
        } else {
            Resend::Impossible
        }
    }
}

/// RFC 9110 §9.2.2: repeating these has the same effect as sending once.
pub fn is_idempotent(method: &http::Method) -> bool {
    use http::Method as M;
    matches!(
        *method,
        M::GET | M::HEAD | M::OPTIONS | M::TRACE | M::PUT | M::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::ZERO;

    #[test]
    fn defaults_retry_errors_and_timeouts_three_times_in_all() {
        let n = NextUpstream::default();
        let idempotent = Resend::Whole { idempotent: true };
        assert!(n.again(Outcome::Error, 1, NOW, 5, idempotent));
        assert!(n.again(Outcome::Timeout, 2, NOW, 5, idempotent));
        assert!(!n.again(Outcome::Error, 3, NOW, 5, idempotent));
        assert!(!n.again(Outcome::Status(502), 1, NOW, 5, idempotent));
    }

    #[test]
    fn a_sent_post_is_retried_only_with_non_idempotent_and_a_sent_body_never() {
        let n = NextUpstream::default();
        let post = Resend::Whole { idempotent: false };
        assert!(!n.again(Outcome::Error, 1, NOW, 5, post));
        assert!(n.again(Outcome::Error, 1, NOW, 5, Resend::NothingSent));
        let n = NextUpstream::default()
            .with_conditions("error non_idempotent")
            .unwrap();
        assert!(n.again(Outcome::Error, 1, NOW, 5, post));
        assert!(!n.again(Outcome::Error, 1, NOW, 5, Resend::Impossible));
    }

    #[test]
    fn a_request_is_resent_whole_only_while_its_body_is_untouched() {
        let (get, post) = (http::Method::GET, http::Method::POST);
        assert_eq!(
            Resend::classify(true, true, false, &post),
            Resend::NothingSent
        );
        assert_eq!(
            Resend::classify(false, true, false, &post),
            Resend::Whole { idempotent: false }
        );
        assert_eq!(
            Resend::classify(true, false, true, &get),
            Resend::Whole { idempotent: true },
            "a bodiless request can be sent again whatever was sent"
        );
        assert_eq!(
            Resend::classify(true, false, false, &get),
            Resend::Impossible
        );
        assert!(is_idempotent(&http::Method::PUT) && !is_idempotent(&post));
    }

    #[test]
    fn statuses_off_tries_and_the_time_limit() {
        let n = NextUpstream::default()
            .with_conditions("http_503 http_504")
            .unwrap()
            .with_tries(0)
            .with_total(2);
        let get = Resend::Whole { idempotent: true };
        assert!(n.again(Outcome::Status(503), 1, NOW, 3, get));
        assert!(!n.again(Outcome::Status(502), 1, NOW, 3, get));
        assert!(!n.again(Outcome::Error, 1, NOW, 3, get));
        assert!(
            !n.again(Outcome::Status(503), 3, NOW, 3, get),
            "0 tries: one per endpoint"
        );
        assert!(!n.again(Outcome::Status(503), 1, Duration::from_secs(2), 3, get));
        let off = NextUpstream::default().with_conditions("off").unwrap();
        assert!(!off.again(Outcome::Error, 1, NOW, 3, Resend::NothingSent));
        assert!(NextUpstream::default()
            .with_conditions("sometimes")
            .is_err());
    }
}
