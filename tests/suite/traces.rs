//! Traces end to end: Gatehouse exports to an OTLP/gRPC collector on
//! 127.0.0.1 (built on the protocol's generated TraceService), as the
//! controller ConfigMap's OpenTelemetry keys say; the collector decodes
//! what arrives and the backend shows the `traceparent` it was sent.
//! `otel-schedule-delay-millis` is short so that spans arrive at once.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gatehouse::cluster::ObjectKey;
use http::Request;
use http_body_util::Full;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use support::otlp::{Collector, Received};
use support::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The controller ConfigMap `test/gatehouse`: tracing to `collector`,
/// exported every 20 ms, with `extra` keys.
fn config_map(collector: SocketAddr, extra: &[(&str, &str)]) -> String {
    let mut data = vec![
        ("enable-opentelemetry".to_owned(), "true".to_owned()),
        ("otlp-collector-host".to_owned(), "127.0.0.1".to_owned()),
        (
            "otlp-collector-port".to_owned(),
            collector.port().to_string(),
        ),
        ("otel-schedule-delay-millis".to_owned(), "20".to_owned()),
    ];
    data.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let lines: String = data
        .iter()
        .map(|(k, v)| format!("  {k}: {}\n", serde_json::Value::from(v.as_str())))
        .collect();
    format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: gatehouse, namespace: test}}\ndata:\n{lines}")
}

/// A collector, and Gatehouse exporting to it: backend `web`, Ingress
/// `web` for `web.test` with `annotations`, the ConfigMap with `keys`.
async fn traced(keys: &[(&str, &str)], annotations: &[(&str, &str)]) -> (Collector, Site) {
    let collector = Collector::start().await;
    let site = Site::one_route("web", "web.test", annotations)
        .await
        .manifests(config_map(collector.addr, keys))
        .translate(|t| t.config_map = Some(ObjectKey::new("test", "gatehouse")))
        .start()
        .await;
    (collector, site)
}

async fn get(site: &Site, headers: &[(&str, &str)]) -> Reply {
    get_path(site.gatehouse.http_addr, "web.test", "/shop/cart", headers).await
}

async fn get_path(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = Request::get(path).header(http::header::HOST, host);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut sender = http_connect(addr).await;
    let req = req.body(Full::<Bytes>::default()).expect("request");
    send_request(&mut sender, req).await.expect("request")
}

/// The spans received once `count` of them have come.
async fn spans(collector: &Collector, count: usize) -> Vec<Received> {
    eventually(
        format!("{count} spans at the collector"),
        Duration::from_secs(10),
        async || {
            let spans = collector.spans();
            (spans.len() >= count).then_some(spans)
        },
    )
    .await
}

fn server_span(spans: &[Received]) -> &Received {
    let mut servers = spans.iter().filter(|s| s.kind == SpanKind::Server);
    let server = servers.next().expect("a server span");
    assert!(servers.next().is_none(), "one server span: {spans:#?}");
    server
}

fn children<'a>(spans: &'a [Received], parent: &Received) -> Vec<&'a Received> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_id)
        .collect()
}

