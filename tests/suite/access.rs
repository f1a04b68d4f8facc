//! Access control end to end: real sockets on 127.0.0.1, real TLS, a real
//! backend. Basic authentication with every accepted hash format (hashes
//! made by `htpasswd` and `openssl passwd`, and bcrypt made here), source
//! ranges with `satisfy`, routes closed when their protection cannot be
//! enforced, and HSTS.

use crate::support;

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

/// The tools' hashes; each user's password is its name with `-secret`.
const HTPASSWD: &str = include_str!("../fixtures/htpasswd/users");

/// Every Ingress of these tests, in one manifest directory.
async fn site(extra_users: &str) -> Site {
    // {SHA} of "sha1-secret"; a file of its own, so a test can rotate it.
    let user_map = opaque_secret(
        "user-map",
        &[("carol", "{SHA}F/WZ9PxtuIpP2yyadrWdU4eK0og=")],
    );
    Site::builder()
        .backend("web")
        .await
        .certificate("basic.test", "basic-tls")
        .manifests(manifests(extra_users))
        .file("user-map.yaml", user_map)
        .start()
        .await
}

fn manifests(extra_users: &str) -> String {
    let users = format!("{HTPASSWD}{extra_users}");
    let basic = [
        ("nginx.ingress.kubernetes.io/auth-type", "basic"),
        ("nginx.ingress.kubernetes.io/auth-secret", "users"),
        ("nginx.ingress.kubernetes.io/auth-realm", "Staff only"),
    ];
    let map = [
        ("nginx.ingress.kubernetes.io/auth-type", "basic"),
        ("nginx.ingress.kubernetes.io/auth-secret", "test/user-map"),
        ("nginx.ingress.kubernetes.io/auth-secret-type", "auth-map"),
    ];
    let any = [
        ("nginx.ingress.kubernetes.io/auth-type", "basic"),
        ("nginx.ingress.kubernetes.io/auth-secret", "users"),
        ("nginx.ingress.kubernetes.io/satisfy", "any"),
        (
            "nginx.ingress.kubernetes.io/allowlist-source-range",
            "127.0.0.1/32",
        ),
    ];
    let any_elsewhere = [
        ("nginx.ingress.kubernetes.io/auth-type", "basic"),
        ("nginx.ingress.kubernetes.io/auth-secret", "users"),
        ("nginx.ingress.kubernetes.io/satisfy", "any"),
        (
            "nginx.ingress.kubernetes.io/allowlist-source-range",
            "10.0.0.0/8",
        ),
    ];
    [
        opaque_secret("users", &[("auth", &users)]),
        opaque_secret(
            "user-map",
            &[("carol", "{SHA}F/WZ9PxtuIpP2yyadrWdU4eK0og=")],
        ),
        ingress_annotated("basic", "basic.test", "/", "web", Some("basic-tls"), &basic),
        ingress_annotated("map", "map.test", "/", "web", None, &map),
        ingress_annotated("any", "any.test", "/", "web", None, &any),
        ingress_annotated(
            "elsewhere",
            "elsewhere.test",
            "/",
            "web",
            None,
            &any_elsewhere,
        ),
        ingress("open", "open.test", "/", "web", None),
        ingress_annotated(
            "modsecurity",
            "open.test",
            "/admin",
            "web",
            None,
            &[("nginx.ingress.kubernetes.io/enable-modsecurity", "true")],
        ),
        ingress_annotated(
            "bad-range",
            "bad-range.test",
            "/",
            "web",
            None,
            &[(
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "office",
            )],
        ),
        ingress_annotated(
            "no-secret",
            "no-secret.test",
            "/",
            "web",
            None,
            &[
                ("nginx.ingress.kubernetes.io/auth-type", "basic"),
                ("nginx.ingress.kubernetes.io/auth-secret", "absent"),
            ],
        ),
        ingress_annotated(
            "denylisted",
            "deny.test",
            "/",
            "web",
            None,
            &[(
                "nginx.ingress.kubernetes.io/denylist-source-range",
                "127.0.0.0/8",
            )],
        ),
    ]
    .concat()
}

