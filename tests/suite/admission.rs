//! The validating admission webhook: AdmissionReview v1 bodies as
//! kube-apiserver sends them, over real HTTPS, answered with translate's
//! verdict on the object joining the served state.

use std::net::SocketAddr;
use std::process::Command;

use http::StatusCode;
use rustls::pki_types::CertificateDer;

use crate::support;
use gatehouse::app::{Running, SourceConfig};
use gatehouse::source::kube::KubeSource;
use gatehouse::translate::HostOwnership;
use support::admission::*;
use support::fake_api::FakeApi;
use support::*;

const SNIPPET: &str = "nginx.ingress.kubernetes.io/configuration-snippet";

/// Gatehouse serving `manifests` and the webhook, with `configure`
/// applied; the webhook's address and the CA its certificate is from.
struct Served {
    _dir: tempfile::TempDir,
    certs: tempfile::TempDir,
    gatehouse: Running,
    ca: CertificateDer<'static>,
}

impl Served {
    async fn start(manifests: &str, configure: impl FnOnce(&mut gatehouse::app::Config)) -> Served {
        let certs = tempfile::tempdir().expect("tempdir");
        let certificate = WebhookCertificate::write(certs.path());
        let (dir, gatehouse) = serve_manifests_with(manifests, |config| {
            config.webhook = Some(certificate.config());
            configure(config);
        })
        .await;
        Served {
            _dir: dir,
            certs,
            gatehouse,
            ca: certificate.pki.ca,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.gatehouse.webhook_addr.expect("webhook served")
    }

    async fn ask(&self, operation: &str, manifest: &str) -> Answer {
        ask(self.addr(), &self.ca, &review(operation, manifest)).await
    }
}

/// A Service `web` with an endpoint, and our IngressClass.
fn cluster() -> String {
    let endpoint: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    INGRESS_CLASS.to_owned() + &service("web", &[endpoint])
}

fn annotated(name: &str, host: &str, path: &str, annotations: &[(&str, &str)]) -> String {
    ingress_annotated(name, host, path, "web", None, annotations)
}

#[tokio::test]
async fn a_clean_ingress_is_allowed_on_any_path_and_the_answer_names_the_review() {
    let served = Served::start(&cluster(), |_| {}).await;
    let good = ingress("shop", "shop.test", "/", "web", None);
    let answer = served.ask("CREATE", &good).await;
    assert!(answer.allowed(), "{answer:?}");
    assert!(answer.warnings().is_empty(), "{answer:?}");
    assert_eq!(answer.body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer.body["kind"], "AdmissionReview");

    let body = serde_json::to_vec(&review("CREATE", &good)).expect("json");
    let elsewhere = post(served.addr(), &served.ca, "/any/path", body).await;
    assert!(elsewhere.allowed(), "{elsewhere:?}");
}

#[tokio::test]
async fn ingress_nightmare_snippets_are_refused_naming_the_object_and_annotation_and_nothing_runs()
{
    let served = Served::start(&cluster(), |_| {}).await;
    let marker = served.certs.path().join("executed");
    let shapes = [
        ("ssl-engine", "ssl_engine /proc/self/fd/42;".to_owned()),
        ("load-module", "load_module /tmp/evil.so;".to_owned()),
        (
            "lua",
            format!(
                "content_by_lua_block {{ os.execute(\"touch {}\") }}",
                marker.display()
            ),
        ),
    ];
    for (name, snippet) in &shapes {
        let evil = annotated(name, "evil.test", "/", &[(SNIPPET, snippet)]);
        let answer = served.ask("CREATE", &evil).await;
        assert!(!answer.allowed(), "{name}: {answer:?}");
        assert_eq!(answer.response()["status"]["code"], 403);
        let message = answer.message();
        assert!(
            message.contains(&format!("Ingress test/{name}")),
            "{message}"
        );
        assert!(message.contains(SNIPPET), "{message}");
    }
    assert!(!marker.exists(), "a review's snippet ran");
    // Judged on a copy: the served table never saw the candidates.
    let table = served.gatehouse.table.load();
    assert!(!table
        .routes()
        .iter()
        .any(|r| r.host.to_string() == "evil.test"));
}

/// With `--allow-snippet-annotations`, a snippet Gatehouse applies in full
/// is allowed; one it would drop (a directive outside its list) is
/// refused, as are the IngressNightmare shapes.
#[tokio::test]
async fn with_snippets_allowed_a_snippet_applied_in_full_is_allowed_and_others_refused() {
    let served = Served::start(&cluster(), |config| {
        config.translate.access.allow_snippets = true;
    })
    .await;
    let typed = "more_set_headers \"X-Frame-Options: DENY\";\nproxy_set_header X-Tenant shop;";
    let good = annotated("typed", "typed.test", "/", &[(SNIPPET, typed)]);
    let answer = served.ask("CREATE", &good).await;
    assert!(answer.allowed(), "{answer:?}");
    // Rewrites that search the paths again, in either snippet, are
    // applied as written, so allowed.
    let rerouting = [
        (
            SNIPPET,
            "rewrite ^/old/(.*)$ /new/$1 last;\nrewrite ^/a$ /b;",
        ),
        (
            "nginx.ingress.kubernetes.io/server-snippet",
            "rewrite ^/v1/(.*)$ /v2/$1 break;\nif ($http_x_beta) { rewrite ^ /beta last; }",
        ),
    ];
    let rerouted = annotated("rerouting", "rerouting.test", "/", &rerouting);
    let answer = served.ask("CREATE", &rerouted).await;
    assert!(answer.allowed(), "{answer:?}");
    for (name, snippet) in [
        ("unknown", "more_set_headers \"X-A: b\";\nsub_filter a b;"),
        ("not-a-path", "rewrite ^/a b last;"),
        ("ssl-engine", "ssl_engine /proc/self/fd/42;"),
        ("lua", "content_by_lua_block { os.execute(\"id\") }"),
    ] {
        let bad = annotated(name, &format!("{name}.test"), "/", &[(SNIPPET, snippet)]);
        let answer = served.ask("CREATE", &bad).await;
        assert!(!answer.allowed(), "{name}: {answer:?}");
        assert!(
            answer.message().contains(SNIPPET),
            "{name}: {}",
            answer.message()
        );
    }
}

#[tokio::test]
async fn an_unparsable_value_an_invalid_regex_and_an_unenforceable_protection_are_refused() {
    let served = Served::start(&cluster(), |_| {}).await;
    let cases = [
        (
            "body-size",
            "/",
            vec![("nginx.ingress.kubernetes.io/proxy-body-size", "lots")],
            "proxy-body-size",
        ),
        (
            "regex",
            "/api/(unclosed",
            vec![("nginx.ingress.kubernetes.io/use-regex", "true")],
            "/api/(unclosed",
        ),
        ("closed", "/", vec![(SNIPPET, "deny all;")], "answers 503"),
    ];
    for (name, path, annotations, named) in cases {
        let bad = annotated(name, &format!("{name}.test"), path, &annotations);
        let answer = served.ask("CREATE", &bad).await;
        assert!(!answer.allowed(), "{name}: {answer:?}");
        assert!(
            answer.message().contains(named),
            "{name}: {}",
            answer.message()
        );
    }
}

#[tokio::test]
async fn what_translate_serves_with_a_warning_is_allowed_with_that_warning() {
    let served = Served::start(&cluster(), |_| {}).await;
    let missing = ingress("later", "later.test", "/", "not-yet", None);
    let answer = served.ask("CREATE", &missing).await;
    assert!(answer.allowed(), "{answer:?}");
    let warnings = answer.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("test/not-yet"), "{warnings:?}");
}

