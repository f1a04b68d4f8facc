//! Basic authentication: `auth-type: basic`, `auth-secret`,
//! `auth-secret-type` and `auth-realm`, with ingress-nginx's meaning.
//!
//! The Secret is read when the table is built: `auth-file` (the default)
//! holds htpasswd lines under the key `auth`; `auth-map` holds one user per
//! key, the hash as its value. A user whose hash Gatehouse does not accept
//! cannot sign in (with a warning); a Secret with no usable user closes the
//! route. A rotated Secret is a new table, so it takes effect at once.
//!
//! Verified credentials are remembered (as a SHA-256 digest, never the
//! password) so that a bcrypt check runs once per client and Secret, not on
//! every request of a keep-alive connection.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::Engine;
use http::header::{self, HeaderMap, HeaderValue};
use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest, Sha256};

use super::htpasswd::Hash;
use super::objects::ObjectLookup;
use super::protection::{AccessOptions, Problems};
use super::Annotations;
use crate::cluster::ObjectKey;

/// Verified credentials kept per Secret; past this the memory starts over.
const VERIFIED_CAPACITY: usize = 4096;

pub struct BasicAuth {
    secret: ObjectKey,
    /// `Basic realm="…"`, sent with every 401.
    challenge: HeaderValue,
    users: HashMap<String, Hash>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

/// Users and hashes are never printed.
impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("secret", &self.secret)
            .field("users", &self.users.len())
            .finish()
    }
}

impl BasicAuth {
    /// The basic authentication an Ingress asks for, if any. Every reason
    /// it cannot be enforced is added to `problems`; `notes` gets what is
    /// worth a warning but leaves the route protected.
    pub fn compile(
        annotations: &Annotations<'_>,
        secrets: &ObjectLookup<'_>,
        options: &AccessOptions,
        problems: &mut Problems,
        notes: &mut Vec<String>,
    ) -> Option<Arc<BasicAuth>> {
        let auth_type = annotations.get("auth-type");
        let related = ["auth-secret", "auth-secret-type", "auth-realm"];
        let Some((type_key, kind)) = auth_type else {
            // Without auth-type ingress-nginx ignores these and serves the
            // route open; an Ingress that names a password Secret meant to
            // protect something, so here it is closed instead.
            for name in related {
                if let Some((key, _)) = annotations.get(name) {
                    problems.add(&key, "is set without auth-type".into());
                }
            }
            return None;
        };
        match kind {
            "basic" => {}
            "digest" => {
                problems.add(&type_key, "digest is not supported".into());
                return None;
            }
            other => {
                problems.add(&type_key, format!("{other:?} is not basic or digest"));
                return None;
            }
        }
        let realm = match annotations.get("auth-realm") {
            Some((key, realm)) => match challenge(realm) {
                Ok(c) => c,
                Err(why) => {
                    problems.add(&key, why);
                    return None;
                }
            },
            None => HeaderValue::from_static("Basic realm=\"\""),
        };
        let map = match annotations.get("auth-secret-type") {
            None => false,
            Some((_, "auth-file")) => false,
            Some((_, "auth-map")) => true,
            Some((key, other)) => {
                problems.add(&key, format!("{other:?} is not auth-file or auth-map"));
                return None;
            }
        };
        let Some((secret_key, reference)) = annotations.get("auth-secret") else {
            problems.add(&type_key, "basic needs auth-secret".into());
            return None;
        };
        let (key, secret) = match secrets.secret(reference, options) {
            Ok(found) => found,
            Err(why) => {
                problems.add(&secret_key, why);
                return None;
            }
        };
        let entries = match entries(secret, map) {
            Ok(entries) => entries,
            Err(why) => {
                problems.add(&secret_key, format!("Secret {key} {why}"));
                return None;
            }
        };
        let mut users = HashMap::with_capacity(entries.len());
        for (user, text) in entries {
            match Hash::parse(&text) {
                Ok(hash) => {
                    users.insert(user, hash);
                }
                Err(why) => notes.push(format!(
                    "Secret {key}: the hash of user {user:?} {why}; that user cannot sign in"
                )),
            }
        }
        if users.is_empty() {
            problems.add(&secret_key, format!("Secret {key} holds no usable user"));
            return None;
        }
        Some(Arc::new(BasicAuth {
            secret: key,
            challenge: realm,
            users,
            verified: Mutex::new(HashSet::new()),
        }))
    }

    pub fn secret(&self) -> &ObjectKey {
        &self.secret
    }

    /// `WWW-Authenticate` for a 401.
    pub fn challenge(&self) -> &HeaderValue {
        &self.challenge
    }

