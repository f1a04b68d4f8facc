//! Snippets read as typed nginx directives (`--allow-snippet-annotations`),
//! through real sockets: each directive changes what the client or the
//! endpoint sees as nginx would; a snippet with anything else is served
//! without it; a protective one that cannot be enforced closes its routes;
//! without the flag, every snippet is refused as before.

use crate::support;

use bytes::Bytes;
use gatehouse::translate::WarningKind;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

const CONFIGURATION: &str = "nginx.ingress.kubernetes.io/configuration-snippet";
const SERVER: &str = "nginx.ingress.kubernetes.io/server-snippet";

const HEADERS: &str = r#"more_set_headers "X-Frame-Options: DENY" "X-Host: $host";
more_set_headers -s 404 "X-Missing: yes";
more_clear_headers X-Powered-By;
add_header X-Added added;
add_header X-Always always always;
more_set_input_headers "X-Tenant: blue";
more_clear_input_headers X-Drop;
proxy_set_header X-Path $request_uri;
proxy_hide_header X-Secret;
"#;

/// One Ingress per case, `<case>.test`, on one backend.
fn manifests(backend: &Backend) -> String {
    let mut yaml = INGRESS_CLASS.to_owned() + &service("web", &[backend.addr]);
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("headers", &[(CONFIGURATION, HEADERS)]),
        (
            "text",
            &[(
                CONFIGURATION,
                "return 200 'ok from snippet';\nadd_header X-A a;",
            )],
        ),
        (
            "moved",
            &[(SERVER, "return 301 https://new.test$request_uri;")],
        ),
        (
            "refused",
            &[(CONFIGURATION, "more_set_headers \"X-A: b\";\ngzip on;")],
        ),
        (
            "allowed",
            &[(CONFIGURATION, "allow 127.0.0.0/8;\ndeny all;")],
        ),
        ("denied", &[(CONFIGURATION, "deny 127.0.0.1;")]),
        (
            "blocks",
            &[(
                SERVER,
                "location = /metrics { deny all; }\nlocation = /favicon.ico { return 404; access_log off; log_not_found off; }",
            )],
        ),
        (
            "forwards",
            &[(
                SERVER,
                "location /x { return 404; }\nlocation /meta { proxy_pass http://169.254.169.254/; }",
            )],
        ),
        (
            "guarded",
            &[(
                SERVER,
                "location = /ok { return 200 'ok'; }\nlocation /admin { deny all; try_files $uri /index.html; }",
            )],
        ),
        ("quietbody", &[(CONFIGURATION, "client_body_timeout 1s;")]),
        ("quietserver", &[(SERVER, "client_body_timeout 1;")]),
        (
            "port",
            &[(
                CONFIGURATION,
                "proxy_set_header X-Port $server_port;\nmore_set_headers \"X-Port-Out: $server_port\";",
            )],
        ),
        ("closed", &[(CONFIGURATION, "deny all;\ngzip on;")]),
        (
            "lua",
            &[(
                CONFIGURATION,
                "access_by_lua_block {\n  if ngx.var.cookie_pass ~= \"yes\" then ngx.exit(403) end\n}",
            )],
        ),
        (
            "nightmare",
            &[(CONFIGURATION, "} ssl_engine /proc/self/fd/9; location /x {")],
        ),
        (
            "forced",
            &[
                (
                    CONFIGURATION,
                    "more_set_headers \"X-Loc: forced\";\nadd_header X-On-Redirect yes;",
                ),
                ("nginx.ingress.kubernetes.io/force-ssl-redirect", "true"),
            ],
        ),
        (
            "shut",
            &[
                (SERVER, "more_set_headers \"X-Server: s\";"),
                (
                    CONFIGURATION,
                    "more_set_headers \"X-Loc: shut\";\ndeny all;\ngzip on;",
                ),
            ],
        ),
        (
            "limits",
            &[(
                CONFIGURATION,
                "proxy_read_timeout 1s;\nclient_max_body_size 10;",
            )],
        ),
    ];
    for (case, annotations) in cases {
        let host = format!("{case}.test");
        yaml += &ingress_annotated(case, &host, "/", "web", None, annotations);
    }
    // A newer Ingress of moved.test: its server-snippet is not the host's.
    let later = [
        (SERVER, "return 302 https://elsewhere.test/;"),
        (CONFIGURATION, "return 200 'shadowed';"),
    ];
    yaml += &ingress_annotated("moved-later", "moved.test", "/later", "web", None, &later).replace(
        "name: moved-later",
        "name: moved-later\n  creationTimestamp: \"2030-01-01T00:00:00Z\"",
    );
    yaml
}

