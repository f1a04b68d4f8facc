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

    /// An issuer with every field set.
    fn full() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "gatehouse.dev/v1alpha1",
            "kind": "AcmeIssuer",
            "metadata": {"name": "zerossl"},
            "spec": {
                "server": "https://acme.zerossl.com/v2/DV90",
                "email": "ops@example.com",
                "privateKeySecretRef": {"name": "account", "namespace": "gatehouse"},
                "externalAccountBinding": {
                    "keyID": "kid",
                    "keySecretRef": {"name": "eab", "key": "secret"}
                },
                "challenge": "tls-alpn-01",
                "profile": "shortlived",
                "caBundle": "LS0tLS1CRUdJTg=="
            },
            "status": {"conditions": [{
                "type": "Ready", "status": "True", "observedGeneration": 1,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "reason": "Registered", "message": "account registered"
            }]}
        })
    }

    fn crd_schema() -> serde_json::Value {
        let crd = include_str!("../../deploy/base/acmeissuers.yaml");
        let crd: serde_json::Value = serde_yaml_ng::from_str(crd).expect("CRD yaml");
        assert_eq!(crd["spec"]["group"], "gatehouse.dev");
        assert_eq!(crd["spec"]["scope"], "Cluster");
        assert_eq!(crd["spec"]["names"]["kind"], "AcmeIssuer");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        version["schema"]["openAPIV3Schema"].clone()
    }

    /// The CRD is written by hand: every field the type reads and writes
    /// is in its schema, every field of its schema is one the type reads,
    /// and a field is required in one exactly when it is in the other.
    #[test]
    fn acme_issuer_crd_and_type_agree_field_for_field() {
        let schema = crd_schema();
        let value = full();
        let issuer: AcmeIssuer = serde_json::from_value(value.clone()).expect("full issuer");
        let written = serde_json::to_value(&issuer).expect("json");
        for part in ["spec", "status"] {
            assert_eq!(
                written[part], value[part],
                "{part} reads and writes back whole"
            );
            let mut path = part.to_owned();
            // Conditions are metav1.Condition, whose k8s-openapi type
            // reads a missing string as empty: only their fields are
            // compared.
            let required = part == "spec";
            agree(
                &value,
                &[part],
                &schema["properties"][part],
                required,
                &mut path,
            );
        }
        let challenge = &schema["properties"]["spec"]["properties"]["challenge"];
        let variants = [ChallengeType::Http01, ChallengeType::TlsAlpn01]
            .map(|c| serde_json::to_value(c).expect("variant"));
        assert_eq!(challenge["enum"], serde_json::json!(variants));
        assert_eq!(
            challenge["default"],
            serde_json::to_value(ChallengeType::default()).expect("default")
        );
    }

    /// Checks the object at `at` of `whole` against `schema`, property by
    /// property: each is present in the full value, and leaving it out
    /// fails to read exactly when the schema requires it (when
    /// `check_required`).
    fn agree(
        whole: &serde_json::Value,
        at: &[&str],
        schema: &serde_json::Value,
        check_required: bool,
        path: &mut String,
    ) {
        let mut here = whole;
        for step in at {
            here = &here[*step];
        }
        let (value, schema) = match (here, &schema["items"]) {
            (serde_json::Value::Array(items), items_schema) if !items_schema.is_null() => {
                (&items[0], items_schema)
            }
            _ => (here, schema),
        };
        let Some(fields) = value.as_object() else {
            return;
        };
        let properties = schema["properties"].as_object().expect("properties");
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(|n| n.as_str()).collect())
            .unwrap_or_default();
        for name in fields.keys() {
            assert!(
                properties.contains_key(name),
                "{path}.{name} is not in the CRD schema"
            );
        }
        for (name, sub) in properties {
            assert!(
                fields.contains_key(name),
                "{path}.{name} of the CRD is not read by the type"
            );
            let mut deeper: Vec<&str> = at.to_vec();
            deeper.push(name);
            let before = path.len();
            path.push('.');
            path.push_str(name);
            agree(whole, &deeper, sub, check_required, path);
            path.truncate(before);
            if !check_required {
                continue;
            }
            let mut without = whole.clone();
            let mut target = &mut without;
            for step in at {
                target = &mut target[*step];
            }
            if target.is_array() {
                target = &mut target[0];
            }
            target.as_object_mut().expect("object").remove(name);
            let reads = serde_json::from_value::<AcmeIssuer>(without).is_ok();
            let is_required = required.contains(&name.as_str());
            assert_eq!(
                reads, !is_required,
                "{path}.{name}: required in the CRD {is_required}, but read without it {reads}"
            );
        }
    }
}
