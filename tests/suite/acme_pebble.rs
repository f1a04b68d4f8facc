//! Certificates from a real ACME CA: pebble, Let's Encrypt's test server,
//! validating against Gatehouse's own listeners. Skipped (with a message)
//! where pebble is not installed; `.ci/run` installs it.

use crate::support;

use std::time::Duration;

use http::StatusCode;
use support::pebble::Pebble;
use support::*;

const ISSUE_WITHIN: Duration = Duration::from_secs(120);

/// `shop.test` and `www.shop.test` to `web`, asking issuer `pebble` for a
/// certificate in `shop-tls`, which does not exist yet.
async fn shop() -> Site {
    Site::builder()
        .backend("web")
        .await
        .manifests(
            "---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: shop
  namespace: test
  annotations: {gatehouse.dev/acme-issuer: pebble}
spec:
  ingressClassName: gatehouse
  tls:
  - hosts: [shop.test, www.shop.test]
    secretName: shop-tls
  rules:
  - host: shop.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
  - host: www.shop.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
",
        )
        .start()
        .await
}

/// A GET over HTTPS to `host`, verified against `root`.
async fn trusted_get(
    site: &Site,
    host: &str,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> Result<StatusCode, String> {
    let config = tls_config(Some(root), &[b"http/1.1"]);
    let (tls, _) = tls_connect(site.gatehouse.https_addr, host, config)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    send(&mut sender, host, "/")
        .await
        .map(|reply| reply.status)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn http01_issuance_serves_a_certificate_a_client_trusting_the_ca_accepts() {
    if Pebble::installed("http01_issuance") {
        issuance("http-01").await;
    }
}

#[tokio::test]
async fn tls_alpn01_issuance_serves_a_certificate_a_client_trusting_the_ca_accepts() {
    if Pebble::installed("tls_alpn01_issuance") {
        issuance("tls-alpn-01").await;
    }
}

/// Pebble validates with `challenge` against Gatehouse's listeners; both
/// hosts are then served a certificate that pebble's root verifies.
async fn issuance(challenge: &str) {
    let site = shop().await;
    let pebble = Pebble::start(
        site.gatehouse.http_addr.port(),
        site.gatehouse.https_addr.port(),
        &[],
    )
    .await;
    // Before the issuer exists the hosts have only the default certificate.
    assert!(trusted_get(&site, "shop.test", &pebble.root).await.is_err());

    write_atomically(
        &site.dir.path().join("issuer.yaml"),
        &pebble.issuer("pebble", challenge),
    );

    for host in ["shop.test", "www.shop.test"] {
        let status = eventually_every(
            format!("a certificate for {host} that pebble's root verifies"),
            ISSUE_WITHIN,
            Duration::from_millis(200),
            async || trusted_get(&site, host, &pebble.root).await,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }

    // The certificate is a Secret manifest in the directory, as a cluster
    // would hold it; the account key beside it, in the controller's
    // namespace; no answer is left published.
    let secret = std::fs::read_to_string(site.dir.path().join("acme.test.shop-tls.yaml"))
        .expect("the issued Secret's manifest");
    assert!(secret.contains("kubernetes.io/tls"), "{secret}");
    assert!(
        secret.contains("gatehouse.dev/acme-issuer: pebble"),
        "{secret}"
    );
    assert!(site
        .dir
        .path()
        .join("acme.default.pebble-account.yaml")
        .exists());
    let answers = std::fs::read_to_string(
        site.dir
            .path()
            .join("acme.default.gatehouse-acme-challenges.yaml"),
    )
    .expect("the challenges Secret");
    assert!(!answers.contains(&format!("{challenge}.")), "{answers}");
}
