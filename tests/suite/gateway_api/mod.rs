//! The Gateway API conformance suite's HTTPRoute tests, re-expressed: the
//! suite's own manifests (`tests/fixtures/gateway-api/`, from
//! kubernetes-sigs/gateway-api v1.6.1), served by Gatehouse through the
//! files source, with real backends on 127.0.0.1 named as the suite names
//! them, and the suite's requests and expected answers. The conformance
//! base (its namespaces, Gateways and Services) is `BASE` below, with the
//! Deployments replaced by those backends.
//!
//! This file holds the fixtures and the `Suite` the tests share; the tests
//! are grouped by what they check: the suite's routing behaviour
//! (`conformance_*`, `weights_and_mirrors`), hosts shared with Ingresses,
//! the status written back, what the command line shows, and the schema.

use crate::support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use std::time::Duration;
use support::*;

mod cli_view;
mod conformance_filters;
mod conformance_grpc;
mod conformance_matching;
mod conformance_references;
mod listener_certificates;
mod schema;
mod shared_hosts;
mod status;
mod weights_and_mirrors;

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
    /// read). Each try sends every case, hence the slower pace.
    async fn eventually(&self, cases: &[Case]) {
        let (within, every) = (Duration::from_secs(10), Duration::from_millis(100));
        poll::eventually_every("the cases to pass", within, every, async || {
            let failures = self.failures(cases).await;
            if failures.is_empty() {
                Ok(())
            } else {
                Err(failures)
            }
        })
        .await;
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
