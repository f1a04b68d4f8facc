//! Snippets side by side with a real nginx: the same snippet texts in
//! Gatehouse's annotations and in an nginx configured as ingress-nginx
//! writes a host (`server-snippet` in the `server` block,
//! `configuration-snippet` at the end of the location, `default_type
//! text/html`), with the headers-more module loaded; the same requests to
//! both; the same status, `Location`, body of a `return`, and the same
//! values of every header the snippets touch, in the response and at the
//! endpoint. Skipped, saying so, without nginx or the module
//! (`apt-get install nginx-light libnginx-mod-http-headers-more-filter`).

use crate::support;

use std::net::SocketAddr;

use http::Request;
use http_body_util::Full;
use support::nginx::{self, Nginx};
use support::*;

const CONFIGURATION: &str = "nginx.ingress.kubernetes.io/configuration-snippet";
const SERVER: &str = "nginx.ingress.kubernetes.io/server-snippet";

/// Hosts with their server-snippet and configuration-snippet.
const CASES: &[(&str, &str, &str)] = &[
    (
        "headers.test",
        "more_set_headers \"X-Server: s\";",
        r#"more_set_headers "X-Frame-Options: DENY" "X-Host: $host" "X-Uri: $request_uri";
more_set_headers -s 404 "X-Missing: yes";
more_set_headers -t application/json "X-Json: yes";
more_clear_headers X-Powered-By;
add_header X-Added added;
add_header X-Always always always;
more_set_input_headers "X-Tenant: blue";
more_set_input_headers -r "X-Only-If-Sent: replaced";
more_clear_input_headers X-Drop;
proxy_set_header X-Path $request_uri;
proxy_hide_header X-Secret;"#,
    ),
    (
        "added.test",
        "add_header X-Server-Added s;",
        "add_header X-Location-Added l;",
    ),
    (
        "text.test",
        "",
        "return 200 'ok from snippet';\nadd_header X-A a;",
    ),
    (
        "refuse.test",
        "",
        "return 403;\nmore_set_headers \"X-Why: snippet\";",
    ),
    (
        "moved.test",
        "return 301 https://new.test$request_uri;",
        "return 200 'never';",
    ),
    (
        "found.test",
        "",
        "return https://$host/login?from=$uri$is_args$args;",
    ),
    (
        "iffy.test",
        "if ($http_x_forwarded_proto = 'http') { return 308 https://$host$request_uri; }",
        r#"if ($request_uri ~* ^/ADMIN) { return 403; }
if ($request_method !~ ^(GET|HEAD)$) { return 405; }
if ($http_x_beta) { return 200 "beta $http_x_beta"; }
more_set_headers "X-Why: snippet";"#,
    ),
    (
        "rewrite.test",
        "rewrite ^/gone$ https://example.test/? redirect;",
        r#"rewrite ^/old/(.*)$ https://$host/new/$1 permanent;
rewrite ^/rel$ /target redirect;
if ($http_x_mobile = yes) { rewrite ^ https://m.example.test$uri redirect; }"#,
    ),
    (
        "break.test",
        "",
        r#"rewrite ^/api/v1/(.*)$ /v2/$1 break;
rewrite ^/legacy$ /new?from=legacy break;
rewrite ^/bare$ /plain? break;"#,
    ),
    // With `rewrite-target: /base/$1` (its `rewrite … break` follows the
    // snippet in the location, see TARGET_REWRITE).
    ("target.test", "", "rewrite ^/api/(.*)$ /v2/$1 break;"),
];

/// The host whose Ingress also has `rewrite-target`, and the directive
/// ingress-nginx writes for it after the configuration-snippet.
const TARGET_HOST: &str = "target.test";
const TARGET_REWRITE: &str = r#"rewrite "(?i)/(.*)" /base/$1 break;"#;

/// The headers compared in responses, and at the endpoint.
const RESPONSE_HEADERS: &[&str] = &[
    "location",
    "content-type",
    "x-server",
    "x-frame-options",
    "x-host",
    "x-uri",
    "x-missing",
    "x-json",
    "x-powered-by",
    "x-added",
    "x-always",
    "x-secret",
    "x-server-added",
    "x-location-added",
    "x-a",
    "x-why",
];
const UPSTREAM_HEADERS: &[&str] = &["x-tenant", "x-only-if-sent", "x-drop", "x-path"];

/// A request: host, path, extra headers.
type Asked = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const REQUESTS: &[Asked] = &[
    (
        "headers.test",
        "/cart?id=7",
        &[("x-drop", "1"), ("x-echo-set-header", "X-Secret:s")],
    ),
    ("headers.test", "/status/404", &[("x-only-if-sent", "sent")]),
    ("added.test", "/", &[]),
    ("text.test", "/anything", &[]),
    ("refuse.test", "/", &[]),
    ("moved.test", "/old?q=1", &[]),
    ("found.test", "/a/b?c=d", &[]),
    ("iffy.test", "/shop", &[("x-forwarded-proto", "http")]),
    ("iffy.test", "/admin/users", &[]),
    ("iffy.test", "/shop", &[("x-beta", "on")]),
    ("iffy.test", "/shop", &[("x-beta", "0")]),
    ("iffy.test", "/shop", &[]),
    ("rewrite.test", "/old/a/b?x=1", &[]),
    ("rewrite.test", "/gone?x=1", &[]),
    ("rewrite.test", "/rel?y=2", &[]),
    ("rewrite.test", "/keep?z=3", &[("x-mobile", "yes")]),
    ("rewrite.test", "/other", &[]),
    ("break.test", "/api/v1/items?x=1", &[]),
    ("break.test", "/legacy?y=2", &[]),
    ("break.test", "/bare?z=3", &[]),
    ("break.test", "/untouched?w=4", &[]),
    ("target.test", "/api/items?x=1", &[]),
    ("target.test", "/shop/items?x=1", &[]),
];

fn manifests(backend: &Backend) -> String {
    let mut yaml = INGRESS_CLASS.to_owned() + &service("web", &[backend.addr]);
    for (i, (host, server, location)) in CASES.iter().enumerate() {
        let mut annotations = vec![(CONFIGURATION, *location)];
        if !server.is_empty() {
            annotations.push((SERVER, *server));
        }
        let name = format!("case{i}");
        let mut path = "/";
        if *host == TARGET_HOST {
            annotations.push(("nginx.ingress.kubernetes.io/rewrite-target", "/base/$1"));
            annotations.push(("nginx.ingress.kubernetes.io/use-regex", "true"));
            path = "/(.*)";
        }
        yaml += &ingress_annotated(&name, host, path, "web", None, &annotations);
    }
    yaml
}

/// The `http` block: one server per host, as ingress-nginx writes it.
fn nginx_http(backend: SocketAddr) -> String {
    // ingress-nginx's http block: its default type, and no port in the
    // redirects nginx makes absolute (`use-port-in-redirects: false`).
    let mut http =
        "  default_type text/html;\n  port_in_redirect off;\n  access_log off;\n".to_owned();
    for (host, server, location) in CASES {
        let generated = if *host == TARGET_HOST {
            TARGET_REWRITE
        } else {
            ""
        };
        http += &format!(
            "  server {{
    listen 127.0.0.1:{{port}};
    server_name {host};
    {server}
    location / {{
      proxy_set_header Host $http_host;
      proxy_pass http://{backend};
      {location}
      {generated}
    }}
  }}
"
        );
    }
    http
}

