//! ingress-nginx's access log line: `log-format-upstream` in the controller
//! ConfigMap, checked on real requests through Gatehouse, and compared field
//! by field with the line real nginx writes for the same request with the
//! same `log_format`.

use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use gatehouse::cluster::ObjectKey;
use gatehouse::telemetry::access_log::{AccessLogFormat, AccessLogTarget};
use http::{Request, StatusCode};
use http_body_util::Full;
use support::nginx::{self, Nginx};
use support::*;

/// Every variable the comparison with nginx covers, `|` between them.
const FIELDS: &[&str] = &[
    "remote_addr",
    "remote_user",
    "time_local",
    "time_iso8601",
    "request",
    "request_method",
    "request_uri",
    "uri",
    "args",
    "server_protocol",
    "scheme",
    "status",
    "body_bytes_sent",
    "bytes_sent",
    "http_referer",
    "http_user_agent",
    "http_x_forwarded_for",
    "http_x_team",
    "request_length",
    "request_time",
    "proxy_upstream_name",
    "proxy_alternative_upstream_name",
    "upstream_addr",
    "upstream_response_length",
    "upstream_response_time",
    "upstream_status",
    "req_id",
    "host",
    "namespace",
    "ingress_name",
    "service_name",
    "service_port",
    "ssl_protocol",
    "ssl_cipher",
];

fn template() -> String {
    let vars: Vec<String> = FIELDS.iter().map(|f| format!("${f}")).collect();
    vars.join("|")
}

/// Gatehouse and the directory its access log is written in. Fields drop
/// in order: Gatehouse stops before its directories go away.
struct Served {
    gatehouse: gatehouse::app::Running,
    log: tempfile::TempDir,
    _manifests: tempfile::TempDir,
}

/// Gatehouse on `manifests`, its access log in a file, with the
/// controller ConfigMap `test/gatehouse` holding `data`.
async fn serve(manifests: &str, format: AccessLogFormat, data: &[(&str, &str)]) -> Served {
    let data: Vec<String> = data
        .iter()
        .map(|(k, v)| format!("  {k}: {}\n", serde_json::Value::from(*v)))
        .collect();
    let config_map = format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: gatehouse, namespace: test}}\ndata:\n{}",
        data.concat()
    );
    let all = format!("{manifests}{config_map}");
    let log = tempfile::tempdir().expect("tempdir");
    let path = log.path().join("access.log");
    let (manifests, gatehouse) = serve_manifests_with(&all, |c| {
        c.translate.config_map = Some(ObjectKey::new("test", "gatehouse"));
        c.access_log = AccessLogTarget::File(path);
        c.access_log_format = format;
    })
    .await;
    Served {
        gatehouse,
        log,
        _manifests: manifests,
    }
}

async fn lines(dir: &Path, n: usize) -> Vec<String> {
    eventually(
        format!("{n} access log lines"),
        Duration::from_secs(5),
        async || {
            let text = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= n {
                Ok(lines)
            } else {
                Err(lines)
            }
        },
    )
    .await
}

/// The request both proxies get: Basic credentials, a query, the headers
/// the line names, and a body of known length from the backend.
fn the_request(host: &str) -> Request<Full<Bytes>> {
    Request::get("/bytes/512?color=red&size=2")
        .header("host", host)
        // alice:s3cret
        .header("authorization", "Basic YWxpY2U6czNjcmV0")
        .header("user-agent", "curl/8.5.0 \"quoted\"")
        .header("referer", "https://shop.test/cart")
        .header("x-team", "payments")
        .body(Full::default())
        .expect("request")
}

fn fields(line: &str) -> Vec<(&'static str, String)> {
    let values: Vec<&str> = line.split('|').collect();
    assert_eq!(values.len(), FIELDS.len(), "{line}");
    FIELDS
        .iter()
        .zip(values)
        .map(|(f, v)| (*f, v.to_owned()))
        .collect()
}

fn field<'a>(fields: &'a [(&str, String)], name: &str) -> &'a str {
    let (_, value) = fields.iter().find(|(f, _)| *f == name).expect("field");
    value
}

