//! A snippet Gatehouse refuses must not be served open when it restricts
//! access: every shape of access directive, in both snippet annotations,
//! closes the Ingress's routes (503) with a warning, unless
//! `--unsupported-protection warn` says to serve them without it.

use crate::support;

use gatehouse::policy::ProtectionMode;
use gatehouse::translate::{TranslateOptions, WarningKind};
use http::StatusCode;
use support::*;

/// Snippets that restrict who may reach the route, as people write them.
const PROTECTIVE: &[(&str, &str)] = &[
    ("deny", "deny all;"),
    ("allow-deny", "allow 10.0.0.0/8;\ndeny all;"),
    ("if-return", "if ($http_x_block) { return 403; }"),
    (
        "auth-basic",
        "auth_basic \"staff\";\nauth_basic_user_file /etc/nginx/htpasswd;",
    ),
    ("satisfy", "satisfy any;"),
    ("limit", "limit_req zone=one burst=5 nodelay;"),
    ("return-401", "return 401;"),
];

const SNIPPETS: &[&str] = &["configuration-snippet", "server-snippet"];

/// One Ingress per snippet and annotation, `<case>-<annotation>.test`, a
/// harmless snippet on `harmless.test` and none on `open.test`.
fn manifests(backend: &Backend) -> String {
    let mut yaml = INGRESS_CLASS.to_owned() + &service("web", &[backend.addr]);
    for (case, snippet) in PROTECTIVE {
        for annotation in SNIPPETS {
            let name = format!("{case}-{annotation}");
            let key = format!("nginx.ingress.kubernetes.io/{annotation}");
            let host = format!("{name}.test");
            yaml += &ingress_annotated(&name, &host, "/", "web", None, &[(&key, snippet)]);
        }
    }
    let harmless = [(
        "nginx.ingress.kubernetes.io/configuration-snippet",
        "more_set_headers \"X-Frame-Options: DENY\";",
    )];
    yaml += &ingress_annotated("harmless", "harmless.test", "/", "web", None, &harmless);
    yaml + &ingress("open", "open.test", "/", "web", None)
}

fn hosts() -> impl Iterator<Item = String> {
    PROTECTIVE.iter().flat_map(|(case, _)| {
        SNIPPETS
            .iter()
            .map(move |annotation| format!("{case}-{annotation}.test"))
    })
}

#[tokio::test]
async fn a_snippet_that_restricts_access_closes_its_routes_with_503() {
    let backend = Backend::start("web").await;
    let (_dir, gatehouse) = serve_manifests(&manifests(&backend)).await;
    let addr = gatehouse.http_addr;
    for host in hosts() {
        let status = http_get(addr, &host, "/").await.status;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{host}");
    }
    assert_eq!(
        http_get(addr, "harmless.test", "/").await.status,
        StatusCode::OK
    );
    assert_eq!(
        http_get(addr, "open.test", "/").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn with_unsupported_protection_warn_they_are_served_without_it() {
    let backend = Backend::start("web").await;
    let warn = |c: &mut gatehouse::app::Config| {
        c.translate.access.unsupported_protection = ProtectionMode::Warn;
    };
    let (_dir, gatehouse) = serve_manifests_with(&manifests(&backend), warn).await;
    for host in hosts() {
        let status = http_get(gatehouse.http_addr, &host, "/").await.status;
        assert_eq!(status, StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn each_closed_ingress_is_told_which_directive_closed_it() {
    let backend = Backend::start("web").await;
    let objects = gatehouse::source::manifest::parse(&manifests(&backend)).expect("manifests");
    let state = gatehouse::cluster::ClusterState::from_objects(objects);
    let translation = gatehouse::translate::translate(&state, &TranslateOptions::default());
    let denied: Vec<String> = translation
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::ProtectionDenied)
        .map(|w| w.to_string())
        .collect();
    for (case, snippet) in PROTECTIVE {
        for annotation in SNIPPETS {
            let name = format!("{case}-{annotation}");
            let statement = snippet.split([';', '{']).find(|s| {
                let s = s.trim();
                !s.is_empty() && !s.starts_with("if ")
            });
            let words: Vec<&str> = statement.expect("a directive").split_whitespace().collect();
            let directive = match words[0] {
                "return" => words[..2].join(" "),
                name => name.to_owned(),
            };
            let found = denied
                .iter()
                .any(|w| w.contains(&format!("test/{name}")) && w.contains(&directive));
            assert!(
                found,
                "{name}: no warning naming {directive:?} in {denied:#?}"
            );
        }
    }
    assert!(
        !denied.iter().any(|w| w.contains("harmless")),
        "{denied:#?}"
    );
}

#[tokio::test]
async fn a_configmap_snippet_that_restricts_access_closes_every_route() {
    let backend = Backend::start("web").await;
    let config_map = "---
apiVersion: v1
kind: ConfigMap
metadata: {name: gatehouse, namespace: test}
data:
  server-snippet: |
    allow 10.0.0.0/8;
    deny all;
";
    let yaml = INGRESS_CLASS.to_owned()
        + &service("web", &[backend.addr])
        + &ingress("open", "open.test", "/", "web", None)
        + config_map;
    let (_dir, gatehouse) = serve_manifests_with(&yaml, |c| {
        c.translate.config_map = Some(gatehouse::cluster::ObjectKey::new("test", "gatehouse"));
    })
    .await;
    let status = http_get(gatehouse.http_addr, "open.test", "/").await.status;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
