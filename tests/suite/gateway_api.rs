//! The Gateway API conformance suite's HTTPRoute tests, re-expressed: the
//! suite's own manifests (`tests/fixtures/gateway-api/`, from
//! kubernetes-sigs/gateway-api v1.6.1), served by Gatehouse through the
//! files source, with real backends on 127.0.0.1 named as the suite names
//! them, and the suite's requests and expected answers. The conformance
//! base (its namespaces, Gateways and Services) is `BASE` below, with the
//! Deployments replaced by those backends.

use crate::support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

const INFRA: &str = "gateway-conformance-infra";
const APP: &str = "gateway-conformance-app-backend";
const WEB: &str = "gateway-conformance-web-backend";

/// The conformance base: namespaces, our GatewayClass and the suite's
/// Gateways (the HTTPS one's certificate is added by `Suite::start`).
const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gatehouse}
spec: {controllerName: gatehouse.dev/gateway-controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-infra, labels: {gateway-conformance: infra}}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-app-backend, labels: {gateway-conformance: backend}}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateway-conformance-web-backend, labels: {gateway-conformance: backend}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: same-namespace, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gatehouse
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: all-namespaces, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gatehouse
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: backend-namespaces, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gatehouse
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Selector
        selector: {matchLabels: {gateway-conformance: backend}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: same-namespace-with-https-listener, namespace: gateway-conformance-infra}
spec:
  gatewayClassName: gatehouse
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    allowedRoutes: {namespaces: {from: Same}}
    tls:
      certificateRefs: [{group: "", kind: Secret, name: tls-validity-checks-certificate}]
  - name: https-with-hostname
    port: 443
    hostname: second-example.org
    protocol: HTTPS
    allowedRoutes: {namespaces: {from: Same}}
    tls:
      certificateRefs: [{group: "", kind: Secret, name: tls-validity-checks-certificate}]
  - name: https-with-wildcard-hostname
    port: 443
    hostname: "*.wildcard.org"
    protocol: HTTPS
    allowedRoutes: {namespaces: {from: Same}}
    tls:
      certificateRefs: [{group: "", kind: Secret, name: tls-validity-checks-certificate}]
"#;

/// The suite's backends, by namespace and name.
const BACKENDS: [(&str, &str); 9] = [
    (INFRA, "infra-backend-v1"),
    (INFRA, "infra-backend-v2"),
    (INFRA, "infra-backend-v3"),
    (INFRA, "grpc-infra-backend-v1"),
    (INFRA, "grpc-infra-backend-v2"),
    (INFRA, "grpc-infra-backend-v3"),
    (APP, "app-backend-v1"),
    (APP, "app-backend-v2"),
    (WEB, "web-backend"),
];

/// A Service with the suite's port 8080 and its endpoint.
fn suite_service(namespace: &str, name: &str, addr: std::net::SocketAddr) -> String {
    let port = addr.port();
    format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  ports: [{{name: first-port, port: 8080, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-x1
  namespace: {namespace}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: first-port, port: {port}}}]
endpoints:
- addresses: [\"{}\"]
",
        addr.ip()
    )
}

struct Suite {
    dir: tempfile::TempDir,
    manifests: String,
    backends: Vec<Backend>,
    gatehouse: gatehouse::app::Running,
    pki: Pki,
}

impl Suite {
    /// The base and the named conformance manifests.
    async fn start(fixtures: &[&str]) -> Suite {
        Suite::start_with(fixtures, |text, _| text).await
    }

    /// `start`, with the manifests' text changed by `change` (which also
    /// gets the backends) first.
    async fn start_with(
        fixtures: &[&str],
        change: impl FnOnce(String, &[Backend]) -> String,
    ) -> Suite {
        let pki = Pki::new();
        let mut manifests = BASE.to_owned();
        let mut backends = Vec::new();
        for (namespace, name) in BACKENDS {
            let backend = Backend::start(name).await;
            manifests.push_str(&suite_service(namespace, name, backend.addr));
            backends.push(backend);
        }
        let leaf = pki.leaf_for(&[
            "example.org",
            "*.example.org",
            "second-example.org",
            "unknown-example.org",
            "*.wildcard.org",
        ]);
        manifests.push_str(
            &tls_secret("tls-validity-checks-certificate", &leaf)
                .replace("namespace: test", &format!("namespace: {INFRA}")),
        );
        for name in fixtures {
            let path = format!(
                "{}/tests/fixtures/gateway-api/{name}.yaml",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path).expect("conformance manifest");
            manifests.push_str("\n---\n");
            manifests.push_str(&text.replace("{GATEWAY_CLASS_NAME}", "gatehouse"));
        }
        let manifests = change(manifests, &backends);
        let (dir, gatehouse) = serve_manifests(&manifests).await;
        Suite {
            dir,
            manifests,
            backends,
            gatehouse,
            pki,
        }
    }

    /// The requests a backend received whose path starts with `path`.
    fn seen_by(&self, backend: &str, path: &str) -> Vec<serde_json::Value> {
        let backend = self.backends.iter().find(|b| b.name == backend);
        let seen = backend.expect("a suite backend").seen.lock().expect("seen");
        seen.iter()
            .filter(|r| r["uri"].as_str().is_some_and(|u| u.starts_with(path)))
            .cloned()
            .collect()
    }

    /// Rewrites the manifests with `from` replaced by `to`, as an edit or
    /// a deletion in a cluster would change them.
    fn edit(&mut self, from: &str, to: &str) {
        assert!(
            self.manifests.contains(from),
            "{from:?} is not in the manifests"
        );
        self.manifests = self.manifests.replace(from, to);
        write_atomically(&self.dir.path().join("all.yaml"), &self.manifests);
    }

