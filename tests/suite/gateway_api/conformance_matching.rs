//! The conformance suite's HTTPRoute tests of matching: paths, headers,
//! query parameters, methods, hostnames and listeners, and which rule wins.

use super::*;

#[tokio::test]
async fn httproute_simple_same_namespace() {
    let suite = Suite::start(&["httproute-simple-same-namespace"]).await;
    suite.check(&[get("/", B("infra-backend-v1"))]).await;
}

#[tokio::test]
async fn httproute_matching() {
    let suite = Suite::start(&["httproute-matching"]).await;
    suite
        .check(&[
            get("/", B("infra-backend-v1")),
            get("/example", B("infra-backend-v1")),
            with("/", &[("Version", "one")], B("infra-backend-v1")),
            get("/v2", B("infra-backend-v2")),
            get("/v2/example", B("infra-backend-v2")),
            with("/", &[("Version", "two")], B("infra-backend-v2")),
            get("/v2/", B("infra-backend-v2")),
            get("/v2example", B("infra-backend-v1")),
            get("/foo/v2/example", B("infra-backend-v1")),
        ])
        .await;
}

#[tokio::test]
async fn httproute_exact_path_matching() {
    let suite = Suite::start(&["httproute-exact-path-matching"]).await;
    suite
        .check(&[
            get("/one", B("infra-backend-v1")),
            get("/two", B("infra-backend-v2")),
            get("/", Status(404)),
            get("/one/example", Status(404)),
            get("/two/", Status(404)),
            get("/Two", Status(404)),
        ])
        .await;
}

#[tokio::test]
async fn httproute_header_matching() {
    let suite = Suite::start(&["httproute-header-matching"]).await;
    suite
        .check(&[
            with("/", &[("Version", "one")], B("infra-backend-v1")),
            with("/", &[("Version", "two")], B("infra-backend-v2")),
            with(
                "/",
                &[("Version", "two"), ("Color", "orange")],
                B("infra-backend-v1"),
            ),
            with(
                "/",
                &[("Version", "two"), ("Color", "blue")],
                B("infra-backend-v2"),
            ),
            with("/", &[("Color", "orange")], Status(404)),
            with("/", &[("Some-Other-Header", "one")], Status(404)),
            with("/", &[("Color", "blue")], B("infra-backend-v1")),
            with("/", &[("Color", "green")], B("infra-backend-v1")),
            with("/", &[("Color", "red")], B("infra-backend-v2")),
            with("/", &[("Color", "yellow")], B("infra-backend-v2")),
            with("/", &[("Color", "purple")], Status(404)),
        ])
        .await;
}

#[tokio::test]
async fn httproute_query_param_matching() {
    let suite = Suite::start(&["httproute-query-param-matching"]).await;
    suite
        .check(&[
            get("/?animal=whale", B("infra-backend-v1")),
            get("/?animal=dolphin", B("infra-backend-v2")),
            get("/?animal=dolphin&color=blue", B("infra-backend-v3")),
            get("/?ANIMAL=Whale", B("infra-backend-v3")),
            get(
                "/?animal=whale&otherparam=irrelevant",
                B("infra-backend-v1"),
            ),
            get("/?animal=dolphin&color=yellow", B("infra-backend-v2")),
            get("/?color=blue", Status(404)),
            get("/?animal=dog", Status(404)),
            get("/?animal=whaledolphin", Status(404)),
            get("/", Status(404)),
            get("/path1?animal=whale", B("infra-backend-v1")),
            with(
                "/?animal=whale",
                &[("version", "one")],
                B("infra-backend-v2"),
            ),
            with(
                "/path2?animal=whale",
                &[("version", "two")],
                B("infra-backend-v3"),
            ),
            get("/path3?animal=shark", B("infra-backend-v1")),
            with(
                "/path4?animal=kraken",
                &[("version", "three")],
                B("infra-backend-v1"),
            ),
            get("/?animal=shark", Status(404)),
            get("/path4?animal=kraken", Status(404)),
            get("/path5?animal=hydra", B("infra-backend-v1")),
            with(
                "/?animal=hydra",
                &[("version", "four")],
                B("infra-backend-v3"),
            ),
        ])
        .await;
}

