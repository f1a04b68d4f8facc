//! `ssl-protocols` and `ssl-ciphers` onto what rustls offers.
//!
//! rustls speaks TLS 1.2 and 1.3 only, and only AEAD suites with forward
//! secrecy; OpenSSL names for anything else are named in a warning and left
//! out. As with nginx's `ssl_ciphers`, the list chooses TLS 1.2 suites
//! only: TLS 1.3 suites are always offered.

use rustls::{CipherSuite, SupportedCipherSuite};

use crate::tls::TlsSettings;

/// OpenSSL's names for the TLS 1.2 suites rustls has.
const OPENSSL_NAMES: &[(&str, CipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// OpenSSL keywords that select a set rather than one suite; each stands
/// for every TLS 1.2 suite rustls has.
const KEYWORDS: &[&str] = &[
    "HIGH", "DEFAULT", "ALL", "ECDHE", "EECDH", "AESGCM", "CHACHA20",
];

/// `ssl-protocols`: space-separated names (`TLSv1.2 TLSv1.3`). Versions
/// rustls does not have are named; with none left, the value is refused.
pub fn protocols(value: &str, settings: &mut TlsSettings) -> Result<Option<String>, String> {
    let (mut tls12, mut tls13, mut unsupported) = (false, false, Vec::new());
    for name in value.split_whitespace() {
        match name {
            "TLSv1.2" => tls12 = true,
            "TLSv1.3" => tls13 = true,
            other => unsupported.push(other),
        }
    }
    if !tls12 && !tls13 {
        return Err("names neither TLSv1.2 nor TLSv1.3, the versions Gatehouse speaks".into());
    }
    (settings.tls12, settings.tls13) = (tls12, tls13);
    Ok((!unsupported.is_empty()).then(|| {
        format!(
            "{} left out: Gatehouse speaks TLSv1.2 and TLSv1.3 only",
            unsupported.join(", ")
        )
    }))
}

/// `ssl-ciphers`: an OpenSSL cipher list (`:`-separated). Names of suites
/// rustls has are kept in order; `!` or `-` removes one; set keywords
/// (`HIGH`, `DEFAULT` …) stand for all of them. Returns a note naming
/// what was left out; with no suite left, the value is refused.
pub fn ciphers(value: &str, settings: &mut TlsSettings) -> Result<Option<String>, String> {
    let available = crate::tls::provider().cipher_suites.clone();
    let find = |suite: CipherSuite| available.iter().find(|s| s.suite() == suite).copied();
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    let mut removed: Vec<CipherSuite> = Vec::new();
    let mut left_out = Vec::new();
    for token in value
        .split([':', ',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let (negated, name) = match token.strip_prefix(['!', '-']) {
            Some(name) => (true, name),
            None => (false, token.trim_start_matches('+')),
        };
        if name.starts_with('@') {
            continue; // @STRENGTH, @SECLEVEL=n: ordering and levels
        }
        let suites: Vec<CipherSuite> = match OPENSSL_NAMES.iter().find(|(n, _)| *n == name) {
            Some((_, suite)) => vec![*suite],
            None if KEYWORDS.contains(&name) => OPENSSL_NAMES.iter().map(|(_, s)| *s).collect(),
            // Excluding what rustls lacks anyway (`!aNULL`, `!MD5`) changes nothing.
            None if negated => continue,
            None => {
                left_out.push(name.to_owned());
                continue;
            }
        };
        for suite in suites {
            if negated {
                removed.push(suite);
                chosen.retain(|s| s.suite() != suite);
            } else if !removed.contains(&suite) && !chosen.iter().any(|s| s.suite() == suite) {
                chosen.extend(find(suite));
            }
        }
    }
    if chosen.is_empty() {
        return Err(
            "names no TLS 1.2 cipher suite that Gatehouse has (ECDHE with AES-GCM or ChaCha20-Poly1305)"
                .into(),
        );
    }
    settings.tls12_suites = Some(chosen);
    Ok((!left_out.is_empty())
        .then(|| format!("{} left out: not supported by rustls", left_out.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_nginx_default_ciphers_keep_the_ecdhe_suites_and_name_the_rest() {
        let mut settings = TlsSettings::default();
        let note = ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256", &mut settings).unwrap();
        assert_eq!(settings.tls12_suites.as_ref().unwrap().len(), 6);
        assert_eq!(
            settings.tls12_suites.as_ref().unwrap()[0].suite(),
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        );
        let note = note.unwrap();
        assert!(note.contains("DHE-RSA-AES256-GCM-SHA384"), "{note}");
    }

    #[test]
    fn exclusions_and_keywords() {
        let mut settings = TlsSettings::default();
        ciphers("HIGH:!aNULL:!ECDHE-RSA-CHACHA20-POLY1305", &mut settings).unwrap();
        let suites = settings.tls12_suites.unwrap();
        assert_eq!(suites.len(), 5);
        assert!(!suites
            .iter()
            .any(|s| s.suite() == CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256));
        let mut settings = TlsSettings::default();
        assert!(ciphers("AES128-SHA:DES-CBC3-SHA", &mut settings).is_err());
        assert_eq!(settings, TlsSettings::default());
    }

    #[test]
    fn protocols_rustls_lacks_are_named() {
        let mut settings = TlsSettings::default();
        let note = protocols("TLSv1 TLSv1.1 TLSv1.3", &mut settings).unwrap();
        assert!(!settings.tls12 && settings.tls13);
        assert!(note.unwrap().contains("TLSv1, TLSv1.1"));
        assert!(protocols("SSLv3", &mut TlsSettings::default()).is_err());
    }
}