    /// Checks the cases until they pass (a change takes a moment to be
    /// read), for at most ten seconds.
    async fn eventually(&self, cases: &[Case]) {
        for _ in 0..100 {
            if self.failures(cases).await.is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.check(cases).await;
    }

    async fn send(&self, case: &Case) -> Reply {
        let mut req = Request::builder()
            .method(case.method)
            .uri(case.path)
            .header(http::header::HOST, case.host);
        for (name, value) in case.headers {
            req = req.header(*name, *value);
        }
        let req: Request<Full<Bytes>> = req.body(Full::default()).expect("request");
        let mut conn = http_connect(self.gatehouse.http_addr).await;
        send_request(&mut conn, req).await.expect("request")
    }

    /// Sends every case and checks its answer; all failures are reported
    /// together.
    async fn check(&self, cases: &[Case]) {
        let failures = self.failures(cases).await;
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    async fn failures(&self, cases: &[Case]) -> Vec<String> {
        let mut failures = Vec::new();
        for case in cases {
            let reply = self.send(case).await;
            if let Err(why) = case.expect.check(&reply) {
                failures.push(format!(
                    "{} {}{} {:?}: {why}",
                    case.method, case.host, case.path, case.headers
                ));
            }
        }
        failures
    }
}

/// One request of a conformance test and what must come back.
struct Case {
    host: &'static str,
    path: &'static str,
    method: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
}

/// The suite's request defaults: GET, no headers, the Gateway's address as
/// the host (any host does, for routes without hostnames).
fn get(path: &'static str, expect: Expect) -> Case {
    Case {
        host: "gateway.test",
        path,
        method: "GET",
        headers: &[],
        expect,
    }
}

fn at(host: &'static str, path: &'static str, expect: Expect) -> Case {
    Case {
        host,
        ..get(path, expect)
    }
}

fn with(
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: Expect,
) -> Case {
    Case {
        headers,
        ..get(path, expect)
    }
}

enum Expect {
    /// Served by this backend.
    Backend(&'static str),
    Status(u16),
    /// A redirect with this status to this location.
    Redirect(u16, &'static str),
    /// Served by this backend, with these response headers (name, value
    /// or `None` for absent; repeated headers joined with `,`).
    Answered {
        backend: &'static str,
        headers: &'static [(&'static str, Option<&'static str>)],
    },
    /// Served by this backend, which saw this path and query and host, and
    /// these headers (name, value or `None` for absent).
    Seen {
        backend: &'static str,
        uri: &'static str,
        host: Option<&'static str>,
        headers: &'static [(&'static str, Option<&'static str>)],
    },
}

impl Expect {
    fn check(&self, reply: &Reply) -> Result<(), String> {
        let status = reply.status.as_u16();
        match self {
            Expect::Status(want) if status == *want => Ok(()),
            Expect::Status(want) => Err(format!("status {status}, want {want}")),
            Expect::Redirect(want, location) => {
                let got = reply
                    .headers
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok());
                if status == *want && got == Some(*location) {
                    Ok(())
                } else {
                    Err(format!("{status} to {got:?}, want {want} to {location}"))
                }
            }
            Expect::Backend(name) => served_by(reply, name),
            Expect::Answered { backend, headers } => {
                served_by(reply, backend)?;
                for (name, want) in *headers {
                    let values: Vec<&str> = reply
                        .headers
                        .get_all(*name)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect();
                    let got = (!values.is_empty()).then(|| values.join(","));
                    if got.as_deref() != *want {
                        return Err(format!("response {name}: {got:?}, want {want:?}"));
                    }
                }
                Ok(())
            }
            Expect::Seen {
                backend,
                uri,
                host,
                headers,
            } => {
                served_by(reply, backend)?;
                let seen = reply.seen();
                if seen["uri"] != *uri {
                    return Err(format!("backend saw {}, want {uri}", seen["uri"]));
                }
                if let Some(host) = host {
                    if seen["headers"]["host"] != *host {
                        return Err(format!(
                            "backend saw host {}, want {host}",
                            seen["headers"]["host"]
                        ));
                    }
                }
                for (name, want) in *headers {
                    let got = seen["headers"][name.to_ascii_lowercase()].as_str();
                    if got != *want {
                        return Err(format!("backend saw {name}: {got:?}, want {want:?}"));
                    }
                }
                Ok(())
            }
        }
    }
}

fn served_by(reply: &Reply, name: &str) -> Result<(), String> {
    if reply.status != StatusCode::OK {
        return Err(format!("status {}, want 200 from {name}", reply.status));
    }
    match reply.backend() {
        got if got == name => Ok(()),
        got => Err(format!("served by {got}, want {name}")),
    }
}

use Expect::{Backend as B, Redirect, Status};

#[tokio::test]
async fn httproute_simple_same_namespace() {
    let suite = Suite::start(&["httproute-simple-same-namespace"]).await;
    suite.check(&[get("/", B("infra-backend-v1"))]).await;
}

#[tokio::test]
async fn httproute_matching() {
    let suite = Suite::start(&["httproute-matching"]).await;
    suite
        .check(&[
            get("/", B("infra-backend-v1")),
            get("/example", B("infra-backend-v1")),
            with("/", &[("Version", "one")], B("infra-backend-v1")),
            get("/v2", B("infra-backend-v2")),
            get("/v2/example", B("infra-backend-v2")),
            with("/", &[("Version", "two")], B("infra-backend-v2")),
            get("/v2/", B("infra-backend-v2")),
            get("/v2example", B("infra-backend-v1")),
            get("/foo/v2/example", B("infra-backend-v1")),
        ])
        .await;
}

#[tokio::test]
async fn httproute_exact_path_matching() {
    let suite = Suite::start(&["httproute-exact-path-matching"]).await;
    suite
        .check(&[
            get("/one", B("infra-backend-v1")),
            get("/two", B("infra-backend-v2")),
            get("/", Status(404)),
            get("/one/example", Status(404)),
            get("/two/", Status(404)),
            get("/Two", Status(404)),
        ])
        .await;
}

#[tokio::test]
async fn httproute_header_matching() {
    let suite = Suite::start(&["httproute-header-matching"]).await;
    suite
        .check(&[
            with("/", &[("Version", "one")], B("infra-backend-v1")),
            with("/", &[("Version", "two")], B("infra-backend-v2")),
            with(
                "/",
                &[("Version", "two"), ("Color", "orange")],
                B("infra-backend-v1"),
            ),
            with(
                "/",
                &[("Version", "two"), ("Color", "blue")],
                B("infra-backend-v2"),
            ),
            with("/", &[("Color", "orange")], Status(404)),
            with("/", &[("Some-Other-Header", "one")], Status(404)),
            with("/", &[("Color", "blue")], B("infra-backend-v1")),
            with("/", &[("Color", "green")], B("infra-backend-v1")),
            with("/", &[("Color", "red")], B("infra-backend-v2")),
            with("/", &[("Color", "yellow")], B("infra-backend-v2")),
            with("/", &[("Color", "purple")], Status(404)),
        ])
        .await;
}

#[tokio::test]
async fn httproute_query_param_matching() {
    let suite = Suite::start(&["httproute-query-param-matching"]).await;
    suite
        .check(&[
            get("/?animal=whale", B("infra-backend-v1")),
            get("/?animal=dolphin", B("infra-backend-v2")),
            get("/?animal=dolphin&color=blue", B("infra-backend-v3")),
            get("/?ANIMAL=Whale", B("infra-backend-v3")),
            get(
                "/?animal=whale&otherparam=irrelevant",
                B("infra-backend-v1"),
            ),
            get("/?animal=dolphin&color=yellow", B("infra-backend-v2")),
            get("/?color=blue", Status(404)),
            get("/?animal=dog", Status(404)),
            get("/?animal=whaledolphin", Status(404)),
            get("/", Status(404)),
            get("/path1?animal=whale", B("infra-backend-v1")),
            with(
                "/?animal=whale",
                &[("version", "one")],
                B("infra-backend-v2"),
            ),
            with(
                "/path2?animal=whale",
                &[("version", "two")],
                B("infra-backend-v3"),
            ),
            get("/path3?animal=shark", B("infra-backend-v1")),
            with(
                "/path4?animal=kraken",
                &[("version", "three")],
                B("infra-backend-v1"),
            ),
            get("/?animal=shark", Status(404)),
            get("/path4?animal=kraken", Status(404)),
            get("/path5?animal=hydra", B("infra-backend-v1")),
            with(
                "/?animal=hydra",
                &[("version", "four")],
                B("infra-backend-v3"),
            ),
        ])
        .await;
}

#[tokio::test]
async fn httproute_method_matching() {
    let suite = Suite::start(&["httproute-method-matching"]).await;
    let method = |method: &'static str, path: &'static str, expect: Expect| Case {
        method,
        ..get(path, expect)
    };
    let headed = |method: &'static str,
                  path: &'static str,
                  headers: &'static [(&'static str, &'static str)],
                  expect: Expect| Case {
        method,
        headers,
        ..get(path, expect)
    };
    suite
        .check(&[
            method("POST", "/", B("infra-backend-v1")),
            method("GET", "/", B("infra-backend-v2")),
            method("HEAD", "/", Status(404)),
            method("GET", "/path1", B("infra-backend-v1")),
            headed("PUT", "/", &[("version", "one")], B("infra-backend-v2")),
            headed(
                "POST",
                "/path2",
                &[("version", "two")],
                B("infra-backend-v3"),
            ),
            method("PATCH", "/path3", B("infra-backend-v1")),
            headed(
                "DELETE",
                "/path4",
                &[("version", "three")],
                B("infra-backend-v1"),
            ),
            method("PUT", "/", Status(404)),
            method("DELETE", "/path4", Status(404)),
            method("PATCH", "/path5", B("infra-backend-v1")),
            headed("PATCH", "/", &[("version", "four")], B("infra-backend-v2")),
        ])
        .await;
}

#[tokio::test]
async fn httproute_path_match_order() {
    let suite = Suite::start(&["httproute-path-match-order"]).await;
    suite
        .check(&[
            get("/match/exact/one", B("infra-backend-v3")),
            get("/match/exact", B("infra-backend-v2")),
            get("/match", B("infra-backend-v1")),
            get("/match/prefix/one/any", B("infra-backend-v2")),
            get("/match/prefix/any", B("infra-backend-v1")),
            get("/match/any", B("infra-backend-v3")),
        ])
        .await;
}

#[tokio::test]
async fn httproute_hostname_intersection() {
    let suite = Suite::start(&["httproute-hostname-intersection"]).await;
    suite
        .check(&[
            at("very.specific.com", "/s1", B("infra-backend-v1")),
            at("very.specific.com:1234", "/s1", B("infra-backend-v1")),
            at("non.matching.com", "/s1", Status(404)),
            at("foo.nonmatchingwildcard.io", "/s1", Status(404)),
            at("foo.wildcard.io", "/s1", Status(404)),
            at("very.specific.com", "/non-matching-prefix", Status(404)),
            at("foo.wildcard.io", "/s2", B("infra-backend-v2")),
            at("bar.wildcard.io", "/s2", B("infra-backend-v2")),
            at("foo.bar.wildcard.io", "/s2", B("infra-backend-v2")),
            at("non.matching.com", "/s2", Status(404)),
            at("wildcard.io", "/s2", Status(404)),
            at("very.specific.com", "/s2", Status(404)),
            at("foo.wildcard.io", "/non-matching-prefix", Status(404)),
            at("very.specific.com", "/s3", B("infra-backend-v3")),
            at("non.matching.com", "/s3", Status(404)),
            at("foo.specific.com", "/s3", Status(404)),
            at("foo.wildcard.io", "/s3", Status(404)),
            at("foo.anotherwildcard.io", "/s4", B("infra-backend-v1")),
            at("bar.anotherwildcard.io", "/s4", B("infra-backend-v1")),
            at("foo.bar.anotherwildcard.io", "/s4", B("infra-backend-v1")),
            at("anotherwildcard.io", "/s4", Status(404)),
            at("foo.wildcard.io", "/s4", Status(404)),
            at("very.specific.com", "/s4", Status(404)),
            at(
                "foo.anotherwildcard.io",
                "/non-matching-prefix",
                Status(404),
            ),
            at("specific.but.wrong.com", "/s5", Status(404)),
            at("wildcard.io", "/s5", Status(404)),
            at("first.com", "/", B("infra-backend-v2")),
            at("sub.first.com", "/", B("infra-backend-v2")),
            at("second.com", "/", B("infra-backend-v2")),
            at("sub.second.com", "/", B("infra-backend-v2")),
            at("third.com", "/", Status(404)),
            at("sub.third.com", "/", Status(404)),
        ])
        .await;
}

#[tokio::test]
async fn httproute_listener_hostname_matching() {
    let suite = Suite::start(&["httproute-listener-hostname-matching"]).await;
    suite
        .check(&[
            at("bar.com", "/", B("infra-backend-v1")),
            at("foo.bar.com", "/", B("infra-backend-v2")),
            at("baz.bar.com", "/", B("infra-backend-v3")),
            at("boo.bar.com", "/", B("infra-backend-v3")),
            at("multiple.prefixes.bar.com", "/", B("infra-backend-v3")),
            at("multiple.prefixes.foo.com", "/", B("infra-backend-v3")),
            at("foo.com", "/", Status(404)),
            at("no.matching.host", "/", Status(404)),
        ])
        .await;
}

#[tokio::test]
async fn httproute_redirects() {
    let suite = Suite::start(&[
        "httproute-redirect-host-and-status",
        "httproute-redirect-path",
        "httproute-redirect-port",
        "httproute-redirect-scheme",
    ])
    .await;
    suite
        .check(&[
            get(
                "/hostname-redirect",
                Redirect(302, "http://example.org/hostname-redirect"),
            ),
            get(
                "/host-and-status",
                Redirect(301, "http://example.org/host-and-status"),
            ),
            get(
                "/original-prefix/lemon",
                Redirect(302, "http://gateway.test/replacement-prefix/lemon"),
            ),
            get(
                "/full/path/original",
                Redirect(302, "http://gateway.test/full-path-replacement"),
            ),
            get(
                "/path-and-host",
                Redirect(302, "http://example.org/replacement-prefix"),
            ),
            get(
                "/path-and-status",
                Redirect(301, "http://gateway.test/replacement-prefix"),
            ),
            get(
                "/full-path-and-host",
                Redirect(302, "http://example.org/replacement-full"),
            ),
            get(
                "/full-path-and-status",
                Redirect(301, "http://gateway.test/replacement-full"),
            ),
            get("/port", Redirect(302, "http://gateway.test:8083/port")),
            get(
                "/port-and-host",
                Redirect(302, "http://example.org:8083/port-and-host"),
            ),
            get(
                "/port-and-status",
                Redirect(301, "http://gateway.test:8083/port-and-status"),
            ),
            get(
                "/port-and-host-and-status",
                Redirect(302, "http://example.org:8083/port-and-host-and-status"),
            ),
            get("/scheme", Redirect(302, "https://gateway.test/scheme")),
            get(
                "/scheme-and-host",
                Redirect(302, "https://example.org/scheme-and-host"),
            ),
            get(
                "/scheme-and-status",
                Redirect(301, "https://gateway.test/scheme-and-status"),
            ),
            get(
                "/scheme-and-host-and-status",
                Redirect(302, "https://example.org/scheme-and-host-and-status"),
            ),
            get(
                "/original-prefix/lemon?fruit=yes",
                Redirect(
                    302,
                    "http://gateway.test/replacement-prefix/lemon?fruit=yes",
                ),
            ),
        ])
        .await;
}

#[tokio::test]
async fn httproute_redirect_port_and_scheme() {
    let suite = Suite::start(&["httproute-redirect-port-and-scheme"]).await;
    suite
        .check(&[
            get(
                "/scheme-nil-and-port-nil",
                Redirect(302, "http://example.org/scheme-nil-and-port-nil"),
            ),
            get(
                "/scheme-nil-and-port-80",
                Redirect(302, "http://example.org/scheme-nil-and-port-80"),
            ),
            get(
                "/scheme-nil-and-port-8080",
                Redirect(302, "http://example.org:8080/scheme-nil-and-port-8080"),
            ),
            get(
                "/scheme-https-and-port-nil",
                Redirect(302, "https://example.org/scheme-https-and-port-nil"),
            ),
            get(
                "/scheme-https-and-port-443",
                Redirect(302, "https://example.org/scheme-https-and-port-443"),
            ),
            get(
                "/scheme-https-and-port-8443",
                Redirect(302, "https://example.org:8443/scheme-https-and-port-8443"),
            ),
        ])
        .await;
}

#[tokio::test]
async fn httproute_redirect_status_codes_303_307_308() {
    let suite = Suite::start(&[
        "httproute-303-redirect",
        "httproute-307-redirect",
        "httproute-308-redirect",
    ])
    .await;
    suite
        .check(&[
            get("/see-other", Redirect(303, "http://gateway.test/see-other")),
            get("/temporary", Redirect(307, "http://gateway.test/temporary")),
            get("/permanent", Redirect(308, "http://gateway.test/permanent")),
        ])
        .await;
}

const MODIFIED: &[(&str, Option<&str>)] = &[
    ("X-Header-Add", Some("header-val-1")),
    ("X-Header-Add-Append", Some("append-val-1, header-val-2")),
    ("X-Header-Set", Some("set-overwrites-values")),
    ("X-Header-Remove", None),
];
const SENT: &[(&str, &str)] = &[
    ("X-Header-Remove", "remove-val"),
    ("X-Header-Add-Append", "append-val-1"),
    ("X-Header-Set", "set-val"),
];

#[tokio::test]
async fn httproute_rewrite_host() {
    let suite = Suite::start(&["httproute-rewrite-host"]).await;
    let seen = |host, uri, backend, headers| Expect::Seen {
        backend,
        uri,
        host: Some(host),
        headers,
    };
    suite
        .check(&[
            at(
                "rewrite.example",
                "/one",
                seen("one.example.org", "/one", "infra-backend-v1", &[]),
            ),
            at(
                "rewrite.example",
                "/two",
                seen("example.org", "/two", "infra-backend-v2", &[]),
            ),
            Case {
                headers: SENT,
                ..at(
                    "rewrite.example",
                    "/rewrite-host-and-modify-headers",
                    seen(
                        "test.example.org",
                        "/rewrite-host-and-modify-headers",
                        "infra-backend-v2",
                        MODIFIED,
                    ),
                )
            },
        ])
        .await;
}

#[tokio::test]
async fn httproute_rewrite_path() {
    let suite = Suite::start(&["httproute-rewrite-path"]).await;
    let seen = |uri, headers| Expect::Seen {
        backend: "infra-backend-v1",
        uri,
        host: None,
        headers,
    };
    suite
        .check(&[
            get("/prefix/one/two", seen("/one/two", &[])),
            get("/strip-prefix/three", seen("/three", &[])),
            get("/strip-prefix", seen("/", &[])),
            get("/full/one/two", seen("/one", &[])),
            with(
                "/full/rewrite-path-and-modify-headers/test",
                SENT,
                seen("/test", MODIFIED),
            ),
            with(
                "/prefix/rewrite-path-and-modify-headers/one",
                SENT,
                seen("/prefix/one", MODIFIED),
            ),
            get("/prefix/one/two?keep=1", seen("/one/two?keep=1", &[])),
        ])
        .await;
}

#[tokio::test]
async fn httproute_request_header_modifier() {
    let suite = Suite::start(&["httproute-request-header-modifier"]).await;
    let seen = |uri, headers| Expect::Seen {
        backend: "infra-backend-v1",
        uri,
        host: None,
        headers,
    };
    suite
        .check(&[
            with(
                "/set",
                &[("Some-Other-Header", "val")],
                seen(
                    "/set",
                    &[
                        ("Some-Other-Header", Some("val")),
                        ("X-Header-Set", Some("set-overwrites-values")),
                    ],
                ),
            ),
            with(
                "/set",
                &[
                    ("Some-Other-Header", "val"),
                    ("X-Header-Set", "some-other-value"),
                ],
                seen("/set", &[("X-Header-Set", Some("set-overwrites-values"))]),
            ),
            with(
                "/add",
                &[("Some-Other-Header", "val")],
                seen("/add", &[("X-Header-Add", Some("add-appends-values"))]),
            ),
            with(
                "/add",
                &[("X-Header-Add", "some-other-value")],
                seen(
                    "/add",
                    &[("X-Header-Add", Some("some-other-value, add-appends-values"))],
                ),
            ),
            with(
                "/remove",
                &[("X-Header-Remove", "val")],
                seen("/remove", &[("X-Header-Remove", None)]),
            ),
            with(
                "/multiple",
                &[
                    ("X-Header-Set-2", "set-val-2"),
                    ("X-Header-Add-2", "add-val-2"),
                    ("X-Header-Remove-2", "remove-val-2"),
                    ("Another-Header", "another-header-val"),
                ],
                seen(
                    "/multiple",
                    &[
                        ("X-Header-Set-1", Some("header-set-1")),
                        ("X-Header-Set-2", Some("header-set-2")),
                        ("X-Header-Add-1", Some("header-add-1")),
                        ("X-Header-Add-2", Some("add-val-2, header-add-2")),
                        ("X-Header-Add-3", Some("header-add-3")),
                        ("Another-Header", Some("another-header-val")),
                        ("X-Header-Remove-1", None),
                        ("X-Header-Remove-2", None),
                    ],
                ),
            ),
            with(
                "/case-insensitivity",
                &[
                    ("x-header-set", "original-val-set"),
                    ("x-header-add", "original-val-add"),
                    ("x-header-remove", "original-val-remove"),
                    ("Another-Header", "another-header-val"),
                ],
                seen(
                    "/case-insensitivity",
                    &[
                        ("X-Header-Set", Some("header-set")),
                        ("X-Header-Add", Some("original-val-add, header-add")),
                        ("Another-Header", Some("another-header-val")),
                        ("X-Header-Remove", None),
                    ],
                ),
            ),
        ])
        .await;
}

#[tokio::test]
async fn httproute_response_header_modifier() {
    let suite = Suite::start(&["httproute-response-header-modifier"]).await;
    let answered = |headers| Expect::Answered {
        backend: "infra-backend-v1",
        headers,
    };
    suite
        .check(&[
            with(
                "/set",
                &[("X-Echo-Set-Header", "Some-Other-Header:val")],
                answered(&[
                    ("Some-Other-Header", Some("val")),
                    ("X-Header-Set", Some("set-overwrites-values")),
                ]),
            ),
            with(
                "/set",
                &[(
                    "X-Echo-Set-Header",
                    "Some-Other-Header:val,X-Header-Set:some-other-value",
                )],
                answered(&[("X-Header-Set", Some("set-overwrites-values"))]),
            ),
            with(
                "/add",
                &[("X-Echo-Set-Header", "X-Header-Add:some-other-value")],
                answered(&[("X-Header-Add", Some("some-other-value,add-appends-values"))]),
            ),
            with(
                "/remove",
                &[("X-Echo-Set-Header", "X-Header-Remove:val")],
                answered(&[("X-Header-Remove", None)]),
            ),
            with(
                "/multiple",
                &[(
                    "X-Echo-Set-Header",
                    "X-Header-Set-2:set-val-2,X-Header-Add-2:add-val-2,X-Header-Remove-2:remove-val-2,Another-Header:another-header-val,X-Header-Remove-1:val",
                )],
                answered(&[
                    ("X-Header-Set-1", Some("header-set-1")),
                    ("X-Header-Set-2", Some("header-set-2")),
                    ("X-Header-Add-1", Some("header-add-1")),
                    ("X-Header-Add-2", Some("add-val-2,header-add-2")),
                    ("X-Header-Add-3", Some("header-add-3")),
                    ("Another-Header", Some("another-header-val")),
                    ("X-Header-Remove-1", None),
                    ("X-Header-Remove-2", None),
                ]),
            ),
            with(
                "/case-insensitivity",
                &[(
                    "X-Echo-Set-Header",
                    "x-header-set:original-val-set,x-header-add:original-val-add,x-header-remove:original-val-remove,Another-Header:another-header-val",
                )],
                answered(&[
                    ("X-Header-Set", Some("header-set")),
                    ("X-Header-Add", Some("original-val-add,header-add")),
                    ("X-Lowercase-Add", Some("lowercase-add")),
                    ("X-Mixedcase-Add-1", Some("mixedcase-add-1")),
                    ("X-Mixedcase-Add-2", Some("mixedcase-add-2")),
                    ("X-Uppercase-Add", Some("uppercase-add")),
                    ("Another-Header", Some("another-header-val")),
                    ("X-Header-Remove", None),
                ]),
            ),
        ])
        .await;
}

#[tokio::test]
async fn httproute_cross_namespace() {
    let suite = Suite::start(&["httproute-cross-namespace"]).await;
    suite.check(&[get("/", B("web-backend"))]).await;
}

#[tokio::test]
async fn httproute_reference_grant_allows_and_its_deletion_closes() {
    let mut suite = Suite::start(&["httproute-reference-grant"]).await;
    suite.check(&[get("/", B("web-backend"))]).await;
    suite.edit("kind: ReferenceGrant", "kind: NotAReferenceGrant");
    suite.eventually(&[get("/", Status(500))]).await;
}

#[tokio::test]
async fn httproute_unresolvable_backends_answer_500() {
    let suite = Suite::start(&["httproute-invalid-cross-namespace-backend-ref"]).await;
    suite.check(&[get("/", Status(500))]).await;
    let suite = Suite::start(&["httproute-invalid-nonexistent-backendref"]).await;
    suite.check(&[get("/", Status(500))]).await;
    let suite = Suite::start(&["httproute-invalid-backendref-unknown-kind"]).await;
    suite.check(&[get("/v2", Status(500))]).await;
}

#[tokio::test]
async fn httproute_omitted_backendrefs() {
    let suite = Suite::start(&["httproute-omitted-backendrefs"]).await;
    suite
        .check(&[
            get("/forward", B("infra-backend-v1")),
            get("/omitted-no-forward", Status(500)),
            get("/empty-no-forward", Status(500)),
        ])
        .await;
}

#[tokio::test]
async fn httproute_matching_across_routes() {
    let suite = Suite::start(&["httproute-matching-across-routes"]).await;
    let headed = |host, path, headers, expect| Case {
        headers,
        ..at(host, path, expect)
    };
    suite
        .check(&[
            at("example.com", "/", B("infra-backend-v1")),
            at("example.com", "/example", B("infra-backend-v1")),
            at("example.net", "/example", B("infra-backend-v1")),
            headed(
                "example.com",
                "/example",
                &[("Version", "one")],
                B("infra-backend-v1"),
            ),
            at("example.com", "/v2", B("infra-backend-v2")),
            at("example.net", "/v2", B("infra-backend-v1")),
            at("example.com", "/v2/example", B("infra-backend-v2")),
            headed(
                "example.com",
                "/",
                &[("Version", "two")],
                B("infra-backend-v2"),
            ),
        ])
        .await;
}

#[tokio::test]
async fn httproute_disallowed_kind_is_not_served() {
    let suite = Suite::start(&["httproute-disallowed-kind"]).await;
    suite.check(&[get("/", Status(404))]).await;
    let warnings = warnings_of(&suite.manifests);
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "HTTPRoute gateway-conformance-infra/disallowed-kind: parentRef Gateway gateway-conformance-infra/tlsroutes-only: not accepted"
        )),
        "{warnings:#?}"
    );
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "Gateway gateway-conformance-infra/tlsroutes-only: listener tls: protocol TLS"
        )),
        "{warnings:#?}"
    );
}

