//! An HTTPS listener whose certificate cannot be used (a missing Secret, a
//! Secret in another namespace that no ReferenceGrant allows) is not
//! programmed, and serves nothing: the handshake for its hostname fails,
//! its routes are not reached over TLS through any other name, listener or
//! the default certificate, and the Gateway's other listeners keep
//! serving. Once the Secret (or the grant) is there, it serves without a
//! restart.

use super::*;

use rustls::pki_types::CertificateDer;

const NS: &str = "shop";

/// One Gateway: a plain-HTTP listener, HTTPS listeners with a usable
/// certificate (`good.example`, `*.wild.example`), one whose Secret is
/// missing (`nocert.example`), one whose Secret is in another namespace
/// with no ReferenceGrant (`foreign.example`), and one under the wildcard
/// whose Secret is missing (`broken.wild.example`). The routes of the
/// broken listeners go to `broken`, the others to `ok`; the `nocert` route
/// is attached to the plain-HTTP listener too.
fn manifests(ok: &Backend, broken: &Backend, pki: &Pki) -> String {
    let mut text = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gatehouse}}
spec: {{controllerName: gatehouse.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge, namespace: {NS}}}
spec:
  gatewayClassName: gatehouse
  listeners:
  - {{name: http, port: 80, protocol: HTTP, allowedRoutes: {{namespaces: {{from: Same}}}}}}
  - name: good
    port: 443
    protocol: HTTPS
    hostname: good.example
    allowedRoutes: {{namespaces: {{from: Same}}}}
    tls: {{certificateRefs: [{{group: "", kind: Secret, name: good-cert}}]}}
  - name: nocert
    port: 443
    protocol: HTTPS
    hostname: nocert.example
    allowedRoutes: {{namespaces: {{from: Same}}}}
    tls: {{certificateRefs: [{{group: "", kind: Secret, name: nocert-cert}}]}}
  - name: foreign
    port: 443
    protocol: HTTPS
    hostname: foreign.example
    allowedRoutes: {{namespaces: {{from: Same}}}}
    tls: {{certificateRefs: [{{group: "", kind: Secret, name: foreign-cert, namespace: certs}}]}}
  - name: wild
    port: 443
    protocol: HTTPS
    hostname: "*.wild.example"
    allowedRoutes: {{namespaces: {{from: Same}}}}
    tls: {{certificateRefs: [{{group: "", kind: Secret, name: wild-cert}}]}}
  - name: broken-wild
    port: 443
    protocol: HTTPS
    hostname: broken.wild.example
    allowedRoutes: {{namespaces: {{from: Same}}}}
    tls: {{certificateRefs: [{{group: "", kind: Secret, name: broken-wild-cert}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: good, namespace: {NS}}}
spec:
  parentRefs: [{{name: edge, sectionName: good}}]
  hostnames: [good.example]
  rules: [{{backendRefs: [{{name: ok, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: nocert, namespace: {NS}}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [nocert.example]
  rules: [{{backendRefs: [{{name: broken, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: foreign, namespace: {NS}}}
spec:
  parentRefs: [{{name: edge, sectionName: foreign}}]
  hostnames: [foreign.example]
  rules: [{{backendRefs: [{{name: broken, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: wild, namespace: {NS}}}
spec:
  parentRefs: [{{name: edge, sectionName: wild}}]
  rules: [{{backendRefs: [{{name: ok, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: broken-wild, namespace: {NS}}}
spec:
  parentRefs: [{{name: edge, sectionName: broken-wild}}]
  hostnames: [broken.wild.example]
  rules: [{{backendRefs: [{{name: broken, port: 8080}}]}}]
"#
    );
    text.push_str(&suite_service(NS, "ok", ok.addr));
    text.push_str(&suite_service(NS, "broken", broken.addr));
    for (name, namespace, host) in [
        ("good-cert", NS, "good.example"),
        ("wild-cert", NS, "*.wild.example"),
        ("foreign-cert", "certs", "foreign.example"),
    ] {
        text.push_str(&secret(name, namespace, &pki.leaf_for(&[host])));
    }
    text
}

/// A TLS Secret in `namespace`.
fn secret(name: &str, namespace: &str, leaf: &Leaf) -> String {
    tls_secret(name, leaf).replace("namespace: test", &format!("namespace: {namespace}"))
}

/// The ReferenceGrant that lets the Gateways of `shop` use `foreign-cert`.
const GRANT: &str = r#"
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: shop-certs, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: shop}]
  to: [{group: "", kind: Secret, name: foreign-cert}]
"#;

/// `GET /` for `host` over a new TLS connection that sends `sni` and
/// trusts anything: the leaf the server presented and the answer, or the
/// handshake's error.
async fn over_tls(
    addr: std::net::SocketAddr,
    sni: &str,
    host: &str,
) -> Result<(CertificateDer<'static>, Reply), std::io::Error> {
    let (tls, leaf) = tls_connect(addr, sni, tls_config(None, &[b"http/1.1"])).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("http handshake");
    tokio::spawn(conn);
    let reply = send(&mut sender, host, "/").await.expect("request");
    Ok((leaf, reply))
}

/// The handshake for `sni` fails; what was served when it did not.
async fn refused(addr: std::net::SocketAddr, sni: &str) -> Result<(), String> {
    match over_tls(addr, sni, sni).await {
        Err(e) => {
            // The server's alert, not a connection problem.
            let alert = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|e| {
                    *e == rustls::Error::AlertReceived(rustls::AlertDescription::AccessDenied)
                });
            match alert {
                true => Ok(()),
                false => Err(format!("{sni}: not the access_denied alert: {e}")),
            }
        }
        Ok((_, reply)) => Err(format!(
            "{sni}: handshake succeeded and GET / answered {} (served by {:?})",
            reply.status,
            reply.body.starts_with(b"{").then(|| reply.backend())
        )),
    }
}

/// `GET /` for `sni` over TLS verified against the test CA: the backend
/// that served it, with the leaf the server presented.
async fn served(
    addr: std::net::SocketAddr,
    sni: &str,
    pki: &Pki,
) -> Result<(String, CertificateDer<'static>), String> {
    let config = tls_config(Some(&pki.ca), &[b"http/1.1"]);
    let (tls, leaf) = tls_connect(addr, sni, config)
        .await
        .map_err(|e| format!("{sni}: handshake: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("http handshake");
    tokio::spawn(conn);
    let reply = send(&mut sender, sni, "/").await.expect("request");
    if reply.status != StatusCode::OK {
        return Err(format!("{sni}: {}", reply.status));
    }
    Ok((reply.backend(), leaf))
}

#[tokio::test]
async fn a_listener_without_a_usable_certificate_serves_nothing_until_it_has_one() {
    let pki = Pki::new();
    let (ok, broken) = (Backend::start("ok").await, Backend::start("broken").await);
    let mut text = manifests(&ok, &broken, &pki);
    let (dir, gatehouse) = serve_manifests(&text).await;
    let https = gatehouse.https_addr;

    // The good listener serves its routes with its certificate.
    let (backend, leaf) = served(https, "good.example", &pki).await.expect("good");
    assert_eq!(backend, "ok");
    assert!(leaf_names(&leaf).contains("good.example"));

    // The listeners whose certificate cannot be used: no handshake for
    // their hostnames, not even with the default certificate.
    for sni in ["nocert.example", "foreign.example"] {
        refused(https, sni).await.unwrap_or_else(|e| panic!("{e}"));
    }

    // Their routes are not reached over TLS by another name, nor without
    // a name (the default certificate).
    for sni in ["good.example", "127.0.0.1"] {
        for host in ["nocert.example", "foreign.example"] {
            let (_, reply) = over_tls(https, sni, host).await.expect("handshake");
            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "SNI {sni}, Host {host}"
            );
        }
        let host = "broken.wild.example";
        let (_, reply) = over_tls(https, sni, host).await.expect("handshake");
        assert_eq!(served_by(&reply, "ok"), Ok(()), "SNI {sni}, Host {host}");
    }

    // A name under a wildcard listener that works is that listener's: its
    // certificate and its routes, never the broken listener's.
    let (backend, leaf) = served(https, "broken.wild.example", &pki)
        .await
        .expect("the wildcard listener serves broken.wild.example");
    assert_eq!(backend, "ok");
    assert!(leaf_names(&leaf).contains("*.wild.example"));

    // The plain-HTTP listener is not affected: the route it took is served.
    let reply = http_get(gatehouse.http_addr, "nocert.example", "/").await;
    assert_eq!(served_by(&reply, "broken"), Ok(()));
    assert_eq!(broken.seen.lock().expect("seen").len(), 1);

    // The missing Secret arrives, then the grant: each listener serves,
    // without a restart.
    let nocert_leaf = pki.leaf_for(&["nocert.example"]);
    text.push_str(&secret("nocert-cert", NS, &nocert_leaf));
    write_atomically(&dir.path().join("all.yaml"), &text);
    let (backend, leaf) = poll::eventually("nocert.example to be served", WAIT, async || {
        served(https, "nocert.example", &pki).await
    })
    .await;
    assert_eq!(backend, "broken");
    assert_eq!(leaf, nocert_leaf.der);
    refused(https, "foreign.example")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    text.push_str(GRANT);
    write_atomically(&dir.path().join("all.yaml"), &text);
    let (backend, leaf) = poll::eventually("foreign.example to be served", WAIT, async || {
        served(https, "foreign.example", &pki).await
    })
    .await;
    assert_eq!(backend, "broken");
    assert!(leaf_names(&leaf).contains("foreign.example"));
    // The good listener served throughout.
    let (backend, _) = served(https, "good.example", &pki).await.expect("good");
    assert_eq!(backend, "ok");
}

/// The upper bound on waiting for a manifest change to be served.
const WAIT: Duration = Duration::from_secs(10);

/// The DNS names in a certificate, as text (enough to tell leaves apart).
fn leaf_names(leaf: &CertificateDer<'_>) -> String {
    String::from_utf8_lossy(leaf.as_ref()).into_owned()
}

/// What a handshake for each name gets from the table translated from
/// `manifests`: a certificate (its Secret), the generated one, or none.
fn handshakes(manifests: &str, names: &[&str]) -> Vec<String> {
    use gatehouse::table::Handshake;
    let objects = gatehouse::source::manifest::parse(manifests).expect("manifests parse");
    let state = gatehouse::cluster::ClusterState::from_objects(objects);
    let translation = gatehouse::translate::translate(&state, &Default::default());
    let certs = &translation.table.certs;
    let handshake = |sni: &str| match certs.for_handshake(Some(sni)) {
        Handshake::Cert(entry) => entry.secret.to_string(),
        Handshake::Generated => "generated".to_owned(),
        Handshake::Refused => "refused".to_owned(),
    };
    names.iter().map(|sni| handshake(sni)).collect()
}

/// An HTTPS listener of Gateway `gateway` (namespace `shop`).
fn https_listener(name: &str, hostname: Option<&str>, secret: &str) -> String {
    let hostname = hostname.map_or(String::new(), |h| format!("    hostname: \"{h}\"\n"));
    format!(
        "  - name: {name}\n    port: 443\n    protocol: HTTPS\n{hostname}    tls: {{certificateRefs: [{{group: \"\", kind: Secret, name: {secret}}}]}}\n"
    )
}

#[test]
fn a_listener_without_a_usable_certificate_refuses_only_the_names_nothing_else_covers() {
    let pki = Pki::new();
    let leaf = pki.leaf_for(&["*.wild.example", "lit.dark.example", "every.example"]);
    let gateway = |name: &str, listeners: &[String]| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  gatewayClassName: gatehouse\n  listeners:\n{}",
            listeners.concat()
        )
    };
    let mut text = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gatehouse}}
spec: {{controllerName: gatehouse.dev/gateway-controller}}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: gatehouse}}
spec: {{controller: gatehouse.dev/ingress-controller}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: lit, namespace: {NS}}}
spec:
  ingressClassName: gatehouse
  tls: [{{hosts: [lit.dark.example], secretName: ingress-cert}}]
  rules:
  - host: lit.dark.example
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: ok, port: {{number: 8080}}}}}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: no-tls, namespace: {NS}}}
spec:
  ingressClassName: gatehouse
  rules:
  - host: nocert.example
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: ok, port: {{number: 8080}}}}}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: on-any, namespace: {NS}}}
spec:
  parentRefs: [{{name: edge, sectionName: any}}]
  hostnames: [route.example]
  rules: [{{backendRefs: [{{name: ok, port: 8080}}]}}]
