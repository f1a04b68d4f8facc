//! Changes to the manifest directory while traffic flows: the table is
//! swapped under open connections, and no request fails because of it.

use crate::support;

use std::time::Duration;

use gatehouse::app::Running;
use gatehouse::table::{Decision, RequestFacts};
use http::StatusCode;
use support::*;

/// Waits until the served table satisfies `done`.
async fn until_table(
    gatehouse: &Running,
    what: &str,
    done: impl Fn(&gatehouse::table::RouteTable) -> bool,
) {
    let what = format!("the table to {what}");
    eventually(what, Duration::from_secs(10), async || {
        done(&gatehouse.table.load())
    })
    .await;
}

fn routes_to(table: &gatehouse::table::RouteTable, host: &str, service: &str) -> bool {
    let facts = RequestFacts {
        host,
        method: &http::Method::GET,
        headers: &http::HeaderMap::new(),
        path: "/",
        query: None,
        tls: true,
        port: 443,
        client: "127.0.0.1".parse().expect("ip"),
        peer: None,
    };
    matches!(table.decide(&facts), Decision::Forward(f) if f.backend.service.name == service)
}

#[tokio::test]
async fn a_keep_alive_connection_follows_a_route_moved_to_another_backend() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let pki = Pki::new();
    let leaf = pki.leaf("shop.test");
    let dir = tempfile::tempdir().expect("tempdir");
    let base = [
        INGRESS_CLASS.to_owned(),
        service("svc-a", &[a.addr]),
        service("svc-b", &[b.addr]),
        tls_secret("shop-tls", &leaf),
    ]
    .concat();
    std::fs::write(dir.path().join("base.yaml"), base).expect("write");
    let route = dir.path().join("route.yaml");
    std::fs::write(
        &route,
        ingress("shop", "shop.test", "/", "svc-a", Some("shop-tls")),
    )
    .expect("write");
    let gatehouse = start_gatehouse(dir.path()).await;

    let (mut conn, _) = https_connect(gatehouse.https_addr, "shop.test", &pki.ca).await;
    assert_eq!(
        send(&mut conn, "shop.test", "/")
            .await
            .expect("first request")
            .backend(),
        "a"
    );

    write_atomically(
        &route,
        &ingress("shop", "shop.test", "/", "svc-b", Some("shop-tls")),
    );
    // Requests keep flowing on the same connection while the change lands;
    // each one must succeed, from either backend.
    let (within, every) = (Duration::from_secs(10), Duration::from_millis(1));
    poll::eventually_every("the route to move", within, every, async || {
        if routes_to(&gatehouse.table.load(), "shop.test", "svc-b") {
            return true;
        }
        let reply = send(&mut conn, "shop.test", "/")
            .await
            .expect("no request fails during the change");
        assert_eq!(reply.status, StatusCode::OK);
        false
    })
    .await;
    for _ in 0..3 {
        let reply = send(&mut conn, "shop.test", "/")
            .await
            .expect("same connection still works");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.backend(),
            "b",
            "after the swap the same connection reaches the new backend"
        );
    }
    // The change was built incrementally: one Ingress, one host.
    let incremental = "gatehouse_table_rebuilds_total{kind=\"incremental\"} ";
    eventually(
        "an incremental rebuild counted",
        Duration::from_secs(2),
        async || {
            let metrics = http_get(gatehouse.metrics_addr, "localhost", "/metrics").await;
            let text = String::from_utf8_lossy(&metrics.body).into_owned();
            if text.lines().any(|l| l.starts_with(incremental)) {
                Ok(())
            } else {
                Err(text)
            }
        },
    )
    .await;
}