/// What translate warns about, for manifests, as `gatehouse routes` shows.
fn warnings_of(manifests: &str) -> Vec<String> {
    let objects = gatehouse::source::manifest::parse(manifests).expect("manifests parse");
    let state = gatehouse::cluster::ClusterState::from_objects(objects);
    let translation = gatehouse::translate::translate(&state, &Default::default());
    translation
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[tokio::test]
async fn httproute_https_listener() {
    let suite = Suite::start(&["httproute-https-listener"]).await;
    for (host, want) in [
        ("example.org", Some("infra-backend-v1")),
        ("unknown-example.org", None),
        ("second-example.org", Some("infra-backend-v2")),
    ] {
        let (mut conn, _) = https_connect(suite.gatehouse.https_addr, host, &suite.pki.ca).await;
        let reply = send(&mut conn, host, "/").await.expect("request");
        match want {
            Some(backend) => {
                assert_eq!(served_by(&reply, backend), Ok(()), "{host}");
                // HSTS, as for an Ingress with TLS (the default setting).
                let hsts = reply.headers.get("strict-transport-security");
                assert!(
                    hsts.is_some_and(|v| v.to_str().unwrap_or_default().starts_with("max-age=")),
                    "{host}: {:?}",
                    reply.headers
                );
            }
            None => assert_eq!(reply.status, StatusCode::NOT_FOUND, "{host}"),
        }
    }
    // The HTTPS listener's routes are not served over plain HTTP.
    suite.check(&[at("example.org", "/", Status(404))]).await;
}

/// The types Gatehouse reads the Gateway API with are written by hand:
/// every field they read (here, every field of every object of the
/// conformance manifests, read and written back) must be a field of the
/// CRD schema in `deploy/gateway-api/`.
#[test]
fn every_field_read_is_a_field_of_the_crd_schemas() {
    use gatehouse::cluster::Object;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = BASE.to_owned();
    for entry in std::fs::read_dir(dir.join("tests/fixtures/gateway-api")).expect("fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        text.push_str("\n---\n");
        text.push_str(&std::fs::read_to_string(path).expect("fixture"));
    }
    let text = text.replace("{GATEWAY_CLASS_NAME}", "gatehouse");
    let schema = |file: &str, version: &str| -> serde_json::Value {
        let crd = std::fs::read_to_string(dir.join("deploy/gateway-api").join(file)).expect("CRD");
        let crd: serde_json::Value = serde_yaml_ng::from_str(&crd).expect("CRD yaml");
        let versions = crd["spec"]["versions"].as_array().expect("versions");
        let found = versions.iter().find(|v| v["name"] == version);
        found.expect("version")["schema"]["openAPIV3Schema"].clone()
    };
    let mut checked = std::collections::BTreeMap::<&str, usize>::new();
    for object in gatehouse::source::manifest::parse(&text).expect("parse") {
        let (kind, value, schema) = match &object {
            Object::GatewayClass(o) => (
                "GatewayClass",
                serde_json::to_value(&**o),
                schema("gatewayclasses.yaml", "v1"),
            ),
            Object::Gateway(o) => (
                "Gateway",
                serde_json::to_value(&**o),
                schema("gateways.yaml", "v1"),
            ),
            Object::HTTPRoute(o) => (
                "HTTPRoute",
                serde_json::to_value(&**o),
                schema("httproutes.yaml", "v1"),
            ),
            Object::ReferenceGrant(o) => (
                "ReferenceGrant",
                serde_json::to_value(&**o),
                schema("referencegrants.yaml", "v1beta1"),
            ),
            _ => continue,
        };
        let value = value.expect("json");
        walk(
            &value["spec"],
            &schema["properties"]["spec"],
            &format!("{kind}.spec"),
        );
        *checked.entry(kind).or_default() += 1;
    }
    assert_eq!(checked.len(), 4, "{checked:?}");
}

fn walk(value: &serde_json::Value, schema: &serde_json::Value, path: &str) {
    match value {
        serde_json::Value::Object(fields) => {
            for (name, field) in fields {
                // A map's keys are free; its values have a schema.
                let sub = match &schema["additionalProperties"] {
                    serde_json::Value::Object(_) => &schema["additionalProperties"],
                    _ => &schema["properties"][name],
                };
                assert!(!sub.is_null(), "{path}.{name} is not in the CRD schema");
                walk(field, sub, &format!("{path}.{name}"));
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                walk(item, &schema["items"], &format!("{path}[]"));
            }
        }
        _ => {}
    }
}

/// Beyond the conformance suite: weights, and a host that an Ingress and
/// an HTTPRoute both serve.
const SPLIT_AND_SHARED: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [split.example]
  rules:
  - backendRefs:
    - {name: infra-backend-v1, port: 8080, weight: 3}
    - {name: infra-backend-v2, port: 8080, weight: 1}
    - {name: infra-backend-v3, port: 8080, weight: 0}
  - matches: [{path: {type: PathPrefix, value: /half-broken}}]
    backendRefs:
    - {name: infra-backend-v1, port: 8080}
    - {name: no-such-service, port: 8080}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api-moved, namespace: gateway-conformance-infra}
