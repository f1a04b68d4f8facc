//! What `gatehouse routes` shows of HTTPRoutes: where each route comes
//! from, its matches, its weights and its warnings.

use super::*;

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