async fn serve(backend: &Backend, allowed: bool) -> (tempfile::TempDir, gatehouse::app::Running) {
    serve_manifests_with(&manifests(backend), |c| {
        c.translate.access.allow_snippets = allowed;
    })
    .await
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn snippet_header_directives_edit_the_request_and_the_response() {
    let backend = Backend::start("web").await;
    let (_dir, gatehouse) = serve(&backend, true).await;
    let mut sender = http_connect(gatehouse.http_addr).await;
    let req = Request::get("/cart?id=7")
        .header("host", "headers.test")
        .header("x-drop", "1")
        .header("x-echo-set-header", "X-Secret:s")
        .body(Full::default())
        .unwrap();
    let reply = send_request(&mut sender, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(header(&reply, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&reply, "x-host"), Some("headers.test"));
    assert_eq!(header(&reply, "x-added"), Some("added"));
    assert_eq!(header(&reply, "x-always"), Some("always"));
    assert_eq!(header(&reply, "x-powered-by"), None);
    assert_eq!(header(&reply, "x-secret"), None);
    assert_eq!(header(&reply, "x-missing"), None);
    let seen = reply.seen();
    assert_eq!(seen["headers"]["x-tenant"], "blue");
    assert_eq!(seen["headers"]["x-path"], "/cart?id=7");
    assert!(seen["headers"].get("x-drop").is_none(), "{seen}");

    let missing = send(&mut sender, "headers.test", "/status/404")
        .await
        .unwrap();
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(header(&missing, "x-missing"), Some("yes"));
    assert_eq!(header(&missing, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&missing, "x-added"), None, "add_header skips 404");
    assert_eq!(header(&missing, "x-always"), Some("always"));
}

/// `$server_port` is the port the connection came in on, as nginx's, the
/// one Gatehouse sends as `X-Forwarded-Port`.
#[tokio::test]
async fn server_port_is_the_port_the_request_came_in_on() {
    let backend = Backend::start("web").await;
    let (_dir, gatehouse) = serve(&backend, true).await;
    let addr = gatehouse.http_addr;
    let reply = http_get(addr, "port.test", "/").await;
    let port = addr.port().to_string();
    assert_eq!(header(&reply, "x-port-out"), Some(port.as_str()));
    let seen = reply.seen();
    assert_eq!(seen["headers"]["x-port"], port.as_str());
    assert_eq!(seen["headers"]["x-forwarded-port"], port.as_str());
}

#[tokio::test]
async fn returns_answer_before_the_endpoint_and_the_server_snippet_of_the_oldest_ingress_wins() {
    let backend = Backend::start("web").await;
    let (_dir, gatehouse) = serve(&backend, true).await;
    let addr = gatehouse.http_addr;
    let text = http_get(addr, "text.test", "/anything").await;
    assert_eq!(text.status, StatusCode::OK);
    assert_eq!(&text.body[..], b"ok from snippet");
    assert_eq!(header(&text, "content-type"), Some("text/html"));
    assert_eq!(header(&text, "x-a"), Some("a"));
    for path in ["/old?q=1", "/later"] {
        let moved = http_get(addr, "moved.test", path).await;
        assert_eq!(moved.status, StatusCode::MOVED_PERMANENTLY, "{path}");
        let location = format!("https://new.test{path}");
        assert_eq!(header(&moved, "location"), Some(location.as_str()));
    }
    assert!(backend.seen.lock().unwrap().is_empty());
}

/// ingress-nginx's HTTPS redirect is its location's (Lua in the rewrite
/// phase), so the location's header edits reach it; a closed route runs
/// no snippet of its own (ingress-nginx's denied location is a bare
/// `return 503`), but the server-snippet's edits reach it.
#[tokio::test]
async fn snippet_header_edits_reach_the_answers_decided_before_the_endpoint() {
    let backend = Backend::start("web").await;
    let (_dir, gatehouse) = serve(&backend, true).await;
    let addr = gatehouse.http_addr;
    let forced = http_get(addr, "forced.test", "/cart?id=7").await;
    assert_eq!(forced.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        header(&forced, "location"),
        Some("https://forced.test/cart?id=7")
    );
    assert_eq!(header(&forced, "x-loc"), Some("forced"));
    assert_eq!(header(&forced, "x-on-redirect"), Some("yes"));
    let shut = http_get(addr, "shut.test", "/").await;
    assert_eq!(shut.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&shut, "x-server"), Some("s"));
    assert_eq!(header(&shut, "x-loc"), None);
    assert!(backend.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn snippets_with_anything_else_are_served_without_them_unless_they_protect() {
    let backend = Backend::start("web").await;
    let (_dir, gatehouse) = serve(&backend, true).await;
    let addr = gatehouse.http_addr;
    let refused = http_get(addr, "refused.test", "/").await;
    assert_eq!(refused.status, StatusCode::OK);
    assert_eq!(header(&refused, "x-a"), None);
    assert_eq!(status_of(addr, "nightmare.test").await, StatusCode::OK);
    assert_eq!(status_of(addr, "allowed.test").await, StatusCode::OK);
    assert_eq!(status_of(addr, "denied.test").await, StatusCode::FORBIDDEN);
    assert_eq!(
        status_of(addr, "closed.test").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Lua in the access phase checks who may pass: not enforced, closed.
    assert_eq!(
        status_of(addr, "lua.test").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn snippet_timeouts_and_body_size_apply_to_the_ingress_routes() {
    let backend = Backend::start("web").await;
    let (_dir, gatehouse) = serve(&backend, true).await;
    let addr = gatehouse.http_addr;
    let slow = http_get(addr, "limits.test", "/sleep/3000").await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);
    let mut sender = http_connect(addr).await;
    let post = Request::post("/")
        .header("host", "limits.test")
        .body(Full::new(Bytes::from(vec![b'x'; 100])))
        .unwrap();
    let reply = send_request(&mut sender, post).await.unwrap();
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn without_the_flag_snippets_are_refused_and_protective_ones_close() {
    let backend = Backend::start("web").await;
    let (_dir, gatehouse) = serve(&backend, false).await;
    let addr = gatehouse.http_addr;
    let headers = http_get(addr, "headers.test", "/").await;
    assert_eq!(headers.status, StatusCode::OK);
    assert_eq!(header(&headers, "x-frame-options"), None);
    assert_eq!(http_get(addr, "text.test", "/").await.backend(), "web");
    assert_eq!(
        status_of(addr, "allowed.test").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        status_of(addr, "denied.test").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn each_snippet_is_reported_directive_by_directive() {
    let backend = Backend::start("web").await;
    let objects = gatehouse::source::manifest::parse(&manifests(&backend)).expect("manifests");
    let state = gatehouse::cluster::ClusterState::from_objects(objects);
    let mut options = gatehouse::translate::TranslateOptions::default();
    options.access.allow_snippets = true;
    let translation = gatehouse::translate::translate(&state, &options);
    let summaries = translation.summary_list();
    let of = |name: &str| {
        let summary = summaries.iter().find(|s| s.ingress.name == name).unwrap();
        (summary.snippets[0].clone(), summary.line())
    };
    let (headers, _) = of("headers");
    assert_eq!(headers.enforced.len(), 9, "{headers:?}");
    let (refused, line) = of("refused");
    assert!(refused.enforced.is_empty());
    assert_eq!(refused.refused, ["unsupported directive gzip"]);
    assert!(
        line.contains("served without: nginx.ingress.kubernetes.io/configuration-snippet"),
        "{line}"
    );
    let (nightmare, _) = of("nightmare");
    assert!(
        nightmare.refused[0].contains("closes a block it did not open"),
        "{nightmare:?}"
    );
    let shadowed = translation.warnings.iter().any(|w| {
        w.kind == WarningKind::SnippetRefused
            && w.to_string().contains("moved-later")
            && w.to_string()
                .contains("already has the server-snippet of test/moved")
    });
    assert!(shadowed, "{:#?}", translation.warnings);
}

/// A server-snippet's `location` blocks answer their paths and leave the
/// host's others to its Ingresses; one whose body forwards or reaches
/// nginx's static files refuses the snippet, and closes the host's routes
/// when it holds `deny`.
#[tokio::test]
async fn server_snippet_locations_answer_their_paths_and_hostile_bodies_are_refused() {
    let backend = Backend::start("web").await;
    let (_dir, gatehouse) = serve(&backend, true).await;
    let addr = gatehouse.http_addr;
    let metrics = http_get(addr, "blocks.test", "/metrics").await;
    assert_eq!(metrics.status, StatusCode::FORBIDDEN);
    let favicon = http_get(addr, "blocks.test", "/favicon.ico").await;
    assert_eq!(favicon.status, StatusCode::NOT_FOUND);
    assert!(backend.seen.lock().unwrap().is_empty());
    for path in ["/metrics/x", "/shop"] {
        assert_eq!(http_get(addr, "blocks.test", path).await.backend(), "web");
    }
    // Served without the snippet: /x reaches the endpoint.
    let forwards = http_get(addr, "forwards.test", "/x").await;
    assert_eq!(forwards.backend(), "web");
    assert_eq!(
        status_of(addr, "guarded.test").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// `access_log off` in the location that answered writes no line.
#[tokio::test]
async fn access_log_off_in_a_snippet_location_writes_no_line() {
    let backend = Backend::start("web").await;
    let log = tempfile::tempdir().expect("tempdir");
    let path = log.path().join("access.log");
    let (_dir, gatehouse) = serve_manifests_with(&manifests(&backend), |c| {
        c.translate.access.allow_snippets = true;
        c.access_log = gatehouse::telemetry::access_log::AccessLogTarget::File(path.clone());
    })
    .await;
    let addr = gatehouse.http_addr;
    let favicon = http_get(addr, "blocks.test", "/favicon.ico").await;
    assert_eq!(favicon.status, StatusCode::NOT_FOUND);
    let metrics = http_get(addr, "blocks.test", "/metrics").await;
    assert_eq!(metrics.status, StatusCode::FORBIDDEN);
    let lines = eventually(
        "the /metrics line",
        std::time::Duration::from_secs(5),
        async || {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            match text.contains("/metrics") {
                true => Ok(text),
                false => Err(text),
            }
        },
    )
    .await;
    assert!(!lines.contains("favicon"), "{lines}");
}

/// `client_body_timeout` in either snippet bounds how long the client may
/// go quiet within its body (ingress-nginx writes none of its own, so a
/// server-snippet's reaches every path of the host): 408 well before the
/// ConfigMap's 60 s.
#[tokio::test]
async fn client_body_timeout_in_a_snippet_answers_a_quiet_client_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = Backend::start("web").await;
    let (_dir, gatehouse) = serve(&backend, true).await;
    for host in ["quietbody.test", "quietserver.test"] {
        let mut raw = tokio::net::TcpStream::connect(gatehouse.http_addr)
            .await
            .expect("connect");
        let head = format!("POST / HTTP/1.1\r\nhost: {host}\r\ncontent-length: 500\r\n\r\n");
        raw.write_all(head.as_bytes()).await.expect("head");
        raw.write_all(&[b'z'; 100]).await.expect("part of the body");
        let mut status = [0u8; 12];
        let wait = std::time::Duration::from_secs(20);
        tokio::time::timeout(wait, raw.read_exact(&mut status))
            .await
            .expect("an answer long before the ConfigMap's 60 s")
            .expect("status line");
        assert_eq!(&status[9..12], b"408", "{host}");
    }
}