fn get(host: &str, path: &str, credentials: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = Request::get(path).header(http::header::HOST, host);
    if let Some(credentials) = credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(credentials);
        req = req.header(http::header::AUTHORIZATION, format!("Basic {token}"));
    }
    req.body(Full::default()).expect("request")
}

/// (user, password) of every line of the tools' file.
fn tool_users() -> Vec<(String, String)> {
    HTPASSWD
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(user, _)| (user.to_owned(), user.replace("-user", "-secret")))
        .collect()
}

#[tokio::test]
async fn basic_auth_accepts_every_hash_format_htpasswd_and_openssl_write() {
    let bcrypt_2b = bcrypt::hash_with_result("b-secret", 4)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoB);
    let site = site(&format!("b2b-user:{bcrypt_2b}\n")).await;
    let (mut https, _) = https_connect(site.gatehouse.https_addr, "basic.test", &site.pki.ca).await;

    let mut users = tool_users();
    users.push(("b2b-user".into(), "b-secret".into()));
    for (user, password) in &users {
        let refused = user.starts_with("plain") || user.starts_with("des");
        let creds = format!("{user}:{password}");
        let reply = send_request(&mut https, get("basic.test", "/", Some(&creds)))
            .await
            .expect("request");
        if refused {
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{user}: refused format"
            );
            continue;
        }
        assert_eq!(reply.status, StatusCode::OK, "{user}");
        let seen = reply.seen();
        assert!(
            seen["headers"].get("authorization").is_none(),
            "{user}: credentials must not reach the backend: {seen}"
        );
        // The same connection again: answered from the verified set.
        let again = send_request(&mut https, get("basic.test", "/", Some(&creds)))
            .await
            .expect("request");
        assert_eq!(again.status, StatusCode::OK, "{user} again");
        let wrong = format!("{user}:{password}x");
        let reply = send_request(&mut https, get("basic.test", "/", Some(&wrong)))
            .await
            .expect("request");
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{user} wrong password"
        );
    }
}

#[tokio::test]
async fn missing_or_wrong_credentials_get_401_with_the_realm() {
    let site = site("").await;
    let (mut https, _) = https_connect(site.gatehouse.https_addr, "basic.test", &site.pki.ca).await;
    for creds in [None, Some("nobody:x"), Some("apr-user:wrong")] {
        let reply = send_request(&mut https, get("basic.test", "/", creds))
            .await
            .expect("request");
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{creds:?}");
        assert_eq!(
            reply.headers[http::header::WWW_AUTHENTICATE],
            "Basic realm=\"Staff only\"",
            "{creds:?}"
        );
    }
    // Plain HTTP is sent to HTTPS before any credential is asked for.
    let reply = http_get(site.gatehouse.http_addr, "basic.test", "/").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
}

#[tokio::test]
async fn an_auth_map_secret_rotated_takes_effect_without_restart() {
    let site = site("").await;
    let addr = site.gatehouse.http_addr;
    let status = |creds: &'static str| async move {
        let mut conn = http_connect(addr).await;
        let reply = send_request(&mut conn, get("map.test", "/", Some(creds)))
            .await
            .expect("request");
        reply.status
    };
    assert_eq!(status("carol:sha1-secret").await, StatusCode::OK);
    assert_eq!(status("carol:new-secret").await, StatusCode::UNAUTHORIZED);

    // {SHA} of "new-secret", as `htpasswd -nbs carol new-secret` writes it.
    let rotated = opaque_secret(
        "user-map",
        &[("carol", "{SHA}XvOvbNm1qpB/phj6yCm6rsZ2O0I=")],
    );
    write_atomically(&site.dir.path().join("user-map.yaml"), &rotated);
    eventually(
        "the rotation to apply",
        Duration::from_secs(10),
        async || status("carol:new-secret").await == StatusCode::OK,
    )
    .await;
    assert_eq!(status("carol:sha1-secret").await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn routes_whose_protection_cannot_be_enforced_answer_503_and_others_are_served() {
    let site = site("").await;
    let addr = site.gatehouse.http_addr;
    // An unimplemented protective annotation, a value that does not parse,
    // a missing Secret.
    for (host, path) in [
        ("open.test", "/admin"),
        ("bad-range.test", "/"),
        ("no-secret.test", "/"),
    ] {
        let reply = http_get(addr, host, path).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{host}{path}"
        );
    }
    // Another Ingress on the same host is unaffected.
    let reply = http_get(addr, "open.test", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.backend(), "web");
}

