//! SSL passthrough end to end: the client's TLS reaches a backend that
//! terminates it with its own certificate; a terminated host on the same
//! port keeps working.

use crate::support;

use http::StatusCode;
use hyper_util::rt::TokioIo;
use support::*;

#[tokio::test]
async fn a_passthrough_host_gets_the_backends_own_tls_and_others_ours() {
    let inner_pki = Pki::named("Backend's own CA");
    let inner = Backend::start_tls("inside", &inner_pki.leaf("pass.test")).await;
    let plain = Backend::start("web").await;
    let pki = Pki::new();
    let passthrough = ingress_annotated(
        "pass",
        "pass.test",
        "/",
        "secure",
        None,
        &[("nginx.ingress.kubernetes.io/ssl-passthrough", "true")],
    )
    .replace("ImplementationSpecific", "Prefix");
    let manifests = [
        INGRESS_CLASS.to_owned(),
        service("secure", &[inner.addr]),
        service("web", &[plain.addr]),
        tls_secret("b-tls", &pki.leaf("b.test")),
        passthrough,
        ingress("b", "b.test", "/", "web", Some("b-tls")),
    ]
    .concat();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("all.yaml"), manifests).expect("write");
    let options = gatehouse::translate::TranslateOptions {
        ssl_passthrough: true,
        ..Default::default()
    };
    let gatehouse = start_gatehouse_with(dir.path(), options).await;

    // The client trusts only the backend's own CA, so the handshake itself
    // shows that Gatehouse never terminated this connection.
    let config = tls_config(Some(&inner_pki.ca), &[b"http/1.1"]);
    let (tls, leaf) = tls_connect(gatehouse.https_addr, "pass.test", config)
        .await
        .expect("TLS with the backend");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let reply = send(&mut sender, "pass.test", "/x").await.expect("request");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.backend(), "inside");
    assert!(
        reply.seen()["headers"].get("x-forwarded-for").is_none(),
        "no proxy in between"
    );

    // A terminated host on the same port.
    let (mut to_b, leaf_b) = https_connect(gatehouse.https_addr, "b.test", &pki.ca).await;
    assert_ne!(leaf_b, leaf);
    let reply = send(&mut to_b, "b.test", "/").await.expect("request");
    assert_eq!(reply.backend(), "web");
}
