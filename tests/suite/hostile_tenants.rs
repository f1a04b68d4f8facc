//! A tenant's pathological Ingress (ten thousand paths, a regular
//! expression past the size limit, megabyte annotations) is bounded and
//! affects only itself: its neighbours keep being served.

use crate::support;

use gatehouse::translate::{TranslateOptions, WarningKind};
use http::StatusCode;
use support::*;

fn pathological(backend: std::net::SocketAddr) -> String {
    support::pathological::manifests(backend, 0)
}

#[test]
fn a_pathological_ingress_is_refused_where_it_is_too_big_and_warned_about() {
    let yaml = pathological("127.0.0.1:9".parse().expect("addr"));
    let objects = gatehouse::source::manifest::parse(&yaml).expect("manifests");
    let state = gatehouse::cluster::ClusterState::from_objects(objects);
    let translation = gatehouse::translate::translate(&state, &TranslateOptions::default());
    let said = |ingress: &str, kind: WarningKind, text: &str| {
        translation
            .warnings
            .iter()
            .any(|w| w.ingress.name == ingress && w.kind == kind && w.message.contains(text))
    };
    assert!(said(
        "huge",
        WarningKind::InvalidAnnotation,
        "over the 16384-byte limit; ignored"
    ));
    assert!(said(
        "closed",
        WarningKind::ProtectionDenied,
        "over the 16384-byte limit"
    ));
    assert!(said("regex", WarningKind::InvalidPath, "size limit"));
    // The ten thousand paths are all there, each its own route.
    let huge = translation
        .table
        .routes()
        .iter()
        .filter(|r| r.ingress.as_ref().is_some_and(|k| k.name == "huge"))
        .count();
    assert_eq!(huge, 10_000);
}

#[tokio::test]
async fn its_neighbours_are_served_and_it_is_closed_where_it_asked_protection() {
    let backend = Backend::start("web").await;
    let (_dir, gatehouse) = serve_manifests(&pathological(backend.addr)).await;
    let addr = gatehouse.http_addr;
    assert_eq!(status_of(addr, "neighbour.test").await, StatusCode::OK);
    assert_eq!(
        http_get(addr, "huge.test", "/p9999").await.status,
        StatusCode::OK
    );
    // Its oversized allowlist cannot be read, so it cannot be open.
    assert_eq!(
        status_of(addr, "closed.test").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
