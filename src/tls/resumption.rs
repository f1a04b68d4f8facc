//! Session resumption: how long a client may resume, and how long the
//! keys that make that possible live.
//!
//! Tickets (TLS 1.3 and 1.2) are encrypted with a key that is replaced
//! every `TICKET_KEY_ROTATION` (five minutes); the key before it still
//! decrypts, so a ticket is accepted for at most twice that, ten minutes,
//! and clients are told so (the ticket lifetime hint, 600 s). Ten minutes
//! is ingress-nginx's `ssl-session-timeout`; nginx's own default is five
//! (its tickets, though, keep one key for the life of the process). The
//! key is the secret that matters: with TLS 1.2 a ticket carries the
//! session's master secret, so whoever holds a key reads every session
//! whose tickets it sealed. A key that lives ten minutes at most bounds
//! that exposure; rustls's own default (`Ticketer::new`: a new key every
//! 6 h, tickets accepted 12 h) leaves it half a day. TLS 1.3 resumption
//! always adds a fresh ECDHE exchange, so the key does not open resumed
//! TLS 1.3 traffic. The keys are random, in memory only, never logged,
//! and per process (each replica has its own: a client resuming on
//! another replica does a full handshake).
//!
//! TLS 1.2 clients that resume by session id get the same ten minutes:
//! the cache forgets an entry older than that.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::GetRandomFailed;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};

/// How often the ticket key is replaced, in seconds.
pub const TICKET_KEY_ROTATION: u32 = 5 * 60;

/// How long a session may be resumed: a ticket's key is current, then
/// previous, for one rotation each.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(2 * TICKET_KEY_ROTATION as u64);

/// Sessions remembered for TLS 1.2 resumption by session id.
const SESSION_CACHE_ENTRIES: usize = 16_384;

/// The ticketer of every configuration that resumes: keys replaced every
/// `TICKET_KEY_ROTATION`, tickets accepted (and announced) for
/// `SESSION_LIFETIME`.
pub fn ticketer() -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
    Ok(Arc::new(rustls::TicketRotator::new(
        TICKET_KEY_ROTATION,
        one_key,
    )?))
}

/// A new random ticket key: aws-lc-rs's ticket construction (RFC 5077 §4:
/// AES-256-CBC and HMAC-SHA256), whose own six-hour rotation never comes
/// due, since `TicketRotator` drops the key after two rotations.
fn one_key() -> Result<Box<dyn ProducesTickets>, GetRandomFailed> {
    let key = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|_| GetRandomFailed)?;
    Ok(Box::new(OneKey(key)))
}

#[derive(Debug)]
struct OneKey(Arc<dyn ProducesTickets>);

impl ProducesTickets for OneKey {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_KEY_ROTATION
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.encrypt(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.0.decrypt(cipher)
    }
}

/// The session-id cache for TLS 1.2 clients that take no ticket: entries
/// older than `SESSION_LIFETIME` are not resumed.
pub fn session_cache() -> Arc<dyn StoresServerSessions> {
    Arc::new(Expiring {
        cache: ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES),
        lifetime: SESSION_LIFETIME,
    })
}

#[derive(Debug)]
struct Expiring {
    cache: Arc<ServerSessionMemoryCache>,
    lifetime: Duration,
}

/// Seconds since the epoch; each stored session starts with the moment
/// it was stored.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Expiring {
    fn fresh(&self, stored: Vec<u8>) -> Option<Vec<u8>> {
        let (at, session) = stored.split_first_chunk::<8>()?;
        let age = now().saturating_sub(u64::from_be_bytes(*at));
        (age < self.lifetime.as_secs()).then(|| session.to_vec())
    }
}

impl StoresServerSessions for Expiring {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut stored = Vec::with_capacity(8 + value.len());
        stored.extend_from_slice(&now().to_be_bytes());
        stored.extend_from_slice(&value);
        self.cache.put(key, stored)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.fresh(self.cache.get(key)?)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.fresh(self.cache.take(key)?)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_announced_and_accepted_for_ten_minutes() {
        let ticketer = ticketer().unwrap();
        assert_eq!(ticketer.lifetime(), 600);
        assert_eq!(SESSION_LIFETIME, Duration::from_secs(600));
        let ticket = ticketer.encrypt(b"session").unwrap();
        assert_eq!(ticketer.decrypt(&ticket).unwrap(), b"session");
        // Another process's (or a rotated-out) key opens nothing.
        assert!(super::ticketer().unwrap().decrypt(&ticket).is_none());
    }

    #[test]
    fn a_cached_session_is_resumed_only_while_fresh() {
        let cache = Expiring {
            cache: ServerSessionMemoryCache::new(8),
            lifetime: SESSION_LIFETIME,
        };
        assert!(cache.put(b"id".to_vec(), b"secret".to_vec()));
        assert_eq!(cache.get(b"id").unwrap(), b"secret");
        // Stored eleven minutes ago.
        let mut old = (now() - 660).to_be_bytes().to_vec();
        old.extend_from_slice(b"secret");
        cache.cache.put(b"old".to_vec(), old);
        assert!(cache.get(b"old").is_none());
        assert!(cache.take(b"old").is_none());
        assert_eq!(cache.take(b"id").unwrap(), b"secret");
        assert!(cache.get(b"id").is_none(), "taken");
    }
}
