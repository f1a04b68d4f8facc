//! ACME with two replicas on one cluster (the local API server, the real
//! kube-rs client, real pebble): only the leader orders, the other
//! answers the CA's validation from the published Secret, and when the
//! leader dies mid-order the other finishes that order instead of
//! placing a second one.

use crate::support;

use std::time::Duration;

use gatehouse::app::Running;
use gatehouse::status::Publish;
use support::fake_api::{FakeApi, ACME_ISSUERS};
use support::pebble::{verified_get, Pebble, Relay};
use support::*;

const ELECTED: Duration = Duration::from_secs(30);
/// Covers a Lease expiry (15 s) and the order.
const ISSUED: Duration = Duration::from_secs(120);

async fn replica(api: &FakeApi, name: &str) -> Running {
    let config = replica_config(api, name, "default", Publish::Nothing);
    tokio::time::timeout(Duration::from_secs(20), gatehouse::app::start(config))
        .await
        .expect("initial sync in time")
        .expect("start")
}

/// Who holds the Lease the replicas elect on.
fn leader(api: &FakeApi) -> Option<String> {
    let lease = api.get(
        "coordination.k8s.io/v1",
        "Lease",
        "default",
        "gatehouse-leader",
    )?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

/// An AcmeIssuer `down` whose server nothing listens on.
fn down_issuer(port: u16) -> String {
    format!(
        "---
apiVersion: gatehouse.dev/v1alpha1
kind: AcmeIssuer
metadata: {{name: down}}
spec:
  server: https://127.0.0.1:{port}/dir
  privateKeySecretRef: {{name: down-account}}
"
    )
}

/// `event="..."` samples of `gatehouse_acme_orders_total` for `issuer`
/// on `replica`.
async fn orders(replica: &Running, issuer: &str, event: &str) -> f64 {
    let reply = http_get(replica.metrics_addr, "admin", "/metrics").await;
    let series = format!(r#"gatehouse_acme_orders_total{{issuer="{issuer}",event="{event}"}}"#);
    String::from_utf8_lossy(&reply.body)
        .lines()
        .find_map(|l| l.strip_prefix(&series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test]
async fn the_follower_answers_the_ca_and_finishes_the_order_of_a_leader_that_died() {
    if !Pebble::installed("two_replicas") {
        return;
    }
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.install(&ACME_ISSUERS);
    let asks = [("gatehouse.dev/acme-issuer", "pebble")];
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            ingress_annotated("shop", "shop.test", "/", "web", Some("shop-tls"), &asks),
        ]
        .concat(),
    );
    let mut replicas = vec![replica(&api, "a").await, replica(&api, "b").await];
    let leader = eventually("a leader", ELECTED, async || leader(&api)).await;
    let leader = replicas.remove(if leader == "a" { 0 } else { 1 });
    let follower = replicas.remove(0);

    // Pebble validates through a relay that holds its connections.
    let mut relay = Relay::start().await;
    let pebble = Pebble::start(relay.addr.port(), closed_port().await, &[]).await;
    api.put_manifests(&pebble.issuer("pebble", "http-01"));
    relay
        .connections
        .wait_for(|n| *n > 0)
        .await
        .expect("pebble validates");
    // The leader placed the order and recorded it where the follower
    // can read it; then it dies, mid-validation.
    let record = api.get("v1", "Secret", "default", "gatehouse-acme-orders");
    let recorded = record
        .as_ref()
        .and_then(|s| s["data"].as_object())
        .is_some_and(|data| data.contains_key("test.shop-tls"));
    assert!(recorded, "the order record: {record:#?}");
    assert_eq!(orders(&leader, "pebble", "placed").await, 1.0);
    drop(leader);

    // The follower, not leading yet, answers pebble's validation from
    // the answers Secret the leader published.
    relay.target.send_replace(Some(follower.http_addr));
    eventually_every(
        "shop.test served by the follower with pebble's certificate",
        ISSUED,
        Duration::from_millis(250),
        async || verified_get(follower.https_addr, "shop.test", &pebble.root).await,
    )
    .await;
    assert_eq!(orders(&follower, "pebble", "resumed").await, 1.0);
    assert_eq!(
        orders(&follower, "pebble", "placed").await,
        0.0,
        "a second order"
    );
    // The certificate is the Secret the Ingress names, for every tool.
    let secret = api
        .get("v1", "Secret", "test", "shop-tls")
        .expect("the issued Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(
        secret["metadata"]["annotations"]["gatehouse.dev/acme-issuer"],
        "pebble"
    );
    // Visible where kubectl looks: an Event on the Ingress, and the
    // issuer's Ready condition.
    let event = eventually("a CertificateIssued Event", ISSUED, async || {
        api.event("CertificateIssued")
    })
    .await;
    assert_eq!(event["regarding"]["kind"], "Ingress");
    assert_eq!(event["regarding"]["name"], "shop");
    let note = event["note"].as_str().expect("note");
    assert!(note.contains("Secret test/shop-tls"), "{note}");
    let issuer = api
        .get("gatehouse.dev/v1alpha1", "AcmeIssuer", "", "pebble")
        .expect("the issuer");
    let ready = &issuer["status"]["conditions"][0];
    assert_eq!(ready["type"], "Ready", "{issuer:#}");
    assert_eq!(ready["status"], "True", "{issuer:#}");
}

/// A CA that cannot be reached: a Warning Event on the Ingress with the
/// reason, the issuer not Ready, and nothing written to the Secret.
#[tokio::test]
async fn a_failed_order_is_an_event_on_the_ingress_and_the_issuer_is_not_ready() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.install(&ACME_ISSUERS);
    let asks = [("gatehouse.dev/acme-issuer", "down")];
    let port = closed_port().await;
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            ingress_annotated("shop", "shop.test", "/", "web", Some("shop-tls"), &asks),
            down_issuer(port),
        ]
        .concat(),
    );
    let _replica = replica(&api, "a").await;
    let event = eventually("an AcmeOrderFailed Event", ISSUED, async || {
        api.event("AcmeOrderFailed")
    })
    .await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["name"], "shop");
    let note = event["note"].as_str().expect("note");
    assert!(note.contains("Connection refused"), "{note}");
    assert!(note.contains("next attempt in"), "{note}");
    let issuer = api
        .get("gatehouse.dev/v1alpha1", "AcmeIssuer", "", "down")
        .expect("the issuer");
    assert_eq!(
        issuer["status"]["conditions"][0]["status"], "False",
        "{issuer:#}"
    );
    assert!(api.get("v1", "Secret", "test", "shop-tls").is_none());
}