#[tokio::test]
async fn httproute_method_matching() {
    let suite = Suite::start(&["httproute-method-matching"]).await;
    let method = |method: &'static str, path: &'static str, expect: Expect| Case {
        method,
        ..get(path, expect)
    };
    let headed = |method: &'static str,
                  path: &'static str,
                  headers: &'static [(&'static str, &'static str)],
                  expect: Expect| Case {
        method,
        headers,
        ..get(path, expect)
    };
    suite
        .check(&[
            method("POST", "/", B("infra-backend-v1")),
            method("GET", "/", B("infra-backend-v2")),
            method("HEAD", "/", Status(404)),
            method("GET", "/path1", B("infra-backend-v1")),
            headed("PUT", "/", &[("version", "one")], B("infra-backend-v2")),
            headed(
                "POST",
                "/path2",
                &[("version", "two")],
                B("infra-backend-v3"),
            ),
            method("PATCH", "/path3", B("infra-backend-v1")),
            headed(
                "DELETE",
                "/path4",
                &[("version", "three")],
                B("infra-backend-v1"),
            ),
            method("PUT", "/", Status(404)),
            method("DELETE", "/path4", Status(404)),
            method("PATCH", "/path5", B("infra-backend-v1")),
            headed("PATCH", "/", &[("version", "four")], B("infra-backend-v2")),
        ])
        .await;
}

#[tokio::test]
async fn httproute_path_match_order() {
    let suite = Suite::start(&["httproute-path-match-order"]).await;
    suite
        .check(&[
            get("/match/exact/one", B("infra-backend-v3")),
            get("/match/exact", B("infra-backend-v2")),
            get("/match", B("infra-backend-v1")),
            get("/match/prefix/one/any", B("infra-backend-v2")),
            get("/match/prefix/any", B("infra-backend-v1")),
            get("/match/any", B("infra-backend-v3")),
        ])
        .await;
}

#[tokio::test]
async fn httproute_hostname_intersection() {
    let suite = Suite::start(&["httproute-hostname-intersection"]).await;
    suite
        .check(&[
            at("very.specific.com", "/s1", B("infra-backend-v1")),
            at("very.specific.com:1234", "/s1", B("infra-backend-v1")),
            at("non.matching.com", "/s1", Status(404)),
            at("foo.nonmatchingwildcard.io", "/s1", Status(404)),
            at("foo.wildcard.io", "/s1", Status(404)),
            at("very.specific.com", "/non-matching-prefix", Status(404)),
            at("foo.wildcard.io", "/s2", B("infra-backend-v2")),
            at("bar.wildcard.io", "/s2", B("infra-backend-v2")),
            at("foo.bar.wildcard.io", "/s2", B("infra-backend-v2")),
            at("non.matching.com", "/s2", Status(404)),
            at("wildcard.io", "/s2", Status(404)),
            at("very.specific.com", "/s2", Status(404)),
            at("foo.wildcard.io", "/non-matching-prefix", Status(404)),
            at("very.specific.com", "/s3", B("infra-backend-v3")),
            at("non.matching.com", "/s3", Status(404)),
            at("foo.specific.com", "/s3", Status(404)),
            at("foo.wildcard.io", "/s3", Status(404)),
            at("foo.anotherwildcard.io", "/s4", B("infra-backend-v1")),
            at("bar.anotherwildcard.io", "/s4", B("infra-backend-v1")),
            at("foo.bar.anotherwildcard.io", "/s4", B("infra-backend-v1")),
            at("anotherwildcard.io", "/s4", Status(404)),
            at("foo.wildcard.io", "/s4", Status(404)),
            at("very.specific.com", "/s4", Status(404)),
            at(
                "foo.anotherwildcard.io",
                "/non-matching-prefix",
                Status(404),
            ),
            at("specific.but.wrong.com", "/s5", Status(404)),
            at("wildcard.io", "/s5", Status(404)),
            at("first.com", "/", B("infra-backend-v2")),
            at("sub.first.com", "/", B("infra-backend-v2")),
            at("second.com", "/", B("infra-backend-v2")),
            at("sub.second.com", "/", B("infra-backend-v2")),
            at("third.com", "/", Status(404)),
            at("sub.third.com", "/", Status(404)),
        ])
        .await;
}