#[tokio::test]
async fn an_ingress_of_another_class_is_allowed_untouched() {
    let served = Served::start(&cluster(), |_| {}).await;
    let theirs = annotated(
        "theirs",
        "theirs.test",
        "/",
        &[(SNIPPET, "load_module x.so;")],
    )
    .replace("ingressClassName: gatehouse", "ingressClassName: nginx");
    let answer = served.ask("CREATE", &theirs).await;
    assert!(answer.allowed(), "{answer:?}");
    assert!(answer.warnings().is_empty(), "{answer:?}");
}

/// With `--watch-namespace`, an Ingress of another namespace is never
/// served, so the webhook allows it untouched, whatever it holds; the
/// same Ingress in a namespace served is refused.
/// Gatehouse on the fake API with the webhook, its source as `configure`
/// makes it; the webhook's address and CA (and the running controller and
/// its certificates' directory, to keep).
async fn webhook_on_api(
    api: &FakeApi,
    configure: impl FnOnce(&mut KubeSource),
) -> (
    SocketAddr,
    CertificateDer<'static>,
    Running,
    tempfile::TempDir,
) {
    let certs = tempfile::tempdir().expect("tempdir");
    let certificate = WebhookCertificate::write(certs.path());
    let mut config = config_for(std::path::Path::new("."));
    let mut source = kube_source(api.client());
    configure(&mut source);
    config.source = SourceConfig::Kube(source);
    config.webhook = Some(certificate.config());
    let gatehouse = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        gatehouse::app::start(config),
    )
    .await
    .expect("initial sync in time")
    .expect("start");
    let addr = gatehouse.webhook_addr.expect("webhook");
    (addr, certificate.pki.ca, gatehouse, certs)
}

