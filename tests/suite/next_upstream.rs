//! proxy-next-upstream end to end: a Service with a healthy endpoint and
//! one that answers 503.

use crate::support;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use support::*;

async fn site(annotations: &[(&str, &str)]) -> Site {
    site_with_failing(annotations, failing_endpoint).await.0
}

/// `web.test` to a Service with a healthy endpoint and one that
/// `failing` starts (what it returns comes back with the site).
async fn site_with_failing<F, Fut>(annotations: &[(&str, &str)], failing: F) -> (Site, Fut::Output)
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: std::future::Future,
{
    let site = Site::builder().backend_of("web", "good").await;
    let bad = site.next_endpoint("web");
    let started = failing(bad).await;
    let site = site
        .endpoint("web", bad)
        .manifests(ingress_annotated(
            "web",
            "web.test",
            "/",
            "web",
            None,
            annotations,
        ))
        .start()
        .await;
    (site, started)
}

async fn statuses(gatehouse: &gatehouse::app::Running, method: Method, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    let mut conn = http_connect(gatehouse.http_addr).await;
    for _ in 0..n {
        let req: Request<Full<Bytes>> = Request::builder()
            .method(method.clone())
            .uri("/")
            .header(http::header::HOST, "web.test")
            .body(Full::default())
            .expect("request");
        out.push(
            send_request(&mut conn, req)
                .await
                .expect("request")
                .status
                .as_u16(),
        );
    }
    out
}

#[tokio::test]
async fn a_503_is_tried_on_the_next_endpoint_when_asked() {
    let site = site(&[(
        "nginx.ingress.kubernetes.io/proxy-next-upstream",
        "error timeout http_503",
    )])
    .await;
    let got = statuses(&site.gatehouse, Method::GET, 10).await;
    assert!(got.iter().all(|s| *s == 200), "{got:?}");
}

#[tokio::test]
async fn by_default_a_503_is_passed_on_and_a_post_is_not_resent() {
    let default = site(&[]).await;
    let got = statuses(&default.gatehouse, Method::GET, 10).await;
    assert!(
        got.contains(&503) && got.contains(&200),
        "round robin over both: {got:?}"
    );
    // Even asked to retry 503s, a POST that reached an endpoint is not
    // sent again without non_idempotent.
    let retrying = site(&[(
        "nginx.ingress.kubernetes.io/proxy-next-upstream",
        "http_503",
    )])
    .await;
    let got = statuses(&retrying.gatehouse, Method::POST, 10).await;
    assert!(got.contains(&503), "{got:?}");
    let resending = site(&[(
        "nginx.ingress.kubernetes.io/proxy-next-upstream",
        "http_503 non_idempotent",
    )])
    .await;
    let got = statuses(&resending.gatehouse, Method::POST, 10).await;
    assert!(got.iter().all(|s| *s == 200), "{got:?}");
}

/// A request head's header lines by lower-case name (values of a repeated
/// name joined as the test backend joins them).
fn head_headers(head: &str) -> BTreeMap<String, String> {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for line in head.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').expect("a header line");
        let value = value.trim().to_owned();
        headers
            .entry(name.to_ascii_lowercase())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    headers
}

#[tokio::test]
async fn the_next_endpoint_gets_the_same_headers_as_the_first() {
    let annotations = [
        (
            "nginx.ingress.kubernetes.io/proxy-next-upstream",
            "error timeout http_503",
        ),
        (
            "nginx.ingress.kubernetes.io/upstream-vhost",
            "internal.web.svc",
        ),
        ("nginx.ingress.kubernetes.io/x-forwarded-prefix", "/shop"),
    ];
    let (site, heads) = site_with_failing(&annotations, failing_endpoint).await;
    let mut conn = http_connect(site.gatehouse.http_addr).await;
    let mut retried = 0;
    for _ in 0..6 {
        let req = Request::get("/cart?item=7")
            .header(http::header::HOST, "web.test")
            .header(http::header::CONNECTION, "keep-alive, x-hop")
            .header("x-hop", "only this hop")
            .header("x-forwarded-for", "203.0.113.9")
            .header("ssl-client-verify", "SUCCESS")
            .header("x-kept", "yes")
            .body(Full::default())
            .expect("request");
        let reply = send_request(&mut conn, req).await.expect("request");
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        let seen = reply.seen();
        let second: BTreeMap<String, String> =
            serde_json::from_value(seen["headers"].clone()).expect("headers");
        let id = &second["x-request-id"];
        let first = heads
            .lock()
            .expect("heads")
            .iter()
            .map(|head| head_headers(head))
            .find(|first| first.get("x-request-id") == Some(id));
        let Some(first) = first else {
            // Round robin sent this one to the good endpoint first.
            continue;
        };
        retried += 1;
        assert_eq!(
            first, second,
            "the retry's headers differ from the first attempt's"
        );
        assert_eq!(second["host"], "internal.web.svc");
        assert_eq!(second["x-forwarded-prefix"], "/shop");
        assert_eq!(second["x-forwarded-for"], "127.0.0.1");
        assert_eq!(second["x-kept"], "yes");
        assert!(!second.contains_key("x-hop"), "{second:?}");
        assert!(!second.contains_key("ssl-client-verify"), "{second:?}");
    }
    assert!(
        retried >= 2,
        "round robin sends every other request to the failing endpoint first: {retried}"
    );
}
