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

/// The endpoints; each path of a case names one.
const BACKENDS: [&str; 3] = ["web", "api", "other"];

/// A host: its server-snippet (on its first Ingress), what ingress-nginx
/// writes after it in the server block, and its paths.
struct Case {
    host: &'static str,
    server: &'static str,
    server_generated: &'static str,
    paths: &'static [Path],
}

/// One Ingress of a host with one path: how ingress-nginx writes its
/// `location`, the endpoint, the configuration-snippet, the Ingress's
/// other annotations and what ingress-nginx writes for them after the
/// snippet.
struct Path {
    path: &'static str,
    location: &'static str,
    backend: usize,
    snippet: &'static str,
    annotations: &'static [(&'static str, &'static str)],
    generated: &'static str,
}

/// A path `/` to `web` with this configuration-snippet and nothing else.
const fn root(snippet: &'static str) -> Path {
    Path {
        path: "/",
        location: "/",
        backend: 0,
        snippet,
        annotations: &[],
        generated: "",
    }
}

/// A host of one path `/` with these snippets.
const fn one(host: &'static str, server: &'static str, paths: &'static [Path]) -> Case {
    Case {
        host,
        server,
        server_generated: "",
        paths,
    }
}

const CASES: &[Case] = &[
    one(
        "headers.test",
        "more_set_headers \"X-Server: s\";",
        &[root(
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
        )],
    ),
    one(
        "added.test",
        "add_header X-Server-Added s;",
        &[root("add_header X-Location-Added l;")],
    ),
    one(
        "text.test",
        "",
        &[root("return 200 'ok from snippet';\nadd_header X-A a;")],
    ),
    one(
        "refuse.test",
        "",
        &[root("return 403;\nmore_set_headers \"X-Why: snippet\";")],
    ),
    one(
        "moved.test",
        "return 301 https://new.test$request_uri;",
        &[root("return 200 'never';")],
    ),
    one(
        "found.test",
        "",
        &[root("return https://$host/login?from=$uri$is_args$args;")],
    ),
    one(
        "iffy.test",
        "if ($http_x_forwarded_proto = 'http') { return 308 https://$host$request_uri; }",
        &[root(
            r#"if ($request_uri ~* ^/ADMIN) { return 403; }
if ($request_method !~ ^(GET|HEAD)$) { return 405; }
if ($http_x_beta) { return 200 "beta $http_x_beta"; }
more_set_headers "X-Why: snippet";"#,
        )],
    ),
    one(
        "rewrite.test",
        "rewrite ^/gone$ https://example.test/? redirect;",
        &[root(
            r#"rewrite ^/old/(.*)$ https://$host/new/$1 permanent;
rewrite ^/rel$ /target redirect;
if ($http_x_mobile = yes) { rewrite ^ https://m.example.test$uri redirect; }"#,
        )],
    ),
    one(
        "break.test",
        "",
        &[root(
            r#"rewrite ^/api/v1/(.*)$ /v2/$1 break;
rewrite ^/legacy$ /new?from=legacy break;
rewrite ^/bare$ /plain? break;
if ($http_x_beta) { rewrite ^/(.*)$ /beta/$1 break; }
rewrite ^/ret/(.*)$ /r/$1 break;
return 418 "not rewritten";"#,
        )],
    ),
    // `rewrite-target: /base/$1` writes its `rewrite … break` after the
    // snippet.
    one(
        "target.test",
        "",
        &[Path {
            path: "/(.*)",
            location: "~* \"^/(.*)\"",
            backend: 0,
            snippet: "rewrite ^/api/(.*)$ /v2/$1 break;\nrewrite ^/nf/(.*)$ /nf2/$1;\nrewrite ^/l/(.*)$ /api/$1 last;",
            annotations: TARGET,
            generated: r#"rewrite "(?i)/(.*)" /base/$1 break;"#,
        }],
    ),
    // A rewrite without a flag whose new URI the rewrite-target's
    // expression does not match searches again.
    one(
        "target2.test",
        "",
        &[
            Path {
                path: "/app",
                location: "~* \"^/app\"",
                backend: 0,
                snippet: "rewrite ^/app/old/(.*)$ /other/$1;\nrewrite ^/app/keep/(.*)$ /app/kept/$1;",
                annotations: &[("nginx.ingress.kubernetes.io/rewrite-target", "/")],
                generated: r#"rewrite "(?i)/app" / break;"#,
            },
            Path {
                path: "/other",
                location: "/other/",
                backend: 2,
                snippet: "more_set_headers \"X-Loc: other\";",
                annotations: &[],
                generated: "",
            },
        ],
    ),
    // `last` and rewrites without a flag search the host's paths again;
    // each location found runs its own snippet.
    one(
        "reroute.test",
        "more_set_headers \"X-Server: s\";",
        &[
            root(
                r#"more_set_headers "X-Loc: root";
more_set_input_headers "X-Root-In: 1";
rewrite ^/old/(.*)$ /api/$1 last;
rewrite ^/chain/(.*)$ /mid/$1;
rewrite ^/mid/(.*)$ /api/$1;
rewrite ^/then/(.*)$ /x/$1;
if ($uri = /x/ret) { return 200 "returned $uri $request_uri"; }
rewrite ^/stay/(.*)$ /api/$1 break;
if ($http_x_reroute) { rewrite ^ /api/from-if last; }"#,
            ),
            Path {
                path: "/api",
                location: "/api/",
                backend: 1,
                snippet: r#"more_set_headers "X-Loc: api";
add_header X-Api-Added yes;
more_set_input_headers "X-Api-In: 1";
proxy_set_header X-Orig $request_uri;
rewrite ^/api/moved$ /api/final?by=api;"#,
                annotations: &[],
                generated: "",
            },
            Path {
                path: "/loop",
                location: "/loop/",
                backend: 2,
                snippet: "rewrite ^/loop/(.*)$ /loop/$1 last;",
                annotations: &[],
                generated: "",
            },
        ],
    ),
    // The server-snippet's rewrites choose the path; its header edits
    // reach every answer of the host, its own and a 404 of no path.
    Case {
        host: "server.test",
        server: r#"more_set_headers "X-Server: s";
add_header X-Server-Added sa;
rewrite ^/s/(.*)$ /api/$1 last;
rewrite ^/b/(.*)$ /api/$1 break;
rewrite ^/n/(.*)$ /m/$1;
rewrite ^/m/(.*)$ /api/m/$1;
if ($http_x_go) { rewrite ^ /api/went?how=if last; }
rewrite ^/r/(.*)$ /api/$1 redirect;
if ($uri = /teapot) { return 418 "short and stout"; }
if ($uri = /away) { return 301 https://away.test/; }"#,
        server_generated: "",
        paths: &[
            Path {
                path: "/api",
                location: "/api/",
                backend: 1,
                snippet: "more_set_headers \"X-Loc: api\";",
                annotations: &[],
                generated: "",
            },
            Path {
                path: "/app",
                location: "/app/",
                backend: 0,
                snippet: "",
                annotations: &[],
                generated: "",
            },
        ],
    },
    // Ingress-nginx's own answers carry the snippets' edits: app-root
    // (in the server block), a permanent redirect and a source range's
    // 403 (in the location).
    Case {
        host: "own.test",
        server: "more_set_headers \"X-Server: s\";\nadd_header X-Server-Added sa always;",
        server_generated: "if ($uri = /) { return 302 $scheme://$http_host/app/; }",
        paths: &[
            Path {
                path: "/",
                location: "/",
                backend: 0,
                snippet: "more_set_headers \"X-Loc: root\";\nrewrite ^/to-moved/(.*)$ /moved/$1;\nrewrite ^/to-private/(.*)$ /private/$1 last;",
                annotations: &[("nginx.ingress.kubernetes.io/app-root", "/app/")],
                generated: "",
            },
            Path {
                path: "/moved",
                location: "/moved/",
                backend: 1,
                snippet: "more_set_headers \"X-Loc: moved\";\nadd_header X-Moved yes;",
                annotations: &[(
                    "nginx.ingress.kubernetes.io/permanent-redirect",
                    "https://moved.example/",
                )],
                generated: "return 301 https://moved.example/;",
            },
            Path {
                path: "/private",
                location: "/private/",
                backend: 2,
                snippet: "more_set_headers \"X-Loc: private\";\nadd_header X-Private yes always;",
                annotations: &[(
                    "nginx.ingress.kubernetes.io/whitelist-source-range",
                    "10.0.0.0/8",
                )],
                generated: "allow 10.0.0.0/8;\ndeny all;",
            },
        ],
    },
    // The variables people use in values: ingress-nginx's `$req_id` and
    // location variables, nginx's `$proxy_add_x_forwarded_for`, and the
    // hand-written WebSocket lines, which change nothing. (`$proxy_host`
    // is ingress-nginx's `upstream_balancer`, which this nginx does not
    // proxy to.)
    one(
        "vars.test",
        "",
        &[root(
            r#"proxy_set_header X-Req $req_id;
proxy_set_header X-Fwd $proxy_add_x_forwarded_for;
proxy_set_header l5d-dst-override $service_name.$namespace.svc.cluster.local:$service_port;
more_set_headers "X-Ingress: $ingress_name" "X-Req-Out: $req_id";
proxy_set_header Upgrade $http_upgrade;
proxy_set_header Connection $connection_upgrade;
proxy_http_version 1.1;"#,
        )],
    ),
    // A server-snippet's `location` blocks, written before the paths'
    // (each an ImplementationSpecific prefix, as ingress-nginx writes
    // one), chosen among them as nginx chooses.
    Case {
        host: "where.test",
        server: r#"more_set_headers "X-Server: s";
location = /metrics { deny all; }
location ~* "^/_metrics" { deny all; return 403; }
location = /favicon.ico { return 404; access_log off; log_not_found off; }
location /test { return 418 "teapot"; }
location = /.well-known/carddav { return 301 https://$host/remote.php/dav; }
location ^~ /static { more_set_headers "X-Where: static"; add_header X-Added a; return 200 "static"; }
location /api/v { return 200 "snippet prefix"; }
location ~ ^/api/v2/regex { return 200 "snippet regex $uri"; }
location /app/deep/er { return 200 "snippet longer prefix"; }
location /old { rewrite ^/old/(.*)$ /api/$1 last; deny all; }
location ~ ^/static-regex { return 200 "never: ^~ wins"; }"#,
        server_generated: "",
        paths: &[
            Path {
                path: "/",
                location: "/",
                backend: 0,
                snippet: "more_set_headers \"X-Loc: root\";",
                annotations: &[],
                generated: "",
            },
            Path {
                path: "/api/v2",
                location: "/api/v2",
                backend: 1,
                snippet: "",
                annotations: &[],
                generated: "",
            },
            Path {
                path: "/app",
                location: "/app",
                backend: 2,
                snippet: "",
                annotations: &[],
                generated: "",
            },
        ],
    },
];

const TARGET: &[(&str, &str)] = &[
    ("nginx.ingress.kubernetes.io/rewrite-target", "/base/$1"),
    ("nginx.ingress.kubernetes.io/use-regex", "true"),
];

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
    "x-loc",
    "x-api-added",
    "x-moved",
    "x-private",
    "x-ingress",
    "x-req-out",
    "x-where",
];
const UPSTREAM_HEADERS: &[&str] = &[
    "x-tenant",
    "x-only-if-sent",
    "x-drop",
    "x-path",
    "x-root-in",
    "x-api-in",
    "x-orig",
    "x-req",
    "x-fwd",
    "l5d-dst-override",
];

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
    ("break.test", "/ret/x?w=4", &[]),
    ("break.test", "/untouched?w=4", &[]),
    ("break.test", "/in/if", &[("x-beta", "1")]),
    ("target.test", "/api/items?x=1", &[]),
    ("target.test", "/shop/items?x=1", &[]),
    ("target.test", "/nf/items?x=1", &[]),
    ("target.test", "/l/items?x=1", &[]),
    ("target2.test", "/app/old/x?q=1", &[]),
    ("target2.test", "/app/keep/x?q=1", &[]),
    ("target2.test", "/app/y?q=1", &[]),
    ("reroute.test", "/old/items?q=1", &[]),
    ("reroute.test", "/chain/a?q=2", &[]),
    ("reroute.test", "/then/ret?q=3", &[]),
    ("reroute.test", "/stay/z?q=4", &[]),
    ("reroute.test", "/api/moved?x=1", &[]),
    ("reroute.test", "/loop/a", &[]),
    ("reroute.test", "/plain", &[]),
    ("reroute.test", "/plain?p=1", &[("x-reroute", "1")]),
    ("server.test", "/s/x?q=1", &[]),
    ("server.test", "/b/x?q=1", &[]),
    ("server.test", "/n/x", &[]),
    ("server.test", "/anything?a=b", &[("x-go", "1")]),
    ("server.test", "/r/x?y=1", &[]),
    ("server.test", "/teapot", &[]),
    ("server.test", "/away", &[]),
    ("server.test", "/nowhere", &[]),
    ("server.test", "/app/x", &[]),
    ("server.test", "/api/x", &[]),
    ("own.test", "/", &[]),
    ("own.test", "/moved/x", &[]),
    ("own.test", "/to-moved/x", &[]),
    ("own.test", "/private/x", &[]),
    // Re-routed, the request is refused by the path it reaches.
    ("own.test", "/to-private/x", &[]),
    ("own.test", "/shop", &[]),
    (
        "vars.test",
        "/v",
        &[
            ("x-request-id", "abc-123"),
            ("x-forwarded-for", "192.0.2.9"),
        ],
    ),
    ("vars.test", "/v", &[("x-request-id", "def-456")]),
    // Exact beats every prefix; `deny all` refuses its path only.
    ("where.test", "/metrics", &[]),
    ("where.test", "/metrics/x", &[]),
    ("where.test", "/shop", &[]),
    // A snippet's regex beats a path's prefix.
    ("where.test", "/_METRICS/x", &[]),
    ("where.test", "/favicon.ico", &[]),
    ("where.test", "/test/x", &[]),
    ("where.test", "/.well-known/carddav", &[]),
    // `^~` skips the regexes when it is the longest prefix.
    ("where.test", "/static-regex", &[]),
    ("where.test", "/static/x", &[]),
    // A longer path prefix beats a snippet's prefix…
    ("where.test", "/api/v2/x", &[]),
    // …but not a snippet's regex.
    ("where.test", "/api/v2/regex/x", &[]),
    ("where.test", "/api/v1", &[]),
    // A longer snippet prefix beats a path's.
    ("where.test", "/app/deep/er/x", &[]),
    ("where.test", "/app/deep", &[]),
    // `rewrite … last` in a snippet location looks the paths up again;
    // what it does not rewrite is denied.
    ("where.test", "/old/v2/x?q=1", &[]),
    ("where.test", "/old", &[]),
];

fn manifests(backends: &[Backend]) -> String {
    let mut yaml = INGRESS_CLASS.to_owned();
    for backend in backends {
        yaml += &service(backend.name, &[backend.addr]);
    }
    for (i, case) in CASES.iter().enumerate() {
        for (j, path) in case.paths.iter().enumerate() {
            let mut annotations = vec![(CONFIGURATION, path.snippet)];
            if j == 0 && !case.server.is_empty() {
                annotations.push((SERVER, case.server));
            }
            annotations.extend_from_slice(path.annotations);
            let name = format!("case{i}-{j}");
            let service = BACKENDS[path.backend];
            let host = case.host;
            yaml += &ingress_annotated(&name, host, path.path, service, None, &annotations);
        }
    }
    yaml
}

/// The `http` block: one server per host, as ingress-nginx writes it.
fn nginx_http(backends: &[Backend]) -> String {
    // ingress-nginx's http block: its default type, and no port in the
    // redirects nginx makes absolute (`use-port-in-redirects: false`).
    let mut http =
        "  default_type text/html;\n  port_in_redirect off;\n  access_log off;\n".to_owned();
    // ingress-nginx's maps for `$req_id` and `$connection_upgrade`.
    http += "  map $http_x_request_id $req_id { default $http_x_request_id; \"\" $request_id; }\n";
    http += "  map $http_upgrade $connection_upgrade { default upgrade; \"\" close; }\n";
    for (i, case) in CASES.iter().enumerate() {
        let (host, server, generated) = (case.host, case.server, case.server_generated);
        http += &format!(
            "  server {{\n    listen 127.0.0.1:{{port}};\n    server_name {host};\n    {server}\n    {generated}\n"
        );
        for (j, path) in case.paths.iter().enumerate() {
            let backend = backends[path.backend].addr;
            let service = BACKENDS[path.backend];
            let (location, snippet, generated) = (path.location, path.snippet, path.generated);
            http += &format!(
                "    location {location} {{
      set $namespace \"test\";
      set $ingress_name \"case{i}-{j}\";
      set $service_name \"{service}\";
      set $service_port \"80\";
      proxy_set_header Host $http_host;
      proxy_pass http://{backend};
      {snippet}
      {generated}
    }}
"
            );
        }
        http += "  }\n";
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
            let backend = described["backend"].as_str().unwrap_or_default();
            seen.push(("backend".to_owned(), backend.to_owned()));
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
    let mut backends = Vec::new();
    for name in BACKENDS {
        backends.push(Backend::start(name).await);
    }
    let top = format!("load_module {module};");
    let Some(real) = Nginx::start(&binary, &top, &nginx_http(&backends)) else {
        eprintln!("skipped: nginx at {binary} did not start");
        return;
    };
    let (_dir, gatehouse) = serve_manifests_with(&manifests(&backends), |c| {
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