/// An Ingress whose snippet Gatehouse always refuses, in `namespace`.
fn evil_in(namespace: &str) -> serde_json::Value {
    let evil = annotated(
        "evil",
        "evil.test",
        "/",
        &[(SNIPPET, "load_module /tmp/evil.so;")],
    );
    let mut object = object_json(&evil);
    object["metadata"]["namespace"] = namespace.into();
    object
}

#[tokio::test]
async fn with_watch_namespace_an_ingress_of_another_namespace_is_allowed_untouched() {
    let api = FakeApi::start().await;
    api.put_manifests(&cluster());
    let (addr, ca, _gatehouse, _certs) =
        webhook_on_api(&api, |s| s.namespaces = vec!["test".into()]).await;
    let served = ask(addr, &ca, &review_of("CREATE", evil_in("test"))).await;
    assert!(!served.allowed(), "{served:?}");
    let answer = ask(addr, &ca, &review_of("CREATE", evil_in("elsewhere"))).await;
    assert!(answer.allowed(), "{answer:?}");
    assert!(answer.warnings().is_empty(), "{answer:?}");
}

/// With `--watch-namespace-selector`, the same for a namespace the
/// selector does not pick, until it is labelled to be.
#[tokio::test]
async fn with_a_namespace_selector_an_ingress_of_a_namespace_not_selected_is_allowed_untouched() {
    let api = FakeApi::start().await;
    api.put_manifests(&cluster());
    api.put(namespace("test", &[("gatehouse", "on")]));
    api.put(namespace("blog", &[]));
    let (addr, ca, _gatehouse, _certs) = webhook_on_api(&api, |s| {
        s.namespace_selector = Some("gatehouse=on".into());
    })
    .await;
    let served = ask(addr, &ca, &review_of("CREATE", evil_in("test"))).await;
    assert!(!served.allowed(), "{served:?}");
    let answer = ask(addr, &ca, &review_of("CREATE", evil_in("blog"))).await;
    assert!(answer.allowed(), "{answer:?}");
    assert!(answer.warnings().is_empty(), "{answer:?}");
    api.put(namespace("blog", &[("gatehouse", "on")]));
    let within = std::time::Duration::from_secs(20);
    eventually(
        "the relabelled namespace to be judged",
        within,
        async || {
            !ask(addr, &ca, &review_of("CREATE", evil_in("blog")))
                .await
                .allowed()
        },
    )
    .await;
}

#[tokio::test]
async fn an_update_is_judged_as_the_change_it_would_be() {
    let stored = ingress("shop", "shop.test", "/", "web", None);
    let served = Served::start(&(cluster() + &stored), |_| {}).await;
    let changed = annotated("shop", "shop.test", "/", &[(SNIPPET, "ssl_engine x;")]);
    let answer = served.ask("UPDATE", &changed).await;
    assert!(!answer.allowed(), "{answer:?}");
    assert!(served.ask("UPDATE", &stored).await.allowed());
}