spec:
  parentRefs: [{name: same-namespace}]
  hostnames: [shop.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: gatehouse}
spec: {controller: gatehouse.dev/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: gateway-conformance-infra}
spec:
  ingressClassName: gatehouse
  rules:
  - host: shop.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: infra-backend-v1, port: {number: 8080}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: infra-backend-v3, port: {number: 8080}}}}
"#;

async fn split_suite() -> Suite {
    let mut suite = Suite::start(&[]).await;
    suite.manifests.push_str(SPLIT_AND_SHARED);
    let all = suite.manifests.clone();
    suite.edit(&all, &all);
    suite
        .eventually(&[at("shop.example", "/api", B("infra-backend-v2"))])
        .await;
    suite
}

#[tokio::test]
async fn weights_split_requests_and_an_unresolved_share_answers_500() {
    let suite = split_suite().await;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..400 {
        let reply = suite.send(&at("split.example", "/", Status(200))).await;
        assert_eq!(reply.status, StatusCode::OK);
        *counts.entry(reply.backend()).or_default() += 1;
    }
    let v1 = counts.get("infra-backend-v1").copied().unwrap_or(0);
    let v2 = counts.get("infra-backend-v2").copied().unwrap_or(0);
    assert_eq!(v1 + v2, 400, "weight 0 takes nothing: {counts:?}");
    // 3:1, with a wide margin for chance (300 expected, sd ≈ 8.7).
    assert!((240..=360).contains(&v1), "{counts:?}");

    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..200 {
        let reply = suite
            .send(&at("split.example", "/half-broken", Status(200)))
            .await;
        *statuses.entry(reply.status.as_u16()).or_default() += 1;
    }
    let ok = statuses.get(&200).copied().unwrap_or(0);
    let failed = statuses.get(&500).copied().unwrap_or(0);
    assert_eq!(ok + failed, 200, "{statuses:?}");
    assert!(
        (60..=140).contains(&failed),
        "half answer 500: {statuses:?}"
    );
}