/// `traceparent` as the backend received it: trace ID, parent ID, flags.
fn sent_traceparent(reply: &Reply) -> (String, String, String) {
    let seen = reply.seen();
    let value = seen["headers"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("no traceparent upstream: {seen}"));
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!((parts.len(), parts[0]), (4, "00"), "{value}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

#[tokio::test]
async fn a_request_is_a_server_span_with_one_attempt_span_the_backend_names_as_parent() {
    let (collector, site) = traced(&[("otel-service-name", "edge")], &[]).await;
    let reply = get(&site, &[("user-agent", "trace-test/1")]).await;
    assert_eq!(reply.status, 200);
    let spans = spans(&collector, 2).await;
    let server = server_span(&spans);
    assert_eq!(server.name, "GET /");
    assert_eq!(server.service_name, "edge");
    assert!(server.parent_span_id.is_empty(), "a new trace: {server:?}");
    for (key, value) in [
        ("http.request.method", "GET"),
        ("url.path", "/shop/cart"),
        ("url.scheme", "http"),
        ("server.address", "web.test"),
        ("network.peer.address", "127.0.0.1"),
        ("user_agent.original", "trace-test/1"),
        ("http.route", "/"),
        ("http.response.status_code", "200"),
        ("k8s.namespace.name", "test"),
        ("k8s.ingress.name", "web"),
        ("k8s.service.name", "web"),
    ] {
        assert_eq!(server.attribute(key), value, "{key} of {server:#?}");
    }
    let attempts = children(&spans, server);
    assert_eq!(attempts.len(), 1, "{spans:#?}");
    let attempt = attempts[0];
    assert_eq!(
        (attempt.name.as_str(), attempt.kind),
        ("GET", SpanKind::Client)
    );
    assert_eq!(attempt.trace_id, server.trace_id);
    assert_eq!(attempt.attribute("server.address"), "127.0.0.1");
    let port = site.backend("web").addr.port().to_string();
    assert_eq!(attempt.attribute("server.port"), port);
    assert_eq!(attempt.attribute("http.response.status_code"), "200");
    let (trace, parent, flags) = sent_traceparent(&reply);
    assert_eq!(
        (trace, parent),
        (server.trace_id.clone(), attempt.span_id.clone())
    );
    assert_eq!(flags, "01");
}

#[tokio::test]
async fn a_trusted_client_span_is_continued_with_its_tracestate() {
    let (collector, site) = traced(&[], &[]).await;
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let headers = [
        ("traceparent", traceparent.as_str()),
        ("tracestate", "vendor=opaque"),
    ];
    let reply = get(&site, &headers).await;
    let spans = spans(&collector, 2).await;
    let server = server_span(&spans);
    assert_eq!(server.trace_id, TRACE_ID);
    assert_eq!(server.parent_span_id, CLIENT_SPAN);
    let (trace, parent, _) = sent_traceparent(&reply);
    assert_eq!(trace, TRACE_ID);
    assert_ne!(parent, CLIENT_SPAN, "Gatehouse's span is the parent");
    assert_eq!(reply.seen()["headers"]["tracestate"], "vendor=opaque");
}

#[tokio::test]
async fn an_untrusted_client_span_is_not_continued() {
    let annotations = [(
        "nginx.ingress.kubernetes.io/opentelemetry-trust-incoming-span",
        "false",
    )];
    let (collector, site) = traced(&[], &annotations).await;
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let headers = [
        ("traceparent", traceparent.as_str()),
        ("tracestate", "vendor=opaque"),
    ];
    let reply = get(&site, &headers).await;
    let spans = spans(&collector, 2).await;
    let server = server_span(&spans);
    assert_ne!(server.trace_id, TRACE_ID);
    assert!(server.parent_span_id.is_empty(), "{server:?}");
    let (trace, _, _) = sent_traceparent(&reply);
    assert_eq!(trace, server.trace_id);
    assert!(reply.seen()["headers"].get("tracestate").is_none());
}

/// Under parent-based sampling with `root` for new traces, a request
/// without a parent is sent upstream unsampled and exports nothing, while
/// one whose trusted parent is sampled is exported.
async fn a_sampled_parent_alone_is_exported(root: &[(&str, &str)]) {
    let (collector, site) = traced(root, &[]).await;
    let unsampled = get(&site, &[]).await;
    let (_, _, flags) = sent_traceparent(&unsampled);
    assert_eq!(flags, "00", "the trace goes on upstream, unsampled");
    let unsampled_parent = format!("00-{}-{CLIENT_SPAN}-00", "1".repeat(32));
    get(&site, &[("traceparent", unsampled_parent.as_str())]).await;
    let sampled_parent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    get(&site, &[("traceparent", sampled_parent.as_str())]).await;
    // Exported in the order they ended: when the sampled request's spans
    // are in, the others would be too.
    let spans = spans(&collector, 2).await;
    assert!(
        spans.iter().all(|s| s.trace_id == TRACE_ID),
        "only the sampled parent's trace: {spans:#?}"
    );
}

#[tokio::test]
async fn always_off_exports_only_what_a_sampled_parent_asks_for() {
    a_sampled_parent_alone_is_exported(&[("otel-sampler", "AlwaysOff")]).await;
}

#[tokio::test]
async fn a_ratio_of_zero_exports_only_what_a_sampled_parent_asks_for() {
    let keys = [
        ("otel-sampler", "TraceIdRatioBased"),
        ("otel-sampler-ratio", "0"),
    ];
    a_sampled_parent_alone_is_exported(&keys).await;
}

#[tokio::test]
async fn without_parent_based_sampling_a_sampled_parent_is_not_followed() {
    let keys = [
        ("otel-sampler", "AlwaysOff"),
        ("otel-sampler-parent-based", "false"),
    ];
    let (collector, site) = traced(&keys, &[]).await;
    let sampled_parent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let reply = get(&site, &[("traceparent", sampled_parent.as_str())]).await;
    let (trace, _, flags) = sent_traceparent(&reply);
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE_ID, "00"));
    // Nothing to wait for: give the exporter many of its delays.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(collector.spans().is_empty(), "{:#?}", collector.spans());
}

#[tokio::test]
async fn an_ingress_without_traces_sends_the_clients_traceparent_untouched() {
    let annotations = [("nginx.ingress.kubernetes.io/enable-opentelemetry", "false")];
    let (collector, site) = traced(&[], &annotations).await;
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let reply = get(&site, &[("traceparent", traceparent.as_str())]).await;
    assert_eq!(reply.seen()["headers"]["traceparent"], traceparent.as_str());
    // A 404 (no route) follows the ConfigMap, which traces: its span
    // arrives, and only it.
    let missing = get_path(site.gatehouse.http_addr, "none.test", "/", &[]).await;
    assert_eq!(missing.status, 404);
    let spans = spans(&collector, 1).await;
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].name, "GET");
    assert_eq!(spans[0].attribute("http.response.status_code"), "404");
}

