//! Rate and connection limits end to end, per client address.

use crate::support;

use std::time::Duration;

use http::StatusCode;
use support::*;

async fn site(
    annotations: &[(&str, &str)],
    options: gatehouse::translate::TranslateOptions,
) -> Site {
    let site = Site::one_route("limited", "limited.test", annotations).await;
    site.translate(|t| *t = options).start().await
}

async fn statuses(gatehouse: &gatehouse::app::Running, path: &str, n: usize) -> Vec<u16> {
    let mut conn = http_connect(gatehouse.http_addr).await;
    let mut out = Vec::new();
    for _ in 0..n {
        let reply = send(&mut conn, "limited.test", path)
            .await
            .expect("request");
        out.push(reply.status.as_u16());
    }
    out
}

#[tokio::test]
async fn a_burst_then_503_and_the_allowance_survives_a_rebuild() {
    let site = site(
        &[
            ("nginx.ingress.kubernetes.io/limit-rpm", "1"),
            ("nginx.ingress.kubernetes.io/limit-burst-multiplier", "2"),
        ],
        Default::default(),
    )
    .await;
    assert_eq!(
        statuses(&site.gatehouse, "/", 5).await,
        [200, 200, 200, 503, 503]
    );
    // An unrelated change rebuilds the table; the counters stay.
    let other = ingress("other", "other.test", "/", "web", None);
    std::fs::write(site.dir.path().join("other.yaml"), other).expect("write");
    eventually(
        "other.test to be served",
        Duration::from_secs(10),
        async || {
            http_get(site.gatehouse.http_addr, "other.test", "/")
                .await
                .status
                == StatusCode::OK
        },
    )
    .await;
    assert_eq!(statuses(&site.gatehouse, "/", 1).await, [503]);
}

#[tokio::test]
async fn the_status_is_configurable_and_allowlisted_clients_are_exempt() {
    let options = gatehouse::translate::TranslateOptions {
        limit_statuses: gatehouse::policy::rate_limit::Statuses {
            rate: StatusCode::TOO_MANY_REQUESTS,
            connections: StatusCode::TOO_MANY_REQUESTS,
        },
        ..Default::default()
    };
    let configured = site(
        &[
            ("nginx.ingress.kubernetes.io/limit-rpm", "1"),
            ("nginx.ingress.kubernetes.io/limit-burst-multiplier", "1"),
        ],
        options,
    )
    .await;
    assert_eq!(
        statuses(&configured.gatehouse, "/", 3).await,
        [200, 200, 429]
    );

    let allowlisted = site(
        &[
            ("nginx.ingress.kubernetes.io/limit-rpm", "1"),
            ("nginx.ingress.kubernetes.io/limit-whitelist", "127.0.0.0/8"),
        ],
        Default::default(),
    )
    .await;
    assert!(statuses(&allowlisted.gatehouse, "/", 20)
        .await
        .iter()
        .all(|s| *s == 200));
}

#[tokio::test]
async fn limit_connections_counts_requests_in_flight() {
    let site = site(
        &[("nginx.ingress.kubernetes.io/limit-connections", "1")],
        Default::default(),
    )
    .await;
    let addr = site.gatehouse.http_addr;
    let slow = tokio::spawn(async move {
        let mut conn = http_connect(addr).await;
        send(&mut conn, "limited.test", "/sleep/600")
            .await
            .expect("slow")
            .status
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        statuses(&site.gatehouse, "/", 1).await,
        [503],
        "one already in flight"
    );
    assert_eq!(slow.await.expect("slow request"), StatusCode::OK);
    assert_eq!(
        statuses(&site.gatehouse, "/", 2).await,
        [200, 200],
        "given back"
    );
}