#[tokio::test]
async fn source_ranges_and_satisfy_follow_nginx() {
    let site = site("").await;
    let addr = site.gatehouse.http_addr;
    // The client is 127.0.0.1.
    assert_eq!(
        http_get(addr, "deny.test", "/").await.status,
        StatusCode::FORBIDDEN
    );
    // satisfy any: an allowed address needs no credentials...
    assert_eq!(http_get(addr, "any.test", "/").await.status, StatusCode::OK);
    // ...and any other address must authenticate.
    let reply = http_get(addr, "elsewhere.test", "/").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let mut conn = http_connect(addr).await;
    let reply = send_request(
        &mut conn,
        get("elsewhere.test", "/", Some("sha1-user:sha1-secret")),
    )
    .await
    .expect("request");
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn hsts_goes_on_https_responses_of_tls_hosts_only() {
    let site = site("").await;
    let sts = http::header::STRICT_TRANSPORT_SECURITY;
    let (mut https, _) = https_connect(site.gatehouse.https_addr, "basic.test", &site.pki.ca).await;
    let reply = send_request(
        &mut https,
        get("basic.test", "/", Some("sha1-user:sha1-secret")),
    )
    .await
    .expect("request");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[&sts], "max-age=31536000; includeSubDomains");
    let reply = send_request(&mut https, get("basic.test", "/", None))
        .await
        .expect("request");
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply.headers.contains_key(&sts),
        "the 401 of a TLS host too"
    );

    // No tls section for open.test: not over HTTPS, not over HTTP.
    let config = tls_config(None, &[b"http/1.1"]);
    let (tls, _) = tls_connect(site.gatehouse.https_addr, "open.test", config)
        .await
        .expect("TLS with the default certificate");
    let (mut other, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let reply = send_request(&mut other, get("open.test", "/", None))
        .await
        .expect("request");
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.headers.contains_key(&sts));
    let reply = http_get(site.gatehouse.http_addr, "open.test", "/").await;
    assert!(!reply.headers.contains_key(&sts));
}

