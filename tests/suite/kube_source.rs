//! The kube source with the real kube-rs client against a local server that
//! speaks the API's list/watch protocol; real requests through the proxy.

use crate::support;

use std::time::Duration;

use gatehouse::app::SourceConfig;
use gatehouse::source::kube::KubeSource;
use http::StatusCode;
use support::fake_api::{FakeApi, GATEWAY_API};
use support::*;

async fn start_on(api: &FakeApi, namespace: Option<&str>) -> gatehouse::app::Running {
    start_watching(api, |source| {
        source.namespaces = namespace.map(str::to_owned).into_iter().collect();
    })
    .await
}

/// Gatehouse on the fake API, with the source changed by `configure`
/// (its `config_map` also becomes the translate options').
async fn start_watching(
    api: &FakeApi,
    configure: impl FnOnce(&mut KubeSource),
) -> gatehouse::app::Running {
    let mut config = config_for(std::path::Path::new("."));
    let mut source = kube_source(api.client());
    configure(&mut source);
    config.translate.config_map = source.config_map.clone();
    config.source = SourceConfig::Kube(source);
    tokio::time::timeout(Duration::from_secs(20), gatehouse::app::start(config))
        .await
        .expect("initial sync in time")
        .expect("start")
}

/// How long a watch event may take to change what is served.
const APPLIED: Duration = Duration::from_secs(20);

/// Waits until a plain-HTTP request for `host` gets `status`.
async fn until_status(
    gatehouse: &gatehouse::app::Running,
    host: &str,
    status: StatusCode,
) -> Reply {
    eventually(format!("{host} to answer {status}"), APPLIED, async || {
        let reply = http_get(gatehouse.http_addr, host, "/").await;
        if reply.status == status {
            Ok(reply)
        } else {
            Err(reply.status)
        }
    })
    .await
}

#[tokio::test]
async fn initial_list_makes_the_controller_ready_and_watch_events_change_what_is_served() {
    let (web, other) = (Backend::start("web").await, Backend::start("other").await);
    let api = FakeApi::start().await;
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            service("other", &[other.addr]),
            ingress("shop", "shop.test", "/", "web", None),
        ]
        .concat(),
    );
    let gatehouse = start_on(&api, None).await;

    assert_eq!(
        http_get(gatehouse.metrics_addr, "admin", "/readyz")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        http_get(gatehouse.http_addr, "shop.test", "/")
            .await
            .backend(),
        "web"
    );

    // ADDED through the watch.
    api.put_manifests(&ingress("blog", "blog.test", "/", "other", None));
    assert_eq!(
        until_status(&gatehouse, "blog.test", StatusCode::OK)
            .await
            .backend(),
        "other"
    );
    // MODIFIED: the route moves.
    api.put_manifests(&ingress("shop", "shop.test", "/", "other", None));
    eventually("shop.test to move to other", APPLIED, async || {
        http_get(gatehouse.http_addr, "shop.test", "/")
            .await
            .backend()
            == "other"
    })
    .await;
    assert_eq!(
        http_get(gatehouse.http_addr, "shop.test", "/")
            .await
            .backend(),
        "other"
    );
    // DELETED.
    api.delete("networking.k8s.io/v1", "Ingress", "test", "blog");
    until_status(&gatehouse, "blog.test", StatusCode::NOT_FOUND).await;
    // A BOOKMARK changes nothing.
    api.bookmark();
    assert_eq!(
        http_get(gatehouse.http_addr, "shop.test", "/")
            .await
            .backend(),
        "other"
    );
}