#[tokio::test]
async fn httproute_listener_hostname_matching() {
    let suite = Suite::start(&["httproute-listener-hostname-matching"]).await;
    suite
        .check(&[
            at("bar.com", "/", B("infra-backend-v1")),
            at("foo.bar.com", "/", B("infra-backend-v2")),
            at("baz.bar.com", "/", B("infra-backend-v3")),
            at("boo.bar.com", "/", B("infra-backend-v3")),
            at("multiple.prefixes.bar.com", "/", B("infra-backend-v3")),
            at("multiple.prefixes.foo.com", "/", B("infra-backend-v3")),
            at("foo.com", "/", Status(404)),
            at("no.matching.host", "/", Status(404)),
        ])
        .await;
}

#[tokio::test]
async fn httproute_matching_across_routes() {
    let suite = Suite::start(&["httproute-matching-across-routes"]).await;
    let headed = |host, path, headers, expect| Case {
        headers,
        ..at(host, path, expect)
    };
    suite
        .check(&[
            at("example.com", "/", B("infra-backend-v1")),
            at("example.com", "/example", B("infra-backend-v1")),
            at("example.net", "/example", B("infra-backend-v1")),
            headed(
                "example.com",
                "/example",
                &[("Version", "one")],
                B("infra-backend-v1"),
            ),
            at("example.com", "/v2", B("infra-backend-v2")),
            at("example.net", "/v2", B("infra-backend-v1")),
            at("example.com", "/v2/example", B("infra-backend-v2")),
            headed(
                "example.com",
                "/",
                &[("Version", "two")],
                B("infra-backend-v2"),
            ),
        ])
        .await;
}

#[tokio::test]
async fn httproute_https_listener() {
    let suite = Suite::start(&["httproute-https-listener"]).await;
    for (host, want) in [
        ("example.org", Some("infra-backend-v1")),
        ("unknown-example.org", None),
        ("second-example.org", Some("infra-backend-v2")),
    ] {
        let (mut conn, _) = https_connect(suite.gatehouse.https_addr, host, &suite.pki.ca).await;
        let reply = send(&mut conn, host, "/").await.expect("request");
        match want {
            Some(backend) => {
                assert_eq!(served_by(&reply, backend), Ok(()), "{host}");
                // HSTS, as for an Ingress with TLS (the default setting).
                let hsts = reply.headers.get("strict-transport-security");
                assert!(
                    hsts.is_some_and(|v| v.to_str().unwrap_or_default().starts_with("max-age=")),
                    "{host}: {:?}",
                    reply.headers
                );
            }
            None => assert_eq!(reply.status, StatusCode::NOT_FOUND, "{host}"),
        }
    }
    // The HTTPS listener's routes are not served over plain HTTP.
    suite.check(&[at("example.org", "/", Status(404))]).await;
}

#[tokio::test]
async fn httproute_named_rule() {
    let suite = Suite::start(&["httproute-named-rule"]).await;
    suite
        .check(&[
            get("/named", B("infra-backend-v1")),
            get("/unnamed", B("infra-backend-v2")),
        ])
        .await;
}

/// HTTPRouteServiceTypes: Services with manual EndpointSlices, headless or
/// not, and a headless Service with a selector. The suite copies a Pod's
/// addresses into the manual slices; here they get infra-backend-v1's, and
/// the headless Service gets the slice its controller would make.
#[tokio::test]
async fn httproute_service_types() {
    let suite = Suite::start_with(&["httproute-service-types"], |text, backends| {
        let v1 = backends.iter().find(|b| b.name == "infra-backend-v1").expect("v1");
        let port = v1.addr.port();
        let docs: Vec<String> = text
            .split("\n---\n")
            .map(|doc| {
                let manual = doc.contains("kind: EndpointSlice") && doc.contains("port: 3000");
                let doc = doc.replace("port: 3000", &format!("port: {port}"));
                match (manual, doc.contains("addressType: IPv4")) {
                    (true, true) => format!("{doc}\nendpoints:\n- addresses: [\"127.0.0.1\"]\n"),
                    _ => doc,
                }
            })
            .collect();
        let headless = format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: headless-x1\n  namespace: {INFRA}\n  labels: {{kubernetes.io/service-name: headless}}\naddressType: IPv4\nports: [{{name: first-port, port: {port}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"]}}]\n"
        );
        format!("{}\n---\n{headless}", docs.join("\n---\n"))
    })
    .await;
    suite
        .check(&[
            get("/manual-endpointslices", B("infra-backend-v1")),
            get("/headless", B("infra-backend-v1")),
            get("/headless-manual-endpointslices", B("infra-backend-v1")),
        ])
        .await;
}
