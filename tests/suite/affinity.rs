//! Session affinity and hashing end to end, over a Service with three
//! endpoints (three backends on 127.0.0.1-3).

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

async fn site(annotations: &[(&str, &str)]) -> Site {
    let site = Site::builder().backend_of("web", "b1").await;
    let site = site
        .backend_of("web", "b2")
        .await
        .backend_of("web", "b3")
        .await;
    site.manifests(ingress_annotated(
        "sticky",
        "app.test",
        "/",
        "web",
        None,
        annotations,
    ))
    .start()
    .await
}

/// One request on a new connection: (backend, Set-Cookie value if any).
async fn visit(site: &Site, path: &str, cookie: Option<&str>) -> (String, Option<String>) {
    let mut req = Request::get(path).header(http::header::HOST, "app.test");
    if let Some(cookie) = cookie {
        req = req.header(http::header::COOKIE, cookie);
    }
    let req: Request<Full<Bytes>> = req.body(Full::default()).expect("request");
    let mut conn = http_connect(site.gatehouse.http_addr).await;
    let reply = send_request(&mut conn, req).await.expect("request");
    assert_eq!(reply.status, StatusCode::OK);
    let set = reply
        .headers
        .get(http::header::SET_COOKIE)
        .map(|v| v.to_str().expect("ascii").to_owned());
    (reply.backend(), set)
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("name=value").to_owned()
}

#[tokio::test]
async fn a_balanced_session_sticks_and_sessions_spread() {
    let site = site(&[("nginx.ingress.kubernetes.io/affinity", "cookie")]).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let (backend, set) = visit(&site, "/", None).await;
        let set = set.expect("a new session gets a cookie");
        assert!(set.starts_with("INGRESSCOOKIE="), "{set}");
        assert!(
            set.contains("; Path=/") && set.contains("; HttpOnly"),
            "{set}"
        );
        let pair = cookie_pair(&set);
        for _ in 0..5 {
            let (again, set_again) = visit(&site, "/", Some(&pair)).await;
            assert_eq!(again, backend, "the session stays on its endpoint");
            assert!(set_again.is_none(), "a known session keeps its cookie");
        }
        seen.insert(backend);
    }
    assert!(
        seen.len() >= 2,
        "sessions spread over the endpoints: {seen:?}"
    );
}

#[tokio::test]
async fn a_persistent_session_moves_only_when_its_endpoint_is_gone() {
    let mut site = site(&[
        ("nginx.ingress.kubernetes.io/affinity", "cookie"),
        ("nginx.ingress.kubernetes.io/affinity-mode", "persistent"),
        ("nginx.ingress.kubernetes.io/session-cookie-name", "route"),
        ("nginx.ingress.kubernetes.io/session-cookie-max-age", "3600"),
        (
            "nginx.ingress.kubernetes.io/session-cookie-samesite",
            "Strict",
        ),
    ])
    .await;
    let (backend, set) = visit(&site, "/", None).await;
    let set = set.expect("cookie");
    assert!(
        set.contains("; Max-Age=3600") && set.contains("; SameSite=Strict"),
        "{set}"
    );
    let pair = cookie_pair(&set);
    assert!(
        !pair.contains("127.0.0"),
        "the cookie does not reveal the address: {pair}"
    );
    for _ in 0..5 {
        assert_eq!(visit(&site, "/", Some(&pair)).await.0, backend);
    }
    // Its endpoint leaves the Service.
    let gone = site
        .backends
        .iter()
        .position(|b| b.name == backend)
        .expect("backend");
    let removed = site.backends.remove(gone);
    let addrs: Vec<SocketAddr> = site.backends.iter().map(|b| b.addr).collect();
    write_atomically(
        &site.dir.path().join(SERVICES_FILE),
        &service("web", &addrs),
    );
    let (now, set) = eventually("the session to move", Duration::from_secs(10), async || {
        let (now, set) = visit(&site, "/", Some(&pair)).await;
        (now != removed.name).then_some((now, set))
    })
    .await;
    let new_pair = cookie_pair(&set.expect("a new cookie for the new endpoint"));
    for _ in 0..5 {
        assert_eq!(visit(&site, "/", Some(&new_pair)).await.0, now);
    }
}

#[tokio::test]
async fn upstream_hash_by_sends_one_key_to_one_endpoint() {
    let site = site(&[("nginx.ingress.kubernetes.io/upstream-hash-by", "$arg_user")]).await;
    let mut seen = std::collections::BTreeSet::new();
    for user in 0..20 {
        let path = format!("/?user={user}");
        let (first, set) = visit(&site, &path, None).await;
        assert!(set.is_none(), "no cookie for hashing");
        for _ in 0..3 {
            assert_eq!(visit(&site, &path, None).await.0, first, "user {user}");
        }
        seen.insert(first);
    }
    assert!(seen.len() >= 2, "{seen:?}");
}
