//! The status translate reports for GatewayClasses, Gateways, listeners
//! and routes: the conditions and reasons the spec asks for.

use super::*;

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
