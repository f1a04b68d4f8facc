//! The controller ConfigMap end to end: each key's effect on real requests,
//! its precedence against an annotation, and a change applied live.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use gatehouse::cluster::ObjectKey;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

/// A ConfigMap `name` in namespace `test` with `data`.
fn config_map(name: &str, data: &[(&str, &str)]) -> String {
    let data: Vec<String> = data
        .iter()
        .map(|(k, v)| format!("  {k}: {}\n", serde_json::Value::from(*v)))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: test}}\ndata:\n{}",
        if data.is_empty() {
            "  {}\n".to_owned()
        } else {
            data.concat()
        }
        .replace("data:\n  {}", "data: {}")
    )
}

/// Gatehouse on `manifests` plus the controller ConfigMap `test/gatehouse`
/// with `data`.
async fn serve(
    manifests: &str,
    data: &[(&str, &str)],
) -> (tempfile::TempDir, gatehouse::app::Running) {
    let all = format!("{manifests}{}", config_map("gatehouse", data));
    serve_manifests_with(&all, |c| {
        c.translate.config_map = Some(ObjectKey::new("test", "gatehouse"));
    })
    .await
}

/// A backend `web` and one Ingress per `(name, annotations)`, host
/// `<name>.test`.
async fn web_with(ingresses: &[(&str, &[(&str, &str)])]) -> (Backend, String) {
    let backend = Backend::start("web").await;
    let mut manifests = INGRESS_CLASS.to_owned() + &service("web", &[backend.addr]);
    for (name, annotations) in ingresses {
        let host = format!("{name}.test");
        manifests += &ingress_annotated(name, &host, "/", "web", None, annotations);
    }
    (backend, manifests)
}

async fn request(addr: std::net::SocketAddr, req: Request<Full<Bytes>>) -> Reply {
    let mut sender = http_connect(addr).await;
    send_request(&mut sender, req).await.expect("request")
}

fn get(host: &str) -> http::request::Builder {
    Request::get("/").header(http::header::HOST, host)
}

fn post(host: &str, bytes: usize) -> Request<Full<Bytes>> {
    Request::post("/")
        .header(http::header::HOST, host)
        .body(Full::new(Bytes::from(vec![b'x'; bytes])))
        .expect("request")
}