#[tokio::test]
async fn a_host_of_another_namespace_is_refused_under_namespace_ownership() {
    let owner = ingress("owner", "owned.test", "/", "web", None);
    let served = Served::start(&(cluster() + &owner), |config| {
        config.translate.host_ownership = HostOwnership::Namespace;
    })
    .await;
    let intruder = ingress("intruder", "owned.test", "/other", "web", None)
        .replace("namespace: test", "namespace: other");
    let answer = served.ask("CREATE", &intruder).await;
    assert!(!answer.allowed(), "{answer:?}");
    assert!(
        answer.message().contains("owned.test"),
        "{}",
        answer.message()
    );
    let neighbour = ingress("neighbour", "owned.test", "/other", "web", None);
    assert!(served.ask("CREATE", &neighbour).await.allowed());
}

#[tokio::test]
async fn a_taken_host_and_path_warns_and_is_refused_only_when_asked() {
    let first = ingress("first", "shop.test", "/", "web", None);
    let second = ingress("second", "shop.test", "/", "web", None);
    let lenient = Served::start(&(cluster() + &first), |_| {}).await;
    let answer = lenient.ask("CREATE", &second).await;
    assert!(answer.allowed(), "{answer:?}");
    assert!(
        answer.warnings().iter().any(|w| w.contains("test/first")),
        "{answer:?}"
    );

    let strict = Served::start(&(cluster() + &first), |config| {
        if let Some(webhook) = &mut config.webhook {
            webhook.admission.reject_conflicts = true;
        }
    })
    .await;
    let answer = strict.ask("CREATE", &second).await;
    assert!(!answer.allowed(), "{answer:?}");
    assert!(
        answer.message().contains("test/first"),
        "{}",
        answer.message()
    );
}

#[tokio::test]
async fn oversized_deeply_nested_and_malformed_bodies_get_4xx_and_the_webhook_keeps_answering() {
    let served = Served::start(&cluster(), |_| {}).await;
    let (addr, ca) = (served.addr(), &served.ca);

    // A real review padded past 3 MiB with an annotation.
    let mut object = object_json(&ingress("big", "big.test", "/", "web", None));
    object["metadata"]["annotations"] = serde_json::json!({"pad": "x".repeat(3 << 20)});
    let big = serde_json::to_vec(&review_of("CREATE", object)).expect("json");
    let answer = post(addr, ca, "/", big).await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{:?}",
        answer.body
    );

    // Nesting where the review holds free-form JSON (`options`), past
    // serde_json's 128 levels.
    let mut deep = review("CREATE", &ingress("deep", "deep.test", "/", "web", None));
    deep["request"]["options"] = serde_json::Value::String("DEEP".into());
    let nesting = "[".repeat(100_000) + &"]".repeat(100_000);
    let nested = serde_json::to_string(&deep)
        .expect("json")
        .replace("\"DEEP\"", &nesting);
    let answer = post(addr, ca, "/", nested).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{:?}", answer.body);

    for malformed in [
        "{\"kind\": \"AdmissionReview\", \"apiVersion\": \"admission.k8s.io/v1\", \"request\": {",
        "{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"AdmissionReview\"}",
        "{\"apiVersion\": \"admission.k8s.io/v1beta1\", \"request\": {\"kind\": {\"kind\": \"Ingress\"}}}",
        "not json",
    ] {
        let answer = post(addr, ca, "/", malformed).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{malformed}: {:?}", answer.body);
    }

    let mut wrong_type = review("CREATE", &ingress("x", "x.test", "/", "web", None));
    wrong_type["request"]["object"]["spec"]["rules"] = serde_json::json!("a string");
    let body = serde_json::to_vec(&wrong_type).expect("json");
    assert_eq!(
        post(addr, ca, "/", body).await.status,
        StatusCode::BAD_REQUEST
    );

    let good = ingress("shop", "shop.test", "/", "web", None);
    assert!(served.ask("CREATE", &good).await.allowed());
}

