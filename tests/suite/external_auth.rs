//! External authentication end to end: a small auth service on 127.0.0.1
//! stands in for oauth2-proxy (its answer depends on the session cookie),
//! real requests go through Gatehouse to a real backend.

use crate::support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;

/// What the auth service received: method, URI and headers of each
/// subrequest.
type Seen = Arc<Mutex<Vec<(http::Method, String, HeaderMap)>>>;

/// oauth2-proxy's part: `_oauth2_proxy=alice` is a session (200 with the
/// user headers and a refreshed cookie), `banned` 403, `broken` 502,
/// `slow` answers after 3 s, anything else 401 with a challenge.
async fn auth_service() -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let record = record.clone();
                    async move { Ok::<_, Infallible>(answer(req, &record).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn answer(req: Request<Incoming>, seen: &Seen) -> Response<Full<Bytes>> {
    seen.lock().unwrap().push((
        req.method().clone(),
        req.uri().to_string(),
        req.headers().clone(),
    ));
    let session = req
        .headers()
        .get(http::header::COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| {
            c.split("; ")
                .find_map(|kv| kv.strip_prefix("_oauth2_proxy="))
        })
        .unwrap_or_default()
        .to_owned();
    let reply = Response::builder();
    let reply = match session.as_str() {
        "alice" => reply
            .status(200)
            .header("x-auth-request-user", "alice")
            .header("x-auth-request-email", "alice@example.com")
            .header("set-cookie", "_oauth2_proxy=alice; Path=/; HttpOnly"),
        "banned" => reply.status(403),
        "broken" => reply.status(502),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            reply.status(200)
        }
        _ => reply
            .status(401)
            .header("www-authenticate", "Bearer realm=\"sso\"")
            .header("set-cookie", "_oauth2_proxy_csrf=x; Path=/"),
    };
    reply
        .body(Full::new(Bytes::from_static(b"auth says")))
        .expect("response")
}

/// The site and what its auth service was asked.
async fn site() -> (Site, Seen) {
    let (auth_addr, auth) = auth_service().await;
    let closed = closed_port().await;
    let site = Site::builder()
        .backend("web")
        .await
        .manifests(manifests(auth_addr, closed))
        .start()
        .await;
    (site, auth)
}

/// Ingresses asking the auth service at `auth_addr`, and one asking a
/// `closed` port.
fn manifests(auth_addr: SocketAddr, closed: u16) -> String {
    let url = format!("http://{auth_addr}/oauth2/auth?host=$host");
    let common = |extra: &[(&'static str, &'static str)]| {
        let mut a = vec![
            ("nginx.ingress.kubernetes.io/auth-url", url.clone()),
            (
                "nginx.ingress.kubernetes.io/proxy-connect-timeout",
                "1".to_owned(),
            ),
            (
                "nginx.ingress.kubernetes.io/proxy-read-timeout",
                "1".to_owned(),
            ),
        ];
        a.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        a
    };
    let ingress_with = |name: &str, host: &str, annotations: Vec<(&str, String)>| {
        let pairs: Vec<(&str, &str)> = annotations.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ingress_annotated(name, host, "/", "web", None, &pairs)
    };
    [
        "---
apiVersion: v1
kind: ConfigMap
metadata: {name: auth-headers, namespace: test}
data: {X-Tenant: blue, X-Asked-For: $request_uri}
"
        .to_owned(),
        ingress_with(
            "headers",
            "headers.test",
            common(&[(
                "nginx.ingress.kubernetes.io/auth-proxy-set-headers",
                "test/auth-headers",
            )]),
        ),
        ingress_with(
            "oauth",
            "oauth.test",
            common(&[
                (
                    "nginx.ingress.kubernetes.io/auth-signin",
                    "https://$host/oauth2/start?rd=$escaped_request_uri",
                ),
                (
                    "nginx.ingress.kubernetes.io/auth-response-headers",
                    "X-Auth-Request-User, X-Auth-Request-Email, X-Auth-Request-Groups",
                ),
            ]),
        ),
        ingress_with("challenge", "challenge.test", common(&[])),
        ingress_with(
            "signin",
            "signin.test",
            common(&[(
                "nginx.ingress.kubernetes.io/auth-signin",
                "https://login.test/start",
            )]),
        ),
        ingress_with(
            "always",
            "always.test",
            common(&[("nginx.ingress.kubernetes.io/auth-always-set-cookie", "true")]),
        ),
        ingress_with(
            "cached",
            "cached.test",
            common(&[
                (
                    "nginx.ingress.kubernetes.io/auth-cache-key",
                    "$cookie__oauth2_proxy",
                ),
                ("nginx.ingress.kubernetes.io/auth-cache-duration", "200 30m"),
            ]),
        ),
        ingress_with(
            "down",
            "down.test",
            vec![(
                "nginx.ingress.kubernetes.io/auth-url",
                format!("http://127.0.0.1:{closed}/auth"),
            )],
        ),
    ]
    .concat()
}

fn request(host: &str, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::get(path).header(http::header::HOST, host);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Full::default()).expect("request")
}

