//! One request, one table: a request is decided and answered by the table
//! it arrived under, even when another is swapped in while it waits for
//! its endpoint.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use gatehouse::table::RouteTable;
use http::{HeaderName, HeaderValue, StatusCode};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

/// The table being served, with the controller ConfigMap's `add-headers`
/// set to `x-table: <name>`.
fn with_edge_header(table: &RouteTable, name: &'static str) -> RouteTable {
    let mut table = table.clone();
    let mut edge = (*table.edge).clone();
    edge.add_headers = vec![(
        HeaderName::from_static("x-table"),
        HeaderValue::from_static(name),
    )];
    table.edge = Arc::new(edge);
    table
}

#[tokio::test]
async fn a_request_is_answered_with_the_edge_headers_of_the_table_that_decided_it() {
    // `/slow` waits at the endpoint until released; anything else answers
    // at once.
    let (arrived, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (endpoint, server) = raw_endpoint({
        let (arrived, release) = (arrived.clone(), release.clone());
        move |head, mut stream| {
            let (arrived, release) = (arrived.clone(), release.clone());
            async move {
                if head.starts_with(b"GET /slow ") {
                    arrived.notify_one();
                    release.notified().await;
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = stream.write_all(answer).await;
            }
        }
    })
    .await;
    let manifests = [
        INGRESS_CLASS.to_owned(),
        service("slow", &[endpoint]),
        ingress("slow", "slow.test", "/", "slow", None),
    ]
    .concat();
    let (_dir, gatehouse) = serve_manifests(&manifests).await;
    let addr = gatehouse.http_addr;
    let first = with_edge_header(&gatehouse.table.load(), "first");
    gatehouse.table.store(Arc::new(first));

    let waiting = tokio::spawn(async move { http_get(addr, "slow.test", "/slow").await });
    tokio::time::timeout(Duration::from_secs(10), arrived.notified())
        .await
        .expect("the slow request reaches its endpoint");
    let second = with_edge_header(&gatehouse.table.load(), "second");
    gatehouse.table.store(Arc::new(second));
    let meanwhile = http_get(addr, "slow.test", "/fast").await;
    assert_eq!(meanwhile.status, StatusCode::OK);
    assert_eq!(
        meanwhile.headers["x-table"], "second",
        "a request that arrives after the swap is answered by the new table"
    );

    release.notify_one();
    let slow = waiting.await.expect("the slow request");
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(
        slow.headers["x-table"], "first",
        "the request that was decided by the first table is answered with its headers"
    );
    server.abort();
}
