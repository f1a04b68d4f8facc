//! Certificates from a real ACME CA: pebble, Let's Encrypt's test server,
//! validating against Gatehouse's own listeners. Skipped (with a message)
//! where pebble is not installed; `.ci/run` installs it.

use crate::support;

use std::time::Duration;

use http::StatusCode;
use support::pebble::{verified_get, Pebble, Relay};
use support::site::SiteBuilder;
use support::*;

const ISSUE_WITHIN: Duration = Duration::from_secs(120);

/// `shop.test` and `www.shop.test` to `web`, asking issuer `pebble` for a
/// certificate in `shop-tls`, which does not exist yet.
async fn shop() -> Site {
    shop_site(Site::builder()).await
}

/// `shop`, with an older certificate in `shop-tls` from the site's own
/// CA, for `shop.test` only (so a new one is due at once).
async fn shop_with_old_certificate() -> Site {
    shop_site(Site::builder().certificate("shop.test", "shop-tls")).await
}

async fn shop_site(builder: SiteBuilder) -> Site {
    builder
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

/// `/debug/certs` of `site`, for `host`.
async fn debug_cert(site: &Site, host: &str) -> serde_json::Value {
    let reply = http_get(site.gatehouse.metrics_addr, "admin", "/debug/certs").await;
    let all: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
    all[host].clone()
}

/// The value of the metric sample `series` (name and labels), 0 if absent.
async fn sample(site: &Site, series: &str) -> f64 {
    let reply = http_get(site.gatehouse.metrics_addr, "admin", "/metrics").await;
    String::from_utf8_lossy(&reply.body)
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A GET over HTTPS to `host`, verified against `root`.
async fn trusted_get(
    site: &Site,
    host: &str,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> Result<StatusCode, String> {
    verified_get(site.gatehouse.https_addr, host, root).await
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

    let asked = std::time::Instant::now();
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
    // Reported, not asserted: from the issuer's manifest to a trusted
    // answer on both hosts.
    eprintln!(
        "{challenge}: trusted HTTPS {:?} after the issuer was written",
        asked.elapsed()
    );

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
    // `gatehouse routes` on the directory names where it came from and
    // when it is renewed.
    let routes = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("routes")
        .arg("--manifests")
        .arg(site.dir.path())
        .output()
        .expect("run gatehouse routes");
    let routes = String::from_utf8_lossy(&routes.stdout);
    let row = routes
        .lines()
        .find(|l| l.starts_with("shop.test ") && l.contains("test/shop-tls"))
        .unwrap_or_else(|| panic!("no certificate row for shop.test:\n{routes}"));
    assert!(row.contains("acme:pebble"), "{row}");
    assert!(
        row.split_whitespace()
            .last()
            .is_some_and(|renews| renews.starts_with("20")),
        "{row}"
    );

    // How it stands, on the admin port: valid, renewed in the future,
    // one order placed and issued.
    let status = eventually(
        "the certificate valid in /debug/certs",
        ISSUE_WITHIN,
        async || {
            let cert = debug_cert(&site, "shop.test").await;
            if cert["acme"]["state"] == "valid" {
                Ok(cert)
            } else {
                Err(cert)
            }
        },
    )
    .await;
    assert_eq!(status["acme"]["issuer"], "pebble");
    assert_eq!(status["acme"]["failures"], 0);
    assert!(
        status["acme"]["next_attempt"]
            .as_i64()
            .expect("renewal time")
            > unix_now()
    );
    assert!(status["certificate"]["issuer"]
        .as_str()
        .expect("issuer")
        .contains("Pebble"));
    let placed = r#"gatehouse_acme_orders_total{issuer="pebble",event="placed"}"#;
    let issued = r#"gatehouse_acme_orders_total{issuer="pebble",event="issued"}"#;
    assert_eq!(sample(&site, placed).await, 1.0);
    assert_eq!(sample(&site, issued).await, 1.0);
    assert_eq!(
        sample(&site, r#"gatehouse_acme_certificates{state="valid"}"#).await,
        1.0
    );
}

/// A failed attempt changes nothing served: the old certificate stays,
/// the failure is visible with the CA's words, and the next attempt
/// waits for the backoff (at least a minute), not a retry loop.
async fn fails_and_keeps_the_old_certificate(site: &Site, issuer: String, expected: &str) {
    write_atomically(&site.dir.path().join("issuer.yaml"), &issuer);
    let status = eventually("the failure in /debug/certs", ISSUE_WITHIN, async || {
        let cert = debug_cert(site, "shop.test").await;
        if cert["acme"]["state"] == "failed" {
            Ok(cert)
        } else {
            Err(cert)
        }
    })
    .await;
    let error = status["acme"]["last_error"].as_str().expect("last error");
    assert!(error.contains(expected), "{error}");
    assert_eq!(status["acme"]["failures"], 1);
    let next = status["acme"]["next_attempt"]
        .as_i64()
        .expect("next attempt");
    assert!(
        next >= unix_now() + 50,
        "backoff: {next} vs now {}",
        unix_now()
    );
    assert_eq!(
        trusted_get(site, "shop.test", &site.pki.ca).await,
        Ok(StatusCode::OK),
        "the old certificate is still served"
    );
    let failed = r#"gatehouse_acme_certificates{state="failed"}"#;
    assert_eq!(sample(site, failed).await, 1.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(debug_cert(site, "shop.test").await["acme"]["failures"], 1);
}

#[tokio::test]
async fn a_ca_that_cannot_be_reached_backs_off_and_keeps_the_old_certificate() {
    let site = shop_with_old_certificate().await;
    let port = closed_port().await;
    let issuer = format!(
        "apiVersion: gatehouse.dev/v1alpha1
kind: AcmeIssuer
metadata: {{name: pebble}}
spec:
  server: https://127.0.0.1:{port}/dir
  privateKeySecretRef: {{name: pebble-account}}
"
    );
    fails_and_keeps_the_old_certificate(&site, issuer, "Connection refused").await;
}

#[tokio::test]
async fn a_challenge_the_ca_cannot_validate_backs_off_and_keeps_the_old_certificate() {
    if !Pebble::installed("unanswerable_challenge") {
        return;
    }
    let site = shop_with_old_certificate().await;
    // Pebble validates against a port where nothing listens.
    let port = closed_port().await;
    let pebble = Pebble::start(port, port, &[("PEBBLE_VA_ALWAYS_VALID", "0")]).await;
    let issuer = pebble.issuer("pebble", "http-01");
    fails_and_keeps_the_old_certificate(&site, issuer, "urn:ietf:params:acme:error:connection")
        .await;
}

#[tokio::test]
async fn a_ca_that_rejects_every_nonce_backs_off_and_keeps_the_old_certificate() {
    if !Pebble::installed("bad_nonces") {
        return;
    }
    let site = shop_with_old_certificate().await;
    let pebble = Pebble::start(
        site.gatehouse.http_addr.port(),
        site.gatehouse.https_addr.port(),
        &[("PEBBLE_WFE_NONCEREJECT", "100")],
    )
    .await;
    let issuer = pebble.issuer("pebble", "http-01");
    fails_and_keeps_the_old_certificate(&site, issuer, "badNonce").await;
}

/// The replica that placed an order is stopped while pebble validates;
/// a new one on the same state resumes that order from its record and
/// completes it, placing none of its own.
#[tokio::test]
async fn a_replica_started_after_the_leader_died_mid_order_resumes_it() {
    if !Pebble::installed("resume_mid_order") {
        return;
    }
    let site = shop().await;
    let mut relay = Relay::start().await;
    let pebble = Pebble::start(relay.addr.port(), closed_port().await, &[]).await;
    write_atomically(
        &site.dir.path().join("issuer.yaml"),
        &pebble.issuer("pebble", "http-01"),
    );
    // Pebble is validating: the first leader is waiting for the order.
    relay
        .connections
        .wait_for(|n| *n > 0)
        .await
        .expect("pebble validates");
    let Site {
        gatehouse,
        backends,
        dir,
        ..
    } = site;
    drop(gatehouse);
    let orders =
        std::fs::read_to_string(dir.path().join("acme.default.gatehouse-acme-orders.yaml"))
            .expect("the order record");
    assert!(orders.contains("test.shop-tls"), "{orders}");

    let second = start_gatehouse(dir.path()).await;
    relay.target.send_replace(Some(second.http_addr));
    for host in ["shop.test", "www.shop.test"] {
        eventually_every(
            format!("{host} served by the second replica with pebble's certificate"),
            ISSUE_WITHIN,
            Duration::from_millis(200),
            async || verified_get(second.https_addr, host, &pebble.root).await,
        )
        .await;
    }
    let metrics = http_get(second.metrics_addr, "admin", "/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics.contains(r#"gatehouse_acme_orders_total{issuer="pebble",event="resumed"} 1"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains(r#"event="placed""#),
        "the second replica placed an order of its own:\n{metrics}"
    );
    drop(backends);
}

/// A certificate due for renewal is replaced by pebble's, and a
/// connection opened on the old one keeps working across the change.
#[tokio::test]
async fn a_certificate_due_for_renewal_is_replaced_without_dropping_a_connection() {
    if !Pebble::installed("renewal") {
        return;
    }
    let day = Duration::from_secs(24 * 3600);
    let pki = Pki::new();
    // Sixty days old with one left: well past two thirds of its life.
    let old = pki.leaf_aged(&["shop.test", "www.shop.test"], 60 * day, day);
    let site = shop_site(
        Site::builder()
            .ca(pki)
            .manifests(tls_secret("shop-tls", &old)),
    )
    .await;
    let (mut kept, leaf) =
        https_connect(site.gatehouse.https_addr, "shop.test", &site.pki.ca).await;
    assert_eq!(leaf, old.der);
    assert_eq!(
        send(&mut kept, "shop.test", "/")
            .await
            .expect("request")
            .status,
        StatusCode::OK
    );

    let pebble = Pebble::start(
        site.gatehouse.http_addr.port(),
        site.gatehouse.https_addr.port(),
        &[],
    )
    .await;
    write_atomically(
        &site.dir.path().join("issuer.yaml"),
        &pebble.issuer("pebble", "http-01"),
    );
    eventually_every(
        "the renewed certificate",
        ISSUE_WITHIN,
        Duration::from_millis(200),
        async || trusted_get(&site, "shop.test", &pebble.root).await,
    )
    .await;
    // The connection of before is still open and still served.
    for _ in 0..3 {
        let reply = send(&mut kept, "shop.test", "/")
            .await
            .expect("request on the old connection");
        assert_eq!(reply.status, StatusCode::OK);
    }
    let status = debug_cert(&site, "shop.test").await;
    assert_eq!(status["acme"]["state"], "valid", "{status}");
}

const EAB_KEY_ID: &str = "kid-1";
const EAB_MAC_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

/// Pebble requiring external account binding with one key.
async fn pebble_with_eab(site: &Site) -> Pebble {
    Pebble::start_with(
        site.gatehouse.http_addr.port(),
        site.gatehouse.https_addr.port(),
        &[],
        serde_json::json!({
            "externalAccountBindingRequired": true,
            "externalAccountMACKeys": {EAB_KEY_ID: EAB_MAC_KEY},
        }),
    )
    .await
}

/// The issuer for `pebble`, binding with the key in Secret `eab`, and
/// that Secret holding `mac`.
fn eab_issuer(pebble: &Pebble, mac: &str) -> String {
    let issuer = pebble.issuer("pebble", "http-01");
    format!(
        "{issuer}  externalAccountBinding:
    keyID: {EAB_KEY_ID}
    keySecretRef: {{name: eab}}
---
apiVersion: v1
kind: Secret
metadata: {{name: eab, namespace: default}}
stringData: {{secret: \"{mac}\"}}
"
    )
}

#[tokio::test]
async fn a_ca_that_requires_external_account_binding_issues_with_the_key_in_the_secret() {
    if !Pebble::installed("eab") {
        return;
    }
    let site = shop().await;
    let pebble = pebble_with_eab(&site).await;
    write_atomically(
        &site.dir.path().join("issuer.yaml"),
        &eab_issuer(&pebble, EAB_MAC_KEY),
    );
    eventually_every(
        "a certificate through an account bound with EAB",
        ISSUE_WITHIN,
        Duration::from_millis(200),
        async || trusted_get(&site, "shop.test", &pebble.root).await,
    )
    .await;
}

/// A MAC key that is not base64url: the issuer fails with a message that
/// names the Secret and never shows the value; the old certificate stays.
#[tokio::test]
async fn a_malformed_external_account_key_fails_clearly_without_showing_it() {
    if !Pebble::installed("eab_malformed") {
        return;
    }
    let site = shop_with_old_certificate().await;
    let pebble = pebble_with_eab(&site).await;
    let garbled = "not base64url: s3cr3t!";
    fails_and_keeps_the_old_certificate(
        &site,
        eab_issuer(&pebble, garbled),
        "externalAccountBinding Secret default/eab: the MAC key is not base64url",
    )
    .await;
    let status = debug_cert(&site, "shop.test").await;
    assert!(!status.to_string().contains("s3cr3t"), "{status}");
}

/// The served certificate of `host` at `addr`, verified against `root`.
async fn served_leaf(
    addr: std::net::SocketAddr,
    host: &str,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> Result<rustls::pki_types::CertificateDer<'static>, String> {
    let config = tls_config(Some(root), &[b"http/1.1"]);
    let (_, leaf) = tls_connect(addr, host, config)
        .await
        .map_err(|e| e.to_string())?;
    Ok(leaf)
}

/// Revokes `leaf` with the account Gatehouse registered at `pebble`
/// (its key is in the account Secret's manifest in `dir`).
async fn revoke_with_gatehouses_account(
    pebble: &Pebble,
    dir: &std::path::Path,
    leaf: &rustls::pki_types::CertificateDer<'static>,
) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let manifest = std::fs::read_to_string(dir.join("acme.default.pebble-account.yaml"))
        .expect("the account Secret");
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_yaml_ng::from_str(&manifest).expect("a Secret");
    let pem = &secret.data.expect("data")["tls.key"].0;
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem).expect("a PKCS#8 key");
    let key = instant_acme::Key::from_pkcs8_der(der.clone_key()).expect("an ACME key");
    let ca = dir.join("pebble-https-ca.pem");
    std::fs::write(&ca, pebble.https_ca_pem()).expect("write CA");
    let (account, _) = instant_acme::Account::builder_with_root(&ca)
        .expect("client")
        .from_key((key, PrivateKeyDer::Pkcs8(der)), pebble.directory.clone())
        .await
        .expect("Gatehouse's account");
    account
        .revoke(&instant_acme::RevocationRequest {
            certificate: leaf,
            reason: None,
        })
        .await
        .expect("revoked");
}

/// With a CA that offers renewal information (ARI), the renewal time is
/// in the window the CA suggests, not the lifetime rule's; when the CA
/// revokes the certificate its window moves to the past, and the next
/// leader renews at once, naming the certificate it replaces. Needs a
/// pebble of 2.5.0 or later (`GATEHOUSE_TEST_PEBBLE`); skipped with
/// Debian's 2.4.0.
#[tokio::test]
async fn a_ca_offering_renewal_information_decides_when_to_renew() {
    let test = "a_ca_offering_renewal_information_decides_when_to_renew";
    if !Pebble::installed(test) {
        return;
    }
    let site = shop().await;
    let relay = Relay::start().await;
    relay.target.send_replace(Some(site.gatehouse.http_addr));
    let pebble = Pebble::start(relay.addr.port(), closed_port().await, &[]).await;
    if !pebble.offers_renewal_info().await {
        eprintln!("{test}: skipped: this pebble has no renewal information (ARI); set GATEHOUSE_TEST_PEBBLE to pebble 2.5.0 or later");
        return;
    }
    write_atomically(
        &site.dir.path().join("issuer.yaml"),
        &pebble.issuer("pebble", "http-01"),
    );
    let first = eventually_every(
        "pebble's certificate for shop.test",
        ISSUE_WITHIN,
        Duration::from_millis(200),
        async || served_leaf(site.gatehouse.https_addr, "shop.test", &pebble.root).await,
    )
    .await;

    // Pebble's window: two days around two thirds of the lifetime.
    let (_, cert) = x509_parser::parse_x509_certificate(&first).expect("parses");
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let ideal = not_after - (not_after + 1 - not_before) / 3;
    let window = (ideal - 86_400)..(ideal + 86_400);
    let renews = eventually(
        "the renewal time in the CA's window",
        ISSUE_WITHIN,
        async || {
            let renews = debug_cert(&site, "shop.test").await["acme"]["next_attempt"]
                .as_i64()
                .unwrap_or_default();
            match window.contains(&renews) {
                true => Ok(renews),
                false => Err(renews),
            }
        },
    )
    .await;
    assert!(renews > unix_now());

    let secret_file = site.dir.path().join("acme.test.shop-tls.yaml");
    let first_secret = std::fs::read_to_string(&secret_file).expect("the issued Secret");
    revoke_with_gatehouses_account(&pebble, site.dir.path(), &first).await;
    // The next leader asks the CA again, which now says: renew now.
    let Site {
        gatehouse,
        backends,
        dir,
        ..
    } = site;
    drop(gatehouse);
    let second = start_gatehouse(dir.path()).await;
    relay.target.send_replace(Some(second.http_addr));
    let renewed = eventually_every(
        "a new certificate for shop.test",
        ISSUE_WITHIN,
        Duration::from_millis(200),
        async || match served_leaf(second.https_addr, "shop.test", &pebble.root).await {
            Ok(leaf) if leaf != first => Ok(leaf),
            other => Err(other.map(|_| "the revoked certificate")),
        },
    )
    .await;
    assert_ne!(renewed, first);
    let log = pebble.log();
    assert!(log.contains("is a replacement of"), "{log}");
    let placed_once = r#"gatehouse_acme_orders_total{issuer="pebble",event="placed"} 1"#;
    let metrics = http_get(second.metrics_addr, "admin", "/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(metrics.contains(placed_once), "{metrics}");

    // The revoked certificate back in its Secret (a backup restored): the
    // CA refuses to have it replaced twice, and the next leader orders
    // without naming it, rather than failing.
    drop(second);
    std::fs::write(&secret_file, first_secret).expect("restore the Secret");
    let third = start_gatehouse(dir.path()).await;
    relay.target.send_replace(Some(third.http_addr));
    eventually_every(
        "a certificate other than the revoked one",
        ISSUE_WITHIN,
        Duration::from_millis(200),
        async || match served_leaf(third.https_addr, "shop.test", &pebble.root).await {
            Ok(leaf) if leaf != first && leaf != renewed => Ok(leaf),
            other => Err(other.map(|_| "a certificate of before")),
        },
    )
    .await;
    let metrics = http_get(third.metrics_addr, "admin", "/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(metrics.contains(placed_once), "{metrics}");
    assert!(!metrics.contains(r#"event="failed""#), "{metrics}");
    drop(backends);
}
