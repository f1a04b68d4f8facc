//! ACME HTTP-01 answers, served by every replica from the challenge
//! Secret (`gatehouse-acme-challenges` in the controller's namespace):
//! exact, ahead of every Ingress path and of the HTTPS redirect, and gone
//! with the Secret.

use crate::support;

use std::time::Duration;

use http::StatusCode;
use support::*;

const TOKEN: &str = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
const KEY_AUTHORIZATION: &str =
    "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI";
const ANSWERS_FILE: &str = "acme.yaml";

/// The challenge Secret in `namespace` with one answer.
fn challenge_secret(namespace: &str, token: &str, key_authorization: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Secret
metadata: {{name: gatehouse-acme-challenges, namespace: {namespace}}}
type: Opaque
stringData:
  http-01.{token}: {key_authorization}
"
    )
}

/// `shop.test` with a Prefix `/` rule to `web`, TLS (so plain HTTP is
/// redirected) and `force-ssl-redirect`; the challenge Secret in its own
/// file.
async fn site(answers: String) -> Site {
    Site::builder()
        .backend("web")
        .await
        .certificate("shop.test", "shop-tls")
        .manifests(ingress_annotated(
            "shop",
            "shop.test",
            "/",
            "web",
            Some("shop-tls"),
            &[("nginx.ingress.kubernetes.io/force-ssl-redirect", "true")],
        ))
        .file(ANSWERS_FILE, answers)
        .start()
        .await
}

fn challenge_path(token: &str) -> String {
    format!("/.well-known/acme-challenge/{token}")
}

#[tokio::test]
async fn a_published_answer_is_served_over_http_despite_a_prefix_rule_and_ssl_redirect() {
    let site = site(challenge_secret("default", TOKEN, KEY_AUTHORIZATION)).await;
    let addr = site.gatehouse.http_addr;
    // The host redirects plain HTTP, and its `/` rule takes every path.
    let other = http_get(addr, "shop.test", "/cart").await;
    assert_eq!(other.status, StatusCode::PERMANENT_REDIRECT);

    let reply = http_get(addr, "shop.test", &challenge_path(TOKEN)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(&b"text/plain"[..])
    );
    assert_eq!(reply.body, KEY_AUTHORIZATION.as_bytes());
    // On a host no Ingress names, too: the CA asks for whatever host the
    // order names.
    let reply = http_get(addr, "elsewhere.test", &challenge_path(TOKEN)).await;
    assert_eq!(reply.body, KEY_AUTHORIZATION.as_bytes());
}

