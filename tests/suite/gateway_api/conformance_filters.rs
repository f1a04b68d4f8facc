//! The conformance suite's HTTPRoute filter tests: redirects, rewrites,
//! header modifiers, timeouts, and filters Gatehouse does not implement.

use super::*;

#[tokio::test]
async fn httproute_redirects() {
    let suite = Suite::start(&[
        "httproute-redirect-host-and-status",
        "httproute-redirect-path",
        "httproute-redirect-port",
        "httproute-redirect-scheme",
    ])
    .await;
    suite
        .check(&[
            get(
                "/hostname-redirect",
                Redirect(302, "http://example.org/hostname-redirect"),
            ),
            get(
                "/host-and-status",
                Redirect(301, "http://example.org/host-and-status"),
            ),
            get(
                "/original-prefix/lemon",
                Redirect(302, "http://gateway.test/replacement-prefix/lemon"),
            ),
            get(
                "/full/path/original",
                Redirect(302, "http://gateway.test/full-path-replacement"),
            ),
            get(
                "/path-and-host",
                Redirect(302, "http://example.org/replacement-prefix"),
            ),
            get(
                "/path-and-status",
                Redirect(301, "http://gateway.test/replacement-prefix"),
            ),
            get(
                "/full-path-and-host",
                Redirect(302, "http://example.org/replacement-full"),
            ),
            get(
                "/full-path-and-status",
                Redirect(301, "http://gateway.test/replacement-full"),
            ),
            get("/port", Redirect(302, "http://gateway.test:8083/port")),
            get(
                "/port-and-host",
                Redirect(302, "http://example.org:8083/port-and-host"),
            ),
            get(
                "/port-and-status",
                Redirect(301, "http://gateway.test:8083/port-and-status"),
            ),
            get(
                "/port-and-host-and-status",
                Redirect(302, "http://example.org:8083/port-and-host-and-status"),
            ),
            get("/scheme", Redirect(302, "https://gateway.test/scheme")),
            get(
                "/scheme-and-host",
                Redirect(302, "https://example.org/scheme-and-host"),
            ),
            get(
                "/scheme-and-status",
                Redirect(301, "https://gateway.test/scheme-and-status"),
            ),
            get(
                "/scheme-and-host-and-status",
                Redirect(302, "https://example.org/scheme-and-host-and-status"),
            ),
            get(
                "/original-prefix/lemon?fruit=yes",
                Redirect(
                    302,
                    "http://gateway.test/replacement-prefix/lemon?fruit=yes",
                ),
            ),
        ])
        .await;
}

#[tokio::test]
async fn httproute_redirect_port_and_scheme() {
    let suite = Suite::start(&["httproute-redirect-port-and-scheme"]).await;
    suite
        .check(&[
            get(
                "/scheme-nil-and-port-nil",
                Redirect(302, "http://example.org/scheme-nil-and-port-nil"),
            ),
            get(
                "/scheme-nil-and-port-80",
                Redirect(302, "http://example.org/scheme-nil-and-port-80"),
            ),
            get(
                "/scheme-nil-and-port-8080",
                Redirect(302, "http://example.org:8080/scheme-nil-and-port-8080"),
            ),
            get(
                "/scheme-https-and-port-nil",
                Redirect(302, "https://example.org/scheme-https-and-port-nil"),
            ),
            get(
                "/scheme-https-and-port-443",
                Redirect(302, "https://example.org/scheme-https-and-port-443"),
            ),
            get(
                "/scheme-https-and-port-8443",
                Redirect(302, "https://example.org:8443/scheme-https-and-port-8443"),
            ),
        ])
        .await;
}

#[tokio::test]
async fn httproute_redirect_status_codes_303_307_308() {
    let suite = Suite::start(&[
        "httproute-303-redirect",
        "httproute-307-redirect",
        "httproute-308-redirect",
    ])
    .await;
    suite
        .check(&[
            get("/see-other", Redirect(303, "http://gateway.test/see-other")),
            get("/temporary", Redirect(307, "http://gateway.test/temporary")),
            get("/permanent", Redirect(308, "http://gateway.test/permanent")),
        ])
        .await;
}