#[tokio::test]
async fn readyz_is_503_until_every_kind_is_listed() {
    let api = FakeApi::start().await;
    api.set_down(true);
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let metrics_addr = probe.local_addr().expect("addr");
    drop(probe);
    let mut config = config_for(std::path::Path::new("."));
    config.metrics_addr = metrics_addr;
    config.source = SourceConfig::Kube(kube_source(api.client()));
    let starting = tokio::spawn(gatehouse::app::start(config));

    eventually(
        "the metrics listener",
        Duration::from_secs(10),
        async || tokio::net::TcpStream::connect(metrics_addr).await.ok(),
    )
    .await;
    let seen_503 =
        http_get(metrics_addr, "admin", "/readyz").await.status == StatusCode::SERVICE_UNAVAILABLE;
    assert!(
        seen_503,
        "/readyz must answer 503 while the API server is unreachable"
    );
    api.set_down(false);
    let gatehouse = tokio::time::timeout(Duration::from_secs(30), starting)
        .await
        .expect("synced after recovery")
        .expect("join")
        .expect("start");
    assert_eq!(
        http_get(gatehouse.metrics_addr, "admin", "/readyz")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_rotated_secret_is_served_from_the_next_handshake() {
    let web = Backend::start("web").await;
    let pki = Pki::new();
    let (first, renewed) = (pki.leaf("tls.test"), pki.leaf("tls.test"));
    let api = FakeApi::start().await;
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            tls_secret("tls-cert", &first),
            ingress("tls", "tls.test", "/", "web", Some("tls-cert")),
        ]
        .concat(),
    );
    let gatehouse = start_on(&api, None).await;
    let (_, leaf) = https_connect(gatehouse.https_addr, "tls.test", &pki.ca).await;
    assert_eq!(leaf, first.der);

    api.put_manifests(&tls_secret("tls-cert", &renewed));
    eventually("the renewed certificate", APPLIED, async || {
        gatehouse
            .table
            .load()
            .certs
            .resolve("tls.test")
            .is_some_and(|c| c.key.cert[0] == renewed.der)
    })
    .await;
    let (mut conn, leaf) = https_connect(gatehouse.https_addr, "tls.test", &pki.ca).await;
    assert_eq!(leaf, renewed.der);
    assert_eq!(
        send(&mut conn, "tls.test", "/")
            .await
            .expect("request")
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn after_410_gone_the_source_lists_again_and_converges() {
    let (web, other) = (Backend::start("web").await, Backend::start("other").await);
    let api = FakeApi::start().await;
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            service("other", &[other.addr]),
            ingress("a", "a.test", "/", "web", None),
        ]
        .concat(),
    );
    let gatehouse = start_on(&api, None).await;
    assert_eq!(
        http_get(gatehouse.http_addr, "a.test", "/").await.backend(),
        "web"
    );

    // The watch cache moves on: every watch gets 410, and changes made
    // meanwhile are only visible to a fresh list.
    api.expire_watches();
    api.put_manifests(&ingress("b", "b.test", "/", "other", None));
    api.delete("networking.k8s.io/v1", "Ingress", "test", "a");
    api.compact();
    until_status(&gatehouse, "b.test", StatusCode::OK).await;
    until_status(&gatehouse, "a.test", StatusCode::NOT_FOUND).await;
    let lists = api
        .calls()
        .iter()
        .filter(|c| c.resource == "ingresses" && !c.watch && c.method == http::Method::GET)
        .count();
    assert!(lists >= 2, "Ingresses were listed {lists} times");
}

#[tokio::test]
async fn while_the_api_server_is_down_the_last_table_keeps_serving_then_converges() {
    let (web, other) = (Backend::start("web").await, Backend::start("other").await);
    let api = FakeApi::start().await;
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            service("other", &[other.addr]),
            ingress("a", "a.test", "/", "web", None),
        ]
        .concat(),
    );
    let gatehouse = start_on(&api, None).await;

    api.set_down(true);
    for _ in 0..20 {
        assert_eq!(
            http_get(gatehouse.http_addr, "a.test", "/").await.backend(),
            "web",
            "the last table keeps serving"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        http_get(gatehouse.metrics_addr, "admin", "/readyz")
            .await
            .status,
        StatusCode::OK
    );
    // Changes happen while we cannot see them...
    api.put_manifests(&ingress("a", "a.test", "/", "other", None));
    api.set_down(false);
    // ...and are picked up once the API server is back.
    eventually(
        "convergence after the outage",
        Duration::from_secs(30),
        async || http_get(gatehouse.http_addr, "a.test", "/").await.backend() == "other",
    )
    .await;
}