/// An Ingress that starts naming a Secret which already holds a current
/// certificate for its hosts (re-created, renamed, or a host moved to
/// it) places no order: the controller holds an unreferenced Secret
/// without its data and fetches it only once something names it, so the
/// first state after the Ingress arrives shows the Secret empty. Here the
/// CA cannot be reached, so an order would fail and show as `failed`.
#[tokio::test]
async fn an_ingress_naming_a_secret_that_already_holds_its_certificate_places_no_order() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.install(&ACME_ISSUERS);
    let port = closed_port().await;
    let current = Pki::new().leaf_aged(
        &["shop.test"],
        Duration::from_secs(24 * 3600),
        Duration::from_secs(60 * 24 * 3600),
    );
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            tls_secret("shop-tls", &current),
            down_issuer(port),
        ]
        .concat(),
    );
    let replica = replica(&api, "a").await;
    eventually("leading", ELECTED, async || {
        leader(&api).is_some_and(|l| l == "a")
    })
    .await;

    let asks = [("gatehouse.dev/acme-issuer", "down")];
    api.put_manifests(&ingress_annotated(
        "shop",
        "shop.test",
        "/",
        "web",
        Some("shop-tls"),
        &asks,
    ));
    let standing = eventually("the request settled in /debug/certs", ISSUED, async || {
        let reply = http_get(replica.metrics_addr, "admin", "/debug/certs").await;
        let all: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
        let acme = all["shop.test"]["acme"].clone();
        (acme["state"] == "valid" || acme["state"] == "failed").then_some(acme)
    })
    .await;
    assert_eq!(standing["state"], "valid", "{standing:#}");
    assert_eq!(orders(&replica, "down", "failed").await, 0.0);
    let issuer = api
        .get("gatehouse.dev/v1alpha1", "AcmeIssuer", "", "down")
        .expect("the issuer");
    assert!(
        issuer.get("status").is_none(),
        "an account was registered: {issuer:#}"
    );
}

/// One replica, the issuer in place, then the annotated Ingress applied:
/// a trusted answer over TLS-ALPN-01, everything through the API.
#[tokio::test]
async fn an_ingress_applied_with_the_annotation_is_served_with_a_trusted_certificate() {
    if !Pebble::installed("applied_ingress") {
        return;
    }
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.install(&ACME_ISSUERS);
    api.put_manifests(&[INGRESS_CLASS.to_owned(), service("web", &[web.addr])].concat());
    let replica = replica(&api, "a").await;
    let pebble = Pebble::start(closed_port().await, replica.https_addr.port(), &[]).await;
    api.put_manifests(&pebble.issuer("pebble", "tls-alpn-01"));
    eventually("the replica to lead", ELECTED, async || {
        leader(&api).is_some_and(|l| l == "a")
    })
    .await;

    let applied = std::time::Instant::now();
    let asks = [("gatehouse.dev/acme-issuer", "pebble")];
    api.put_manifests(&ingress_annotated(
        "shop",
        "shop.test",
        "/",
        "web",
        Some("shop-tls"),
        &asks,
    ));
    eventually_every(
        "shop.test with pebble's certificate",
        ISSUED,
        Duration::from_millis(100),
        async || verified_get(replica.https_addr, "shop.test", &pebble.root).await,
    )
    .await;
    // Reported, not asserted.
    eprintln!(
        "trusted HTTPS {:?} after the Ingress was applied",
        applied.elapsed()
    );
    assert_eq!(orders(&replica, "pebble", "placed").await, 1.0);
    assert_eq!(orders(&replica, "pebble", "issued").await, 1.0);
}