#[tokio::test]
async fn reviews_over_the_concurrency_limit_wait_their_turn_and_are_all_answered() {
    let served = Served::start(&cluster(), |config| {
        if let Some(webhook) = &mut config.webhook {
            webhook.limits.reviews = 1;
        }
    })
    .await;
    let (addr, ca) = (served.addr(), served.ca.clone());
    let asks = (0..16).map(|i| {
        let ca = ca.clone();
        let manifest = match i % 2 {
            0 => ingress(&format!("good-{i}"), "shop.test", "/", "web", None),
            _ => annotated(
                &format!("bad-{i}"),
                "shop.test",
                "/",
                &[(SNIPPET, "load_module x;")],
            ),
        };
        tokio::spawn(async move { (i, ask(addr, &ca, &review("CREATE", &manifest)).await) })
    });
    for asked in asks.collect::<Vec<_>>() {
        let (i, answer) = asked.await.expect("asked");
        assert_eq!(answer.allowed(), i % 2 == 0, "review {i}: {answer:?}");
    }
}

#[tokio::test]
async fn the_webhook_certificate_is_read_again_when_its_files_change() {
    let served = Served::start(&cluster(), |_| {}).await;
    let renewed = WebhookCertificate::write(served.certs.path());
    let good = review("CREATE", &ingress("shop", "shop.test", "/", "web", None));
    let within = gatehouse::admission::RELOAD_EVERY * 5;
    eventually("the renewed certificate is served", within, async || {
        let config = tls_config(Some(&renewed.pki.ca), &[b"http/1.1"]);
        tls_connect(served.addr(), WEBHOOK_HOST, config)
            .await
            .is_ok()
    })
    .await;
    assert!(ask(served.addr(), &renewed.pki.ca, &good).await.allowed());
}

#[tokio::test]
async fn the_routes_lint_refuses_what_the_webhook_refuses_with_the_same_message() {
    let bad = annotated(
        "bad",
        "bad.test",
        "/",
        &[(SNIPPET, "content_by_lua_block { }")],
    );
    let served = Served::start(&cluster(), |_| {}).await;
    let answer = served.ask("CREATE", &bad).await;
    assert!(!answer.allowed());

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("all.yaml"), cluster() + &bad).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["routes", "--manifests"])
        .arg(dir.path())
        .output()
        .expect("run routes");
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains(&format!("REFUSED {}", answer.message())),
        "{out}\nwebhook: {}",
        answer.message()
    );
    assert!(out.contains("1 Ingresses: 0 allowed, 1 refused"), "{out}");
}

fn http_route(name: &str, path: &str, path_type: &str, service: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: test}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [routes.test]
  rules:
  - matches: [{{path: {{type: {path_type}, value: {path:?}}}}}]
    backendRefs: [{{name: {service}, port: 80}}]
"
    )
}

#[tokio::test]
async fn an_httproute_is_judged_as_translate_would_serve_it() {
    let served = Served::start(&(cluster() + GATEWAY_EDGE), |_| {}).await;
    let bad = http_route("bad", "/(unclosed", "RegularExpression", "web");
    let answer = ask(served.addr(), &served.ca, &review("CREATE", &bad)).await;
    assert!(!answer.allowed(), "{answer:?}");
    let message = answer.message();
    assert!(
        message.contains("HTTPRoute test/bad") && message.contains("/(unclosed"),
        "{message}"
    );

    let later = http_route("later", "/", "PathPrefix", "not-yet");
    let answer = ask(served.addr(), &served.ca, &review("CREATE", &later)).await;
    assert!(answer.allowed(), "{answer:?}");
    assert!(
        answer.warnings().iter().any(|w| w.contains("not-yet")),
        "{answer:?}"
    );
}

