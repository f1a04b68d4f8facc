//! The conformance suite's HTTPRoute tests of references: across
//! namespaces, ReferenceGrants, unresolvable or missing backendRefs, and
//! parents a route may not attach to.

use super::*;

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

#[tokio::test]
async fn httproute_partially_invalid_via_invalid_reference_grant() {
    let suite = Suite::start(&["httproute-partially-invalid-via-invalid-reference-grant"]).await;
    suite
        .check(&[get("/v2", Status(500)), get("/", B("app-backend-v1"))])
        .await;
    let suite = Suite::start(&["httproute-invalid-reference-grant"]).await;
    suite.check(&[get("/", Status(500))]).await;
}