async fn fetch(site: &Site, req: Request<Full<Bytes>>) -> Reply {
    let mut conn = http_connect(site.gatehouse.http_addr).await;
    send_request(&mut conn, req).await.expect("request")
}

#[tokio::test]
async fn a_yes_forwards_with_the_auth_headers_and_client_forgeries_dropped() {
    let (site, auth) = site().await;
    let req = request(
        "oauth.test",
        "/cart?item=7",
        &[
            ("cookie", "_oauth2_proxy=alice"),
            ("x-auth-request-user", "mallory"),
            ("x-auth-request-groups", "admins"),
        ],
    );
    let reply = fetch(&site, req).await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = reply.seen();
    let headers = &seen["headers"];
    assert_eq!(headers["x-auth-request-user"], "alice");
    assert_eq!(headers["x-auth-request-email"], "alice@example.com");
    assert!(
        headers.get("x-auth-request-groups").is_none(),
        "forged: {headers}"
    );
    assert_eq!(seen["uri"], "/cart?item=7");
    // The auth service's cookie reaches the client on a 200.
    assert_eq!(
        reply.headers["set-cookie"],
        "_oauth2_proxy=alice; Path=/; HttpOnly"
    );

    let asked = auth.lock().unwrap();
    let (method, uri, h) = asked.last().expect("a subrequest");
    assert_eq!(method, http::Method::GET);
    assert_eq!(uri, "/oauth2/auth?host=oauth.test");
    assert_eq!(h["x-original-url"], "http://oauth.test/cart?item=7");
    assert_eq!(h["x-original-method"], "GET");
    assert_eq!(h["x-forwarded-method"], "GET");
    assert_eq!(h["x-forwarded-host"], "oauth.test");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-auth-request-redirect"], "/cart?item=7");
    assert_eq!(h["x-sent-from"], "gatehouse");
    assert_eq!(
        h["cookie"], "_oauth2_proxy=alice",
        "the original headers go along"
    );
    assert!(!h.contains_key("content-length"));
}

#[tokio::test]
async fn a_401_redirects_to_sign_in_or_passes_the_challenge() {
    let (site, _auth) = site().await;
    // The sign-in URL already carries rd: used as written.
    let reply = fetch(&site, request("oauth.test", "/a/b?c=d", &[])).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(
        reply.headers["location"],
        "https://oauth.test/oauth2/start?rd=%2Fa%2Fb%3Fc%3Dd"
    );
    // Without rd, Gatehouse appends it.
    let reply = fetch(
        &site,
        request("signin.test", "/x y".replace(' ', "%20").as_str(), &[]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(
        reply.headers["location"],
        "https://login.test/start?rd=http://signin.test%2Fx%2520y"
    );
    // Without a sign-in URL: the service's 401 and challenge.
    let reply = fetch(&site, request("challenge.test", "/", &[])).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.headers["www-authenticate"], "Bearer realm=\"sso\"");
    assert!(!reply.headers.contains_key("set-cookie"));
    // auth-always-set-cookie: the cookie comes with the 401 too.
    let reply = fetch(&site, request("always.test", "/", &[])).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.headers["set-cookie"], "_oauth2_proxy_csrf=x; Path=/");
}

#[tokio::test]
async fn a_403_is_403_and_errors_or_silence_are_500_never_forwarded() {
    let (site, _auth) = site().await;
    let cookie = |v: &'static str| ("cookie", v);
    let reply = fetch(
        &site,
        request("challenge.test", "/", &[cookie("_oauth2_proxy=banned")]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = fetch(
        &site,
        request("challenge.test", "/", &[cookie("_oauth2_proxy=broken")]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    // Connect 1 s + read 1 s bound the slow service (which takes 3 s).
    let started = std::time::Instant::now();
    let reply = fetch(
        &site,
        request("challenge.test", "/", &[cookie("_oauth2_proxy=slow")]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "not bounded by the timeouts"
    );
    // Nothing listening.
    let reply = fetch(&site, request("down.test", "/", &[])).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!reply.body.starts_with(b"{"), "never the backend's answer");
}

#[tokio::test]
async fn answers_are_cached_by_the_cache_key() {
    let (site, auth) = site().await;
    let count = || auth.lock().unwrap().len();
    let alice = [("cookie", "_oauth2_proxy=alice")];
    for _ in 0..3 {
        let reply = fetch(&site, request("cached.test", "/", &alice)).await;
        assert_eq!(reply.backend(), "web");
    }
    assert_eq!(
        count(),
        1,
        "one subrequest for three requests of one session"
    );
    // Another key asks again; a 401 is not cached under "200 30m".
    for _ in 0..2 {
        let reply = fetch(&site, request("cached.test", "/", &[])).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(count(), 3);
}

#[tokio::test]
async fn auth_proxy_set_headers_come_from_the_configmap() {
    let (site, auth) = site().await;
    let reply = fetch(
        &site,
        request("headers.test", "/x?y=1", &[("x-tenant", "red")]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let asked = auth.lock().unwrap();
    let (_, _, h) = asked.last().expect("a subrequest");
    assert_eq!(
        h["x-tenant"], "blue",
        "the ConfigMap's value replaces the client's"
    );
    assert_eq!(h["x-asked-for"], "/x?y=1");
}
