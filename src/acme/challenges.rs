//! The answers to HTTP-01 challenges, as every replica serves them.
//!
//! Only the elected replica talks to the CA, but the CA may validate
//! against any replica, so the answers are published in the cluster: one
//! Secret, `gatehouse-acme-challenges` in the controller's namespace,
//! whose data key `http-01.TOKEN` holds the key authorization for TOKEN.
//! Every replica reads it like any other object (with `--manifests`, a
//! Secret of that name in the directory), and translate puts the answers
//! into the routing table, where they come before every route.
//!
//! Why a Secret and not a ConfigMap: TLS-ALPN-01 answers are certificates
//! with private keys, and they will live in the same object; a Secret is
//! what RBAC, encryption at rest and Gatehouse's own logging already treat
//! as key material. Why one fixed name in the controller's namespace and
//! not a label: whoever can write the object can answer challenges for
//! every host, so it must be one object only the controller's namespace
//! holds, never one a tenant can create beside their Ingress.
//!
//! Answers are served on every host: a token is a random value of at
//! least 128 bits that only the CA and the elected replica know, so an
//! answer reveals nothing on another host, and a request for any other
//! token falls through to the routes as before.

use std::collections::BTreeMap;

use bytes::Bytes;
use k8s_openapi::api::core::v1::Secret;

/// The path HTTP-01 challenges are fetched under (RFC 8555 §8.3).
pub const PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// The name of the Secret, in the controller's namespace, that holds the
/// challenge answers.
pub const CHALLENGES_SECRET: &str = "gatehouse-acme-challenges";

/// The prefix of the data keys that hold HTTP-01 answers.
const HTTP01_KEY_PREFIX: &str = "http-01.";

/// HTTP-01 answers: token to key authorization.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChallengeAnswers {
    http01: BTreeMap<String, Bytes>,
}

impl ChallengeAnswers {
    /// The answers the Secret holds, and what was wrong with the entries
    /// left out (each names its data key, never its value).
    pub fn from_secret(secret: &Secret) -> (ChallengeAnswers, Vec<String>) {
        let mut answers = ChallengeAnswers::default();
        let mut problems = Vec::new();
        for (key, value) in secret.data.iter().flatten() {
            let Some(token) = key.strip_prefix(HTTP01_KEY_PREFIX) else {
                problems.push(format!(
                    "data key {key}: not an `http-01.TOKEN` answer; ignored"
                ));
                continue;
            };
            match key_authorization(token, &value.0) {
                Ok(answer) => drop(answers.http01.insert(token.to_owned(), answer)),
                Err(why) => problems.push(format!("data key {key}: {why}; ignored")),
            }
        }
        (answers, problems)
    }

    pub fn is_empty(&self) -> bool {
        self.http01.is_empty()
    }

    pub fn len(&self) -> usize {
        self.http01.len()
    }

    /// The key authorization to answer a request for `path` with, when
    /// the path is exactly a known token's.
    pub fn answer(&self, path: &str) -> Option<&Bytes> {
        let token = path.strip_prefix(PATH_PREFIX)?;
        self.http01.get(token)
    }
}

/// The data key that holds the answer for `token`.
pub fn http01_key(token: &str) -> String {
    format!("{HTTP01_KEY_PREFIX}{token}")
}

/// RFC 8555 §8.1: a key authorization is `token.thumbprint`, both
/// base64url; §8.3: a token is base64url.
fn key_authorization(token: &str, value: &[u8]) -> Result<Bytes, &'static str> {
    if token.is_empty() || !token.bytes().all(is_base64url) {
        return Err("the token is not base64url");
    }
    let value = value.strip_suffix(b"\n").unwrap_or(value);
    let thumbprint = value
        .strip_prefix(token.as_bytes())
        .and_then(|rest| rest.strip_prefix(b"."));
    match thumbprint {
        Some(t) if !t.is_empty() && t.iter().copied().all(is_base64url) => {
            Ok(Bytes::copy_from_slice(value))
        }
        _ => Err("the value is not a key authorization `TOKEN.THUMBPRINT` for this token"),
    }
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(entries: &[(&str, &str)]) -> Secret {
        let data = entries
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect();
        Secret {
            data: Some(data),
            ..Secret::default()
        }
    }

    #[test]
    fn acme_answers_exact_token_paths_only() {
        let (answers, problems) =
            ChallengeAnswers::from_secret(&secret(&[("http-01.tok_1-A", "tok_1-A.thumb_2")]));
        assert!(problems.is_empty(), "{problems:?}");
        let path = "/.well-known/acme-challenge/tok_1-A";
        assert_eq!(
            answers.answer(path).map(|b| &b[..]),
            Some(&b"tok_1-A.thumb_2"[..])
        );
        for other in [
            "/.well-known/acme-challenge/other",
            "/.well-known/acme-challenge/tok_1-A/x",
            "/.well-known/acme-challenge/",
            "/tok_1-A",
        ] {
            assert_eq!(answers.answer(other), None, "{other}");
        }
    }

    #[test]
    fn acme_entries_that_are_not_key_authorizations_are_left_out_and_named() {
        let (answers, problems) = ChallengeAnswers::from_secret(&secret(&[
            ("http-01.good", "good.thumb\n"),
            ("http-01.bad", "<script>"),
            ("http-01.other", "good.thumb"),
            ("tls.crt", "x"),
        ]));
        assert_eq!(answers.len(), 1);
        assert_eq!(
            answers
                .answer("/.well-known/acme-challenge/good")
                .map(|b| &b[..]),
            Some(&b"good.thumb"[..])
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems.iter().all(|p| !p.contains("<script>")),
            "{problems:?}"
        );
    }
}
