//! Password hashes as `htpasswd` and `openssl passwd` write them, and their
//! verification.
//!
//! Accepted: `$apr1$` (htpasswd's default) and `$1$` (MD5-crypt), bcrypt
//! (`$2y$`, `$2b$`, `$2a$`), SHA-256-crypt and SHA-512-crypt (`$5$`, `$6$`,
//! with or without `rounds=`), and `{SHA}` (base64 SHA-1). Refused:
//! plain text and DES `crypt` (which silently ignores everything past the
//! eighth character of a password), and anything else.
//!
//! bcrypt and SHA-crypt come from maintained crates (`bcrypt`,
//! `sha-crypt`). No maintained crate implements Apache's MD5 variant
//! without unmaintained dependencies, so `md5_crypt` below follows the
//! published algorithm over the `md-5` crate; it is checked against hashes
//! made by `htpasswd` and `openssl passwd`. Every comparison of a computed
//! hash with the stored one is constant-time.

use base64::Engine;
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// One stored hash, checked for shape when the Secret is read.
#[derive(Clone, Debug)]
pub struct Hash {
    scheme: Scheme,
    text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    /// `$apr1$` or `$1$`: MD5-crypt with that magic string.
    Md5Crypt,
    Bcrypt,
    ShaCrypt,
    /// `{SHA}`: the base64 SHA-1 digest of the password, unsalted.
    Sha1,
}

impl Hash {
    pub fn parse(text: &str) -> Result<Hash, String> {
        let text = text.trim();
        let scheme = if text.starts_with("$apr1$") || text.starts_with("$1$") {
            md5_crypt_parts(text).ok_or("is not a well-formed MD5-crypt hash")?;
            Scheme::Md5Crypt
        } else if ["$2y$", "$2b$", "$2a$"].iter().any(|p| text.starts_with(p)) {
            // `$2y$NN$` + 22 characters of salt + 31 of hash.
            let cost = text.get(4..6).and_then(|c| c.parse::<u32>().ok());
            if text.len() != 60 || !cost.is_some_and(|c| (4..=31).contains(&c)) {
                return Err("is not a well-formed bcrypt hash".into());
            }
            Scheme::Bcrypt
        } else if text.starts_with("$5$") || text.starts_with("$6$") {
            sha_crypt::PasswordHashRef::new(text)
                .map_err(|_| "is not a well-formed SHA-crypt hash")?;
            Scheme::ShaCrypt
        } else if let Some(digest) = text.strip_prefix("{SHA}") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(digest)
                .map_err(|_| "is not a well-formed {SHA} hash")?;
            if bytes.len() != 20 {
                return Err("is not a well-formed {SHA} hash".into());
            }
            Scheme::Sha1
        } else if text.starts_with('$') {
            return Err("uses a hash scheme Gatehouse does not accept".into());
        } else {
            return Err(
                "is plain text or DES crypt, which Gatehouse refuses (use htpasswd -B or -m)"
                    .into(),
            );
        };
        Ok(Hash {
            scheme,
            text: text.to_owned(),
        })
    }

    /// Whether checking costs enough to run off the request's thread
    /// (bcrypt and SHA-crypt take milliseconds by design).
    pub fn is_slow(&self) -> bool {
        matches!(self.scheme, Scheme::Bcrypt | Scheme::ShaCrypt)
    }

    pub fn verify(&self, password: &[u8]) -> bool {
        match self.scheme {
            Scheme::Md5Crypt => {
                let Some((magic, salt, _)) = md5_crypt_parts(&self.text) else {
                    return false;
                };
                let computed = md5_crypt(password, salt.as_bytes(), magic.as_bytes());
                computed.as_bytes().ct_eq(self.text.as_bytes()).into()
            }
            Scheme::Bcrypt => bcrypt::verify(password, &self.text).unwrap_or(false),
            Scheme::ShaCrypt => {
                use sha_crypt::PasswordVerifier;
                sha_crypt::ShaCrypt::default()
                    .verify_password(password, self.text.as_str())
                    .is_ok()
            }
            Scheme::Sha1 => {
                let stored = self.text.strip_prefix("{SHA}").unwrap_or_default();
                let Ok(stored) = base64::engine::general_purpose::STANDARD.decode(stored) else {
                    return false;
                };
                let computed = sha1::Sha1::digest(password);
                computed.as_slice().ct_eq(&stored).into()
            }
        }
    }
}