#[tokio::test]
async fn log_format_upstream_writes_each_variable_as_ingress_nginx_does() {
    let backend = Backend::start("web").await;
    let manifests = INGRESS_CLASS.to_owned()
        + &service("web", &[backend.addr])
        + &ingress("shop", "shop.test", "/", "web", None);
    let template = template() + "|$geoip_city";
    let s = serve(
        &manifests,
        AccessLogFormat::Json,
        &[("log-format-upstream", &template)],
    )
    .await;
    let mut conn = http_connect(s.gatehouse.http_addr).await;
    let reply = send_request(&mut conn, the_request("shop.test:80")).await;
    assert_eq!(reply.expect("reply").status, StatusCode::OK);

    let line = &lines(s.log.path(), 1).await[0];
    let (line, unknown) = line.rsplit_once('|').expect("fields");
    assert_eq!(unknown, "", "an unknown variable renders empty");
    let f = fields(line);
    let exact = [
        ("remote_addr", "127.0.0.1"),
        ("remote_user", "alice"),
        ("request", "GET /bytes/512?color=red&size=2 HTTP/1.1"),
        ("request_method", "GET"),
        ("request_uri", "/bytes/512?color=red&size=2"),
        ("uri", "/bytes/512"),
        ("args", "color=red&size=2"),
        ("server_protocol", "HTTP/1.1"),
        ("scheme", "http"),
        ("status", "200"),
        ("body_bytes_sent", "512"),
        ("http_referer", "https://shop.test/cart"),
        ("http_user_agent", r#"curl/8.5.0 \x22quoted\x22"#),
        ("http_x_forwarded_for", "-"),
        ("http_x_team", "payments"),
        ("proxy_upstream_name", "test-web-80"),
        ("proxy_alternative_upstream_name", ""),
        ("upstream_addr", &backend.addr.to_string()),
        ("upstream_response_length", "512"),
        ("upstream_status", "200"),
        ("host", "shop.test"),
        ("namespace", "test"),
        ("ingress_name", "shop"),
        ("service_name", "web"),
        ("service_port", "80"),
        ("ssl_protocol", "-"),
        ("ssl_cipher", "-"),
    ];
    for (name, value) in exact {
        assert_eq!(field(&f, name), value, "${name} in {line}");
    }
    for (name, value) in &f {
        assert_shape(name, value, line);
    }
    let bytes_sent: u64 = field(&f, "bytes_sent").parse().expect("number");
    assert!(bytes_sent > 512 + 17, "headers count: {line}");
    assert!(!line.contains("s3cret"), "never the password: {line}");
}

#[tokio::test]
async fn upstream_lists_name_every_attempt() {
    // A Service's endpoints share its port: the live one on 127.0.0.2,
    // the dead one on the same port of 127.0.0.1, where nothing listens.
    let live = Backend::start_on(SocketAddr::from(([127, 0, 0, 2], 0)), "web").await;
    let dead = SocketAddr::from(([127, 0, 0, 1], live.addr.port()));
    let manifests = INGRESS_CLASS.to_owned()
        + &service("web", &[dead, live.addr])
        + &ingress("shop", "shop.test", "/", "web", None);
    let s = serve(
        &manifests,
        AccessLogFormat::Json,
        &[(
            "log-format-upstream",
            "$upstream_addr|$upstream_status|$upstream_response_length|$upstream_response_time|$status",
        )],
    )
    .await;
    for _ in 0..4 {
        http_get(s.gatehouse.http_addr, "shop.test", "/bytes/7").await;
    }
    let lines = lines(s.log.path(), 4).await;
    let retried = lines
        .iter()
        .find(|l| l.contains(", "))
        .unwrap_or_else(|| panic!("no request went to the dead endpoint first: {lines:?}"));
    let f: Vec<&str> = retried.split('|').collect();
    assert_eq!(f[0], format!("{dead}, {}", live.addr), "{retried}");
    assert_eq!(f[1], "502, 200", "{retried}");
    assert_eq!(f[2], "0, 7", "{retried}");
    let times: Vec<&str> = f[3].split(", ").collect();
    assert_eq!(times.len(), 2, "{retried}");
    assert!(times.iter().all(|t| is_seconds(t)), "{retried}");
    assert_eq!(f[4], "200");
}

#[tokio::test]
async fn escape_json_makes_a_json_template_parse_and_absent_values_empty() {
    let backend = Backend::start("web").await;
    let manifests = INGRESS_CLASS.to_owned()
        + &service("web", &[backend.addr])
        + &ingress("shop", "shop.test", "/", "web", None);
    let template = r#"{"ua": "$http_user_agent", "user": "$remote_user", "status": $status, "time": "$time_iso8601"}"#;
    let s = serve(
        &manifests,
        AccessLogFormat::Text,
        &[
            ("log-format-upstream", template),
            ("log-format-escape-json", "true"),
        ],
    )
    .await;
    let mut conn = http_connect(s.gatehouse.http_addr).await;
    let req = Request::get("/")
        .header("host", "shop.test")
        .header("user-agent", "a \"b\" \\ c\td")
        .body(Full::default())
        .expect("request");
    send_request(&mut conn, req).await.expect("reply");
    let line = &lines(s.log.path(), 1).await[0];
    let json: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
    assert_eq!(json["ua"], "a \"b\" \\ c\td");
    assert_eq!(json["user"], "", "absent is empty under escape=json");
    assert_eq!(json["status"], 200);
    assert!(is_iso8601(json["time"].as_str().expect("time")), "{line}");
}

#[tokio::test]
async fn text_is_ingress_nginx_default_line() {
    let backend = Backend::start("web").await;
    let manifests = INGRESS_CLASS.to_owned()
        + &service("web", &[backend.addr])
        + &ingress("shop", "shop.test", "/", "web", None);
    let s = serve(&manifests, AccessLogFormat::Text, &[]).await;
    let mut conn = http_connect(s.gatehouse.http_addr).await;
    send_request(&mut conn, the_request("shop.test"))
        .await
        .expect("reply");
    let line = &lines(s.log.path(), 1).await[0];
    let (head, rest) = line.split_once(" [").expect("time");
    assert_eq!(head, "127.0.0.1 - alice");
    let (time, rest) = rest.split_once("] ").expect("time");
    assert!(is_time_local(time), "{line}");
    let expected = r#""GET /bytes/512?color=red&size=2 HTTP/1.1" 200 512 "https://shop.test/cart" "curl/8.5.0 \x22quoted\x22" "#;
    let rest = rest
        .strip_prefix(expected)
        .unwrap_or_else(|| panic!("{line}"));
    let f: Vec<&str> = rest.split(' ').collect();
    assert_eq!(f.len(), 9, "{line}");
    assert!(f[0].parse::<u64>().is_ok() && is_seconds(f[1]), "{line}");
    let upstream = backend.addr.to_string();
    assert_eq!(
        f[2..5],
        ["[test-web-80]", "[]", upstream.as_str()],
        "{line}"
    );
    assert_eq!(f[5], "512");
    assert!(is_seconds(f[6]), "{line}");
    assert_eq!(f[7], "200");
    assert!(is_hex_id(f[8]), "{line}");
}

#[tokio::test]
async fn nginx_writes_the_same_line_for_the_same_request() {
    let Some(nginx) = nginx::binary() else {
        eprintln!("skipped: no nginx binary (apt-get install -y nginx-light)");
        return;
    };
    let backend = Backend::start("web").await;
    let manifests = INGRESS_CLASS.to_owned()
        + &service("web", &[backend.addr])
        + &ingress("shop", "shop.test", "/", "web", None);
    let s = serve(
        &manifests,
        AccessLogFormat::Json,
        &[("log-format-upstream", &template())],
    )
    .await;
    let Some(real) = start_nginx(&nginx, backend.addr) else {
        eprintln!("skipped: nginx at {nginx} did not start");
        return;
    };

    let mut conn = http_connect(s.gatehouse.http_addr).await;
    send_request(&mut conn, the_request("shop.test"))
        .await
        .expect("gatehouse reply");
    let mut conn = http_connect(real.addr).await;
    let reply = send_request(&mut conn, the_request("shop.test")).await;
    assert_eq!(reply.expect("nginx reply").status, StatusCode::OK);

    let ours = lines(s.log.path(), 1).await.remove(0);
    let theirs = lines(real.dir.path(), 1).await.remove(0);
    eprintln!("gatehouse: {ours}\nnginx:     {theirs}");
    let (ours, theirs) = (fields(&ours), fields(&theirs));
    // What legitimately differs between two proxies is compared by shape:
    // clocks, durations, the request ID, and the size of the response head
    // each proxy writes itself (its own headers).
    let by_shape = [
        "time_local",
        "time_iso8601",
        "request_time",
        "upstream_response_time",
        "req_id",
        "bytes_sent",
    ];
    for ((name, mine), (_, nginx)) in ours.iter().zip(&theirs) {
        if by_shape.contains(name) {
            assert_shape(name, mine, &format!("ours {mine:?}"));
            assert_shape(name, nginx, &format!("nginx {nginx:?}"));
        } else {
            assert_eq!(mine, nginx, "${name}: ours {mine:?}, nginx {nginx:?}");
        }
    }
}

/// nginx configured as ingress-nginx configures a location: the same
/// `log_format`, the variables ingress-nginx sets, one upstream.
fn start_nginx(binary: &str, backend: SocketAddr) -> Option<Nginx> {
    let http = format!(
        r#"  log_format upstreaminfo '{format}';
  server {{
    listen 127.0.0.1:{{port}};
    server_name shop.test;
    set $proxy_upstream_name "-";
    set $req_id $request_id;
    location / {{
      set $namespace "test";
      set $ingress_name "shop";
      set $service_name "web";
      set $service_port "80";
      set $proxy_upstream_name "test-web-80";
      set $proxy_alternative_upstream_name "";
      access_log {{prefix}}/access.log upstreaminfo;
      proxy_pass http://{backend};
    }}
  }}"#,
        format = template(),
    );
    Nginx::start(binary, "", &http)
}

/// Fields whose value is not fixed must still have nginx's shape.
fn assert_shape(name: &str, value: &str, line: &str) {
    let ok = match name {
        "time_local" => is_time_local(value),
        "time_iso8601" => is_iso8601(value),
        "request_time" | "upstream_response_time" => is_seconds(value),
        "req_id" => is_hex_id(value),
        "bytes_sent" | "request_length" => value.parse::<u64>().is_ok(),
        _ => true,
    };
    assert!(ok, "${name} is {value:?} in {line}");
}

/// `07/Dec/2026:18:05:38 +0000`
fn is_time_local(value: &str) -> bool {
    let b = value.as_bytes();
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    value.len() == 26
        && digits(&b[0..2])
        && b[2] == b'/'
        && MONTHS.contains(&&value[3..6])
        && b[6] == b'/'
        && digits(&b[7..11])
        && b[11] == b':'
        && digits(&b[12..14])
        && digits(&b[15..17])
        && digits(&b[18..20])
        && value[20..21] == *" "
        && (value[21..22] == *"+" || value[21..22] == *"-")
        && digits(&b[22..26])
}

/// `2026-12-07T18:05:38+00:00`
fn is_iso8601(value: &str) -> bool {
    let b = value.as_bytes();
    value.len() == 25
        && digits(&b[0..4])
        && b[4] == b'-'
        && b[10] == b'T'
        && digits(&b[11..13])
        && (b[19] == b'+' || b[19] == b'-')
        && b[22] == b':'
}

/// `0.003`
fn is_seconds(value: &str) -> bool {
    match value.split_once('.') {
        Some((s, ms)) => {
            !s.is_empty() && digits(s.as_bytes()) && ms.len() == 3 && digits(ms.as_bytes())
        }
        None => false,
    }
}

fn is_hex_id(value: &str) -> bool {
    value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

fn digits(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_digit)
}
