//! Session affinity and hashing: `affinity: cookie` (with `affinity-mode`
//! and the `session-cookie-*` annotations) and `upstream-hash-by`, with
//! ingress-nginx's meaning.
//!
//! - `balanced` (the default): the cookie holds a random session key, and
//!   the endpoint is the key's place on a consistent hash (rendezvous
//!   hashing) over the ready endpoints. A scale-up moves only the share of
//!   sessions the new endpoints must take; an endpoint that goes away moves
//!   only its own sessions.
//! - `persistent`: the cookie names the endpoint itself (a hash of its
//!   address, which it does not reveal); a session stays on it while it is
//!   ready, and moves, with a new cookie, only when it is gone.
//! - `upstream-hash-by`: the endpoint is the hash key's place on the same
//!   consistent hash, with no cookie.
//!
//! Every replica computes the same hashes, so a session keeps its endpoint
//! whichever replica the load balancer picks.

use std::hash::BuildHasher;
use std::time::{Duration, SystemTime};

use http::header::HeaderValue;

use super::template::{cookie, Facts, Template, Vars};
use super::Annotations;
use crate::upstream::EndpointSet;

/// The annotations this family reads.
pub const ANNOTATIONS: &[&str] = &[
    "affinity",
    "affinity-mode",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-domain",
    "session-cookie-max-age",
    "session-cookie-expires",
    "session-cookie-samesite",
    "session-cookie-conditional-samesite-none",
    "session-cookie-secure",
    "session-cookie-change-on-failure",
    "upstream-hash-by",
];

/// Hashes every replica agrees on.
fn stable_hash(parts: &[&[u8]]) -> u64 {
    let state = foldhash::fast::FixedState::with_seed(0x6761_7465_686f_7573);
    state.hash_one(parts)
}

#[derive(Debug)]
pub enum Stickiness {
    Cookie(CookieAffinity),
    Hash(Template),
}

#[derive(Debug)]
pub struct CookieAffinity {
    name: String,
    persistent: bool,
    path: Option<String>,
    domain: Option<String>,
    max_age: Option<u64>,
    expires: Option<u64>,
    same_site: Option<&'static str>,
    secure: bool,
    change_on_failure: bool,
}

/// What the choice phase decided.
#[derive(Debug, Default)]
pub struct Choice {
    /// The endpoint to use, by index in the set.
    pub preferred: Option<usize>,
    /// A cookie to set on the response.
    pub set_cookie: Option<HeaderValue>,
}

impl Stickiness {
    pub fn compile(annotations: &Annotations<'_>, notes: &mut Vec<String>) -> Option<Stickiness> {
        if let Some((key, value)) = annotations.get("affinity") {
            if value != "cookie" {
                notes.push(format!(
                    "annotation {key}: {value:?} is not cookie; ignored"
                ));
                return None;
            }
            return Some(Stickiness::Cookie(CookieAffinity::compile(
                annotations,
                notes,
            )));
        }
        let (key, value) = annotations.get("upstream-hash-by")?;
        match Template::parse(value, Vars::Request) {
            Ok(t) => Some(Stickiness::Hash(t)),
            Err(why) => {
                notes.push(format!("annotation {key}: {value:?} {why}; ignored"));
                None
            }
        }
    }

    /// The choice phase over a backend's endpoints. A cookie's default
    /// path is the route's path; a regex path is no cookie path, so `/`.
    pub fn choose(
        &self,
        facts: &Facts<'_>,
        set: &EndpointSet,
        route_path: &str,
        regex_path: bool,
        now_ms: u64,
    ) -> Choice {
        let route_path = if regex_path { "/" } else { route_path };
        match self {
            Stickiness::Hash(key) => Choice {
                preferred: rendezvous(key.expand(facts).as_bytes(), set, now_ms),
                set_cookie: None,
            },
            Stickiness::Cookie(c) => c.choose(facts, set, route_path, now_ms),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Stickiness::Hash(key) => format!("upstream-hash-by={}", key.as_str()),
            Stickiness::Cookie(c) => format!(
                "affinity=cookie {} ({})",
                c.name,
                if c.persistent {
                    "persistent"
                } else {
                    "balanced"
                }
            ),
        }
    }
}

impl CookieAffinity {
    fn compile(annotations: &Annotations<'_>, notes: &mut Vec<String>) -> CookieAffinity {
        let mut text = |name: &str, valid: fn(&str) -> bool| {
            let (key, value) = annotations.get(name)?;
            if valid(value) {
                Some(value.to_owned())
            } else {
                notes.push(format!(
                    "annotation {key}: {value:?} is not valid here; ignored"
                ));
                None
            }
        };
        let token = |v: &str| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        let path_ok =
            |v: &str| v.starts_with('/') && v.bytes().all(|b| b.is_ascii_graphic() && b != b';');
        let name = text("session-cookie-name", token).unwrap_or_else(|| "INGRESSCOOKIE".into());
        let path = text("session-cookie-path", path_ok);
        let domain = text("session-cookie-domain", token);
        let seconds = |v: &str| v.parse::<u64>().is_ok();
        let max_age = text("session-cookie-max-age", seconds).and_then(|v| v.parse().ok());
        let expires = text("session-cookie-expires", seconds).and_then(|v| v.parse().ok());
        let same_site = text("session-cookie-samesite", |v| {
            matches!(v, "None" | "Lax" | "Strict" | "none" | "lax" | "strict")
        })
        .map(|v| match v.to_ascii_lowercase().as_str() {
            "none" => "None",
            "strict" => "Strict",
            _ => "Lax",
        });
        let flag = |name: &str| {
            annotations
                .get(name)
                .is_some_and(|(_, v)| super::parse_bool(v) == Some(true))
        };
        let persistent = match annotations.get("affinity-mode") {
            None => false,
            Some((_, "balanced")) => false,
            Some((_, "persistent")) => true,
            Some((key, other)) => {
                notes.push(format!(
                    "annotation {key}: {other:?} is not balanced or persistent; balanced applies"
                ));
                false
            }
        };
        CookieAffinity {
            name,
            persistent,
            path,
            domain,
            max_age,
            expires,
            same_site,
            secure: flag("session-cookie-secure"),
            change_on_failure: flag("session-cookie-change-on-failure"),
        }
    }