    /// Whether the request's `Authorization` names a user with the right
    /// password. Slow hashes are checked on the blocking pool.
    pub async fn admits(self: &Arc<Self>, headers: &HeaderMap) -> bool {
        let Some(credentials) = credentials(headers) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(&credentials).into();
        if self.remembers(&digest) {
            return true;
        }
        let Some(colon) = credentials.iter().position(|b| *b == b':') else {
            return false;
        };
        let user = String::from_utf8_lossy(&credentials[..colon]).into_owned();
        let Some(hash) = self.users.get(&user) else {
            return false;
        };
        let verified = if hash.is_slow() {
            // At most one slow check per core at a time: a flood of wrong
            // passwords queues here instead of taking every core from the
            // traffic that is already signed in.
            let Ok(_turn) = slow_checks().acquire().await else {
                return false;
            };
            let auth = self.clone();
            let check = tokio::task::spawn_blocking(move || {
                let password = &credentials[colon + 1..];
                auth.users.get(&user).is_some_and(|h| h.verify(password))
            });
            check.await.unwrap_or(false)
        } else {
            hash.verify(&credentials[colon + 1..])
        };
        if verified {
            self.remember(digest);
        }
        verified
    }

    fn remembers(&self, digest: &[u8; 32]) -> bool {
        self.verified
            .lock()
            .map(|set| set.contains(digest))
            .unwrap_or(false)
    }

    fn remember(&self, digest: [u8; 32]) {
        if let Ok(mut set) = self.verified.lock() {
            if set.len() >= VERIFIED_CAPACITY {
                set.clear();
            }
            set.insert(digest);
        }
    }
}

fn slow_checks() -> &'static tokio::sync::Semaphore {
    static CHECKS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    CHECKS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

/// The decoded `user:password` of a `Basic` Authorization header.
fn credentials(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at(value.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(token.trim_ascii())
        .ok()
}

/// `Basic realm="<realm>"`, with `"` and `\` escaped as a quoted-string.
fn challenge(realm: &str) -> Result<HeaderValue, String> {
    if realm.len() > 256 || realm.chars().any(char::is_control) {
        return Err("is not a realm (at most 256 printable characters)".into());
    }
    let escaped = realm.replace('\\', "\\\\").replace('"', "\\\"");
    HeaderValue::from_str(&format!("Basic realm=\"{escaped}\""))
        .map_err(|_| "is not a realm (at most 256 printable characters)".into())
}

/// (user, hash) pairs of an `auth-file` or `auth-map` Secret.
fn entries(secret: &Secret, map: bool) -> Result<Vec<(String, String)>, String> {
    let data = secret.data.as_ref();
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|_| "is not UTF-8");
    if map {
        let data = data.filter(|d| !d.is_empty()).ok_or("has no users")?;
        return data
            .iter()
            .map(|(user, hash)| Ok((user.clone(), text(&hash.0)?)))
            .collect();
    }
    let file = data
        .and_then(|d| d.get("auth"))
        .ok_or("has no key \"auth\"")?;
    let file = text(&file.0)?;
    let mut entries = Vec::new();
    for line in file.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line
            .split_once(':')
            .ok_or("has a line that is not user:hash")?;
        entries.push((user.to_owned(), hash.to_owned()));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(data: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    fn basic(user_pass: &str) -> HeaderMap {
        let token = base64::engine::general_purpose::STANDARD.encode(user_pass);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
        );
        headers
    }

    #[test]
    fn realms_are_quoted_strings() {
        assert_eq!(
            challenge("Staff \"only\"").unwrap(),
            "Basic realm=\"Staff \\\"only\\\"\""
        );
        assert!(challenge("line\nbreak").is_err());
    }

    #[test]
    fn auth_files_skip_comments_and_blank_lines() {
        let s = secret(&[("auth", "# staff\n\nalice:$apr1$x$y\n bob:{SHA}z \n")]);
        let found = entries(&s, false).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[1], ("bob".into(), "{SHA}z".into()));
        assert!(entries(&secret(&[("users", "x")]), false).is_err());
    }

    #[test]
    fn auth_maps_take_every_key_as_a_user() {
        let s = secret(&[("alice", "$apr1$x$y"), ("bob", "{SHA}z")]);
        assert_eq!(entries(&s, true).unwrap().len(), 2);
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_bad_tokens_fail() {
        let mut h = basic("a:b");
        assert_eq!(credentials(&h).unwrap(), b"a:b");
        let lower = h[header::AUTHORIZATION]
            .to_str()
            .unwrap()
            .replace("Basic", "basic");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&lower).unwrap(),
        );
        assert_eq!(credentials(&h).unwrap(), b"a:b");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert!(credentials(&h).is_none());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(credentials(&h).is_none());
    }

    #[tokio::test]
    async fn a_verified_password_is_remembered_and_a_wrong_one_is_not() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let auth = Arc::new(BasicAuth {
            secret: ObjectKey::new("ns", "s"),
            challenge: HeaderValue::from_static("Basic realm=\"\""),
            users: HashMap::from([("alice".to_owned(), Hash::parse(&hash).unwrap())]),
            verified: Mutex::new(HashSet::new()),
        });
        assert!(!auth.admits(&basic("alice:nope")).await);
        assert!(!auth.admits(&basic("mallory:pw")).await);
        assert!(auth.verified.lock().unwrap().is_empty());
        assert!(auth.admits(&basic("alice:pw")).await);
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
        assert!(auth.admits(&basic("alice:pw")).await);
        assert!(!auth.admits(&basic("alice:pw2")).await);
    }
}
