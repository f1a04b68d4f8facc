//! The conformance suite's GRPCRoute tests: gRPC calls over HTTP/2 with
//! prior knowledge, matched by method, header and hostname, and weighted.

use super::*;

/// The suite's gRPC echo service.
const ECHO: &str = "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";

/// A gRPC call as the suite's client makes it (HTTP/2 with prior
/// knowledge on the plain listener, `POST /service/method`): the status
/// and the backend that answered, which must have seen HTTP/2.
async fn grpc_call(
    suite: &Suite,
    authority: &str,
    path: &str,
    metadata: &[(&str, &str)],
) -> (StatusCode, String) {
    let tcp = tokio::net::TcpStream::connect(suite.gatehouse.http_addr)
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    let mut req = Request::post(format!("http://{authority}{path}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers");
    for (name, value) in metadata {
        req = req.header(*name, *value);
    }
    // One empty gRPC message: not compressed, length 0.
    let body = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]));
    let response = sender
        .send_request(req.body(body).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    if status != StatusCode::OK {
        return (status, String::new());
    }
    let seen: serde_json::Value = serde_json::from_slice(&body).expect("backend reply");
    assert_eq!(
        seen["version"], "HTTP/2.0",
        "gRPC reaches the backend over HTTP/2"
    );
    assert_eq!(seen["uri"].as_str().map(|u| u.ends_with(path)), Some(true));
    (
        status,
        seen["backend"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn grpcroute_exact_method_matching_and_named_rule() {
    for fixture in ["grpcroute-exact-method-matching", "grpcroute-named-rule"] {
        let suite = Suite::start(&[fixture]).await;
        let call = |method: &'static str| {
            let path = format!("{ECHO}/{method}");
            let suite = &suite;
            async move { grpc_call(suite, "gateway.test", &path, &[]).await }
        };
        assert_eq!(
            call("Echo").await,
            (StatusCode::OK, "grpc-infra-backend-v1".into())
        );
        assert_eq!(
            call("EchoTwo").await,
            (StatusCode::OK, "grpc-infra-backend-v2".into())
        );
        // No match: 404, which a gRPC client reads as Unimplemented.
        assert_eq!(
            call("EchoThree").await.0,
            StatusCode::NOT_FOUND,
            "{fixture}"
        );
    }
}

#[tokio::test]
async fn grpcroute_header_matching() {
    let suite = Suite::start(&["grpcroute-header-matching"]).await;
    let path = format!("{ECHO}/Echo");
    for (metadata, want) in [
        (&[("version", "one")][..], Some("grpc-infra-backend-v1")),
        (&[("version", "two")], Some("grpc-infra-backend-v2")),
        (
            &[("version", "two"), ("color", "orange")],
            Some("grpc-infra-backend-v1"),
        ),
        (
            &[("version", "two"), ("color", "blue")],
            Some("grpc-infra-backend-v2"),
        ),
        (&[("color", "orange")], None),
        (&[("some-other-header", "one")], None),
        (&[("color", "blue")], Some("grpc-infra-backend-v1")),
        (&[("color", "green")], Some("grpc-infra-backend-v1")),
        (&[("color", "red")], Some("grpc-infra-backend-v2")),
        (&[("color", "yellow")], Some("grpc-infra-backend-v2")),
    ] {
        let (status, backend) = grpc_call(&suite, "gateway.test", &path, metadata).await;
        match want {
            Some(want) => assert_eq!(
                (status, backend.as_str()),
                (StatusCode::OK, want),
                "{metadata:?}"
            ),
            None => assert_eq!(status, StatusCode::NOT_FOUND, "{metadata:?}"),
        }
    }
}

#[tokio::test]
async fn grpcroute_listener_hostname_matching() {
    let suite = Suite::start(&["grpcroute-listener-hostname-matching"]).await;
    let path = format!("{ECHO}/Echo");
    for (authority, want) in [
        ("bar.com", Some("grpc-infra-backend-v1")),
        ("foo.bar.com", Some("grpc-infra-backend-v2")),
        ("baz.bar.com", Some("grpc-infra-backend-v3")),
        ("boo.bar.com", Some("grpc-infra-backend-v3")),
        ("multiple.prefixes.bar.com", Some("grpc-infra-backend-v3")),
        ("multiple.prefixes.foo.com", Some("grpc-infra-backend-v3")),
        ("foo.com", None),
        ("no.matching.host", None),
    ] {
        let (status, backend) = grpc_call(&suite, authority, &path, &[]).await;
        match want {
            Some(want) => assert_eq!(
                (status, backend.as_str()),
                (StatusCode::OK, want),
                "{authority}"
            ),
            None => assert_eq!(status, StatusCode::NOT_FOUND, "{authority}"),
        }
    }
}

#[tokio::test]
async fn grpcroute_weight() {
    let suite = Suite::start(&["grpcroute-weight"]).await;
    let path = format!("{ECHO}/Echo");
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..300 {
        let (status, backend) = grpc_call(&suite, "gateway.test", &path, &[]).await;
        assert_eq!(status, StatusCode::OK);
        *counts.entry(backend).or_default() += 1;
    }
    // 70/30/0 (210 expected for v1, sd ≈ 8).
    let v1 = counts.get("grpc-infra-backend-v1").copied().unwrap_or(0);
    assert!((170..=250).contains(&v1), "{counts:?}");
    assert!(!counts.contains_key("grpc-infra-backend-v3"), "{counts:?}");
}
