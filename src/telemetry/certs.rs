//! What a served certificate says about itself, for `/debug/certs`, the
//! expiry metric and `gatehouse routes`. Reads only the public certificate.

use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

#[derive(Debug, Clone, serde::Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub sans: Vec<String>,
    /// RFC 3339.
    pub not_after: String,
    pub not_after_unix: i64,
    pub not_before_unix: i64,
    /// Certificates served: the leaf and its intermediates.
    pub chain_length: usize,
}

pub fn describe(key: &CertifiedKey) -> Option<CertInfo> {
    let leaf = key.cert.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .map(|name| match name {
                    GeneralName::DNSName(dns) => dns.to_string(),
                    GeneralName::IPAddress(ip) => format!("ip:{}", hex(ip)),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let not_after = cert.validity().not_after;
    Some(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sans,
        not_after: not_after
            .to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| not_after.to_string()),
        not_after_unix: not_after.timestamp(),
        not_before_unix: cert.validity().not_before.timestamp(),
        chain_length: key.cert.len(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