#[tokio::test]
async fn each_attempt_is_a_span_and_the_retry_is_the_backends_parent() {
    let collector = Collector::start().await;
    let site = Site::builder().backend_of("web", "good").await;
    let bad = site.next_endpoint("web");
    failing_endpoint(bad).await;
    let annotations = [(
        "nginx.ingress.kubernetes.io/proxy-next-upstream",
        "error timeout http_503",
    )];
    let site = site
        .endpoint("web", bad)
        .manifests(ingress_annotated(
            "web",
            "web.test",
            "/",
            "web",
            None,
            &annotations,
        ))
        .manifests(config_map(collector.addr, &[]))
        .translate(|t| t.config_map = Some(ObjectKey::new("test", "gatehouse")))
        .start()
        .await;
    // Round robin: of two requests, one goes to the failing endpoint first.
    let replies = [get(&site, &[]).await, get(&site, &[]).await];
    assert!(replies.iter().all(|r| r.status == 200));
    let spans = spans(&collector, 5).await;
    let retried = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server)
        .find(|s| children(&spans, s).len() == 2)
        .unwrap_or_else(|| panic!("a request with two attempts: {spans:#?}"));
    let attempts = children(&spans, retried);
    let first = attempts
        .iter()
        .find(|s| !s.attributes.contains_key("http.request.resend_count"))
        .expect("the first attempt");
    let second = attempts
        .iter()
        .find(|s| s.attribute("http.request.resend_count") == "1")
        .expect("the retry");
    assert_eq!(first.attribute("http.response.status_code"), "503");
    assert!(first.error);
    assert_eq!(first.attribute("server.port"), bad.port().to_string());
    assert_eq!(second.attribute("http.response.status_code"), "200");
    let reply = replies
        .iter()
        .find(|r| sent_traceparent(r).0 == retried.trace_id)
        .expect("the retried request's reply");
    assert_eq!(sent_traceparent(reply).1, second.span_id);
}

#[tokio::test]
async fn the_auth_subrequest_is_a_span_its_request_names_as_parent() {
    let collector = Collector::start().await;
    let auth = Backend::start("auth").await;
    let url = format!("http://{}/auth", auth.addr);
    let annotations = [("nginx.ingress.kubernetes.io/auth-url", url.as_str())];
    let site = Site::one_route("web", "web.test", &annotations)
        .await
        .manifests(config_map(collector.addr, &[]))
        .translate(|t| t.config_map = Some(ObjectKey::new("test", "gatehouse")))
        .start()
        .await;
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let reply = get(&site, &[("traceparent", traceparent.as_str())]).await;
    assert_eq!(reply.status, 200);
    let spans = spans(&collector, 3).await;
    let server = server_span(&spans);
    let children = children(&spans, server);
    let auth_span = children
        .iter()
        .find(|s| s.name == "external auth")
        .unwrap_or_else(|| panic!("an auth span: {spans:#?}"));
    assert_eq!(auth_span.attribute("http.response.status_code"), "200");
    let attempt = children
        .iter()
        .find(|s| s.name == "GET")
        .expect("an attempt span");
    let asked = auth.seen.lock().unwrap()[0]["headers"]["traceparent"].clone();
    assert_eq!(
        asked,
        format!("00-{TRACE_ID}-{}-01", auth_span.span_id).as_str()
    );
    assert_eq!(sent_traceparent(&reply).1, attempt.span_id);
}

/// A collector that takes connections and never answers: each export
/// waits for its timeout. Aborting the task closes them.
async fn silent_collector() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

fn dropped_spans(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("gatehouse_trace_spans_dropped_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn spans_beyond_the_queue_are_dropped_and_counted_while_requests_go_on() {
    let (addr, collector) = silent_collector().await;
    let keys = [
        ("otel-max-queuesize", "2"),
        ("otel-max-export-batch-size", "1"),
    ];
    let site = Site::one_route("web", "web.test", &[])
        .await
        .manifests(config_map(addr, &keys))
        .translate(|t| t.config_map = Some(ObjectKey::new("test", "gatehouse")))
        .start()
        .await;
    for _ in 0..5 {
        assert_eq!(get(&site, &[]).await.status, 200);
    }
    // Ten spans ended. The exporter took the first and waits for an
    // answer that never comes, so nothing leaves: at most two spans wait
    // at once (that one included), and the other eight are dropped.
    let metrics_addr = site.gatehouse.metrics_addr;
    let dropped = eventually(
        "dropped spans counted",
        Duration::from_secs(10),
        async || {
            let reply = http_get(metrics_addr, "admin", "/metrics").await;
            let dropped = dropped_spans(std::str::from_utf8(&reply.body).unwrap_or_default());
            (dropped >= 8).then_some(dropped)
        },
    )
    .await;
    assert_eq!(dropped, 8);
    // The silent collector goes first, so that the exporter's pending
    // export fails at once and Gatehouse stops without waiting for it.
    collector.abort();
    let _ = collector.await;
    drop(site);
}
