//! Traffic split by backendRef weights, and requests mirrored to other
//! backends (whole or by percentage).

use super::*;

#[tokio::test]
async fn weights_split_requests_and_an_unresolved_share_answers_500() {
    let suite = split_suite().await;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..400 {
        let reply = suite.send(&at("split.example", "/", Status(200))).await;
        assert_eq!(reply.status, StatusCode::OK);
        *counts.entry(reply.backend()).or_default() += 1;
    }
    let v1 = counts.get("infra-backend-v1").copied().unwrap_or(0);
    let v2 = counts.get("infra-backend-v2").copied().unwrap_or(0);
    assert_eq!(v1 + v2, 400, "weight 0 takes nothing: {counts:?}");
    // 3:1, with a wide margin for chance (300 expected, sd ≈ 8.7).
    assert!((240..=360).contains(&v1), "{counts:?}");

    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..200 {
        let reply = suite
            .send(&at("split.example", "/half-broken", Status(200)))
            .await;
        *statuses.entry(reply.status.as_u16()).or_default() += 1;
    }
    let ok = statuses.get(&200).copied().unwrap_or(0);
    let failed = statuses.get(&500).copied().unwrap_or(0);
    assert_eq!(ok + failed, 200, "{statuses:?}");
    assert!(
        (60..=140).contains(&failed),
        "half answer 500: {statuses:?}"
    );
}

#[tokio::test]
async fn httproute_weight() {
    let suite = Suite::start(&["httproute-weight"]).await;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..500 {
        let reply = suite.send(&get("/", Status(200))).await;
        assert_eq!(reply.status, StatusCode::OK);
        *counts.entry(reply.backend()).or_default() += 1;
    }
    // 70/30/0 (350 expected for v1, sd ≈ 10): the suite allows a 5% error.
    let v1 = counts.get("infra-backend-v1").copied().unwrap_or(0);
    assert!((300..=400).contains(&v1), "{counts:?}");
    assert!(!counts.contains_key("infra-backend-v3"), "{counts:?}");
}

/// Waits for `count` requests under `path` at a backend.
async fn mirrored(
    suite: &Suite,
    backend: &str,
    path: &str,
    count: usize,
) -> Vec<serde_json::Value> {
    let what = format!("{count} requests under {path} at {backend}");
    eventually(what, Duration::from_secs(5), async || {
        let seen = suite.seen_by(backend, path);
        if seen.len() >= count {
            Ok(seen)
        } else {
            Err(seen)
        }
    })
    .await
}

#[tokio::test]
async fn httproute_request_mirror() {
    let suite = Suite::start(&[
        "httproute-request-mirror",
        "httproute-request-multiple-mirrors",
    ])
    .await;
    suite.check(&[get("/mirror", B("infra-backend-v1"))]).await;
    let copies = mirrored(&suite, "infra-backend-v2", "/mirror", 1).await;
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0]["method"], "GET");

    suite
        .check(&[with(
            "/mirror-and-modify-headers",
            SENT,
            Expect::Seen {
                backend: "infra-backend-v1",
                uri: "/mirror-and-modify-headers",
                host: None,
                headers: MODIFIED,
            },
        )])
        .await;
    let copies = mirrored(&suite, "infra-backend-v2", "/mirror-and-modify-headers", 1).await;
    let headers = &copies[0]["headers"];
    assert_eq!(headers["x-header-set"], "set-overwrites-values");
    assert_eq!(headers["x-header-add"], "header-val-1");
    assert!(headers["x-header-remove"].is_null(), "{headers}");

    suite
        .check(&[get("/multi-mirror", B("infra-backend-v1"))])
        .await;
    for backend in ["infra-backend-v2", "infra-backend-v3"] {
        assert_eq!(
            mirrored(&suite, backend, "/multi-mirror", 1).await.len(),
            1,
            "{backend}"
        );
    }

    // A request with a body is served, and not mirrored.
    let mut conn = http_connect(suite.gatehouse.http_addr).await;
    let req = Request::post("/mirror/upload")
        .header(http::header::HOST, "gateway.test")
        .body(Full::new(Bytes::from_static(b"payload")))
        .expect("request");
    let reply = send_request(&mut conn, req).await.expect("reply");
    assert_eq!(reply.backend(), "infra-backend-v1");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(suite
        .seen_by("infra-backend-v2", "/mirror/upload")
        .is_empty());
}

#[tokio::test]
async fn httproute_request_percentage_mirror() {
    let suite = Suite::start(&["httproute-request-percentage-mirror"]).await;
    for _ in 0..200 {
        suite
            .check(&[get("/percent-mirror-fraction", B("infra-backend-v1"))])
            .await;
    }
    // 25/50: half of them (100 expected, sd ≈ 7).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let copies = suite.seen_by("infra-backend-v2", "/percent-mirror-fraction");
    assert!((60..=140).contains(&copies.len()), "{}", copies.len());
}
