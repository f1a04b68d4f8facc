//! A host an Ingress and HTTPRoutes share: the Ingress's rules and the
//! controller's protections (allowlists, client certificates, host
//! ownership) hold for the routes too.

use super::*;

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
        port: 80,
        client: client.parse().expect("ip"),
        peer: None,
    };
    match table.decide(&facts) {
        Decision::Forward(f) => f.backend.service.to_string(),
        Decision::Respond(status) | Decision::Redirect { status, .. } => status.as_str().to_owned(),
        Decision::Answer(answered) => format!("answer {answered:?}"),
        Decision::Snippet(part) => format!("with a snippet: {part:?}"),
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
