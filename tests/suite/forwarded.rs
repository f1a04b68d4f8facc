//! Trusted proxies end to end: the client address from a trusted peer's
//! X-Forwarded-For reaches the allowlist and the backend; an untrusted
//! peer's is replaced.

use crate::support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

async fn site(forwarded: gatehouse::table::ForwardedHeaders) -> Site {
    let allow = [(
        "nginx.ingress.kubernetes.io/allowlist-source-range",
        "203.0.113.0/24",
    )];
    let site = Site::one_route("office", "office.test", &allow).await;
    site.translate(|t| t.edge.forwarded = forwarded)
        .start()
        .await
}

fn trusting(cidr: &str, compute_full: bool) -> gatehouse::table::ForwardedHeaders {
    gatehouse::table::ForwardedHeaders {
        use_forwarded_headers: true,
        compute_full,
        trusted: vec![
            cidr.parse().expect("cidr"),
            "10.0.0.0/8".parse().expect("cidr"),
        ],
        ..Default::default()
    }
}

async fn through(gatehouse: &gatehouse::app::Running, chain: &str) -> Reply {
    let req: Request<Full<Bytes>> = Request::get("/")
        .header(http::header::HOST, "office.test")
        .header("x-forwarded-for", chain)
        .header("x-forwarded-proto", "https")
        .body(Full::default())
        .expect("request");
    let mut conn = http_connect(gatehouse.http_addr).await;
    send_request(&mut conn, req).await.expect("request")
}

#[tokio::test]
async fn a_trusted_peer_names_the_rightmost_untrusted_address() {
    // The peer (127.0.0.1) and 10.0.0.0/8 are proxies of ours.
    let site = site(trusting("127.0.0.0/8", false)).await;
    let reply = through(&site.gatehouse, "198.51.100.1, 203.0.113.7, 10.1.2.3").await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the allowlist sees 203.0.113.7"
    );
    let h = &reply.seen()["headers"];
    assert_eq!(h["x-real-ip"], "203.0.113.7");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7");
    assert_eq!(
        h["x-forwarded-proto"], "https",
        "a trusted proxy's scheme is kept"
    );
    // A forged leftmost entry changes nothing: the allowlist refuses the
    // address the trusted chain ends with.
    let reply = through(&site.gatehouse, "203.0.113.7, 198.51.100.1").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn compute_full_forwarded_for_sends_the_chain_and_the_peer() {
    let site = site(trusting("127.0.0.0/8", true)).await;
    let reply = through(&site.gatehouse, "198.51.100.1, 203.0.113.7").await;
    assert_eq!(reply.status, StatusCode::OK);
    let h = &reply.seen()["headers"];
    assert_eq!(h["x-forwarded-for"], "198.51.100.1, 203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "203.0.113.7");
}

#[tokio::test]
async fn an_untrusted_peers_headers_are_replaced_never_believed() {
    // Only 10.0.0.0/8 is trusted; the peer is 127.0.0.1.
    let untrusted = site(trusting("10.0.0.0/8", false)).await;
    let reply = through(&untrusted.gatehouse, "203.0.113.7").await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "the allowlist sees 127.0.0.1"
    );
    let off = site(Default::default()).await;
    let reply = through(&off.gatehouse, "203.0.113.7").await;
    assert_eq!(
        reply.status,
        StatusCode::FORBIDDEN,
        "use-forwarded-headers is off"
    );
}