#[tokio::test]
async fn an_unknown_token_goes_to_the_ingress_backend_as_before() {
    let site = site(challenge_secret("default", TOKEN, KEY_AUTHORIZATION)).await;
    let reply = http_get(
        site.gatehouse.http_addr,
        "shop.test",
        &challenge_path("someone-elses-token"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.backend(), "web");
    // Nor does a longer path under the token answer.
    let deeper = format!("{}/more", challenge_path(TOKEN));
    let reply = http_get(site.gatehouse.http_addr, "shop.test", &deeper).await;
    assert_eq!(reply.backend(), "web");
}

#[tokio::test]
async fn removing_the_secret_stops_the_answer_and_a_new_one_starts_it() {
    let site = site(challenge_secret("default", TOKEN, KEY_AUTHORIZATION)).await;
    let addr = site.gatehouse.http_addr;
    let reply = http_get(addr, "shop.test", &challenge_path(TOKEN)).await;
    assert_eq!(reply.body, KEY_AUTHORIZATION.as_bytes());

    std::fs::remove_file(site.dir.path().join(ANSWERS_FILE)).expect("remove the answers");
    eventually("the answer to go", Duration::from_secs(10), async || {
        let reply = http_get(addr, "shop.test", &challenge_path(TOKEN)).await;
        reply.status == StatusCode::OK && reply.body != KEY_AUTHORIZATION.as_bytes()
    })
    .await;
    let reply = http_get(addr, "shop.test", &challenge_path(TOKEN)).await;
    assert_eq!(reply.backend(), "web");

    let (token, answer) = ("second-token", "second-token.thumbprint");
    write_atomically(
        &site.dir.path().join(ANSWERS_FILE),
        &challenge_secret("default", token, answer),
    );
    eventually("the new answer", Duration::from_secs(10), async || {
        http_get(addr, "shop.test", &challenge_path(token))
            .await
            .body
            == answer.as_bytes()
    })
    .await;
}

/// Whoever can write the answers can get certificates for every host: a
/// Secret of the same name in a tenant's namespace answers nothing.
#[tokio::test]
async fn a_challenge_secret_outside_the_controller_namespace_answers_nothing() {
    let site = site(challenge_secret("test", TOKEN, KEY_AUTHORIZATION)).await;
    let reply = http_get(
        site.gatehouse.http_addr,
        "shop.test",
        &challenge_path(TOKEN),
    )
    .await;
    assert_eq!(reply.backend(), "web");
}

/// From the Kubernetes API: the challenge Secret keeps its data though no
/// Ingress names it, and its deletion stops the answer.
#[tokio::test]
async fn the_kube_source_serves_the_answers_of_the_controller_namespace_secret() {
    use gatehouse::app::SourceConfig;
    use gatehouse::source::kube::KubeSource;
    use support::fake_api::FakeApi;

    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            ingress("shop", "shop.test", "/", "web", None),
            challenge_secret("default", TOKEN, KEY_AUTHORIZATION),
        ]
        .concat(),
    );
    let mut config = config_for(std::path::Path::new("."));
    config.source = SourceConfig::Kube(KubeSource {
        // The Ingresses' namespace and the controller's (`default`,
        // without $POD_NAMESPACE), where the challenge Secret is.
        namespaces: vec!["test".into(), "default".into()],
        ..kube_source(api.client())
    });
    let gatehouse = tokio::time::timeout(Duration::from_secs(20), gatehouse::app::start(config))
        .await
        .expect("initial sync in time")
        .expect("start");
    let addr = gatehouse.http_addr;
    eventually("the answer", Duration::from_secs(20), async || {
        let reply = http_get(addr, "shop.test", &challenge_path(TOKEN)).await;
        (reply.body == KEY_AUTHORIZATION.as_bytes())
            .then_some(())
            .ok_or(reply.status)
    })
    .await;

    api.delete("v1", "Secret", "default", "gatehouse-acme-challenges");
    eventually("the answer to go", Duration::from_secs(20), async || {
        let reply = http_get(addr, "shop.test", &challenge_path(TOKEN)).await;
        reply.status == StatusCode::OK && reply.body != KEY_AUTHORIZATION.as_bytes()
    })
    .await;
}

/// A TLS-ALPN-01 validation certificate for `host` (RFC 8737 §3), PEM,
/// certificate then key; and the certificate's DER.
fn validation_certificate(host: &str) -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()]).expect("params");
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(&[9; 32])];
    let cert = params.self_signed(&key).expect("certificate");
    (
        format!("{}{}", cert.pem(), key.serialize_pem()),
        cert.der().to_vec(),
    )
}

/// Only a handshake that offers `acme-tls/1` gets the validation
/// certificate, and its connection ends after the handshake; every other
/// handshake for the host gets the host's certificate as before.
#[tokio::test]
async fn a_tls_alpn_answer_is_offered_only_to_acme_tls_handshakes() {
    use tokio::io::AsyncReadExt;

    let (pem, der) = validation_certificate("shop.test");
    let indented = pem.replace('\n', "\n    ");
    let answers = format!(
        "---
apiVersion: v1
kind: Secret
metadata: {{name: gatehouse-acme-challenges, namespace: default}}
type: Opaque
stringData:
  tls-alpn-01.shop.test: |
    {indented}
"
    );
    let site = site(answers).await;
    let addr = site.gatehouse.https_addr;

    let (mut tls, leaf) = tls_connect(addr, "shop.test", tls_config(None, &[b"acme-tls/1"]))
        .await
        .expect("acme-tls/1 handshake");
    assert_eq!(leaf.as_ref(), der.as_slice());
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"acme-tls/1"[..]));
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the connection ends after the handshake: {read:?}"
    );

    // The same host without acme-tls/1: its own certificate, verified.
    let (_, leaf) = tls_connect(addr, "shop.test", tls_config(Some(&site.pki.ca), &[b"h2"]))
        .await
        .expect("ordinary handshake");
    assert_ne!(leaf.as_ref(), der.as_slice());

    // acme-tls/1 for a host without an answer: no validation certificate.
    let other = tls_connect(addr, "other.test", tls_config(None, &[b"acme-tls/1"])).await;
    assert!(other.is_err(), "no protocol in common");
}