/// What is compared of one reply. A body that is not the endpoint's
/// description is a `return`'s.
fn observed(reply: &Reply) -> Vec<(String, String)> {
    let proxied = serde_json::from_slice::<serde_json::Value>(&reply.body).ok();
    let is_return = proxied.is_none();
    let mut seen = vec![("status".to_owned(), reply.status.to_string())];
    // A `return` of a status alone (or of a redirect) gets each server's
    // own page, which differ by design, with their own type.
    let own_page = is_return && !reply.status.is_success();
    for name in RESPONSE_HEADERS
        .iter()
        .filter(|n| !own_page || **n != "content-type")
    {
        let values: Vec<&str> = reply
            .headers
            .get_all(*name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .collect();
        seen.push((name.to_string(), values.join(", ")));
    }
    match proxied {
        Some(described) => {
            let uri = described["uri"].as_str().unwrap_or_default();
            seen.push(("upstream uri".to_owned(), uri.to_owned()));
            for name in UPSTREAM_HEADERS {
                let value = described["headers"][*name].as_str().unwrap_or_default();
                seen.push((format!("upstream {name}"), value.to_owned()));
            }
        }
        // A `return` with text: its body.
        None if is_return && !own_page => {
            let body = String::from_utf8_lossy(&reply.body).into_owned();
            seen.push(("body".to_owned(), body));
        }
        None => {}
    }
    seen
}

async fn ask(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::get(path).header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut sender = http_connect(addr).await;
    let request = request.body(Full::default()).expect("request");
    send_request(&mut sender, request).await.expect("reply")
}

#[tokio::test]
async fn nginx_answers_the_same_requests_the_same_way() {
    let (Some(binary), Some(module)) = (
        nginx::binary(),
        nginx::module("ngx_http_headers_more_filter_module.so"),
    ) else {
        eprintln!("skipped: no nginx or no headers-more module (apt-get install -y nginx-light libnginx-mod-http-headers-more-filter)");
        return;
    };
    let backend = Backend::start("web").await;
    let top = format!("load_module {module};");
    let Some(real) = Nginx::start(&binary, &top, &nginx_http(backend.addr)) else {
        eprintln!("skipped: nginx at {binary} did not start");
        return;
    };
    let (_dir, gatehouse) = serve_manifests_with(&manifests(&backend), |c| {
        c.translate.access.allow_snippets = true;
    })
    .await;
    for (host, path, headers) in REQUESTS {
        let ours = ask(gatehouse.http_addr, host, path, headers).await;
        let theirs = ask(real.addr, host, path, headers).await;
        assert_eq!(
            observed(&ours),
            observed(&theirs),
            "{host}{path}: Gatehouse (left) and nginx (right) differ\n{}",
            real.error_log()
        );
    }
}