#[tokio::test]
async fn on_a_host_ingress_rules_share_the_httproute_matches_come_first() {
    let suite = split_suite().await;
    suite
        .check(&[
            at("shop.example", "/api/items", B("infra-backend-v2")),
            at("shop.example", "/", B("infra-backend-v1")),
            at("shop.example", "/cart", B("infra-backend-v1")),
        ])
        .await;
    let warnings = warnings_of(&suite.manifests);
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "HTTPRoute gateway-conformance-infra/api-moved: host shop.example also has Ingress rules"
        )),
        "{warnings:#?}"
    );
}

#[test]
fn gatehouse_routes_shows_where_each_route_comes_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = format!(
        "{BASE}\n---\n{}\n---\n{SPLIT_AND_SHARED}",
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/gateway-api/httproute-matching.yaml"
        ))
        .expect("fixture")
    );
    let endpoint = "198.18.0.1:3000".parse().expect("addr");
    let services: String = BACKENDS
        .iter()
        .map(|(namespace, name)| suite_service(namespace, name, endpoint))
        .collect();
    std::fs::write(dir.path().join("all.yaml"), manifests + &services).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["routes", "--manifests"])
        .arg(dir.path())
        .output()
        .expect("run gatehouse routes");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |needle: &[&str]| {
        text.lines()
            .find(|l| needle.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
            .to_owned()
    };
    line(&[
        "shop.example",
        "/api",
        "Ingress gateway-conformance-infra/shop",
    ]);
    line(&[
        "shop.example",
        "/api",
        "PathPrefix",
        "HTTPRoute gateway-conformance-infra/api-moved rule 0",
    ]);
    line(&[
        "HTTPRoute gateway-conformance-infra/matching rule 1",
        "header version=two",
    ]);
    line(&[
        "split.example",
        "infra-backend-v1:8080 ×3",
        "infra-backend-v2:8080 ×1",
    ]);
    line(&["/half-broken", "(unresolved: 500) ×1"]);
    line(&[
        "HTTPRoute gateway-conformance-infra/api-moved: host shop.example also has Ingress rules",
    ]);
}

/// The status translate reports for the base and some conformance
/// manifests (the elected replica writes it; see kube_status.rs).
fn status_of(fixtures: &[&str]) -> gatehouse::translate::gateway_status::StatusReport {
    status_after(fixtures, |_| {})
}

