//! When to renew a certificate, and when to try again after a failure.
//! Pure: times are arguments, jitter comes from a seed, so every choice
//! is reproducible in a test.
//!
//! - Renewal, when the CA suggests a window (ARI, RFC 9773): a point
//!   in that window picked by the seed, as the RFC asks (uniform over the
//!   window); now when the window has started. The CA's hint of when to
//!   ask again is kept between a minute and a day.
//! - Renewal otherwise: when a third of the lifetime
//!   remains, or half for lifetimes under ten days (short-lived
//!   certificates need the larger margin to survive a CA outage), moved
//!   earlier by up to a twentieth of the lifetime so that certificates
//!   issued together are not renewed together.
//! - Failures: exponential backoff from one minute, capped at six hours;
//!   a `Retry-After` from the CA is honoured when it asks for longer; and
//!   whatever the backoff says, at most `ATTEMPTS_PER_HOUR` attempts for
//!   one host in any hour, so a broken DNS record cannot use up the CA's
//!   rate limits (Let's Encrypt allows 5 failed validations per host and
//!   hour).

use std::time::{Duration, SystemTime};

/// Lifetimes under this are renewed at half, not a third.
const SHORT_LIFETIME: Duration = Duration::from_secs(10 * 24 * 3600);

/// The first retry's delay.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(60);
/// The longest delay between two attempts that backoff alone gives.
pub const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// Attempts for one host in any hour, at most.
pub const ATTEMPTS_PER_HOUR: usize = 3;
const HOUR: Duration = Duration::from_secs(3600);

/// The jitter seed of the certificate in Secret `namespace/name`: the
/// same on every replica and across restarts.
pub fn seed(namespace: &str, name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    namespace.hash(&mut hasher);
    name.hash(&mut hasher);
    hasher.finish()
}

/// When to renew a certificate valid from `not_before` to `not_after`;
/// `seed` (e.g. a hash of the Secret's name) picks the jitter.
pub fn renewal_time(not_before: SystemTime, not_after: SystemTime, seed: u64) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let remaining = if lifetime < SHORT_LIFETIME {
        lifetime / 2
    } else {
        lifetime / 3
    };
    let jitter = lifetime.mul_f64(unit(seed) / 20.0);
    not_after
        .checked_sub(remaining + jitter)
        .unwrap_or(not_before)
        .max(not_before)
}

/// Bounds on when to ask the CA for a certificate's renewal window again
/// (its `Retry-After`), and when to ask after the question failed.
pub const ARI_SOONEST: Duration = Duration::from_secs(60);
pub const ARI_LATEST: Duration = Duration::from_secs(24 * 3600);
pub const ARI_AFTER_FAILURE: Duration = Duration::from_secs(3600);

/// When to renew within the CA's suggested window `[start, end)`: a point
/// picked by `seed`, or `now` when that point has passed (a window that
/// has started, for example after a revocation, means renew now).
pub fn renewal_in_window(
    start: SystemTime,
    end: SystemTime,
    seed: u64,
    now: SystemTime,
) -> SystemTime {
    let width = end.duration_since(start).unwrap_or_default();
    let picked = start + width.mul_f64(unit(seed));
    picked.max(now)
}

/// When to ask for the window again, from the CA's `Retry-After` delay.
pub fn next_window_check(retry_after: Duration, now: SystemTime) -> SystemTime {
    now + retry_after.clamp(ARI_SOONEST, ARI_LATEST)
}

/// When the next attempt may start, after the failed attempts
/// `failures` (their start times, oldest first, at least one), at `now`,
/// given the CA's `Retry-After` for the last one, if it sent one.
pub fn next_attempt(
    failures: &[SystemTime],
    retry_after: Option<SystemTime>,
    now: SystemTime,
) -> SystemTime {
    let Some(&last) = failures.last() else {
        return now;
    };
    let exponent = (failures.len() - 1).min(16) as u32;
    let backoff = FIRST_BACKOFF.saturating_mul(1 << exponent).min(MAX_BACKOFF);
    let mut next = last + backoff;
    if let Some(asked) = retry_after {
        next = next.max(asked);
    }
    // The attempt ATTEMPTS_PER_HOUR back must be an hour old.
    if failures.len() >= ATTEMPTS_PER_HOUR {
        let window_start = failures[failures.len() - ATTEMPTS_PER_HOUR];
        next = next.max(window_start + HOUR);
    }
    next.max(now)
}