#[tokio::test]
async fn the_configmap_sets_route_defaults_and_annotations_win() {
    let (_web, manifests) = web_with(&[
        ("plain", &[]),
        (
            "own",
            &[
                ("nginx.ingress.kubernetes.io/force-ssl-redirect", "false"),
                ("nginx.ingress.kubernetes.io/proxy-body-size", "8k"),
            ],
        ),
        (
            "half",
            &[("nginx.ingress.kubernetes.io/force-ssl-redirect", "false")],
        ),
    ])
    .await;
    let data = [("force-ssl-redirect", "true"), ("proxy-body-size", "1k")];
    let (_dir, gatehouse) = serve(&manifests, &data).await;
    let addr = gatehouse.http_addr;
    let redirected = http_get(addr, "plain.test", "/").await;
    assert_eq!(redirected.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirected.headers["location"], "https://plain.test/");
    // The annotations win: no redirect, 8k allowed.
    assert_eq!(
        request(addr, post("own.test", 2048)).await.status,
        StatusCode::OK
    );
    // The ConfigMap's body limit where the Ingress sets none.
    assert_eq!(
        request(addr, post("half.test", 2048)).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        request(addr, post("half.test", 512)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn trusted_proxies_and_block_lists_come_from_the_configmap() {
    let (web, manifests) = web_with(&[("shop", &[])]).await;
    let data = [
        ("use-forwarded-headers", "true"),
        ("proxy-real-ip-cidr", "127.0.0.1/32"),
        ("block-cidrs", "203.0.113.0/24"),
        ("block-user-agents", "~*badbot,curl/7.0"),
        ("block-referers", "~^https://spam\\.example"),
    ];
    let (_dir, gatehouse) = serve(&manifests, &data).await;
    let addr = gatehouse.http_addr;
    let from = |client: &str| {
        get("shop.test")
            .header("x-forwarded-for", client)
            .body(Full::default())
            .expect("request")
    };
    // The load balancer (trusted) names a blocked client: refused.
    assert_eq!(
        request(addr, from("203.0.113.9")).await.status,
        StatusCode::FORBIDDEN
    );
    let allowed = request(addr, from("198.51.100.7")).await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(allowed.seen()["headers"]["x-real-ip"], "198.51.100.7");
    assert_eq!(allowed.seen()["headers"]["x-forwarded-for"], "198.51.100.7");
    let agent = |ua: &str| {
        get("shop.test")
            .header("user-agent", ua)
            .body(Full::default())
            .expect("request")
    };
    assert_eq!(
        request(addr, agent("Mozilla BadBot 2")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        request(addr, agent("CURL/7.0")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        request(addr, agent("curl/7.1")).await.status,
        StatusCode::OK
    );
    let referred = get("shop.test")
        .header("referer", "https://spam.example/landing")
        .body(Full::default())
        .expect("request");
    assert_eq!(request(addr, referred).await.status, StatusCode::FORBIDDEN);
    drop(web);
}

#[tokio::test]
async fn the_configmap_adds_sets_and_hides_headers() {
    let (_web, manifests) = web_with(&[("shop", &[])]).await;
    let manifests = manifests
        + &config_map("response-headers", &[("X-Frame-Options", "DENY")])
        + &config_map(
            "request-headers",
            &[("X-Client", "$remote_addr"), ("X-Team", "shop")],
        );
    let data = [
        ("add-headers", "test/response-headers"),
        ("proxy-set-headers", "request-headers"),
        ("hide-headers", "X-Powered-By"),
        ("server-tokens", "true"),
    ];
    let (_dir, gatehouse) = serve(&manifests, &data).await;
    let reply = http_get(gatehouse.http_addr, "shop.test", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["x-frame-options"], "DENY");
    assert!(!reply.headers.contains_key("x-powered-by"));
    let server = reply.headers["server"].to_str().expect("server");
    assert!(server.starts_with("gatehouse/"), "{server}");
    assert_eq!(reply.seen()["headers"]["x-client"], "127.0.0.1");
    assert_eq!(reply.seen()["headers"]["x-team"], "shop");
}

#[tokio::test]
async fn the_endpoints_server_header_is_removed_unless_allowed() {
    let (_web, manifests) = web_with(&[("shop", &[])]).await;
    let (_dir, gatehouse) = serve(&manifests, &[]).await;
    let reply = http_get(gatehouse.http_addr, "shop.test", "/").await;
    assert!(!reply.headers.contains_key("server"), "{:?}", reply.headers);
    assert_eq!(reply.headers["x-powered-by"], "backend");
    drop(gatehouse);
    let (_dir, gatehouse) = serve(&manifests, &[("allow-backend-server-header", "true")]).await;
    let reply = http_get(gatehouse.http_addr, "shop.test", "/").await;
    assert_eq!(reply.headers["server"], "backend/1");
}

#[tokio::test]
async fn configmap_source_ranges_apply_where_an_ingress_has_none() {
    let (_web, manifests) = web_with(&[
        ("default", &[]),
        (
            "own",
            &[(
                "nginx.ingress.kubernetes.io/whitelist-source-range",
                "127.0.0.1/32",
            )],
        ),
    ])
    .await;
    let (_dir, gatehouse) = serve(&manifests, &[("whitelist-source-range", "192.0.2.0/24")]).await;
    let addr = gatehouse.http_addr;
    assert_eq!(status_of(addr, "default.test").await, StatusCode::FORBIDDEN);
    assert_eq!(status_of(addr, "own.test").await, StatusCode::OK);
    drop(gatehouse);
    // One that does not parse closes what it would protect, never opens it.
    let (_dir, gatehouse) = serve(&manifests, &[("whitelist-source-range", "10.0.0.0/33")]).await;
    let addr = gatehouse.http_addr;
    assert_eq!(
        status_of(addr, "default.test").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(status_of(addr, "own.test").await, StatusCode::OK);
}

#[tokio::test]
async fn global_auth_cannot_be_enforced_so_it_closes_routes_that_do_not_opt_out() {
    let (_web, manifests) = web_with(&[
        ("guarded", &[]),
        (
            "public",
            &[("nginx.ingress.kubernetes.io/enable-global-auth", "false")],
        ),
    ])
    .await;
    let data = [("global-auth-url", "https://auth.example/check")];
    let (_dir, gatehouse) = serve(&manifests, &data).await;
    let addr = gatehouse.http_addr;
    assert_eq!(
        status_of(addr, "guarded.test").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(status_of(addr, "public.test").await, StatusCode::OK);
}

#[tokio::test]
async fn unknown_keys_and_bad_values_leave_the_rest_applied() {
    let (_web, manifests) = web_with(&[("shop", &[])]).await;
    let data = [
        ("no-such-key", "1"),
        ("proxy-body-size", "lots"),
        ("use-gzip", "true"),
        ("server-snippet", "return 200;"),
        ("block-user-agents", "~*bot"),
    ];
    let (_dir, gatehouse) = serve(&manifests, &data).await;
    let addr = gatehouse.http_addr;
    let bot = get("shop.test")
        .header("user-agent", "a bot")
        .body(Full::default())
        .expect("request");
    assert_eq!(request(addr, bot).await.status, StatusCode::FORBIDDEN);
    // The bad body size kept ingress-nginx's default of 1m.
    assert_eq!(
        request(addr, post("shop.test", 4096)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        request(addr, post("shop.test", 2 << 20)).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test]
async fn a_configmap_change_applies_without_a_restart() {
    let (_web, manifests) = web_with(&[("shop", &[])]).await;
    let (dir, gatehouse) = serve(&manifests, &[]).await;
    let addr = gatehouse.http_addr;
    let bot = || {
        get("shop.test")
            .header("user-agent", "badbot")
            .body(Full::default())
            .expect("request")
    };
    assert_eq!(request(addr, bot()).await.status, StatusCode::OK);
    let changed = format!(
        "{manifests}{}",
        config_map(
            "gatehouse",
            &[("block-user-agents", "badbot"), ("server-tokens", "true")]
        )
    );
    write_atomically(&dir.path().join("all.yaml"), &changed);
    eventually(
        "the new ConfigMap to apply",
        Duration::from_secs(10),
        async || {
            let status = request(addr, bot()).await.status;
            if status == StatusCode::FORBIDDEN {
                Ok(())
            } else {
                Err(status)
            }
        },
    )
    .await;
    let reply = http_get(addr, "shop.test", "/").await;
    assert!(reply.headers.contains_key("server"));
}

#[tokio::test]
async fn keep_alive_requests_and_keep_alive_close_client_connections() {
    let (_web, manifests) = web_with(&[("shop", &[])]).await;
    let (_dir, gatehouse) = serve(&manifests, &[("keep-alive-requests", "2")]).await;
    let mut sender = http_connect(gatehouse.http_addr).await;
    let first = send(&mut sender, "shop.test", "/").await.expect("first");
    assert!(!first.headers.contains_key("connection"));
    let second = send(&mut sender, "shop.test", "/").await.expect("second");
    assert_eq!(second.headers["connection"], "close");
    drop(gatehouse);
    let (_dir, gatehouse) = serve(&manifests, &[("keep-alive", "0")]).await;
    let mut sender = http_connect(gatehouse.http_addr).await;
    let only = send(&mut sender, "shop.test", "/").await.expect("only");
    assert_eq!(only.headers["connection"], "close");
}

#[tokio::test]
async fn client_body_timeout_answers_a_client_that_stops_sending_its_body_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // proxy-send-timeout stays at its 60 s: the ConfigMap's 1 s is what
    // ends the wait for a client that went quiet within its body.
    let (_web, manifests) = web_with(&[("upload", &[])]).await;
    let (_dir, gatehouse) = serve(&manifests, &[("client-body-timeout", "1")]).await;
    let mut raw = tokio::net::TcpStream::connect(gatehouse.http_addr)
        .await
        .expect("connect");
    let head = "POST /upload HTTP/1.1\r\nhost: upload.test\r\ncontent-length: 500\r\n\r\n";
    raw.write_all(head.as_bytes()).await.expect("head");
    raw.write_all(&[b'z'; 100])
        .await
        .expect("a fifth of the body");
    let mut status = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(30), raw.read_exact(&mut status))
        .await
        .expect("an answer long before proxy-send-timeout")
        .expect("status line");
    assert_eq!(&status[9..12], b"408");
}

#[tokio::test]
async fn upstream_keepalive_requests_bounds_each_endpoint_connection() {
    let (web, manifests) = web_with(&[("shop", &[])]).await;
    let (_dir, gatehouse) = serve(&manifests, &[("upstream-keepalive-requests", "2")]).await;
    let mut sender = http_connect(gatehouse.http_addr).await;
    for _ in 0..6 {
        let reply = send(&mut sender, "shop.test", "/").await.expect("request");
        assert_eq!(reply.status, StatusCode::OK);
    }
    let accepted = web.accepted.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(accepted, 3, "two requests per endpoint connection");
}

#[tokio::test]
async fn use_proxy_protocol_from_the_configmap_refuses_bare_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_web, manifests) = web_with(&[("shop", &[])]).await;
    let (_dir, gatehouse) = serve(&manifests, &[("use-proxy-protocol", "true")]).await;
    let mut bare = tokio::net::TcpStream::connect(gatehouse.http_addr)
        .await
        .expect("connect");
    bare.write_all(b"GET / HTTP/1.1\r\nhost: shop.test\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), bare.read_to_end(&mut answer)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "closed, not left open"
    );
    assert!(answer.is_empty(), "no answer without a PROXY header");
    let mut proxied = tokio::net::TcpStream::connect(gatehouse.http_addr)
        .await
        .expect("connect");
    proxied
        .write_all(b"PROXY TCP4 198.51.100.4 10.0.0.1 5555 80\r\nGET / HTTP/1.1\r\nhost: shop.test\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let head = read_head(&mut proxied).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test]
async fn ssl_protocols_and_ciphers_choose_what_handshakes_offer() {
    let pki = Pki::new();
    let leaf = pki.leaf("shop.test");
    let backend = Backend::start("web").await;
    let manifests = INGRESS_CLASS.to_owned()
        + &service("web", &[backend.addr])
        + &tls_secret("shop-tls", &leaf)
        + &ingress("shop", "shop.test", "/", "web", Some("shop-tls"));
    let client = |versions: &[&'static rustls::SupportedProtocolVersion]| {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.clone()).expect("CA");
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        std::sync::Arc::new(config)
    };
    let tls12 = &[&rustls::version::TLS12][..];
    let tls13 = &[&rustls::version::TLS13][..];

    let (_dir, gatehouse) = serve(&manifests, &[("ssl-protocols", "TLSv1.3")]).await;
    let addr = gatehouse.https_addr;
    assert!(tls_connect(addr, "shop.test", client(tls12)).await.is_err());
    assert!(tls_connect(addr, "shop.test", client(tls13)).await.is_ok());
    drop(gatehouse);

    let data = [
        ("ssl-protocols", "TLSv1.2 TLSv1.3"),
        (
            "ssl-ciphers",
            "ECDHE-ECDSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256",
        ),
    ];
    let (_dir, gatehouse) = serve(&manifests, &data).await;
    let (tls, _) = tls_connect(gatehouse.https_addr, "shop.test", client(tls12))
        .await
        .expect("TLS 1.2 handshake");
    let suite = tls.get_ref().1.negotiated_cipher_suite().expect("suite");
    assert_eq!(
        suite.suite(),
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    );
}

#[tokio::test]
async fn timeouts_error_pages_limits_and_denylists_default_from_the_configmap() {
    let (app, errors) = (Backend::start("app").await, Backend::start("errors").await);
    let mut manifests = INGRESS_CLASS.to_owned()
        + &service("app", &[app.addr])
        + &service("errors", &[errors.addr]);
    let ingresses: [(&str, &[(&str, &str)]); 4] = [
        ("slow", &[]),
        (
            "paged",
            &[("nginx.ingress.kubernetes.io/default-backend", "errors")],
        ),
        ("limited", &[("nginx.ingress.kubernetes.io/limit-rpm", "1")]),
        (
            "patient",
            &[("nginx.ingress.kubernetes.io/proxy-read-timeout", "5")],
        ),
    ];
    for (name, annotations) in ingresses {
        let host = format!("{name}.test");
        manifests += &ingress_annotated(name, &host, "/", "app", None, annotations);
    }
    let data = [
        ("proxy-read-timeout", "1"),
        ("custom-http-errors", "404"),
        ("limit-req-status-code", "429"),
    ];
    let (_dir, gatehouse) = serve(&manifests, &data).await;
    let addr = gatehouse.http_addr;
    // proxy-read-timeout: the ConfigMap's 1 s, unless the annotation's 5 s.
    assert_eq!(
        http_get(addr, "slow.test", "/sleep/2000").await.status,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(
        http_get(addr, "patient.test", "/sleep/2000").await.status,
        StatusCode::OK
    );
    // custom-http-errors: the 404 of the app is the default backend's page.
    let paged = http_get(addr, "paged.test", "/status/404").await;
    assert_eq!(paged.backend(), "errors");
    assert_eq!(paged.seen()["headers"]["x-code"], "404");
    // limit-req-status-code: over limit-rpm answers 429.
    let mut statuses = Vec::new();
    let mut conn = http_connect(addr).await;
    for _ in 0..12 {
        statuses.push(
            send(&mut conn, "limited.test", "/")
                .await
                .expect("reply")
                .status,
        );
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert!(
        !statuses.contains(&StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    drop(gatehouse);

    let (_dir, gatehouse) = serve(&manifests, &[("denylist-source-range", "127.0.0.0/8")]).await;
    assert_eq!(
        status_of(gatehouse.http_addr, "slow.test").await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn ssl_redirect_and_hsts_follow_the_configmap() {
    let pki = Pki::new();
    let leaf = pki.leaf("shop.test");
    let backend = Backend::start("web").await;
    let manifests = INGRESS_CLASS.to_owned()
        + &service("web", &[backend.addr])
        + &tls_secret("shop-tls", &leaf)
        + &ingress("shop", "shop.test", "/", "web", Some("shop-tls"));
    let data = [
        ("ssl-redirect", "false"),
        ("hsts-max-age", "600"),
        ("hsts-include-subdomains", "false"),
        ("hsts-preload", "true"),
    ];
    let (_dir, gatehouse) = serve(&manifests, &data).await;
    // A host with TLS is not redirected when the ConfigMap says so.
    assert_eq!(
        status_of(gatehouse.http_addr, "shop.test").await,
        StatusCode::OK
    );
    let (mut tls, _) = https_connect(gatehouse.https_addr, "shop.test", &pki.ca).await;
    let reply = send(&mut tls, "shop.test", "/").await.expect("reply");
    assert_eq!(
        reply.headers["strict-transport-security"],
        "max-age=600; preload"
    );
    drop(gatehouse);
    let (_dir, gatehouse) = serve(&manifests, &[("hsts", "false")]).await;
    let (mut tls, _) = https_connect(gatehouse.https_addr, "shop.test", &pki.ca).await;
    let reply = send(&mut tls, "shop.test", "/").await.expect("reply");
    assert!(!reply.headers.contains_key("strict-transport-security"));
    assert_eq!(
        status_of(gatehouse.http_addr, "shop.test").await,
        StatusCode::PERMANENT_REDIRECT
    );
}

#[tokio::test]
async fn forwarded_header_settings_come_from_the_configmap() {
    let (_web, manifests) = web_with(&[("shop", &[])]).await;
    let data = [
        ("enable-real-ip", "true"),
        ("forwarded-for-header", "X-Client-Chain"),
        ("compute-full-forwarded-for", "true"),
    ];
    let (_dir, gatehouse) = serve(&manifests, &data).await;
    let req = get("shop.test")
        .header("x-client-chain", "198.51.100.20")
        .header("x-forwarded-for", "198.51.100.20")
        .header("x-forwarded-proto", "https")
        .body(Full::default())
        .expect("request");
    let seen = request(gatehouse.http_addr, req).await.seen();
    // enable-real-ip believes the client address from the configured
    // header, not the other forwarded headers.
    assert_eq!(seen["headers"]["x-real-ip"], "198.51.100.20");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    // compute-full-forwarded-for: the chain received, then the peer.
    assert_eq!(
        seen["headers"]["x-forwarded-for"],
        "198.51.100.20, 127.0.0.1"
    );
}

#[tokio::test]
async fn configmap_protections_that_cannot_be_enforced_answer_503_never_200() {
    let (_web, manifests) = web_with(&[("shop", &[])]).await;
    let cases: [&[(&str, &str)]; 7] = [
        &[("enable-modsecurity", "true")],
        &[("enable-owasp-modsecurity-crs", "true")],
        &[("denylist-source-range", "not-a-range")],
        &[("whitelist-source-range", "10.0.0.0/33")],
        // A block list that does not parse cannot keep out what it lists.
        &[("block-cidrs", "192.0.2.0/24, 10.0.0.0/33")],
        &[("block-user-agents", "~*(badbot")],
        &[("block-referers", "~(spam")],
    ];
    for data in cases {
        let (_dir, gatehouse) = serve(&manifests, data).await;
        assert_eq!(
            status_of(gatehouse.http_addr, "shop.test").await,
            StatusCode::SERVICE_UNAVAILABLE,
            "{data:?}"
        );
    }
}
