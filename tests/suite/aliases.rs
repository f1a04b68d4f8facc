//! server-alias and from-to-www-redirect end to end.

use crate::support;

use http::StatusCode;
use support::*;

#[tokio::test]
async fn an_alias_serves_the_rules_and_the_bare_name_redirects_to_www() {
    let backend = Backend::start("web").await;
    let manifests = [
        INGRESS_CLASS.to_owned(),
        service("web", &[backend.addr]),
        ingress_annotated(
            "shop",
            "www.shop.test",
            "/",
            "web",
            None,
            &[
                ("nginx.ingress.kubernetes.io/server-alias", "shop.example"),
                ("nginx.ingress.kubernetes.io/from-to-www-redirect", "true"),
            ],
        ),
    ]
    .concat();
    let (_dir, gatehouse) = serve_manifests(&manifests).await;

    let reply = http_get(gatehouse.http_addr, "shop.example", "/items").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.seen()["headers"]["host"], "shop.example");

    let reply = http_get(gatehouse.http_addr, "shop.test", "/items?page=2").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        reply.headers["location"],
        "http://www.shop.test/items?page=2"
    );
}