/// A bad HTTPRoute is refused with a message naming the route, the rule
/// and match, and the field; a clean one is allowed without a warning.
#[tokio::test]
async fn an_httproute_refusal_names_the_field_and_a_clean_route_is_allowed_as_it_is() {
    let served = Served::start(&(cluster() + GATEWAY_EDGE), |_| {}).await;
    let bad = http_route("bad", "no-slash", "PathPrefix", "web");
    let answer = ask(served.addr(), &served.ca, &review("CREATE", &bad)).await;
    assert!(!answer.allowed(), "{answer:?}");
    assert_eq!(answer.response()["status"]["code"], 403);
    let message = answer.message();
    for part in [
        "HTTPRoute test/bad",
        "rule",
        "path \"no-slash\"",
        "does not start with /",
    ] {
        assert!(message.contains(part), "{part} not in {message}");
    }

    let good = http_route("good", "/shop", "PathPrefix", "web");
    let answer = ask(served.addr(), &served.ca, &review("CREATE", &good)).await;
    assert!(answer.allowed(), "{answer:?}");
    assert!(answer.warnings().is_empty(), "{answer:?}");
    let update = ask(served.addr(), &served.ca, &review("UPDATE", &good)).await;
    assert!(
        update.allowed() && update.warnings().is_empty(),
        "{update:?}"
    );
}

/// A Gateway is judged too: a clean one is allowed as it is; a listener
/// Gatehouse cannot program (a port it does not listen on) is served as
/// the Gateway API says, the Gateway's status naming it, so the Gateway
/// is allowed with that warning, naming the listener.
#[tokio::test]
async fn a_gateway_is_allowed_and_a_listener_it_cannot_program_is_a_warning() {
    let served = Served::start(&(cluster() + GATEWAY_EDGE), |_| {}).await;
    let gateway = |name: &str, port: u16| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: test}}
spec:
  gatewayClassName: gatehouse
  listeners:
  - {{name: web, port: {port}, protocol: HTTP}}
"
        )
    };
    let good = ask(
        served.addr(),
        &served.ca,
        &review("CREATE", &gateway("good", 80)),
    )
    .await;
    assert!(good.allowed(), "{good:?}");
    assert!(good.warnings().is_empty(), "{good:?}");
    let odd = ask(
        served.addr(),
        &served.ca,
        &review("CREATE", &gateway("odd", 8081)),
    )
    .await;
    assert!(odd.allowed(), "{odd:?}");
    let warnings = odd.warnings();
    assert!(
        warnings.iter().any(|w| w.contains("listener web")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_at_the_head_timeout_and_frees_its_place() {
    let served = Served::start(&cluster(), |config| {
        if let Some(webhook) = &mut config.webhook {
            webhook.limits.connections = 1;
            webhook.limits.handshake = std::time::Duration::from_millis(300);
        }
    })
    .await;
    let config = tls_config(Some(&served.ca), &[b"h2", b"http/1.1"]);
    let (mut idle, _) = tls_connect(served.addr(), WEBHOOK_HOST, config)
        .await
        .expect("TLS");
    assert_eq!(idle.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    // The only place is taken: this review waits until the idle one goes.
    let good = ingress("shop", "shop.test", "/", "web", None);
    assert!(served.ask("CREATE", &good).await.allowed());
    let mut byte = [0u8; 1];
    let read = tokio::io::AsyncReadExt::read(&mut idle, &mut byte).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn reviews_are_counted_by_kind_and_verdict() {
    let served = Served::start(&cluster(), |_| {}).await;
    let good = ingress("shop", "shop.test", "/", "web", None);
    let bad = annotated("bad", "bad.test", "/", &[(SNIPPET, "load_module x;")]);
    let later = ingress("later", "later.test", "/", "not-yet", None);
    assert!(served.ask("CREATE", &good).await.allowed());
    assert!(!served.ask("CREATE", &bad).await.allowed());
    assert!(served.ask("CREATE", &later).await.allowed());
    assert_eq!(
        post(served.addr(), &served.ca, "/", "not json")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let metrics = http_get(served.gatehouse.metrics_addr, "localhost", "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    for series in [
        "gatehouse_admission_reviews_total{kind=\"Ingress\",verdict=\"allowed\"} 1",
        "gatehouse_admission_reviews_total{kind=\"Ingress\",verdict=\"refused\"} 1",
        "gatehouse_admission_reviews_total{kind=\"Ingress\",verdict=\"warned\"} 1",
        "gatehouse_admission_reviews_total{kind=\"\",verdict=\"invalid\"} 1",
        "gatehouse_admission_review_duration_seconds_count 4",
    ] {
        assert!(text.contains(series), "{series} missing in\n{text}");
    }
}