#[tokio::test]
async fn watch_namespace_limits_namespaced_kinds_to_one_namespace() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            ingress("mine", "mine.test", "/", "web", None),
        ]
        .concat(),
    );
    let elsewhere = ingress("theirs", "theirs.test", "/", "web", None)
        .replace("namespace: test", "namespace: elsewhere");
    api.put_manifests(&elsewhere);
    let gatehouse = start_on(&api, Some("test")).await;
    assert_eq!(
        http_get(gatehouse.http_addr, "mine.test", "/")
            .await
            .backend(),
        "web"
    );
    assert_eq!(
        status_of(gatehouse.http_addr, "theirs.test").await,
        StatusCode::NOT_FOUND
    );
    let calls = api.calls();
    assert!(
        calls
            .iter()
            .filter(|c| c.resource != "ingressclasses")
            .all(|c| c.namespace.as_deref() == Some("test")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn only_referenced_secrets_keep_their_data_and_a_newly_referenced_one_is_fetched() {
    let web = Backend::start("web").await;
    let pki = Pki::new();
    let leaf = pki.leaf("late.test");
    let api = FakeApi::start().await;
    // The Secret exists from the start, but no Ingress names it yet.
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            tls_secret("late-tls", &leaf),
            ingress("plain", "plain.test", "/", "web", None),
        ]
        .concat(),
    );
    let gatehouse = start_on(&api, None).await;
    let gets_before = api
        .calls()
        .iter()
        .filter(|c| c.resource == "secrets" && c.name.as_deref() == Some("late-tls"))
        .count();
    assert_eq!(gets_before, 0, "an unreferenced Secret is not read");

    api.put_manifests(&ingress("late", "late.test", "/", "web", Some("late-tls")));
    eventually("a certificate for late.test", APPLIED, async || {
        gatehouse.table.load().certs.resolve("late.test").is_some()
    })
    .await;
    let (mut conn, served) = https_connect(gatehouse.https_addr, "late.test", &pki.ca).await;
    assert_eq!(
        served, leaf.der,
        "the newly referenced Secret's certificate is served"
    );
    assert_eq!(
        send(&mut conn, "late.test", "/")
            .await
            .expect("request")
            .status,
        StatusCode::OK
    );
    let gets = api
        .calls()
        .iter()
        .filter(|c| {
            c.resource == "secrets"
                && c.name.as_deref() == Some("late-tls")
                && c.method == http::Method::GET
        })
        .count();
    assert_eq!(gets, 1, "its data was read once, on demand");
}

#[tokio::test]
async fn a_secret_named_by_auth_secret_keeps_its_data_and_protects_the_route() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    let basic = [
        ("nginx.ingress.kubernetes.io/auth-type", "basic"),
        ("nginx.ingress.kubernetes.io/auth-secret", "users"),
    ];
    // {SHA} of "sha1-secret", as htpasswd -nbs writes it.
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            opaque_secret(
                "users",
                &[("auth", "alice:{SHA}F/WZ9PxtuIpP2yyadrWdU4eK0og=")],
            ),
            ingress_annotated("admin", "admin.test", "/", "web", None, &basic),
        ]
        .concat(),
    );
    let gatehouse = start_on(&api, None).await;
    until_status(&gatehouse, "admin.test", StatusCode::UNAUTHORIZED).await;
    let mut conn = http_connect(gatehouse.http_addr).await;
    let req = http::Request::get("/")
        .header(http::header::HOST, "admin.test")
        .header(
            http::header::AUTHORIZATION,
            "Basic YWxpY2U6c2hhMS1zZWNyZXQ=",
        )
        .body(http_body_util::Full::default())
        .expect("request");
    let reply = send_request(&mut conn, req).await.expect("request");
    assert_eq!(reply.status, StatusCode::OK, "alice:sha1-secret signs in");
}

#[tokio::test]
async fn a_configmap_named_by_auth_proxy_set_headers_keeps_its_data() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    let external = [
        (
            "nginx.ingress.kubernetes.io/auth-url",
            "http://127.0.0.1:9/auth",
        ),
        (
            "nginx.ingress.kubernetes.io/auth-proxy-set-headers",
            "test/auth-headers",
        ),
    ];
    let config_map = "---