#[tokio::test]
async fn httproute_rewrite_host() {
    let suite = Suite::start(&["httproute-rewrite-host"]).await;
    let seen = |host, uri, backend, headers| Expect::Seen {
        backend,
        uri,
        host: Some(host),
        headers,
    };
    suite
        .check(&[
            at(
                "rewrite.example",
                "/one",
                seen("one.example.org", "/one", "infra-backend-v1", &[]),
            ),
            at(
                "rewrite.example",
                "/two",
                seen("example.org", "/two", "infra-backend-v2", &[]),
            ),
            Case {
                headers: SENT,
                ..at(
                    "rewrite.example",
                    "/rewrite-host-and-modify-headers",
                    seen(
                        "test.example.org",
                        "/rewrite-host-and-modify-headers",
                        "infra-backend-v2",
                        MODIFIED,
                    ),
                )
            },
        ])
        .await;
}

#[tokio::test]
async fn httproute_rewrite_path() {
    let suite = Suite::start(&["httproute-rewrite-path"]).await;
    let seen = |uri, headers| Expect::Seen {
        backend: "infra-backend-v1",
        uri,
        host: None,
        headers,
    };
    suite
        .check(&[
            get("/prefix/one/two", seen("/one/two", &[])),
            get("/strip-prefix/three", seen("/three", &[])),
            get("/strip-prefix", seen("/", &[])),
            get("/full/one/two", seen("/one", &[])),
            with(
                "/full/rewrite-path-and-modify-headers/test",
                SENT,
                seen("/test", MODIFIED),
            ),
            with(
                "/prefix/rewrite-path-and-modify-headers/one",
                SENT,
                seen("/prefix/one", MODIFIED),
            ),
            get("/prefix/one/two?keep=1", seen("/one/two?keep=1", &[])),
        ])
        .await;
}

#[tokio::test]
async fn httproute_request_header_modifier() {
    let suite = Suite::start(&["httproute-request-header-modifier"]).await;
    let seen = |uri, headers| Expect::Seen {
        backend: "infra-backend-v1",
        uri,
        host: None,
        headers,
    };
    suite
        .check(&[
            with(
                "/set",
                &[("Some-Other-Header", "val")],
                seen(
                    "/set",
                    &[
                        ("Some-Other-Header", Some("val")),
                        ("X-Header-Set", Some("set-overwrites-values")),
                    ],
                ),
            ),
            with(
                "/set",
                &[
                    ("Some-Other-Header", "val"),
                    ("X-Header-Set", "some-other-value"),
                ],
                seen("/set", &[("X-Header-Set", Some("set-overwrites-values"))]),
            ),
            with(
                "/add",
                &[("Some-Other-Header", "val")],
                seen("/add", &[("X-Header-Add", Some("add-appends-values"))]),
            ),
            with(
                "/add",
                &[("X-Header-Add", "some-other-value")],
                seen(
                    "/add",
                    &[("X-Header-Add", Some("some-other-value, add-appends-values"))],
                ),
            ),
            with(
                "/remove",
                &[("X-Header-Remove", "val")],
                seen("/remove", &[("X-Header-Remove", None)]),
            ),
            with(
                "/multiple",
                &[
                    ("X-Header-Set-2", "set-val-2"),
                    ("X-Header-Add-2", "add-val-2"),
                    ("X-Header-Remove-2", "remove-val-2"),
                    ("Another-Header", "another-header-val"),
                ],
                seen(
                    "/multiple",
                    &[
                        ("X-Header-Set-1", Some("header-set-1")),
                        ("X-Header-Set-2", Some("header-set-2")),
                        ("X-Header-Add-1", Some("header-add-1")),
                        ("X-Header-Add-2", Some("add-val-2, header-add-2")),
                        ("X-Header-Add-3", Some("header-add-3")),
                        ("Another-Header", Some("another-header-val")),
                        ("X-Header-Remove-1", None),
                        ("X-Header-Remove-2", None),
                    ],
                ),
            ),
            with(
                "/case-insensitivity",
                &[
                    ("x-header-set", "original-val-set"),
                    ("x-header-add", "original-val-add"),
                    ("x-header-remove", "original-val-remove"),
                    ("Another-Header", "another-header-val"),
                ],
                seen(
                    "/case-insensitivity",
                    &[
                        ("X-Header-Set", Some("header-set")),
                        ("X-Header-Add", Some("original-val-add, header-add")),
                        ("Another-Header", Some("another-header-val")),
                        ("X-Header-Remove", None),
                    ],
                ),
            ),
        ])
        .await;
}

