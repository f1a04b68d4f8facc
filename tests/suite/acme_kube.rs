//! AcmeIssuers from the Kubernetes API, with the real kube-rs client
//! against a local server that speaks the API's list/watch protocol: they
//! are watched while their CRD is installed, and a cluster without it is
//! served as ever.

use crate::support;

use std::time::Duration;

use gatehouse::app::SourceConfig;
use http::StatusCode;
use support::fake_api::{FakeApi, ACME_ISSUERS};
use support::*;

/// How long a watch event may take to change what is warned about.
const APPLIED: Duration = Duration::from_secs(20);

async fn start(api: &FakeApi) -> gatehouse::app::Running {
    let mut config = config_for(std::path::Path::new("."));
    config.source = SourceConfig::Kube(kube_source(api.client()));
    tokio::time::timeout(Duration::from_secs(20), gatehouse::app::start(config))
        .await
        .expect("initial sync in time")
        .expect("start")
}

/// An Ingress `shop` for `shop.test`, to the Service `web`, that asks the
/// AcmeIssuer `letsencrypt` for its certificate (and answers plain HTTP
/// rather than redirecting it).
fn shop(web: &Backend) -> String {
    let asks = [
        ("gatehouse.dev/acme-issuer", "letsencrypt"),
        ("gatehouse.dev/ssl-redirect", "false"),
    ];
    [
        INGRESS_CLASS.to_owned(),
        service("web", &[web.addr]),
        ingress_annotated("shop", "shop.test", "/", "web", Some("shop-tls"), &asks),
    ]
    .concat()
}

const LETSENCRYPT: &str = "
apiVersion: gatehouse.dev/v1alpha1
kind: AcmeIssuer
metadata: {name: letsencrypt}
spec:
  server: https://acme-v02.api.letsencrypt.org/directory
  privateKeySecretRef: {name: letsencrypt-account}
";

/// How many ACME requests are warned about (`AcmeIssuer letsencrypt not
/// found` being the only one `shop` can earn), as /metrics says.
async fn acme_warnings(gatehouse: &gatehouse::app::Running) -> u32 {
    let metrics = http_get(gatehouse.metrics_addr, "admin", "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(r#"gatehouse_warnings{kind="acme_request"} "#))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

async fn until_acme_warnings(gatehouse: &gatehouse::app::Running, want: u32) {
    eventually(format!("{want} ACME warnings"), APPLIED, async || {
        let got = acme_warnings(gatehouse).await;
        if got == want {
            Ok(())
        } else {
            Err(got)
        }
    })
    .await;
}

/// The calls that listed or watched AcmeIssuers.
fn issuer_reads(api: &FakeApi) -> usize {
    let calls = api.calls();
    calls.iter().filter(|c| c.resource == "acmeissuers").count()
}

/// An AcmeIssuer created in the API is in the state the next table is
/// built from (the Ingress that names it is no longer warned about), and
/// its deletion is followed too.
#[tokio::test]
async fn an_acme_issuer_created_and_deleted_in_the_api_is_followed() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.install(&ACME_ISSUERS);
    api.put_manifests(&shop(&web));
    let gatehouse = start(&api).await;
    until_acme_warnings(&gatehouse, 1).await;

    api.put_manifests(LETSENCRYPT);
    until_acme_warnings(&gatehouse, 0).await;

    api.delete("gatehouse.dev/v1alpha1", "AcmeIssuer", "", "letsencrypt");
    until_acme_warnings(&gatehouse, 1).await;
}

/// Without the AcmeIssuer CRD the controller lists, gets ready and
/// serves its Ingresses without asking for AcmeIssuers at all; the CRD
/// installed while it runs starts their watch, and removed stops it and
/// takes its issuers out of the state.
#[tokio::test]
async fn without_the_acme_issuer_crd_ingresses_are_served_and_the_crd_is_followed_when_installed() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.put_manifests(&shop(&web));
    let gatehouse = start(&api).await;
    let ready = http_get(gatehouse.metrics_addr, "admin", "/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    let shop = http_get(gatehouse.http_addr, "shop.test", "/").await;
    assert_eq!(shop.backend(), "web");
    until_acme_warnings(&gatehouse, 1).await;
    assert_eq!(issuer_reads(&api), 0, "AcmeIssuers asked for, not served");

    api.install(&ACME_ISSUERS);
    api.put_manifests(LETSENCRYPT);
    until_acme_warnings(&gatehouse, 0).await;
    assert!(issuer_reads(&api) > 0);

    // No watch sees the issuer go: the removal is noticed from the CRD
    // and discovery, and the issuer dropped with the watch.
    api.remove(&ACME_ISSUERS);
    until_acme_warnings(&gatehouse, 1).await;
    let shop = http_get(gatehouse.http_addr, "shop.test", "/").await;
    assert_eq!(shop.backend(), "web");
}