"#
    );
    text.push_str(&gateway(
        "edge",
        &[
            https_listener("nocert", Some("nocert.example"), "missing"),
            https_listener("wild", Some("*.wild.example"), "wild-cert"),
            https_listener("broken-wild", Some("broken.wild.example"), "missing"),
            https_listener("dark", Some("*.dark.example"), "missing"),
            https_listener("any", None, "missing"),
        ],
    ));
    text.push_str(&secret("wild-cert", NS, &leaf));
    text.push_str(&secret("ingress-cert", NS, &leaf));
    let names = [
        "nocert.example",
        "a.nocert.example",
        "broken.wild.example",
        "a.b.dark.example",
        "lit.dark.example",
        "route.example",
        "elsewhere.example",
    ];
    assert_eq!(
        handshakes(&text, &names),
        [
            // The broken listener's name (an Ingress rule without a
            // certificate of its own does not cover it).
            "refused",
            // Not its name.
            "generated",
            // The working wildcard listener covers it.
            "shop/wild-cert",
            // A broken wildcard listener's names, at any depth.
            "refused",
            // An Ingress's certificate covers it.
            "shop/ingress-cert",
            // The host of a route a broken listener without a hostname took.
            "refused",
            "generated",
        ]
    );

    // A working HTTPS listener without a hostname (here on another
    // Gateway: all share the HTTPS port) takes every name, with its
    // certificate: nothing is refused.
    text.push_str(&gateway(
        "every",
        &[https_listener("every", None, "every-cert")],
    ));
    text.push_str(&secret("every-cert", NS, &leaf));
    let every = "shop/every-cert";
    assert_eq!(
        handshakes(&text, &names),
        [
            every,
            every,
            "shop/wild-cert",
            every,
            "shop/ingress-cert",
            every,
            every
        ]
    );
}