/// `status_of`, with the state changed by `change` first (as an edit in
/// the cluster would).
fn status_after(
    fixtures: &[&str],
    change: impl FnOnce(&mut gatehouse::cluster::ClusterState),
) -> gatehouse::translate::gateway_status::StatusReport {
    let mut text = BASE.to_owned();
    let endpoint = "198.18.0.1:3000".parse().expect("addr");
    for (namespace, name) in BACKENDS {
        text.push_str(&suite_service(namespace, name, endpoint));
    }
    let leaf = Pki::new().leaf("example.org");
    text.push_str(
        &tls_secret("tls-validity-checks-certificate", &leaf)
            .replace("namespace: test", &format!("namespace: {INFRA}")),
    );
    // The base's certificate in another namespace.
    text.push_str(
        &tls_secret("certificate", &leaf).replace("namespace: test", &format!("namespace: {WEB}")),
    );
    for name in fixtures {
        let path = format!(
            "{}/tests/fixtures/gateway-api/{name}.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        text.push_str("\n---\n");
        text.push_str(&std::fs::read_to_string(path).expect("fixture"));
    }
    let text = text.replace("{GATEWAY_CLASS_NAME}", "gatehouse");
    let objects = gatehouse::source::manifest::parse(&text).expect("manifests parse");
    let mut state = gatehouse::cluster::ClusterState::from_objects(objects);
    change(&mut state);
    gatehouse::translate::translate(&state, &Default::default()).gateway_status
}

/// `(type, status, reason)` of each condition of a route's parents.
fn route_conditions(
    report: &gatehouse::translate::gateway_status::StatusReport,
    namespace: &str,
    name: &str,
) -> Vec<Vec<(&'static str, bool, &'static str)>> {
    let key = gatehouse::cluster::ObjectKey::new(namespace, name);
    let route = report
        .routes
        .get(&key)
        .unwrap_or_else(|| panic!("no status for {key}: {report:#?}"));
    route
        .parents
        .iter()
        .map(|p| {
            p.conditions
                .iter()
                .map(|c| (c.type_, c.status, c.reason))
                .collect()
        })
        .collect()
}

#[test]
fn route_conditions_carry_the_specs_reasons() {
    let accepted = ("Accepted", true, "Accepted");
    let resolved = ("ResolvedRefs", true, "ResolvedRefs");
    for (fixture, name, want) in [
        (
            "httproute-simple-same-namespace",
            "gateway-conformance-infra-test",
            vec![accepted, resolved],
        ),
        (
            "httproute-invalid-cross-namespace-backend-ref",
            "invalid-cross-namespace-backend-ref",
            vec![accepted, ("ResolvedRefs", false, "RefNotPermitted")],
        ),
        (
            "httproute-invalid-reference-grant",
            "reference-grant",
            vec![accepted, ("ResolvedRefs", false, "RefNotPermitted")],
        ),
        (
            "httproute-invalid-nonexistent-backendref",
            "invalid-nonexistent-backend-ref",
            vec![accepted, ("ResolvedRefs", false, "BackendNotFound")],
        ),
        (
            "httproute-invalid-backendref-unknown-kind",
            "invalid-backend-ref-unknown-kind",
            vec![accepted, ("ResolvedRefs", false, "InvalidKind")],
        ),
        (
            "httproute-invalid-parentref-not-matching-listener-port",
            "httproute-listener-not-matching-route-port",
            vec![("Accepted", false, "NoMatchingParent"), resolved],
        ),
        (
            "httproute-invalid-parentref-not-matching-section-name",
            "httproute-listener-not-matching-section-name",
            vec![("Accepted", false, "NoMatchingParent"), resolved],
        ),
        (
            "httproute-invalid-parentref-section-name-not-matching-port",
            "httproute-listener-section-name-not-matching-port",
            vec![("Accepted", false, "NoMatchingParent"), resolved],
        ),
        (
            "httproute-disallowed-kind",
            "disallowed-kind",
            vec![("Accepted", false, "NotAllowedByListeners"), resolved],
        ),
    ] {
        let report = status_of(&[fixture]);
        let got = route_conditions(&report, INFRA, name);
        assert_eq!(got, vec![want], "{fixture}");
    }
    let report = status_of(&["httproute-invalid-cross-namespace-parent-ref"]);
    assert_eq!(
        route_conditions(&report, WEB, "invalid-cross-namespace-parent-ref"),
        vec![vec![("Accepted", false, "NotAllowedByListeners"), resolved]]
    );
    let report = status_of(&["httproute-hostname-intersection"]);
    let got = route_conditions(&report, INFRA, "no-intersecting-hosts");
    assert_eq!(
        got,
        vec![vec![
            ("Accepted", false, "NoMatchingListenerHostname"),
            resolved
        ]]
    );
}

#[test]
fn gateway_and_listener_status_count_routes_and_refuse_what_is_not_served() {
    let report = status_of(&[
        "httproute-matching",
        "httproute-exact-path-matching",
        "httproute-disallowed-kind",
    ]);
    let gateway = |name: &str| &report.gateways[&gatehouse::cluster::ObjectKey::new(INFRA, name)];
    let conditions = |c: &[gatehouse::translate::gateway_status::Condition]| {
        c.iter()
            .map(|c| (c.type_, c.status, c.reason))
            .collect::<Vec<_>>()
    };
    let same = gateway("same-namespace");
    assert_eq!(
        conditions(&same.conditions),
        [
            ("Accepted", true, "Accepted"),
            ("Programmed", true, "Programmed")
        ]
    );
    assert_eq!(same.listeners[0].attached_routes, 2);
    assert_eq!(
        same.listeners[0].supported_kinds,
        ["HTTPRoute", "GRPCRoute"]
    );
    let tls_only = gateway("tlsroutes-only");
    assert_eq!(
        conditions(&tls_only.conditions),
        [
            ("Accepted", false, "ListenersNotValid"),
            ("Programmed", false, "Invalid")
        ]
    );
    assert_eq!(
        conditions(&tls_only.listeners[0].conditions)[0],
        ("Accepted", false, "UnsupportedProtocol")
    );
    assert_eq!(tls_only.listeners[0].attached_routes, 0);
    let https = gateway("same-namespace-with-https-listener");
    assert!(
        https
            .listeners
            .iter()
            .all(|l| l.conditions.iter().all(|c| c.status)),
        "{https:#?}"
    );
    assert_eq!(report.classes.keys().collect::<Vec<_>>(), ["gatehouse"]);
}

#[tokio::test]
async fn httproute_partially_invalid_via_invalid_reference_grant() {
    let suite = Suite::start(&["httproute-partially-invalid-via-invalid-reference-grant"]).await;
    suite
        .check(&[get("/v2", Status(500)), get("/", B("app-backend-v1"))])
        .await;
    let suite = Suite::start(&["httproute-invalid-reference-grant"]).await;
    suite.check(&[get("/", Status(500))]).await;
}

#[tokio::test]
async fn httproute_weight() {
    let suite = Suite::start(&["httproute-weight"]).await;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..500 {
        let reply = suite.send(&get("/", Status(200))).await;
        assert_eq!(reply.status, StatusCode::OK);
        *counts.entry(reply.backend()).or_default() += 1;
    }
    // 70/30/0 (350 expected for v1, sd ≈ 10): the suite allows a 5% error.
    let v1 = counts.get("infra-backend-v1").copied().unwrap_or(0);
    assert!((300..=400).contains(&v1), "{counts:?}");
    assert!(!counts.contains_key("infra-backend-v3"), "{counts:?}");
}

#[tokio::test]
async fn httproute_named_rule() {
    let suite = Suite::start(&["httproute-named-rule"]).await;
    suite
        .check(&[
            get("/named", B("infra-backend-v1")),
            get("/unnamed", B("infra-backend-v2")),
        ])
        .await;
}

/// The suite's gRPC echo service.
const ECHO: &str = "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";

/// A gRPC call as the suite's client makes it (HTTP/2 with prior
/// knowledge on the plain listener, `POST /service/method`): the status
/// and the backend that answered, which must have seen HTTP/2.
async fn grpc_call(
    suite: &Suite,
    authority: &str,
    path: &str,
    metadata: &[(&str, &str)],
) -> (StatusCode, String) {
    let tcp = tokio::net::TcpStream::connect(suite.gatehouse.http_addr)
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    let mut req = Request::post(format!("http://{authority}{path}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers");
    for (name, value) in metadata {
        req = req.header(*name, *value);
    }
    // One empty gRPC message: not compressed, length 0.
    let body = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]));
    let response = sender
        .send_request(req.body(body).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    if status != StatusCode::OK {
        return (status, String::new());
    }
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("backend reply");
    assert_eq!(
        seen["version"], "HTTP/2.0",
        "gRPC reaches the backend over HTTP/2"
    );
    assert_eq!(seen["uri"].as_str().map(|u| u.ends_with(path)), Some(true));
    (
        status,
        seen["backend"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn grpcroute_exact_method_matching_and_named_rule() {
    for fixture in ["grpcroute-exact-method-matching", "grpcroute-named-rule"] {
        let suite = Suite::start(&[fixture]).await;
        let call = |method: &'static str| {
            let path = format!("{ECHO}/{method}");
            let suite = &suite;
            async move { grpc_call(suite, "gateway.test", &path, &[]).await }
        };
        assert_eq!(
            call("Echo").await,
            (StatusCode::OK, "grpc-infra-backend-v1".into())
        );
        assert_eq!(
            call("EchoTwo").await,
            (StatusCode::OK, "grpc-infra-backend-v2".into())
        );
        // No match: 404, which a gRPC client reads as Unimplemented.
        assert_eq!(
            call("EchoThree").await.0,
            StatusCode::NOT_FOUND,
            "{fixture}"
        );
    }
}

#[tokio::test]
async fn grpcroute_header_matching() {
    let suite = Suite::start(&["grpcroute-header-matching"]).await;
    let path = format!("{ECHO}/Echo");
    for (metadata, want) in [
        (&[("version", "one")][..], Some("grpc-infra-backend-v1")),
        (&[("version", "two")], Some("grpc-infra-backend-v2")),
        (
            &[("version", "two"), ("color", "orange")],
            Some("grpc-infra-backend-v1"),
        ),
        (
            &[("version", "two"), ("color", "blue")],
            Some("grpc-infra-backend-v2"),
        ),
        (&[("color", "orange")], None),
        (&[("some-other-header", "one")], None),
        (&[("color", "blue")], Some("grpc-infra-backend-v1")),
        (&[("color", "green")], Some("grpc-infra-backend-v1")),
        (&[("color", "red")], Some("grpc-infra-backend-v2")),
        (&[("color", "yellow")], Some("grpc-infra-backend-v2")),
    ] {
        let (status, backend) = grpc_call(&suite, "gateway.test", &path, metadata).await;
        match want {
            Some(want) => assert_eq!(
                (status, backend.as_str()),
                (StatusCode::OK, want),
                "{metadata:?}"
            ),
            None => assert_eq!(status, StatusCode::NOT_FOUND, "{metadata:?}"),
        }
    }
}

#[tokio::test]
async fn grpcroute_listener_hostname_matching() {
    let suite = Suite::start(&["grpcroute-listener-hostname-matching"]).await;
    let path = format!("{ECHO}/Echo");
    for (authority, want) in [
        ("bar.com", Some("grpc-infra-backend-v1")),
        ("foo.bar.com", Some("grpc-infra-backend-v2")),
        ("baz.bar.com", Some("grpc-infra-backend-v3")),
        ("boo.bar.com", Some("grpc-infra-backend-v3")),
        ("multiple.prefixes.bar.com", Some("grpc-infra-backend-v3")),
        ("multiple.prefixes.foo.com", Some("grpc-infra-backend-v3")),
        ("foo.com", None),
        ("no.matching.host", None),
    ] {
        let (status, backend) = grpc_call(&suite, authority, &path, &[]).await;
        match want {
            Some(want) => assert_eq!(
                (status, backend.as_str()),
                (StatusCode::OK, want),
                "{authority}"
            ),
            None => assert_eq!(status, StatusCode::NOT_FOUND, "{authority}"),
        }
    }
}

#[tokio::test]
async fn grpcroute_weight() {
    let suite = Suite::start(&["grpcroute-weight"]).await;
    let path = format!("{ECHO}/Echo");
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..300 {
        let (status, backend) = grpc_call(&suite, "gateway.test", &path, &[]).await;
        assert_eq!(status, StatusCode::OK);
        *counts.entry(backend).or_default() += 1;
    }
    // 70/30/0 (210 expected for v1, sd ≈ 8).
    let v1 = counts.get("grpc-infra-backend-v1").copied().unwrap_or(0);
    assert!((170..=250).contains(&v1), "{counts:?}");
    assert!(!counts.contains_key("grpc-infra-backend-v3"), "{counts:?}");
}

#[tokio::test]
async fn httproute_timeouts() {
    let suite = Suite::start(&[
        "httproute-timeout-request",
        "httproute-timeout-backend-request",
    ])
    .await;
    suite
        .check(&[
            get("/request-timeout", B("infra-backend-v1")),
            get("/request-timeout?delay=1s", Status(504)),
            get("/disable-request-timeout?delay=1s", B("infra-backend-v1")),
            get("/backend-timeout", B("infra-backend-v1")),
            get("/backend-timeout?delay=1s", Status(504)),
            get("/disable-backend-timeout?delay=1s", B("infra-backend-v1")),
        ])
        .await;
}

/// Waits up to five seconds for `count` requests under `path` at a backend.
async fn mirrored(
    suite: &Suite,
    backend: &str,
    path: &str,
    count: usize,
) -> Vec<serde_json::Value> {
    for _ in 0..100 {
        let seen = suite.seen_by(backend, path);
        if seen.len() >= count {
            return seen;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    suite.seen_by(backend, path)
}

#[tokio::test]
async fn httproute_request_mirror() {
    let suite = Suite::start(&[
        "httproute-request-mirror",
        "httproute-request-multiple-mirrors",
    ])
    .await;
    suite.check(&[get("/mirror", B("infra-backend-v1"))]).await;
    let copies = mirrored(&suite, "infra-backend-v2", "/mirror", 1).await;
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0]["method"], "GET");

    suite
        .check(&[with(
            "/mirror-and-modify-headers",
            SENT,
            Expect::Seen {
                backend: "infra-backend-v1",
                uri: "/mirror-and-modify-headers",
                host: None,
                headers: MODIFIED,
            },
        )])
        .await;
    let copies = mirrored(&suite, "infra-backend-v2", "/mirror-and-modify-headers", 1).await;
    let headers = &copies[0]["headers"];
    assert_eq!(headers["x-header-set"], "set-overwrites-values");
    assert_eq!(headers["x-header-add"], "header-val-1");
    assert!(headers["x-header-remove"].is_null(), "{headers}");

    suite
        .check(&[get("/multi-mirror", B("infra-backend-v1"))])
        .await;
    for backend in ["infra-backend-v2", "infra-backend-v3"] {
        assert_eq!(
            mirrored(&suite, backend, "/multi-mirror", 1).await.len(),
            1,
            "{backend}"
        );
    }

    // A request with a body is served, and not mirrored.
    let mut conn = http_connect(suite.gatehouse.http_addr).await;
    let req = Request::post("/mirror/upload")
        .header(http::header::HOST, "gateway.test")
        .body(Full::new(Bytes::from_static(b"payload")))
        .expect("request");
    let reply = send_request(&mut conn, req).await.expect("reply");
    assert_eq!(reply.backend(), "infra-backend-v1");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(suite
        .seen_by("infra-backend-v2", "/mirror/upload")
        .is_empty());
}

#[tokio::test]
async fn httproute_request_percentage_mirror() {
    let suite = Suite::start(&["httproute-request-percentage-mirror"]).await;
    for _ in 0..200 {
        suite
            .check(&[get("/percent-mirror-fraction", B("infra-backend-v1"))])
            .await;
    }
    // 25/50: half of them (100 expected, sd ≈ 7).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let copies = suite.seen_by("infra-backend-v2", "/percent-mirror-fraction");
    assert!((60..=140).contains(&copies.len()), "{}", copies.len());
}

/// A condition as `(type, status, reason)`.
type Brief = (&'static str, bool, &'static str);

/// `(type, status, reason)` of a Gateway listener's conditions, its
/// supported kinds and attached routes.
fn listener_of(
    report: &gatehouse::translate::gateway_status::StatusReport,
    gateway: &str,
    listener: &str,
) -> (Vec<Brief>, Vec<&'static str>, i32) {
    let key = gatehouse::cluster::ObjectKey::new(INFRA, gateway);
    let gateway = report
        .gateways
        .get(&key)
        .unwrap_or_else(|| panic!("no {key}"));
    let l = gateway
        .listeners
        .iter()
        .find(|l| l.name == listener)
        .unwrap_or_else(|| panic!("no listener {listener} in {gateway:#?}"));
    let conditions = l
        .conditions
        .iter()
        .map(|c| (c.type_, c.status, c.reason))
        .collect();
    (conditions, l.supported_kinds.clone(), l.attached_routes)
}

#[test]
fn gateway_conformance_status() {
    let accepted = ("Accepted", true, "Accepted");
    let resolved = ("ResolvedRefs", true, "ResolvedRefs");
    let programmed = ("Programmed", true, "Programmed");
    let not_programmed = ("Programmed", false, "Invalid");

    // GatewayListenerUnsupportedProtocol.
    let report = status_of(&["gateway-invalid-listeners-unsupported-protocol"]);
    let (conditions, kinds, attached) =
        listener_of(&report, "gateway-only-unsupported-protocols", "invalid");
    assert_eq!(conditions[0], ("Accepted", false, "UnsupportedProtocol"));
    assert!(kinds.is_empty());
    assert_eq!(attached, 0);
    let gateway = &report.gateways
        [&gatehouse::cluster::ObjectKey::new(INFRA, "gateway-only-unsupported-protocols")];
    assert_eq!(
        (gateway.conditions[0].status, gateway.conditions[0].reason),
        (false, "ListenersNotValid")
    );
    let mixed = &report.gateways
        [&gatehouse::cluster::ObjectKey::new(INFRA, "gateway-supported-and-unsupported-protocols")];
    assert_eq!(
        (mixed.conditions[0].status, mixed.conditions[0].reason),
        (true, "ListenersNotValid")
    );
    let (conditions, _, _) = listener_of(
        &report,
        "gateway-supported-and-unsupported-protocols",
        "http",
    );
    assert_eq!(conditions[0], accepted);

    // GatewayInvalidRouteKind.
    let report = status_of(&["gateway-invalid-route-kind"]);
    let (conditions, kinds, _) = listener_of(&report, "gateway-only-invalid-route-kind", "http");
    assert_eq!(conditions[1], ("ResolvedRefs", false, "InvalidRouteKinds"));
    assert!(kinds.is_empty(), "{kinds:?}");
    let (conditions, kinds, _) =
        listener_of(&report, "gateway-supported-and-invalid-route-kind", "http");
    assert_eq!(conditions[1], ("ResolvedRefs", false, "InvalidRouteKinds"));
    assert_eq!(kinds, ["HTTPRoute"]);

    // GatewayInvalidTLSConfiguration.
    let report = status_of(&["gateway-invalid-tls-configuration"]);
    for gateway in [
        "gateway-certificate-nonexistent-secret",
        "gateway-certificate-unsupported-group",
        "gateway-certificate-unsupported-kind",
        "gateway-certificate-malformed-secret",
    ] {
        let (conditions, _, _) = listener_of(&report, gateway, "https");
        assert_eq!(
            conditions,
            [
                accepted,
                ("ResolvedRefs", false, "InvalidCertificateRef"),
                not_programmed
            ],
            "{gateway}"
        );
    }

    // GatewaySecret*ReferenceGrant.
    for (fixture, ok) in [
        ("gateway-secret-invalid-reference-grant", false),
        ("gateway-secret-missing-reference-grant", false),
        ("gateway-secret-reference-grant-all-in-namespace", true),
        ("gateway-secret-reference-grant-specific", true),
    ] {
        let report = status_of(&[fixture]);
        let (conditions, _, _) = listener_of(&report, fixture, "https");
        let want = match ok {
            true => vec![accepted, resolved, programmed],
            false => vec![
                accepted,
                ("ResolvedRefs", false, "RefNotPermitted"),
                not_programmed,
            ],
        };
        assert_eq!(conditions, want, "{fixture}");
    }

    // GatewayWithAttachedRoutes (its port-80 Gateways).
    let report = status_of(&["gateway-with-attached-routes"]);
    assert_eq!(
        listener_of(&report, "gateway-with-one-attached-route", "http").2,
        1
    );
    assert_eq!(
        listener_of(&report, "gateway-with-two-attached-routes", "http").2,
        2
    );
    assert_eq!(
        route_conditions(&report, INFRA, "http-route-not-accepted")[0][0],
        ("Accepted", false, "NoMatchingListenerHostname")
    );
    // Routes attach to a listener whose certificate is missing.
    let (conditions, _, attached) = listener_of(
        &report,
        "unresolved-gateway-with-one-attached-unresolved-route",
        "tls",
    );
    assert_eq!(attached, 1);
    assert_eq!(
        conditions[1..],
        [
            ("ResolvedRefs", false, "InvalidCertificateRef"),
            not_programmed
        ]
    );
}

#[test]
fn gateway_modify_listeners_and_invalid_parameters() {
    use gatehouse::cluster::ObjectKey;
    // GatewayModifyListeners: a listener added takes its routes; one
    // removed is gone from the status.
    let report = status_after(&["gateway-modify-listeners"], |state| {
        let key = ObjectKey::new(INFRA, "gateway-add-listener");
        let gateway = std::sync::Arc::make_mut(state.gateways.get_mut(&key).expect("gateway"));
        gateway.spec.listeners.push(gatehouse::gateway::Listener {
            name: "http".into(),
            port: 80,
            protocol: "HTTP".into(),
            allowed_routes: serde_yaml_ng::from_str("namespaces: {from: All}").expect("yaml"),
            ..Default::default()
        });
        let key = ObjectKey::new(INFRA, "gateway-remove-listener");
        let gateway = std::sync::Arc::make_mut(state.gateways.get_mut(&key).expect("gateway"));
        gateway.spec.listeners.retain(|l| l.name != "https");
    });
    let names = |gateway: &str| {
        let key = ObjectKey::new(INFRA, gateway);
        report.gateways[&key]
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.attached_routes))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names("gateway-add-listener"),
        [("https".to_owned(), 1), ("http".to_owned(), 1)]
    );
    assert_eq!(names("gateway-remove-listener"), [("http".to_owned(), 1)]);

    // GatewayInvalidParametersRef.
    let report = status_of(&["gateway-invalid-parameters-ref"]);
    let gateway = &report.gateways[&ObjectKey::new(INFRA, "gateway-invalid-parameters-ref")];
    let brief: Vec<Brief> = gateway
        .conditions
        .iter()
        .map(|c| (c.type_, c.status, c.reason))
        .collect();
    assert_eq!(
        brief,
        [
            ("Accepted", false, "InvalidParameters"),
            ("Programmed", false, "Invalid")
        ]
    );
}