    fn choose(
        &self,
        facts: &Facts<'_>,
        set: &EndpointSet,
        route_path: &str,
        now_ms: u64,
    ) -> Choice {
        let sent = cookie(facts.headers, &self.name).filter(|v| v.len() == 32 || v.len() == 16);
        if self.persistent {
            let known = sent.and_then(|v| {
                let index = set.addrs().iter().position(|a| endpoint_id(a) == v)?;
                set.pick_index(index, now_ms).map(|_| index)
            });
            if let Some(index) = known {
                return Choice {
                    preferred: Some(index),
                    set_cookie: None,
                };
            }
            // New, or its endpoint is gone (or down, when asked to move on
            // failure): a fresh pick by the route's balancing, and its name.
            let index = set
                .pick_healthy(Default::default(), now_ms, None)
                .map(|p| p.index);
            let set_cookie =
                index.and_then(|i| self.cookie(&endpoint_id(&set.addrs()[i]), facts, route_path));
            return Choice {
                preferred: index,
                set_cookie,
            };
        }
        let key = sent.filter(|v| v.len() == 32).map(str::to_owned);
        let fresh = key.is_none();
        let key = key.unwrap_or_else(|| format!("{:032x}", fastrand::u128(..)));
        let mut preferred = rendezvous(key.as_bytes(), set, now_ms);
        let mut set_cookie = fresh
            .then(|| self.cookie(&key, facts, route_path))
            .flatten();
        if preferred.is_none() && self.change_on_failure && !fresh {
            // Its endpoint is down: a new session key that lands elsewhere.
            let key = format!("{:032x}", fastrand::u128(..));
            preferred = rendezvous(key.as_bytes(), set, now_ms);
            set_cookie = self.cookie(&key, facts, route_path);
        }
        Choice {
            preferred,
            set_cookie,
        }
    }

    fn cookie(&self, value: &str, facts: &Facts<'_>, route_path: &str) -> Option<HeaderValue> {
        let path = self.path.as_deref().unwrap_or(route_path);
        let mut text = format!("{}={value}; Path={path}", self.name);
        if let Some(domain) = &self.domain {
            text.push_str(&format!("; Domain={domain}"));
        }
        if let Some(max_age) = self.max_age {
            text.push_str(&format!("; Max-Age={max_age}"));
        }
        if let Some(expires) = self.expires {
            let at = SystemTime::now() + Duration::from_secs(expires);
            text.push_str(&format!("; Expires={}", httpdate::fmt_http_date(at)));
        }
        text.push_str("; HttpOnly");
        if self.secure || facts.tls {
            text.push_str("; Secure");
        }
        if let Some(same_site) = self.same_site {
            text.push_str(&format!("; SameSite={same_site}"));
        }
        HeaderValue::from_str(&text).ok()
    }
}

/// A name for an endpoint that does not reveal its address.
fn endpoint_id(addr: &std::net::SocketAddr) -> String {
    format!("{:016x}", stable_hash(&[addr.to_string().as_bytes()]))
}

/// The ready endpoint with the highest score for `key`: where a key lands
/// moves only when its endpoint goes, or when a new one outscores it.
fn rendezvous(key: &[u8], set: &EndpointSet, now_ms: u64) -> Option<usize> {
    let addrs = set.addrs();
    (0..addrs.len())
        .filter(|&i| set.pick_index(i, now_ms).is_some())
        .max_by_key(|&i| stable_hash(&[key, addrs[i].to_string().as_bytes()]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn set(n: usize) -> EndpointSet {
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| format!("10.0.0.{}:8080", i + 1).parse().unwrap())
            .collect();
        EndpointSet::new(addrs)
    }

    #[test]
    fn a_scale_up_moves_only_the_share_the_new_endpoint_takes() {
        let (four, five) = (set(4), set(5));
        let keys: Vec<String> = (0..10_000).map(|i| format!("{i:032x}")).collect();
        let on = |s: &EndpointSet, k: &String| s.addrs()[rendezvous(k.as_bytes(), s, 0).unwrap()];
        let moved = keys.iter().filter(|k| on(&four, k) != on(&five, k)).count();
        // A fifth endpoint should take about 1/5 of the sessions, and only those.
        assert!((1_600..2_400).contains(&moved), "{moved}");
        for k in &keys {
            let (before, after) = (on(&four, k), on(&five, k));
            assert!(
                before == after || after == five.addrs()[4],
                "a session moved between old endpoints"
            );
        }
    }

    #[test]
    fn endpoint_ids_are_stable_and_do_not_show_the_address() {
        let a: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        assert_eq!(endpoint_id(&a), endpoint_id(&a));
        assert_eq!(endpoint_id(&a).len(), 16);
        assert!(!endpoint_id(&a).contains("10.0"));
    }
}