/// Magic (`$apr1$` or `$1$`), salt and checksum of an MD5-crypt hash.
fn md5_crypt_parts(text: &str) -> Option<(&str, &str, &str)> {
    let magic = if text.starts_with("$apr1$") {
        "$apr1$"
    } else {
        "$1$"
    };
    let (salt, checksum) = text.strip_prefix(magic)?.split_once('$')?;
    let crypt64 = |s: &str| s.bytes().all(|b| CRYPT64.contains(&b));
    let valid = salt.len() <= 8 && crypt64(salt) && checksum.len() == 22 && crypt64(checksum);
    valid.then_some((magic, salt, checksum))
}

const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Poul-Henning Kamp's MD5-crypt, with the magic string as a parameter
/// (Apache's variant only changes it to `$apr1$`). Returns the whole hash.
fn md5_crypt(password: &[u8], salt: &[u8], magic: &[u8]) -> String {
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(magic)
        .chain_update(salt);
    for chunk in password.chunks(16) {
        ctx.update(&alternate[..chunk.len()]);
    }
    // For each bit of the length: a zero byte for a one, the password's
    // first byte for a zero (the original code's quirk, kept by everyone).
    let mut bits = password.len();
    while bits > 0 {
        if bits & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        bits >>= 1;
    }
    let mut digest = ctx.finalize();
    for round in 0..1000 {
        let mut ctx = Md5::new();
        if round % 2 == 1 {
            ctx.update(password);
        } else {
            ctx.update(digest);
        }
        if round % 3 != 0 {
            ctx.update(salt);
        }
        if round % 7 != 0 {
            ctx.update(password);
        }
        if round % 2 == 1 {
            ctx.update(digest);
        } else {
            ctx.update(password);
        }
        digest = ctx.finalize();
    }
    let mut out = String::with_capacity(magic.len() + salt.len() + 23);
    out.push_str(&String::from_utf8_lossy(magic));
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let d = digest;
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        let v = (u32::from(d[a]) << 16) | (u32::from(d[b]) << 8) | u32::from(d[c]);
        push_crypt64(&mut out, v, 4);
    }
    push_crypt64(&mut out, u32::from(d[11]), 2);
    out
}

fn push_crypt64(out: &mut String, mut value: u32, count: usize) {
    for _ in 0..count {
        out.push(char::from(CRYPT64[(value & 0x3f) as usize]));
        value >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with `htpasswd -nbm`, `-nbB -C 5`, `-nbs`, `-nb2`, `-nb5 -r 6000`
    /// and `openssl passwd -1`, `-5`, `-6`; each user's password is its
    /// name with `-secret` for `-user`.
    const MADE_BY_TOOLS: &str = include_str!("../../tests/fixtures/htpasswd/users");

    fn entries() -> Vec<(&'static str, &'static str)> {
        MADE_BY_TOOLS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .collect()
    }

    fn password_of(user: &str) -> String {
        user.replace("-user", "-secret")
    }

    #[test]
    fn every_accepted_format_verifies_the_right_password_only() {
        let mut accepted = 0;
        for (user, text) in entries() {
            let Ok(hash) = Hash::parse(text) else {
                continue;
            };
            accepted += 1;
            assert!(hash.verify(password_of(user).as_bytes()), "{user}");
            assert!(!hash.verify(b"wrong"), "{user}");
            assert!(!hash.verify(b""), "{user}");
        }
        assert_eq!(accepted, 8, "apr1, md5, bcrypt, sha1 and four SHA-crypt");
    }

    #[test]
    fn plain_text_and_des_crypt_are_refused() {
        for (user, text) in entries() {
            if user.starts_with("plain") || user.starts_with("des") {
                assert!(Hash::parse(text).is_err(), "{user}");
            }
        }
        assert!(Hash::parse("$9$unknown").is_err());
        assert!(Hash::parse("$2y$05$short").is_err());
        assert!(Hash::parse("$apr1$salt").is_err());
    }

    #[test]
    fn every_bcrypt_prefix_verifies() {
        let made = bcrypt::hash_with_result("s3cret", 4).expect("hash");
        for version in [
            bcrypt::Version::TwoA,
            bcrypt::Version::TwoB,
            bcrypt::Version::TwoY,
        ] {
            let hash = Hash::parse(&made.format_for_version(version)).expect("parses");
            assert!(hash.verify(b"s3cret"));
            assert!(!hash.verify(b"s3cre"));
        }
    }
}