/// A number in [0, 1) from a seed (SplitMix64's finaliser).
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn acme_renews_when_a_third_of_a_90_day_lifetime_remains_less_jitter() {
        let (start, end) = (at(0), at(0) + 90 * DAY);
        for seed in 0..200 {
            let renew = renewal_time(start, end, seed);
            let before_end = end.duration_since(renew).expect("before the end");
            // A third (30 days), moved earlier by at most 90/20 days.
            assert!(before_end >= 30 * DAY, "{seed}: {before_end:?}");
            assert!(
                before_end < 30 * DAY + DAY * 9 / 2,
                "{seed}: {before_end:?}"
            );
        }
        assert_eq!(renewal_time(start, end, 7), renewal_time(start, end, 7));
        assert_ne!(renewal_time(start, end, 7), renewal_time(start, end, 8));
    }

    #[test]
    fn acme_renews_within_the_window_the_ca_suggests_or_at_once_when_it_has_started() {
        let (start, end) = (at(0) + 60 * DAY, at(0) + 62 * DAY);
        let now = at(0) + DAY;
        let picks: Vec<SystemTime> = (0..200)
            .map(|seed| renewal_in_window(start, end, seed, now))
            .collect();
        assert!(picks.iter().all(|t| *t >= start && *t < end));
        // Spread over the window, not bunched at one end.
        assert!(picks.iter().any(|t| *t < start + DAY));
        assert!(picks.iter().any(|t| *t >= start + DAY));
        assert_eq!(
            renewal_in_window(start, end, 7, now),
            renewal_in_window(start, end, 7, now)
        );
        // A window that has started (a revoked certificate): now.
        let later = at(0) + 70 * DAY;
        assert_eq!(renewal_in_window(start, end, 7, later), later);
        // An empty or backwards window: its start, or now.
        assert_eq!(renewal_in_window(end, start, 7, now), end);
    }

    #[test]
    fn the_window_is_asked_for_again_within_a_minute_and_a_day() {
        let now = at(1000);
        let next = |secs| next_window_check(Duration::from_secs(secs), now);
        assert_eq!(next(0), now + ARI_SOONEST);
        assert_eq!(next(6 * 3600), now + Duration::from_secs(6 * 3600));
        assert_eq!(next(30 * 24 * 3600), now + ARI_LATEST);
    }

    #[test]
    fn acme_renews_short_lifetimes_at_half() {
        // Six days (Let's Encrypt's short-lived profile): half, 3 days.
        let (start, end) = (at(1000), at(1000) + 6 * DAY);
        for seed in 0..200 {
            let before_end = end
                .duration_since(renewal_time(start, end, seed))
                .expect("before");
            assert!(before_end >= 3 * DAY, "{seed}: {before_end:?}");
            assert!(
                before_end < 3 * DAY + 6 * DAY / 20,
                "{seed}: {before_end:?}"
            );
        }
        // A broken certificate (ends before it starts) renews at once.
        assert_eq!(renewal_time(at(50), at(10), 1), at(50));
    }

    #[test]
    fn acme_backoff_doubles_from_a_minute_up_to_the_cap() {
        // Failures far apart, so the hourly cap plays no part.
        let mut failures = Vec::new();
        let mut delays = Vec::new();
        for i in 0..12u64 {
            let t = at(i * 100 * 3600);
            failures.push(t);
            let next = next_attempt(&failures, None, t);
            delays.push(next.duration_since(t).expect("later").as_secs());
        }
        assert_eq!(
            delays,
            [60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600, 21600]
        );
    }

    #[test]
    fn acme_retry_after_is_honoured_when_longer_than_the_backoff() {
        let failures = [at(0)];
        assert_eq!(next_attempt(&failures, Some(at(600)), at(0)), at(600));
        assert_eq!(next_attempt(&failures, Some(at(10)), at(0)), at(60));
        // Never in the past.
        assert_eq!(next_attempt(&failures, None, at(5000)), at(5000));
    }

    #[test]
    fn acme_a_failing_host_gets_at_most_three_attempts_an_hour() {
        let mut failures: Vec<SystemTime> = Vec::new();
        let mut now = at(0);
        for _ in 0..40 {
            failures.push(now);
            now = next_attempt(&failures, None, now);
        }
        for (i, start) in failures.iter().enumerate() {
            let within = failures[i..]
                .iter()
                .take_while(|t| t.duration_since(*start).expect("ordered") < HOUR)
                .count();
            assert!(within <= ATTEMPTS_PER_HOUR, "{i}: {within}");
        }
        // The third attempt in a row waits for the first to be an hour old.
        let quick = [at(0), at(60), at(180)];
        assert_eq!(next_attempt(&quick, None, at(180)), at(3600));
    }
}
