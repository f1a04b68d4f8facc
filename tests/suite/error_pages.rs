//! custom-http-errors end to end: listed statuses replaced by the default
//! backend's page, asked as ingress-nginx asks it.

use crate::support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

#[tokio::test]
async fn a_listed_status_is_replaced_by_the_default_backends_page() {
    let (app, errors) = (Backend::start("app").await, Backend::start("errors").await);
    let manifests = [
        INGRESS_CLASS.to_owned(),
        service("app", &[app.addr]),
        service("errors", &[errors.addr]),
        ingress_annotated(
            "shop",
            "shop.test",
            "/",
            "app",
            None,
            &[
                ("nginx.ingress.kubernetes.io/custom-http-errors", "404,503"),
                ("nginx.ingress.kubernetes.io/default-backend", "errors"),
            ],
        ),
    ]
    .concat();
    let (_dir, gatehouse) = serve_manifests(&manifests).await;

    let req: Request<Full<Bytes>> = Request::get("/status/404?q=1")
        .header(http::header::HOST, "shop.test")
        .header(http::header::ACCEPT, "application/json")
        .header("x-request-id", "req-42")
        .body(Full::default())
        .expect("request");
    let mut conn = http_connect(gatehouse.http_addr).await;
    let reply = send_request(&mut conn, req).await.expect("request");
    assert_eq!(reply.status, StatusCode::OK, "the default backend's status");
    let seen = reply.seen();
    assert_eq!(seen["backend"], "errors");
    assert_eq!(seen["uri"], "/");
    let h = &seen["headers"];
    assert_eq!(h["x-code"], "404");
    assert_eq!(h["x-format"], "application/json");
    assert_eq!(h["x-original-uri"], "/status/404?q=1");
    assert_eq!(h["x-namespace"], "test");
    assert_eq!(h["x-ingress-name"], "shop");
    assert_eq!(h["x-service-name"], "app");
    assert_eq!(h["x-service-port"], "80");
    assert_eq!(h["x-request-id"], "req-42");

    // Unlisted statuses and successes pass through untouched.
    let reply = http_get(gatehouse.http_addr, "shop.test", "/status/418").await;
    assert_eq!(reply.status.as_u16(), 418);
    assert_eq!(reply.backend(), "app");
    let reply = http_get(gatehouse.http_addr, "shop.test", "/").await;
    assert_eq!(reply.backend(), "app");
}
