//! proxy-next-upstream end to end: a Service with a healthy endpoint and
//! one that answers 503.

use crate::support;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use support::*;

async fn site(annotations: &[(&str, &str)]) -> Site {
    let site = Site::builder().backend_of("web", "good").await;
    let bad = site.next_endpoint("web");
    failing_endpoint(bad).await;
    site.endpoint("web", bad)
        .manifests(ingress_annotated(
            "web",
            "web.test",
            "/",
            "web",
            None,
            annotations,
        ))
        .start()
        .await
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