/// HTTPRouteServiceTypes: Services with manual EndpointSlices, headless or
/// not, and a headless Service with a selector. The suite copies a Pod's
/// addresses into the manual slices; here they get infra-backend-v1's, and
/// the headless Service gets the slice its controller would make.
#[tokio::test]
async fn httproute_service_types() {
    let suite = Suite::start_with(&["httproute-service-types"], |text, backends| {
        let v1 = backends.iter().find(|b| b.name == "infra-backend-v1").expect("v1");
        let port = v1.addr.port();
        let docs: Vec<String> = text
            .split("\n---\n")
            .map(|doc| {
                let manual = doc.contains("kind: EndpointSlice") && doc.contains("port: 3000");
                let doc = doc.replace("port: 3000", &format!("port: {port}"));
                match (manual, doc.contains("addressType: IPv4")) {
                    (true, true) => format!("{doc}\nendpoints:\n- addresses: [\"127.0.0.1\"]\n"),
                    _ => doc,
                }
            })
            .collect();
        let headless = format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: headless-x1\n  namespace: {INFRA}\n  labels: {{kubernetes.io/service-name: headless}}\naddressType: IPv4\nports: [{{name: first-port, port: {port}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"]}}]\n"
        );
        format!("{}\n---\n{headless}", docs.join("\n---\n"))
    })
    .await;
    suite
        .check(&[
            get("/manual-endpointslices", B("infra-backend-v1")),
            get("/headless", B("infra-backend-v1")),
            get("/headless-manual-endpointslices", B("infra-backend-v1")),
        ])
        .await;
}

/// What the table decides for a plain-HTTP GET: the Service it forwards
/// to (`namespace/name`), or the status it answers with.
fn decision(table: &gatehouse::table::RouteTable, host: &str, path: &str, client: &str) -> String {
    use gatehouse::table::{Decision, RequestFacts};
    let headers = http::HeaderMap::new();
    let facts = RequestFacts {
        host,
        method: &http::Method::GET,
        headers: &headers,
        path,
        query: None,
        tls: false,
        client: client.parse().expect("ip"),
        peer: None,
    };
    match table.decide(&facts) {
        Decision::Forward(f) => f.backend.service.to_string(),
        Decision::Respond(status) | Decision::Redirect { status, .. } => status.as_str().to_owned(),
    }
}

/// The controller ConfigMap's protections hold for HTTPRoutes as for an
/// Ingress without annotations: its allowlist refuses other clients (403),
/// and a protection it switches on (or a block list) that Gatehouse
/// cannot enforce closes them (503). Never is an HTTPRoute the open door beside closed Ingresses.
#[test]
fn the_controller_configmaps_protections_hold_for_httproutes() {
    let decide = |data: &str, client: &str| {
        let text = format!(
            "{BASE}\n---\n{}\n{}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: gatehouse, namespace: {INFRA}}}\ndata: {{{data}}}\n",
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/gateway-api/httproute-simple-same-namespace.yaml"
            ))
            .expect("fixture"),
            suite_service(INFRA, "infra-backend-v1", "198.18.0.1:3000".parse().expect("addr")),
        );
        let objects = gatehouse::source::manifest::parse(&text).expect("parse");
        let state = gatehouse::cluster::ClusterState::from_objects(objects);
        let options = gatehouse::translate::TranslateOptions {
            config_map: Some(gatehouse::cluster::ObjectKey::new(INFRA, "gatehouse")),
            ..Default::default()
        };
        let table = gatehouse::translate::translate(&state, &options).table;
        decision(&table, "gateway.test", "/", client)
    };
    let v1 = format!("{INFRA}/infra-backend-v1");
    assert_eq!(decide("", "192.0.2.1"), v1);
    let allowlist = "whitelist-source-range: 10.0.0.0/8";
    assert_eq!(decide(allowlist, "10.1.2.3"), v1);
    assert_eq!(decide(allowlist, "192.0.2.1"), "403");
    assert_eq!(decide("enable-modsecurity: \"true\"", "10.1.2.3"), "503");
    assert_eq!(decide("block-cidrs: \"10.0.0.0/33\"", "10.1.2.3"), "503");
}