apiVersion: v1
kind: ConfigMap
metadata: {name: auth-headers, namespace: test}
data: {X-Tenant: blue}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated, namespace: test}
data: {big: value}
";
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            config_map.to_owned(),
            ingress_annotated("sso", "sso.test", "/", "web", None, &external),
        ]
        .concat(),
    );
    let gatehouse = start_on(&api, None).await;
    let table = gatehouse.table.load();
    let route = table
        .routes()
        .into_iter()
        .find(|r| r.host.to_string() == "sso.test")
        .expect("route");
    let external = route.access.external.as_ref().expect("external auth");
    let headers: Vec<&str> = external.proxy_set_headers().map(|h| h.as_str()).collect();
    assert_eq!(headers, ["x-tenant"]);
    assert!(route.access.denied.is_none(), "{:?}", route.access.denied);
}

#[tokio::test]
async fn secrets_are_listed_and_watched_without_the_types_that_are_never_certificates() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            ingress("plain", "plain.test", "/", "web", None),
        ]
        .concat(),
    );
    let _gatehouse = start_on(&api, None).await;
    let calls = api.calls();
    let secret_calls: Vec<_> = calls
        .iter()
        .filter(|c| c.resource == "secrets" && c.name.is_none())
        .collect();
    assert!(!secret_calls.is_empty());
    for call in secret_calls {
        let selector = call.field_selector.as_deref().unwrap_or_default();
        for kind in ["helm.sh/release.v1", "kubernetes.io/service-account-token"] {
            assert!(selector.contains(&format!("type!={kind}")), "{call:?}");
        }
    }
}

/// `ingress(...)` in namespace `ns`, with its Service there too.
fn site_in(ns: &str, host: &str, web: &Backend) -> String {
    [
        service("web", &[web.addr]),
        ingress(ns, host, "/", "web", None),
    ]
    .concat()
    .replace("namespace: test", &format!("namespace: {ns}"))
}

#[tokio::test]
async fn watch_namespace_takes_a_list_and_watches_each_namespace_alone() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.put_manifests(INGRESS_CLASS);
    for ns in ["shop", "blog", "other"] {
        api.put_manifests(&site_in(ns, &format!("{ns}.test"), &web));
    }
    let gatehouse = start_watching(&api, |s| {
        s.namespaces = vec!["shop".into(), "blog".into()];
    })
    .await;
    let addr = gatehouse.http_addr;
    assert_eq!(status_of(addr, "shop.test").await, StatusCode::OK);
    assert_eq!(status_of(addr, "blog.test").await, StatusCode::OK);
    assert_eq!(status_of(addr, "other.test").await, StatusCode::NOT_FOUND);
    let namespaced = api
        .calls()
        .into_iter()
        .filter(|c| c.resource != "ingressclasses");
    for call in namespaced {
        let ns = call.namespace.as_deref();
        assert!(matches!(ns, Some("shop" | "blog")), "{call:?}");
    }
}

#[tokio::test]
async fn watch_namespace_selector_serves_labelled_namespaces_and_follows_relabelling() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.put_manifests(INGRESS_CLASS);
    api.put(namespace("shop", &[("gatehouse", "on")]));
    api.put(namespace("blog", &[]));
    for ns in ["shop", "blog"] {
        api.put_manifests(&site_in(ns, &format!("{ns}.test"), &web));
    }
    let gatehouse = start_watching(&api, |s| {
        s.namespace_selector = Some("gatehouse=on".into());
    })
    .await;
    let addr = gatehouse.http_addr;
    assert_eq!(status_of(addr, "shop.test").await, StatusCode::OK);
    assert_eq!(status_of(addr, "blog.test").await, StatusCode::NOT_FOUND);
    // Labelled later: served at once, no restart.
    api.put(namespace("blog", &[("gatehouse", "on")]));
    until_status(&gatehouse, "blog.test", StatusCode::OK).await;
    // Unlabelled: no longer served.
    api.put(namespace("shop", &[("gatehouse", "off")]));
    until_status(&gatehouse, "shop.test", StatusCode::NOT_FOUND).await;
    let namespaces = api
        .calls()
        .into_iter()
        .find(|c| c.resource == "namespaces")
        .expect("namespaces watched");
    assert_eq!(
        namespaces.field_selector.as_deref(),
        Some("labels.gatehouse=on")
    );
}

