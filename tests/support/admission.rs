//! AdmissionReview bodies as the API server sends them, built from the
//! manifests a user applies, and a client that posts them to the webhook
//! over real HTTPS.

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use rustls::pki_types::CertificateDer;

use super::{https_connect, Leaf, Pki};

/// The name the webhook's certificate is for, as the Service's DNS name.
pub const WEBHOOK_HOST: &str = "gatehouse-admission.gatehouse.svc";

/// The one object of a manifest, as JSON, with what the API server adds
/// before admission (namespace, uid, creationTimestamp).
pub fn object_json(manifest: &str) -> serde_json::Value {
    let mut object: serde_json::Value = serde_yaml_ng::from_str(manifest).expect("manifest");
    let meta = object["metadata"].as_object_mut().expect("metadata");
    meta.entry("namespace").or_insert("test".into());
    meta.insert("uid".into(), uuid().into());
    meta.insert("creationTimestamp".into(), "2030-01-01T00:00:00Z".into());
    meta.insert("generation".into(), 1.into());
    object
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An `admission.k8s.io/v1` AdmissionReview for `operation` (`CREATE`,
/// `UPDATE`) of the manifest's object, field for field as kube-apiserver
/// sends one (`oldObject` on UPDATE, `options`, `userInfo`).
pub fn review(operation: &str, manifest: &str) -> serde_json::Value {
    review_of(operation, object_json(manifest))
}

/// `review` of an object already in JSON.
pub fn review_of(operation: &str, object: serde_json::Value) -> serde_json::Value {
    let api_version = object["apiVersion"]
        .as_str()
        .expect("apiVersion")
        .to_owned();
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let kind = object["kind"].as_str().expect("kind").to_owned();
    let resource = format!("{}s", kind.to_lowercase()).replace("ingresss", "ingresses");
    let gvk = serde_json::json!({"group": group, "version": version, "kind": kind});
    let gvr = serde_json::json!({"group": group, "version": version, "resource": resource});
    let options_kind = match operation {
        "CREATE" => "CreateOptions",
        _ => "UpdateOptions",
    };
    let old = match operation {
        "UPDATE" => object.clone(),
        _ => serde_json::Value::Null,
    };
    serde_json::json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uuid(),
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {
                "username": "kubernetes-admin",
                "groups": ["kubeadm:cluster-admins", "system:authenticated"]
            },
            "object": object,
            "oldObject": old,
            "dryRun": false,
            "options": {
                "kind": options_kind,
                "apiVersion": "meta.k8s.io/v1",
                "fieldManager": "kubectl-client-side-apply",
                "fieldValidation": "Strict"
            }
        }
    })
}

/// The webhook's certificate and key, written as a mounted Secret would
/// be, and the CA that signed them.
pub struct WebhookCertificate {
    pub pki: Pki,
    pub leaf: Leaf,
    pub certificate: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl WebhookCertificate {
    pub fn write(dir: &Path) -> WebhookCertificate {
        let pki = Pki::named("Gatehouse webhook test CA");
        let leaf = pki.leaf(WEBHOOK_HOST);
        let (certificate, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&certificate, &leaf.cert_pem).expect("write certificate");
        std::fs::write(&key, &leaf.key_pem).expect("write key");
        WebhookCertificate {
            pki,
            leaf,
            certificate,
            key,
        }
    }

    pub fn config(&self) -> gatehouse::admission::WebhookConfig {
        gatehouse::admission::WebhookConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            certificate: gatehouse::admission::CertificateSource::Files {
                certificate: self.certificate.clone(),
                key: self.key.clone(),
            },
            admission: Default::default(),
            limits: Default::default(),
        }
    }
}

/// What the webhook answered: the HTTP status, and the body as JSON when
/// it is JSON (else as a string).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl Answer {
    pub fn allowed(&self) -> bool {
        self.response()["allowed"].as_bool().expect("allowed")
    }

    pub fn response(&self) -> &serde_json::Value {
        assert_eq!(self.status, StatusCode::OK, "{:?}", self.body);
        &self.body["response"]
    }

    pub fn message(&self) -> String {
        self.response()["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn warnings(&self) -> Vec<String> {
        let warnings = self.response()["warnings"].as_array().cloned();
        warnings
            .unwrap_or_default()
            .into_iter()
            .map(|w| w.as_str().expect("warning").to_owned())
            .collect()
    }
}

/// POSTs `body` to the webhook over HTTPS on `path`, verifying its
/// certificate against `ca` for `WEBHOOK_HOST`.
pub async fn post(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    path: &str,
    body: impl Into<Bytes>,
) -> Answer {
    let (mut sender, _) = https_connect(addr, WEBHOOK_HOST, ca).await;
    let request = Request::post(path)
        .header("host", WEBHOOK_HOST)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .expect("request");
    let response = sender.send_request(request).await.expect("webhook answers");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned().into());
    Answer { status, body }
}

/// `post` of a review, on ingress-nginx's path.
pub async fn ask(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    review: &serde_json::Value,
) -> Answer {
    let body = serde_json::to_vec(review).expect("json");
    let answer = post(addr, ca, "/networking/v1/ingresses", body).await;
    let uid = &review["request"]["uid"];
    assert_eq!(
        answer.response()["uid"],
        *uid,
        "the answer names the review"
    );
    answer
}
