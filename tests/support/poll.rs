//! Waiting for what happens in the background: a table swap after a file
//! changes, a status write, a watch event, a log line. One loop for the
//! whole suite, so every wait has a deadline and a failed wait says what it
//! was waiting for and what it saw last.
//!
//! The deadline is not a timing assertion: it only keeps a broken build from
//! hanging the suite, so it is generous.

use std::fmt::{Debug, Display};
use std::ops::AsyncFnMut;
use std::time::Duration;

/// Pause between two tries of a check.
const INTERVAL: Duration = Duration::from_millis(10);

/// What one try of a check tells: the value it waited for, or what it saw
/// instead (when it has something to show).
pub trait Outcome {
    type Value;
    fn into_result(self) -> Result<Self::Value, Option<String>>;
}

/// A condition: holds or not yet.
impl Outcome for bool {
    type Value = ();
    fn into_result(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

/// A value, once there is one.
impl<T> Outcome for Option<T> {
    type Value = T;
    fn into_result(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

/// A value once there is one; until then, what was seen instead.
impl<T, E: Debug> Outcome for Result<T, E> {
    type Value = T;
    fn into_result(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(format!("{seen:#?}")))
    }
}

/// Tries `check` every few milliseconds until it holds, for at most
/// `within`, and returns what it found. A check that blocks is cut off at
/// the deadline too. A check without I/O is written `async || …` all the
/// same.
///
/// # Panics
///
/// At the deadline, naming `what` and the last value seen.
pub async fn eventually<O: Outcome>(
    what: impl Display,
    within: Duration,
    check: impl AsyncFnMut() -> O,
) -> O::Value {
    eventually_every(what, within, INTERVAL, check).await
}

/// `eventually`, trying every `every`: for a check that also drives
/// traffic, whose pace is part of the test.
pub async fn eventually_every<O: Outcome>(
    what: impl Display,
    within: Duration,
    every: Duration,
    check: impl AsyncFnMut() -> O,
) -> O::Value {
    match until(within, every, check).await {
        Ok(value) => value,
        Err(Some(last)) => {
            panic!("gave up waiting for {what} after {within:?}; last seen: {last}")
        }
        Err(None) => panic!("gave up waiting for {what} after {within:?}"),
    }
}

/// The loop under `eventually`, for a caller that handles the timeout
/// itself: what the check found, or at the deadline what it saw last.
pub async fn until<O: Outcome>(
    within: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> O,
) -> Result<O::Value, Option<String>> {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = None;
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(outcome) => match outcome.into_result() {
                Ok(value) => return Ok(value),
                Err(seen) => last = seen.or(last),
            },
            Err(_) => return Err(last),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(last);
        }
        tokio::time::sleep_until(deadline.min(now + every)).await;
    }
}