#[tokio::test]
async fn adding_a_file_adds_its_routes_and_deleting_it_removes_them() {
    let web = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("base.yaml"),
        [INGRESS_CLASS.to_owned(), service("web", &[web.addr])].concat(),
    )
    .expect("write");
    let gatehouse = start_gatehouse(dir.path()).await;
    assert_eq!(
        http_get(gatehouse.http_addr, "new.test", "/").await.status,
        StatusCode::NOT_FOUND
    );

    let file = dir.path().join("new.yml");
    write_atomically(&file, &ingress("new", "new.test", "/", "web", None));
    until_table(&gatehouse, "route new.test", |t| {
        routes_to(t, "new.test", "web")
    })
    .await;
    assert_eq!(
        http_get(gatehouse.http_addr, "new.test", "/")
            .await
            .backend(),
        "web"
    );

    std::fs::remove_file(&file).expect("remove");
    until_table(&gatehouse, "drop new.test", |t| {
        !routes_to(t, "new.test", "web")
    })
    .await;
    assert_eq!(
        http_get(gatehouse.http_addr, "new.test", "/").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_file_that_does_not_parse_is_skipped_and_everything_else_keeps_serving() {
    let web = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = [
        INGRESS_CLASS.to_owned(),
        service("web", &[web.addr]),
        ingress("good", "good.test", "/", "web", None),
    ];
    std::fs::write(dir.path().join("base.yaml"), base.concat()).expect("write");
    let other = dir.path().join("other.yaml");
    std::fs::write(&other, "apiVersion: v1\nkind: [unclosed\n").expect("write");
    let gatehouse = start_gatehouse(dir.path()).await;
    assert_eq!(
        http_get(gatehouse.http_addr, "good.test", "/")
            .await
            .backend(),
        "web"
    );

    // Fixed: its routes appear.
    write_atomically(&other, &ingress("other", "other.test", "/", "web", None));
    until_table(&gatehouse, "route other.test", |t| {
        routes_to(t, "other.test", "web")
    })
    .await;

    // Broken again mid-edit: the last good content of that file stays.
    std::fs::write(
        &other,
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nspec: {rules: [\n",
    )
    .expect("write");
    let extra = dir.path().join("extra.yaml");
    write_atomically(&extra, &ingress("extra", "extra.test", "/", "web", None));
    until_table(&gatehouse, "route extra.test", |t| {
        routes_to(t, "extra.test", "web")
    })
    .await;
    assert_eq!(
        http_get(gatehouse.http_addr, "other.test", "/")
            .await
            .backend(),
        "web"
    );
    assert_eq!(
        http_get(gatehouse.http_addr, "good.test", "/")
            .await
            .backend(),
        "web"
    );
}

#[tokio::test]
async fn a_renewed_certificate_is_served_from_the_next_handshake() {
    let web = Backend::start("web").await;
    let pki = Pki::new();
    let (first, renewed) = (pki.leaf("tls.test"), pki.leaf("tls.test"));
    let dir = tempfile::tempdir().expect("tempdir");
    let base = [
        INGRESS_CLASS.to_owned(),
        service("web", &[web.addr]),
        ingress("tls", "tls.test", "/", "web", Some("tls-cert")),
    ];
    std::fs::write(dir.path().join("base.yaml"), base.concat()).expect("write");
    let secret = dir.path().join("secret.yaml");
    std::fs::write(&secret, tls_secret("tls-cert", &first)).expect("write");
    let gatehouse = start_gatehouse(dir.path()).await;

    let (mut old_conn, leaf) = https_connect(gatehouse.https_addr, "tls.test", &pki.ca).await;
    assert_eq!(leaf, first.der);

    write_atomically(&secret, &tls_secret("tls-cert", &renewed));
    until_table(&gatehouse, "serve the renewed certificate", |t| {
        t.certs
            .resolve("tls.test")
            .is_some_and(|c| c.key.cert[0] == renewed.der)
    })
    .await;
    let (mut new_conn, leaf) = https_connect(gatehouse.https_addr, "tls.test", &pki.ca).await;
    assert_eq!(leaf, renewed.der);
    assert_eq!(
        send(&mut new_conn, "tls.test", "/")
            .await
            .expect("new")
            .status,
        StatusCode::OK
    );
    // The connection made before the renewal keeps working.
    assert_eq!(
        send(&mut old_conn, "tls.test", "/")
            .await
            .expect("old")
            .status,
        StatusCode::OK
    );
}
