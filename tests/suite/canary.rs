//! Canary releases end to end: a stable and a canary backend, the canary
//! Ingress's weight moved 0 → 100 in steps while clients keep sending, as
//! Argo Rollouts and Flagger do.

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

fn canary_ingress(weight: u32) -> String {
    let weight = weight.to_string();
    let annotations = [
        ("nginx.ingress.kubernetes.io/canary", "true"),
        ("nginx.ingress.kubernetes.io/canary-weight", weight.as_str()),
        ("nginx.ingress.kubernetes.io/canary-by-header", "X-Canary"),
        ("nginx.ingress.kubernetes.io/canary-by-cookie", "canary"),
    ];
    ingress_annotated(
        "shop-canary",
        "shop.test",
        "/",
        "preview",
        None,
        &annotations,
    )
    .replace("ImplementationSpecific", "Prefix")
}

async fn site(weight: u32) -> Site {
    let site = Site::builder()
        .backend("stable")
        .await
        .backend("preview")
        .await;
    site.manifests(ingress("shop", "shop.test", "/", "stable", None))
        .file("canary.yaml", canary_ingress(weight))
        .start()
        .await
}

fn get(headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::get("/").header(http::header::HOST, "shop.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::default()).expect("request")
}

/// The weight the served table gives the canary.
fn served_weight(site: &Site) -> Option<u32> {
    let table = site.gatehouse.table.load();
    let route = table
        .routes()
        .into_iter()
        .find(|r| r.host.to_string() == "shop.test")?;
    route.canary.as_ref().map(|c| c.rule.weight().0)
}

/// `n` requests over 4 keep-alive connections; how many the canary took.
async fn canary_share(site: &Site, n: usize) -> usize {
    let hits = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (addr, hits) = (site.gatehouse.http_addr, hits.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = http_connect(addr).await;
            for _ in 0..n / 4 {
                let reply = send_request(&mut conn, get(&[])).await.expect("request");
                assert_eq!(reply.status, StatusCode::OK);
                if reply.backend() == "preview" {
                    hits.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
    hits.load(Ordering::Relaxed)
}

#[tokio::test]
async fn the_weight_moves_from_0_to_100_under_load_with_every_response_2xx() {
    let site = site(0).await;
    // Clients that keep sending on kept-alive connections throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..2 {
        let addr = site.gatehouse.http_addr;
        let (stop, failures, sent) = (stop.clone(), failures.clone(), sent.clone());
        load.push(tokio::spawn(async move {
            let mut conn = http_connect(addr).await;
            while !stop.load(Ordering::Relaxed) {
                // As a browser does when keep-alive-requests ends a
                // connection: a new one, and nothing lost.
                if conn.ready().await.is_err() {
                    conn = http_connect(addr).await;
                }
                match send_request(&mut conn, get(&[])).await {
                    Ok(reply) if reply.status.is_success() => {}
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    let n = 400;
    for weight in [0, 10, 25, 50, 75, 90, 100] {
        let canary = canary_ingress(weight);
        write_atomically(&site.dir.path().join("canary.yaml"), &canary);
        let applied = format!("weight {weight} applied");
        eventually(applied, Duration::from_secs(5), async || {
            served_weight(&site) == Some(weight)
        })
        .await;
        assert_eq!(
            served_weight(&site),
            Some(weight),
            "weight {weight} applied"
        );
        let hits = canary_share(&site, n).await;
        let share = hits as f64 / n as f64;
        let want = f64::from(weight) / 100.0;
        // Binomial: at most 0.025 standard deviation at n = 400; 5 of them
        // leave no room for a flaky failure, and 0 and 100 are exact.
        assert!(
            (share - want).abs() <= 0.125,
            "weight {weight}: the canary took {hits} of {n}"
        );
        if weight == 0 || weight == 100 {
            assert_eq!(hits, weight as usize * n / 100, "weight {weight}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load client");
    }
    assert!(sent.load(Ordering::Relaxed) > 0);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "every response under load was 2xx"
    );
}

async fn backend_for(conn: &mut Sender, headers: &[(&str, &str)]) -> String {
    send_request(conn, get(headers))
        .await
        .expect("request")
        .backend()
}

#[tokio::test]
async fn header_beats_cookie_beats_weight() {
    let site = site(0).await;
    let mut conn = http_connect(site.gatehouse.http_addr).await;
    let c = &mut conn;
    assert_eq!(backend_for(c, &[]).await, "stable");
    assert_eq!(backend_for(c, &[("x-canary", "always")]).await, "preview");
    assert_eq!(
        backend_for(c, &[("cookie", "canary=always")]).await,
        "preview"
    );
    let never_beats_cookie = [("x-canary", "never"), ("cookie", "canary=always")];
    assert_eq!(backend_for(c, &never_beats_cookie).await, "stable");
    let other_falls_through = [("x-canary", "maybe"), ("cookie", "canary=always")];
    assert_eq!(backend_for(c, &other_falls_through).await, "preview");

    // At weight 100, `never` keeps a request on the main backend.
    write_atomically(&site.dir.path().join("canary.yaml"), &canary_ingress(100));
    eventually("weight 100 applied", Duration::from_secs(5), async || {
        served_weight(&site) == Some(100)
    })
    .await;
    assert_eq!(backend_for(c, &[]).await, "preview");
    assert_eq!(
        backend_for(c, &[("cookie", "canary=never")]).await,
        "stable"
    );
}