#[tokio::test]
async fn debug_routes_show_the_access_column_and_never_a_password_hash() {
    let site = site("").await;
    let reply = http_get(site.gatehouse.metrics_addr, "localhost", "/debug/routes").await;
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    let routes: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let access = |host: &str, path: &str| {
        routes["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .find(|r| r["host"] == host && r["path"] == path)
            .map(|r| r["access"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|| panic!("no route {host}{path}"))
    };
    assert_eq!(access("basic.test", "/"), "basic");
    assert_eq!(access("open.test", "/"), "public");
    assert_eq!(access("deny.test", "/"), "denylist");
    assert_eq!(access("any.test", "/"), "allowlist|basic");
    assert!(access("open.test", "/admin")
        .starts_with("denied: nginx.ingress.kubernetes.io/enable-modsecurity"));
    for line in HTPASSWD.lines() {
        let hash = line.split_once(':').map_or("", |(_, h)| h);
        assert!(!text.contains(hash), "a hash leaked into /debug/routes");
    }
}

/// Every way a protection added here can fail to be enforced, each on a
/// route whose backend is up: over HTTP and over HTTPS the answer is 503,
/// never the backend's 200.
#[tokio::test]
async fn every_protection_that_cannot_be_enforced_answers_503_never_200() {
    let backend = Backend::start("web").await;
    let n = |name: &str| format!("nginx.ingress.kubernetes.io/{name}");
    let cases: Vec<(&str, Vec<(String, &str)>)> = vec![
        // Basic authentication.
        (
            "missing-secret",
            vec![(n("auth-type"), "basic"), (n("auth-secret"), "absent")],
        ),
        (
            "no-auth-key",
            vec![(n("auth-type"), "basic"), (n("auth-secret"), "no-auth-key")],
        ),
        (
            "no-usable-user",
            vec![(n("auth-type"), "basic"), (n("auth-secret"), "plain-only")],
        ),
        (
            "digest",
            vec![(n("auth-type"), "digest"), (n("auth-secret"), "plain-only")],
        ),
        (
            "secret-without-type",
            vec![(n("auth-secret"), "plain-only")],
        ),
        (
            "other-namespace",
            vec![
                (n("auth-type"), "basic"),
                (n("auth-secret"), "elsewhere/users"),
            ],
        ),
        (
            "bad-secret-type",
            vec![
                (n("auth-type"), "basic"),
                (n("auth-secret"), "plain-only"),
                (n("auth-secret-type"), "ldap"),
            ],
        ),
        // Source ranges and satisfy.
        (
            "bad-allowlist",
            vec![(n("allowlist-source-range"), "the office")],
        ),
        (
            "bad-denylist",
            vec![(n("denylist-source-range"), "10.0.0.0/33")],
        ),
        ("bad-satisfy", vec![(n("satisfy"), "some")]),
        // External authentication.
        (
            "unknown-variable",
            vec![(n("auth-url"), "http://$upstream_addr/auth")],
        ),
        ("not-a-url", vec![(n("auth-url"), "/relative")]),
        (
            "missing-headers-map",
            vec![
                (n("auth-url"), "http://127.0.0.1:9/auth"),
                (n("auth-proxy-set-headers"), "absent"),
            ],
        ),
        (
            "bad-method",
            vec![
                (n("auth-url"), "http://127.0.0.1:9/auth"),
                (n("auth-method"), "get me"),
            ],
        ),
        // Client certificates.
        ("missing-ca", vec![(n("auth-tls-secret"), "test/absent")]),
        (
            "no-ca-key",
            vec![(n("auth-tls-secret"), "test/no-auth-key")],
        ),
        (
            "bad-verify",
            vec![
                (n("auth-tls-secret"), "test/no-auth-key"),
                (n("auth-tls-verify-client"), "sometimes"),
            ],
        ),
        (
            "tls-options-alone",
            vec![(n("auth-tls-verify-client"), "on")],
        ),
        // Not implemented, or refused by design.
        ("modsecurity", vec![(n("enable-modsecurity"), "true")]),
        ("owasp", vec![(n("enable-owasp-core-rules"), "true")]),
        (
            "auth-snippet",
            vec![(n("auth-snippet"), "proxy_set_header X-A b;")],
        ),
    ];
    let mut manifests = vec![
        INGRESS_CLASS.to_owned(),
        service("web", &[backend.addr]),
        opaque_secret(
            "no-auth-key",
            &[("users", "alice:{SHA}F/WZ9PxtuIpP2yyadrWdU4eK0og=")],
        ),
        opaque_secret("plain-only", &[("auth", "alice:plain-secret")]),
        ingress("open", "open.test", "/", "web", None),
    ];
    for (name, annotations) in &cases {
        let pairs: Vec<(&str, &str)> = annotations.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        manifests.push(ingress_annotated(
            name,
            &format!("{name}.test"),
            "/",
            "web",
            None,
            &pairs,
        ));
    }
    let (_dir, gatehouse) = serve_manifests(&manifests.concat()).await;
    assert_eq!(
        http_get(gatehouse.http_addr, "open.test", "/").await.status,
        StatusCode::OK
    );

    let config = tls_config(None, &[b"http/1.1"]);
    for (name, _) in &cases {
        let host = format!("{name}.test");
        let reply = http_get(gatehouse.http_addr, &host, "/").await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{host} over HTTP"
        );
        let (tls, _) = tls_connect(gatehouse.https_addr, &host, config.clone())
            .await
            .expect("TLS");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        let reply = send(&mut sender, &host, "/").await.expect("request");
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{host} over HTTPS"
        );
    }
}
