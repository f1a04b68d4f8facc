//! A connection's client certificate, as the client-certificate policy
//! (`policy::client_cert`) verified it after the handshake.

use http::header::HeaderValue;

/// A connection's client certificate, verified once after the handshake.
#[derive(Clone, Debug)]
pub struct PeerCert {
    /// The policy's fingerprint the connection was opened under.
    pub fingerprint: u64,
    pub verdict: Verdict,
    pub subject: Option<HeaderValue>,
    pub issuer: Option<HeaderValue>,
    /// The PEM, URL-escaped, when the policy passes it on.
    pub pem: Option<HeaderValue>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// nginx's `FAILED:<reason>`.
    Failed(String),
    /// No certificate was sent.
    None,
}

impl Verdict {
    /// The value of `ssl-client-verify`.
    pub fn header(&self) -> HeaderValue {
        match self {
            Verdict::Success => HeaderValue::from_static("SUCCESS"),
            Verdict::None => HeaderValue::from_static("NONE"),
            Verdict::Failed(why) => HeaderValue::from_str(&format!("FAILED:{why}"))
                .unwrap_or_else(|_| HeaderValue::from_static("FAILED")),
        }
    }
}
