//! A tenant cannot read another namespace's Secret or ConfigMap through an
//! annotation: every annotation that names one refuses `namespace/name` of
//! another namespace (the Ingress is closed, 503) unless the operator
//! allows it (`--allow-cross-namespace-secrets`, or the ConfigMap's
//! `allow-cross-namespace-resources`).

use crate::support;

use gatehouse::translate::{TranslateOptions, WarningKind};
use http::StatusCode;
use support::*;

/// Each annotation that names an object, with a reference to one that
/// exists in namespace `elsewhere`.
const REFERENCES: &[(&str, &[(&str, &str)])] = &[
    (
        "basic",
        &[
            ("nginx.ingress.kubernetes.io/auth-type", "basic"),
            ("nginx.ingress.kubernetes.io/auth-secret", "elsewhere/users"),
        ],
    ),
    (
        "mtls",
        &[(
            "nginx.ingress.kubernetes.io/auth-tls-secret",
            "elsewhere/ca",
        )],
    ),
    (
        "external",
        &[
            (
                "nginx.ingress.kubernetes.io/auth-url",
                "http://127.0.0.1:9/auth",
            ),
            (
                "nginx.ingress.kubernetes.io/auth-proxy-set-headers",
                "elsewhere/headers",
            ),
        ],
    ),
];

fn manifests(backend: std::net::SocketAddr, pki: &Pki) -> String {
    let mut yaml = INGRESS_CLASS.to_owned() + &service("web", &[backend]);
    let elsewhere = |text: String| text.replace("namespace: test", "namespace: elsewhere");
    yaml += &elsewhere(opaque_secret(
        "users",
        &[("auth", "alice:$apr1$TiI185bN$hs6AkYYe4Wfr6yCFjiXp0/")],
    ));
    yaml += &elsewhere(opaque_secret("ca", &[("ca.crt", &pki.ca_pem)]));
    yaml += "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: headers, namespace: elsewhere}\ndata: {X-Tenant: test}\n";
    for (name, annotations) in REFERENCES {
        let host = format!("{name}.test");
        yaml += &ingress_annotated(name, &host, "/", "web", None, annotations);
    }
    yaml
}

fn denied(options: &TranslateOptions, yaml: &str) -> Vec<String> {
    let objects = gatehouse::source::manifest::parse(yaml).expect("manifests");
    let state = gatehouse::cluster::ClusterState::from_objects(objects);
    let translation = gatehouse::translate::translate(&state, options);
    translation
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::ProtectionDenied)
        .map(|w| w.to_string())
        .collect()
}

#[test]
fn every_annotation_that_names_an_object_refuses_another_namespace() {
    let pki = Pki::new();
    let yaml = manifests("127.0.0.1:9".parse().expect("addr"), &pki);
    let refused = denied(&TranslateOptions::default(), &yaml);
    for (name, _) in REFERENCES {
        assert!(
            refused
                .iter()
                .any(|w| w.starts_with(&format!("Ingress test/{name}:"))
                    && w.contains("of another namespace")),
            "{name}: {refused:?}"
        );
    }
    let mut allowed = TranslateOptions::default();
    allowed.access.cross_namespace_secrets = true;
    let refused = denied(&allowed, &yaml);
    assert!(refused.is_empty(), "{refused:?}");
}

#[tokio::test]
async fn a_cross_namespace_reference_closes_the_route_unless_allowed() {
    let (backend, pki) = (Backend::start("web").await, Pki::new());
    let yaml = manifests(backend.addr, &pki);
    let (_dir, gatehouse) = serve_manifests(&yaml).await;
    for (name, _) in REFERENCES {
        let status = status_of(gatehouse.http_addr, &format!("{name}.test")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{name}");
    }
    drop(gatehouse);
    let (_dir, gatehouse) = serve_manifests_with(&yaml, |c| {
        c.translate.access.cross_namespace_secrets = true;
    })
    .await;
    // Allowed, basic auth asks for credentials: the Secret was read.
    let status = status_of(gatehouse.http_addr, "basic.test").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