#[tokio::test]
async fn the_controller_configmap_is_read_from_the_api_and_its_changes_apply() {
    let web = Backend::start("web").await;
    let api = FakeApi::start().await;
    api.put_manifests(&[INGRESS_CLASS.to_owned(), site_in("shop", "shop.test", &web)].concat());
    let controller = |data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: gatehouse, namespace: ingress}}\ndata: {data}\n")
    };
    api.put_manifests(&controller("{block-user-agents: badbot}"));
    // The ConfigMap lives outside the one namespace watched.
    let gatehouse = start_watching(&api, |s| {
        s.namespaces = vec!["shop".into()];
        s.config_map = Some(gatehouse::cluster::ObjectKey::new("ingress", "gatehouse"));
    })
    .await;
    let addr = gatehouse.http_addr;
    let as_bot = || async move {
        let req = http::Request::get("/")
            .header("host", "shop.test")
            .header("user-agent", "badbot")
            .body(http_body_util::Full::default())
            .expect("request");
        send_request(&mut http_connect(addr).await, req)
            .await
            .expect("reply")
            .status
    };
    assert_eq!(as_bot().await, StatusCode::FORBIDDEN);
    api.put_manifests(&controller("{server-tokens: \"true\"}"));
    eventually("the change to apply", APPLIED, async || {
        let status = as_bot().await;
        if status == StatusCode::OK {
            Ok(())
        } else {
            Err(status)
        }
    })
    .await;
    let by_name = api
        .calls()
        .into_iter()
        .find(|c| c.resource == "configmaps" && c.namespace.as_deref() == Some("ingress"))
        .expect("the controller ConfigMap watched");
    assert_eq!(
        by_name.field_selector.as_deref(),
        Some("metadata.name=gatehouse")
    );
}

/// A GatewayClass of ours, a Gateway listening on port 80, and an
/// HTTPRoute for `gw.test` to the Service `gw`.
fn gateway_site(gw: &Backend) -> String {
    let route = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gw, namespace: test}
spec:
  parentRefs: [{name: edge}]
  hostnames: [gw.test]
  rules: [{backendRefs: [{name: gw, port: 80}]}]
"#;
    [service("gw", &[gw.addr]).as_str(), GATEWAY_EDGE, route].concat()
}

/// The Gateway API's CRDs installed while Gatehouse runs: its watches
/// start and an HTTPRoute is served, without a restart; removed: the
/// watches stop and its routes go; installed again: served again. An
/// Ingress answers on one kept-alive connection throughout.
#[tokio::test]
async fn gateway_api_crds_installed_and_removed_while_running_start_and_stop_its_routes() {
    let (web, gw) = (Backend::start("web").await, Backend::start("gw").await);
    let api = FakeApi::start().await;
    api.put_manifests(
        &[
            INGRESS_CLASS.to_owned(),
            service("web", &[web.addr]),
            ingress("shop", "shop.test", "/", "web", None),
        ]
        .concat(),
    );
    let gatehouse = start_on(&api, None).await;
    assert_eq!(
        http_get(gatehouse.http_addr, "gw.test", "/").await.status,
        StatusCode::NOT_FOUND
    );

    // The Ingress, asked again and again on one connection meanwhile.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut sender = http_connect(gatehouse.http_addr).await;
    let asking = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = send(&mut sender, "shop.test", "/").await;
                answers.push(
                    reply
                        .map(|r| (r.status, r.backend()))
                        .map_err(|e| e.to_string()),
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answers
        }
    });

    api.install(&GATEWAY_API);
    api.put_manifests(&gateway_site(&gw));
    assert_eq!(
        until_status(&gatehouse, "gw.test", StatusCode::OK)
            .await
            .backend(),
        "gw"
    );

    // No watch sees the objects go: the removal is noticed from the CRDs
    // and discovery, and the objects dropped with the watches.
    api.remove(&GATEWAY_API);
    until_status(&gatehouse, "gw.test", StatusCode::NOT_FOUND).await;

    api.install(&GATEWAY_API);
    api.put_manifests(&gateway_site(&gw));
    assert_eq!(
        until_status(&gatehouse, "gw.test", StatusCode::OK)
            .await
            .backend(),
        "gw"
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = asking.await.expect("join");
    assert!(!answers.is_empty());
    let wrong: Vec<_> = answers
        .iter()
        .filter(|a| a.as_ref().ok() != Some(&(StatusCode::OK, "web".to_owned())))
        .collect();
    assert!(wrong.is_empty(), "the Ingress did not answer: {wrong:?}");
}
