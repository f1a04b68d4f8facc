//! `--host-ownership namespace`: a tenant cannot publish paths or a
//! certificate on a host another namespace owns, unless that namespace
//! allows it; `shared` keeps ingress-nginx's behaviour.

use crate::support;

use gatehouse::translate::{HostOwnership, TranslateOptions, WarningKind};
use support::*;

/// `ingress(...)` and its Service, moved to namespace `ns`.
fn in_namespace(ns: &str, yaml: String) -> String {
    yaml.replace("namespace: test", &format!("namespace: {ns}"))
}

/// Namespace `alpha` publishes `shop.example/` (its oldest Ingress, by
/// name order, owns the host); `beta` adds `/admin` and a TLS entry for
/// the same host. `allow` goes on alpha's Ingress.
fn tenants(alpha: &Backend, beta: &Backend, pki: &Pki, allow: Option<&str>) -> String {
    let annotations: Vec<(&str, &str)> = allow
        .map(|a| vec![("gatehouse.dev/allow-namespaces", a)])
        .unwrap_or_default();
    let leaf = pki.leaf("shop.example");
    [
        INGRESS_CLASS.to_owned(),
        in_namespace("alpha", service("web", &[alpha.addr])),
        in_namespace(
            "alpha",
            ingress_annotated("shop", "shop.example", "/", "web", None, &annotations),
        ),
        in_namespace("beta", service("web", &[beta.addr])),
        in_namespace("beta", tls_secret("stolen", &leaf)),
        in_namespace(
            "beta",
            ingress_annotated(
                "admin",
                "shop.example",
                "/admin",
                "web",
                Some("stolen"),
                &[("nginx.ingress.kubernetes.io/ssl-redirect", "false")],
            ),
        ),
    ]
    .concat()
}

/// Which backend answers `shop.example/admin`, with alpha's Ingress
/// allowing `allow`, under `ownership`.
async fn admin_backend(allow: Option<&str>, ownership: HostOwnership) -> String {
    let (alpha, beta, pki) = (
        Backend::start("alpha").await,
        Backend::start("beta").await,
        Pki::new(),
    );
    let manifests = tenants(&alpha, &beta, &pki, allow);
    let (_dir, gatehouse) = serve_manifests_with(&manifests, |c| {
        c.translate.host_ownership = ownership;
    })
    .await;
    let reply = http_get(gatehouse.http_addr, "shop.example", "/admin").await;
    reply.backend()
}

#[tokio::test]
async fn shared_hosts_merge_rules_across_namespaces_as_ingress_nginx_does() {
    assert_eq!(admin_backend(None, HostOwnership::Shared).await, "beta");
}

#[tokio::test]
async fn under_namespace_ownership_a_neighbours_path_is_refused() {
    // beta's /admin is not published: alpha's / answers it.
    assert_eq!(admin_backend(None, HostOwnership::Namespace).await, "alpha");
}

#[tokio::test]
async fn the_owner_can_allow_a_namespace() {
    let allow = Some("gamma, beta");
    assert_eq!(admin_backend(allow, HostOwnership::Namespace).await, "beta");
}

#[test]
fn refused_rules_and_certificates_are_warnings_naming_the_owner() {
    // Addresses only: no request is made.
    let addr = "127.0.0.1:9".parse().expect("addr");
    let pki = Pki::new();
    let yaml = [
        INGRESS_CLASS.to_owned(),
        in_namespace("alpha", service("web", &[addr])),
        in_namespace("alpha", ingress("shop", "shop.example", "/", "web", None)),
        in_namespace("beta", service("web", &[addr])),
        in_namespace("beta", tls_secret("stolen", &pki.leaf("shop.example"))),
        in_namespace(
            "beta",
            ingress("admin", "shop.example", "/admin", "web", Some("stolen")),
        ),
    ]
    .concat();
    let objects = gatehouse::source::manifest::parse(&yaml).expect("manifests");
    let state = gatehouse::cluster::ClusterState::from_objects(objects);
    let options = TranslateOptions {
        host_ownership: HostOwnership::Namespace,
        ..TranslateOptions::default()
    };
    let translation = gatehouse::translate::translate(&state, &options);
    let refused: Vec<String> = translation
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::HostNotOwned)
        .map(|w| w.to_string())
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused.iter().any(|w| w.starts_with("Ingress beta/admin: rules for host shop.example refused: the host belongs to namespace alpha")), "{refused:?}");
    assert!(
        refused
            .iter()
            .any(|w| w.contains("the TLS entry for host shop.example refused")),
        "{refused:?}"
    );
    assert!(
        translation.table.certs.is_empty(),
        "beta's certificate is not served"
    );
}