/// A host whose Ingress asks for client certificates asks for them on its
/// HTTPRoutes too: a plain-HTTP request, which has none to give, is
/// refused as it is for the Ingress's own paths, and nothing is forwarded.
/// An Ingress asking for client certificates checked against the CA in
/// Secret `ca_secret` on mtls.example (its `/`), and an HTTPRoute for
/// `/api` on the same host.
fn mtls_manifests(ca_secret: &str) -> String {
    format!(
        "---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: gatehouse}}
spec: {{controller: gatehouse.dev/ingress-controller}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: mtls
  namespace: {INFRA}
  annotations: {{nginx.ingress.kubernetes.io/auth-tls-secret: {INFRA}/{ca_secret}}}
spec:
  ingressClassName: gatehouse
  rules:
  - host: mtls.example
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: infra-backend-v1, port: {{number: 8080}}}}}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: mtls-api, namespace: {INFRA}}}
spec:
  parentRefs: [{{name: same-namespace}}]
  hostnames: [mtls.example]
  rules:
  - matches: [{{path: {{value: /api}}}}]
    backendRefs: [{{name: infra-backend-v2, port: 8080}}]
",
    )
}

#[tokio::test]
async fn client_certificates_asked_for_a_host_hold_for_its_httproutes() {
    let pki = Pki::new();
    let ca = pki.ca_pem.clone();
    let suite = Suite::start_with(&[], move |text, _| {
        let indented: String = ca.lines().map(|l| format!("    {l}\n")).collect();
        format!(
            "{text}
---
apiVersion: v1
kind: Secret
metadata: {{name: client-ca, namespace: {INFRA}}}
stringData:
  ca.crt: |
{indented}{}",
            mtls_manifests("client-ca")
        )
    })
    .await;
    for path in ["/", "/api"] {
        let reply = suite.send(&at("mtls.example", path, Status(400))).await;
        assert_ne!(reply.status, StatusCode::OK, "{path}: {reply:?}");
    }
    assert!(suite.seen_by("infra-backend-v2", "/api").is_empty());
    assert!(suite.seen_by("infra-backend-v1", "/").is_empty());
}

/// `--host-ownership namespace` holds for HTTPRoutes: a route of another
/// namespace cannot take paths of a host an Ingress owns (it would be
/// tried first), and says why; with `shared` (the default) it can.
#[test]
fn host_ownership_holds_for_httproutes() {
    use gatehouse::translate::HostOwnership;
    let text = format!(
        "{BASE}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: gatehouse}}
spec: {{controller: gatehouse.dev/ingress-controller}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: shop, namespace: {INFRA}}}
spec:
  ingressClassName: gatehouse
  rules:
  - host: shop.example
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: infra-backend-v1, port: {{number: 8080}}}}}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: intruder, namespace: {WEB}}}
spec:
  parentRefs: [{{name: all-namespaces, namespace: {INFRA}}}]
  hostnames: [shop.example]
  rules:
  - matches: [{{path: {{value: /admin}}}}]
    backendRefs: [{{name: web-backend, port: 8080}}]
{}{}",
        suite_service(INFRA, "infra-backend-v1", "198.18.0.1:3000".parse().expect("addr")),
        suite_service(WEB, "web-backend", "198.18.0.2:3000".parse().expect("addr")),
    );
    let objects = gatehouse::source::manifest::parse(&text).expect("parse");
    let state = gatehouse::cluster::ClusterState::from_objects(objects);
    let admin = |ownership| {
        let options = gatehouse::translate::TranslateOptions {
            host_ownership: ownership,
            ..Default::default()
        };
        let t = gatehouse::translate::translate(&state, &options);
        let served_by = decision(&t.table, "shop.example", "/admin", "192.0.2.1");
        let warnings: Vec<String> = t.warnings.iter().map(ToString::to_string).collect();
        (served_by, warnings)
    };
    let (served, _) = admin(HostOwnership::Shared);
    assert_eq!(served, format!("{WEB}/web-backend"));
    let (served, warnings) = admin(HostOwnership::Namespace);
    assert_eq!(served, format!("{INFRA}/infra-backend-v1"));
    assert!(
        warnings.iter().any(|w| w.starts_with(&format!(
            "HTTPRoute {WEB}/intruder: host shop.example refused: it belongs to namespace {INFRA}"
        ))),
        "{warnings:#?}"
    );
}

/// When the client certificates a host asks for cannot be checked (its CA
/// Secret is missing), the host's HTTPRoutes answer 503 like its Ingress's
/// own paths: never 200.
#[tokio::test]
async fn client_certificates_that_cannot_be_checked_close_the_hosts_httproutes() {
    let suite = Suite::start_with(&[], |text, _| {
        format!(
            "{text}
{}",
            mtls_manifests("absent-ca")
        )
    })
    .await;
    suite
        .check(&[
            at("mtls.example", "/", Status(503)),
            at("mtls.example", "/api", Status(503)),
        ])
        .await;
    assert!(suite.seen_by("infra-backend-v2", "/api").is_empty());
}

/// A filter Gatehouse does not implement is never skipped: its rule answers
/// 500, and so does the share of a backendRef with filters; never 200.
#[tokio::test]
async fn filters_not_implemented_answer_500_never_200() {
    let suite = Suite::start_with(&[], |text, _| {
        format!(
            "{text}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: unimplemented, namespace: {INFRA}}}
spec:
  parentRefs: [{{name: same-namespace}}]
  rules:
  - matches: [{{path: {{value: /cors}}}}]
    filters: [{{type: CORS, cors: {{allowOrigins: [\"https://a.test\"]}}}}]
    backendRefs: [{{name: infra-backend-v1, port: 8080}}]
  - matches: [{{path: {{value: /extension}}}}]
    filters: [{{type: ExtensionRef, extensionRef: {{group: example.com, kind: Auth, name: x}}}}]
    backendRefs: [{{name: infra-backend-v1, port: 8080}}]
  - matches: [{{path: {{value: /backend-filter}}}}]
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-a, value: b}}]}}}}]
"
        )
    })
    .await;
    suite
        .check(&[
            get("/cors", Status(500)),
            get("/extension", Status(500)),
            get("/backend-filter", Status(500)),
        ])
        .await;
    assert!(suite.seen_by("infra-backend-v1", "/").is_empty());
}
