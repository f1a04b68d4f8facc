//! CORS end to end: preflights answered by Gatehouse, headers on the
//! backend's responses for allowed origins only.

use crate::support;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use support::*;

async fn site() -> Site {
    let manifests = [
        ingress_annotated(
            "listed",
            "api.test",
            "/",
            "web",
            None,
            &[
                ("nginx.ingress.kubernetes.io/enable-cors", "true"),
                (
                    "nginx.ingress.kubernetes.io/cors-allow-origin",
                    "https://app.test, https://*.partner.test",
                ),
                ("nginx.ingress.kubernetes.io/cors-expose-headers", "X-Total"),
            ],
        ),
        ingress_annotated(
            "anyone",
            "open-api.test",
            "/",
            "web",
            None,
            &[("nginx.ingress.kubernetes.io/enable-cors", "true")],
        ),
    ]
    .concat();
    Site::builder()
        .backend("web")
        .await
        .manifests(manifests)
        .start()
        .await
}

async fn call(site: &Site, method: Method, host: &str, origin: Option<&str>) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri("/items")
        .header(http::header::HOST, host);
    if let Some(origin) = origin {
        req = req
            .header(http::header::ORIGIN, origin)
            .header("access-control-request-method", "PUT");
    }
    let req: Request<Full<Bytes>> = req.body(Full::default()).expect("request");
    let mut conn = http_connect(site.gatehouse.http_addr).await;
    send_request(&mut conn, req).await.expect("request")
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_without_the_backend() {
    let site = site().await;
    let reply = call(&site, Method::OPTIONS, "api.test", Some("https://app.test")).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let h = &reply.headers;
    assert_eq!(h["access-control-allow-origin"], "https://app.test");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(
        h["access-control-allow-methods"],
        "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    );
    assert_eq!(h["access-control-max-age"], "1728000");
    assert_eq!(h["access-control-expose-headers"], "X-Total");
    assert_eq!(h["vary"], "Origin");
    assert!(reply.body.is_empty());
    assert_eq!(
        site.backend("web")
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the backend never saw it"
    );

    // One label of a wildcard origin.
    let reply = call(
        &site,
        Method::OPTIONS,
        "api.test",
        Some("https://eu.partner.test"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn allowed_origins_get_the_headers_and_others_get_none() {
    let site = site().await;
    let reply = call(&site, Method::GET, "api.test", Some("https://app.test")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.backend(), "web");
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://app.test"
    );
    assert_eq!(reply.headers["vary"], "Origin");

    for origin in [
        "https://evil.test",
        "https://a.b.partner.test",
        "http://app.test",
    ] {
        let reply = call(&site, Method::GET, "api.test", Some(origin)).await;
        assert_eq!(reply.status, StatusCode::OK, "{origin}");
        assert!(
            !reply.headers.contains_key("access-control-allow-origin"),
            "{origin}"
        );
        // Its preflight is not answered by Gatehouse either.
        let reply = call(&site, Method::OPTIONS, "api.test", Some(origin)).await;
        assert_eq!(reply.backend(), "web", "{origin}");
    }
}

#[tokio::test]
async fn star_allows_every_origin_with_a_star() {
    let site = site().await;
    let reply = call(&site, Method::GET, "open-api.test", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
    assert!(!reply.headers.contains_key("vary"));
    let reply = call(
        &site,
        Method::OPTIONS,
        "open-api.test",
        Some("https://x.test"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
}