#[tokio::test]
async fn httproute_response_header_modifier() {
    let suite = Suite::start(&["httproute-response-header-modifier"]).await;
    let answered = |headers| Expect::Answered {
        backend: "infra-backend-v1",
        headers,
    };
    suite
        .check(&[
            with(
                "/set",
                &[("X-Echo-Set-Header", "Some-Other-Header:val")],
                answered(&[
                    ("Some-Other-Header", Some("val")),
                    ("X-Header-Set", Some("set-overwrites-values")),
                ]),
            ),
            with(
                "/set",
                &[(
                    "X-Echo-Set-Header",
                    "Some-Other-Header:val,X-Header-Set:some-other-value",
                )],
                answered(&[("X-Header-Set", Some("set-overwrites-values"))]),
            ),
            with(
                "/add",
                &[("X-Echo-Set-Header", "X-Header-Add:some-other-value")],
                answered(&[("X-Header-Add", Some("some-other-value,add-appends-values"))]),
            ),
            with(
                "/remove",
                &[("X-Echo-Set-Header", "X-Header-Remove:val")],
                answered(&[("X-Header-Remove", None)]),
            ),
            with(
                "/multiple",
                &[(
                    "X-Echo-Set-Header",
                    "X-Header-Set-2:set-val-2,X-Header-Add-2:add-val-2,X-Header-Remove-2:remove-val-2,Another-Header:another-header-val,X-Header-Remove-1:val",
                )],
                answered(&[
                    ("X-Header-Set-1", Some("header-set-1")),
                    ("X-Header-Set-2", Some("header-set-2")),
                    ("X-Header-Add-1", Some("header-add-1")),
                    ("X-Header-Add-2", Some("add-val-2,header-add-2")),
                    ("X-Header-Add-3", Some("header-add-3")),
                    ("Another-Header", Some("another-header-val")),
                    ("X-Header-Remove-1", None),
                    ("X-Header-Remove-2", None),
                ]),
            ),
            with(
                "/case-insensitivity",
                &[(
                    "X-Echo-Set-Header",
                    "x-header-set:original-val-set,x-header-add:original-val-add,x-header-remove:original-val-remove,Another-Header:another-header-val",
                )],
                answered(&[
                    ("X-Header-Set", Some("header-set")),
                    ("X-Header-Add", Some("original-val-add,header-add")),
                    ("X-Lowercase-Add", Some("lowercase-add")),
                    ("X-Mixedcase-Add-1", Some("mixedcase-add-1")),
                    ("X-Mixedcase-Add-2", Some("mixedcase-add-2")),
                    ("X-Uppercase-Add", Some("uppercase-add")),
                    ("Another-Header", Some("another-header-val")),
                    ("X-Header-Remove", None),
                ]),
            ),
        ])
        .await;
}

#[tokio::test]
async fn httproute_timeouts() {
    let suite = Suite::start(&[
        "httproute-timeout-request",
        "httproute-timeout-backend-request",
    ])
    .await;
    suite
        .check(&[
            get("/request-timeout", B("infra-backend-v1")),
            get("/request-timeout?delay=1s", Status(504)),
            get("/disable-request-timeout?delay=1s", B("infra-backend-v1")),
            get("/backend-timeout", B("infra-backend-v1")),
            get("/backend-timeout?delay=1s", Status(504)),
            get("/disable-backend-timeout?delay=1s", B("infra-backend-v1")),
        ])
        .await;
}

/// A filter Gatehouse does not implement is never skipped: its rule answers
/// 500, and so does the share of a backendRef with filters; never 200.
#[tokio::test]
async fn filters_not_implemented_answer_500_never_200() {
    let suite = Suite::start_with(&[], |text, _| {
        format!(
            "{text}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: unimplemented, namespace: {INFRA}}}
spec:
  parentRefs: [{{name: same-namespace}}]
  rules:
  - matches: [{{path: {{value: /cors}}}}]
    filters: [{{type: CORS, cors: {{allowOrigins: [\"https://a.test\"]}}}}]
    backendRefs: [{{name: infra-backend-v1, port: 8080}}]
  - matches: [{{path: {{value: /extension}}}}]
    filters: [{{type: ExtensionRef, extensionRef: {{group: example.com, kind: Auth, name: x}}}}]
    backendRefs: [{{name: infra-backend-v1, port: 8080}}]
  - matches: [{{path: {{value: /backend-filter}}}}]
    backendRefs:
    - name: infra-backend-v1
      port: 8080
      filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-a, value: b}}]}}}}]
"
        )
    })
    .await;
    suite
        .check(&[
            get("/cors", Status(500)),
            get("/extension", Status(500)),
            get("/backend-filter", Status(500)),
        ])
        .await;
    assert!(suite.seen_by("infra-backend-v1", "/").is_empty());
}
