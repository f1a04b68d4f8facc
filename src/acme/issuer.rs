//! `AcmeIssuer` (`gatehouse.dev/v1alpha1`, cluster-scoped): an ACME
//! account at one CA. Its `spec` mirrors the `spec.acme` of a
//! cert-manager (Cluster)Issuer, so that one can be copied over: `solvers`
//! becomes `challenge`, and `privateKeySecretRef` names its namespace.
//!
//! The CRD in `deploy/base/acmeissuers.yaml` is written by hand (as the
//! Gateway API's are kept); a test checks that it and these types agree
//! field for field. Defaults the schema declares are declared here too,
//! so the manifests source reads an object as the API server would.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// An ACME account: the directory, the contact, where its key lives.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "gatehouse.dev",
    version = "v1alpha1",
    kind = "AcmeIssuer",
    derive = "PartialEq",
    status = "AcmeIssuerStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct AcmeIssuerSpec {
    /// The ACME directory URL, e.g.
    /// `https://acme-v02.api.letsencrypt.org/directory`.
    pub server: String,
    /// The account's contact address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The Secret that holds the account key (created when absent).
    pub private_key_secret_ref: SecretRef,
    /// External account binding, for CAs that require one (ZeroSSL,
    /// Google Trust Services, Sectigo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_account_binding: Option<ExternalAccountBinding>,
    /// How the CA checks control of a name.
    #[serde(default)]
    pub challenge: ChallengeType,
    /// The certificate profile to ask for, where the CA offers profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Base64 of PEM CA certificates to trust the ACME server's HTTPS
    /// with (a private CA); absent, the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
}

/// A Secret by name and namespace (an `AcmeIssuer` has no namespace of
/// its own); no namespace means the controller's.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct SecretRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// RFC 8555 §7.3.4: the key identifier and MAC key the CA gave out.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAccountBinding {
    #[serde(rename = "keyID")]
    pub key_id: String,
    pub key_secret_ref: SecretKeyRef,
}

/// One key of a Secret (in the account key's namespace).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct SecretKeyRef {
    pub name: String,
    /// The key of the Secret's data; absent, `secret`, as cert-manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The challenge an issuer answers.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum ChallengeType {
    /// A file at `/.well-known/acme-challenge/TOKEN` over plain HTTP.
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// A certificate offered for the `acme-tls/1` protocol on port 443.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

/// Whether the account is registered (`Ready`), and why not.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct AcmeIssuerStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acme_issuer_copied_from_cert_manager_reads_with_defaults() {
        let yaml = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: AcmeIssuer
metadata: {name: letsencrypt}
spec:
  server: https://acme-v02.api.letsencrypt.org/directory
  email: ops@example.com
  privateKeySecretRef: {name: letsencrypt-account, namespace: gatehouse}
  externalAccountBinding:
    keyID: kid-1
    keySecretRef: {name: eab}
"#;
        let issuer: AcmeIssuer = serde_yaml_ng::from_str(yaml).expect("issuer");
        assert_eq!(issuer.spec.challenge, ChallengeType::Http01);
        let eab = issuer.spec.external_account_binding.expect("eab");
        assert_eq!(eab.key_id, "kid-1");
        assert_eq!(eab.key_secret_ref.key, None);
        let tls: ChallengeType = serde_yaml_ng::from_str("tls-alpn-01").expect("enum");
        assert_eq!(tls, ChallengeType::TlsAlpn01);
        assert!(serde_yaml_ng::from_str::<ChallengeType>("dns-01").is_err());
    }
}
