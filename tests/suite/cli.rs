//! The real `gatehouse` binary: its command-line contract, and the bundled
//! demo served end to end.

use crate::support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::StatusCode;
use support::*;

/// Every listener on a free loopback port.
const LOOPBACK_LISTENERS: [&str; 6] = [
    "--http-addr",
    "127.0.0.1:0",
    "--https-addr",
    "127.0.0.1:0",
    "--metrics-addr",
    "127.0.0.1:0",
];

fn gatehouse() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
}

fn usage_error(args: &[&str]) -> String {
    let out = gatehouse().args(args).output().expect("run gatehouse");
    assert_eq!(out.status.code(), Some(2), "{args:?} must exit 2");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let stderr = usage_error(&["--manifests", ".", "--no-such-flag"]);
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[test]
fn bad_address_is_a_usage_error() {
    let stderr = usage_error(&["--manifests", ".", "--https-addr", "localhost"]);
    assert!(stderr.contains("--https-addr"), "{stderr}");
}

#[test]
fn manifests_and_a_kubeconfig_are_exclusive() {
    let stderr = usage_error(&["--manifests", ".", "--kubeconfig", "/tmp/kubeconfig"]);
    assert!(stderr.contains("--kubeconfig"), "{stderr}");
}

#[test]
fn the_webhook_certificate_files_come_both_or_neither_and_only_with_the_webhook() {
    let stderr = usage_error(&[
        "--manifests",
        ".",
        "--validating-webhook",
        "127.0.0.1:0",
        "--validating-webhook-certificate",
        "c.pem",
    ]);
    assert!(stderr.contains("--validating-webhook-key"), "{stderr}");
    let stderr = usage_error(&["--manifests", ".", "--validating-webhook-key", "k.pem"]);
    assert!(stderr.contains("--validating-webhook"), "{stderr}");
    let stderr = usage_error(&[
        "--manifests",
        ".",
        "--validating-webhook-secret",
        "gatehouse/webhook",
    ]);
    assert!(stderr.contains("--validating-webhook"), "{stderr}");
}

#[test]
fn the_managed_webhook_certificate_does_not_mix_with_certificate_files() {
    let stderr = usage_error(&[
        "--manifests",
        ".",
        "--validating-webhook",
        "127.0.0.1:0",
        "--validating-webhook-certificate",
        "c.pem",
        "--validating-webhook-key",
        "k.pem",
        "--validating-webhook-service",
        "gatehouse/webhook",
    ]);
    assert!(stderr.contains("--validating-webhook-service"), "{stderr}");
}

/// Without certificate files the webhook's certificate is managed: the
/// Secret and Service named by the flags, else `gatehouse-admission` in
/// the Pod's namespace.
#[test]
fn without_certificate_files_the_webhook_certificate_is_managed() {
    use gatehouse::admission::{CertificateSource, ManagedCertificate};
    use gatehouse::cluster::ObjectKey;
    let parse = |extra: &[&str]| {
        let args = [
            "gatehouse",
            "--manifests",
            ".",
            "--validating-webhook",
            "127.0.0.1:0",
        ];
        let cli = <gatehouse::cli::Cli as clap::Parser>::try_parse_from(args.iter().chain(extra))
            .expect("parses");
        let source = gatehouse::app::SourceConfig::Manifests(".".into());
        cli.config(source).webhook.expect("webhook").certificate
    };
    let namespace = gatehouse::source::controller_namespace();
    let ours = ObjectKey::new(&namespace, "gatehouse-admission");
    assert_eq!(
        parse(&[]),
        CertificateSource::Managed(ManagedCertificate {
            secret: ours.clone(),
            service: ours,
            configuration: "gatehouse-admission".into(),
        })
    );
    let named = [
        "--validating-webhook-secret=ingress/webhook-ca",
        "--validating-webhook-service=ingress/webhook",
        "--validating-webhook-configuration=webhooks",
    ];
    assert_eq!(
        parse(&named),
        CertificateSource::Managed(ManagedCertificate {
            secret: ObjectKey::new("ingress", "webhook-ca"),
            service: ObjectKey::new("ingress", "webhook"),
            configuration: "webhooks".into(),
        })
    );
    let files = [
        "--validating-webhook-certificate=c.pem",
        "--validating-webhook-key=k.pem",
    ];
    assert!(matches!(parse(&files), CertificateSource::Files { .. }));
}

#[test]
fn without_manifests_or_cluster_credentials_it_says_so_and_fails() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = gatehouse()
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", home.path().join("missing"))
        .env("HOME", home.path())
        .args(LOOPBACK_LISTENERS)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Kubernetes"), "{stderr}");
}

#[test]
fn help_describes_every_flag() {
    let out = gatehouse().arg("--help").output().expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--manifests",
        "--http-addr",
        "--https-addr",
        "--metrics-addr",
        "--ingress-class",
        "--controller-class",
        "--watch-ingress-without-class",
        "--log-format",
        "--access-log",
        "--access-log-format",
        "--annotations-prefix",
        "--default-ssl-certificate",
        "--default-backend-service",
        "--unsupported-protection",
        "--allow-cross-namespace-secrets",
        "--allow-snippet-annotations",
        "--hsts",
        "--hsts-max-age",
        "--hsts-include-subdomains",
        "--hsts-preload",
        "--validating-webhook",
        "--validating-webhook-certificate",
        "--validating-webhook-key",
        "--validating-webhook-secret",
        "--validating-webhook-service",
        "--validating-webhook-configuration",
        "--admission-reject-conflicts",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn a_missing_manifest_directory_is_reported_and_fails() {
    let out = gatehouse()
        .args(["--manifests", "/no/such/dir"])
        .args(LOOPBACK_LISTENERS)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read manifest directory /no/such/dir"),
        "{stderr}"
    );
}

/// Kills the child on drop so a failed assertion leaves no process behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The addresses a started binary logged.
struct Addrs {
    http: SocketAddr,
    https: SocketAddr,
    metrics: SocketAddr,
}

/// Starts the binary on `dir` (plus `extra` flags) and returns it with the
/// addresses from its "serving" log line.
fn start_binary(dir: &Path, extra: &[&str]) -> (Running, Addrs) {
    let mut child = gatehouse()
        .args(["--manifests"])
        .arg(dir)
        .args(LOOPBACK_LISTENERS)
        .args(["--access-log", "off"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gatehouse");
    let stderr = child.stderr.take().expect("stderr");
    let running = Running(child);
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.expect("log line");
        if line.contains("gatehouse serving") {
            let addr = |key: &str| -> SocketAddr {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .unwrap_or_else(|| panic!("{key} in {line}"))
                    .parse()
                    .expect("address")
            };
            let addrs = Addrs {
                http: addr("http="),
                https: addr("https="),
                metrics: addr("metrics="),
            };
            // Keep draining the log so that the child never blocks on it.
            std::thread::spawn(move || for _ in lines {});
            return (running, addrs);
        }
    }
    panic!("gatehouse exited before serving");
}

/// A demo folder's manifests in a new directory, its EndpointSlice (which
/// names 127.0.0.1:9080) pointed at `backend`; and the folder itself.
fn demo_copy(folder: &str, backend: &Backend) -> (std::path::PathBuf, tempfile::TempDir) {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(&demo).expect("demo dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("read");
            let text = text.replace("port: 9080", &format!("port: {}", backend.addr.port()));
            std::fs::write(dir.path().join(path.file_name().expect("name")), text).expect("write");
        }
    }
    (demo, dir)
}

#[tokio::test]
async fn the_binary_serves_the_bundled_demo_over_https() {
    let backend = Backend::start("demo").await;
    let (demo, dir) = demo_copy("examples/demo", &backend);
    let (_running, addrs) = start_binary(dir.path(), &[]);
    let https = addrs.https;

    let ca_pem = std::fs::read(demo.join("ca.crt")).expect("demo CA");
    let ca = rustls::pki_types::pem::PemObject::from_pem_slice(&ca_pem).expect("CA PEM");
    let (mut conn, _) = https_connect(https, "demo.gatehouse.test", &ca).await;
    let reply = send(&mut conn, "demo.gatehouse.test", "/hello")
        .await
        .expect("request");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.seen()["uri"], "/hello");
}

/// The Gateway API demo, as its `run.sh` serves it: HTTP is redirected
/// to HTTPS, `/api` is rewritten, and the certificate is the listener's.
#[tokio::test]
async fn the_binary_serves_the_gateway_api_demo() {
    let backend = Backend::start("demo").await;
    let (demo, dir) = demo_copy("examples/gateway-demo", &backend);
    let (_running, addrs) = start_binary(dir.path(), &[]);

    let ca_pem = std::fs::read(demo.join("ca.crt")).expect("demo CA");
    let ca = rustls::pki_types::pem::PemObject::from_pem_slice(&ca_pem).expect("CA PEM");
    let (mut conn, _) = https_connect(addrs.https, "demo.gatehouse.test", &ca).await;
    let reply = send(&mut conn, "demo.gatehouse.test", "/api/hello")
        .await
        .expect("request");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.seen()["uri"], "/hello");
    assert_eq!(reply.seen()["headers"]["x-gateway-route"], "demo/api");
    let reply = send(&mut conn, "demo.gatehouse.test", "/hello")
        .await
        .expect("request");
    assert_eq!(reply.seen()["uri"], "/hello");

    let reply = http_get(addrs.http, "demo.gatehouse.test", "/hello?x=1").await;
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        reply.headers[http::header::LOCATION],
        "https://demo.gatehouse.test:8443/hello?x=1"
    );
    let (code, out) = routes(&demo);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("HTTPRoute demo/demo rule 0"), "{out}");
}

fn routes(dir: &Path) -> (Option<i32>, String) {
    let out = gatehouse()
        .arg("routes")
        .arg("--manifests")
        .arg(dir)
        .output()
        .expect("run routes");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn routes_prints_the_table_with_certificate_expiry_and_succeeds_on_clean_manifests() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    let (code, out) = routes(&demo);
    assert_eq!(code, Some(0), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("demo.gatehouse.test"))
        .expect("route row");
    for cell in [
        "/",
        "Prefix",
        "demo/demo-backend:http",
        "127.0.0.1:9080",
        "demo/demo",
        "ssl-redirect",
    ] {
        assert!(row.contains(cell), "{cell:?} missing in {row:?}");
    }
    let tls = out
        .lines()
        .find(|l| l.contains("demo/demo-tls"))
        .expect("TLS row");
    assert!(tls.contains("2126"), "expiry year missing in {tls:?}");
    assert!(!out.contains("WARNINGS"), "{out}");
}

#[test]
fn routes_fails_on_broken_manifests_and_warnings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = ingress_annotated(
        "bad",
        "bad.test",
        "/",
        "missing",
        None,
        &[("nginx.ingress.kubernetes.io/server-snippet", "return 200;")],
    );
    std::fs::write(
        dir.path().join("a.yaml"),
        [INGRESS_CLASS, bad.as_str()].concat(),
    )
    .expect("write");
    std::fs::write(dir.path().join("b.yaml"), "kind: [").expect("write");
    let (code, out) = routes(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("b.yaml:"), "{out}");
    assert!(out.contains("Service test/missing not found"), "{out}");
    assert!(out.contains("server-snippet refused"), "{out}");
}

#[test]
fn routes_shows_canary_rules_affinity_and_limits_per_route() {
    let dir = tempfile::tempdir().expect("tempdir");
    let canary = ingress_annotated(
        "shop-canary",
        "shop.test",
        "/",
        "web",
        None,
        &[
            ("nginx.ingress.kubernetes.io/canary", "true"),
            ("nginx.ingress.kubernetes.io/canary-weight", "20"),
            ("nginx.ingress.kubernetes.io/canary-by-header", "X-Canary"),
        ],
    );
    let main = ingress_annotated(
        "shop",
        "shop.test",
        "/",
        "web",
        None,
        &[
            ("nginx.ingress.kubernetes.io/affinity", "cookie"),
            ("nginx.ingress.kubernetes.io/limit-rps", "10"),
        ],
    );
    let manifests = [
        INGRESS_CLASS.to_owned(),
        service("web", &["127.0.0.1:9".parse().expect("addr")]),
        main,
        canary,
    ]
    .concat();
    std::fs::write(dir.path().join("all.yaml"), manifests).expect("write");
    let (_, out) = routes(dir.path());
    let row = out
        .lines()
        .find(|l| l.starts_with("shop.test"))
        .unwrap_or_else(|| panic!("{out}"));
    for cell in [
        "canary=test/shop-canary (weight 20/100, header x-canary)",
        "affinity=cookie INGRESSCOOKIE (balanced)",
        "limits=10 rps burst ×5",
    ] {
        assert!(row.contains(cell), "{cell:?} missing in {row:?}");
    }
}

#[test]
fn routes_shows_what_protects_each_route_and_warn_mode_says_so_loudly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = [
        INGRESS_CLASS.to_owned(),
        service("web", &["127.0.0.1:9".parse().expect("addr")]),
        opaque_secret(
            "users",
            &[("auth", "alice:{SHA}F/WZ9PxtuIpP2yyadrWdU4eK0og=")],
        ),
        ingress("open", "open.test", "/", "web", None),
        ingress_annotated(
            "basic",
            "basic.test",
            "/",
            "web",
            None,
            &[
                ("nginx.ingress.kubernetes.io/auth-type", "basic"),
                ("nginx.ingress.kubernetes.io/auth-secret", "users"),
            ],
        ),
        ingress_annotated(
            "waf",
            "waf.test",
            "/",
            "web",
            None,
            &[("nginx.ingress.kubernetes.io/enable-modsecurity", "true")],
        ),
    ]
    .concat();
    std::fs::write(dir.path().join("all.yaml"), manifests).expect("write");
    let (code, out) = routes(dir.path());
    assert_eq!(code, Some(1), "a closed route is a warning: {out}");
    assert!(
        out.lines().next().is_some_and(|h| h.contains("ACCESS")),
        "{out}"
    );
    let row = |host: &str| {
        out.lines()
            .find(|l| l.starts_with(host))
            .unwrap_or_else(|| panic!("no row for {host}: {out}"))
            .to_owned()
    };
    assert!(row("open.test").contains("public"));
    assert!(row("basic.test").contains("basic"));
    assert!(row("waf.test")
        .contains("denied: nginx.ingress.kubernetes.io/enable-modsecurity: is not implemented"));
    assert!(
        out.contains("every route of this Ingress answers 503"),
        "{out}"
    );

    let warned = gatehouse()
        .args(["routes", "--unsupported-protection", "warn", "--manifests"])
        .arg(dir.path())
        .output()
        .expect("run routes");
    let stderr = String::from_utf8_lossy(&warned.stderr);
    assert!(
        stderr.contains("WARN") && stderr.contains("WITHOUT that protection"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&warned.stdout);
    assert!(
        stdout.contains("served WITHOUT this protection"),
        "{stdout}"
    );
}

#[tokio::test]
async fn sigterm_drains_gracefully_and_exits_zero() {
    let backend = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = [
        INGRESS_CLASS.to_owned(),
        service("web", &[backend.addr]),
        ingress("web", "web.test", "/", "web", None),
    ];
    std::fs::write(dir.path().join("all.yaml"), manifests.concat()).expect("write");
    let (mut running, addrs) = start_binary(
        dir.path(),
        &["--shutdown-grace", "1s", "--drain-timeout", "10s"],
    );
    assert_eq!(
        http_get(addrs.metrics, "admin", "/readyz").await.status,
        StatusCode::OK
    );

    let slow = tokio::spawn(async move { http_get(addrs.http, "web.test", "/sleep/2500").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = running.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());

    // Not ready at once, while still accepting during the grace period.
    let (within, every) = (Duration::from_millis(500), Duration::from_millis(5));
    poll::eventually_every("/readyz to turn 503", within, every, async || {
        http_get(addrs.metrics, "admin", "/readyz").await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert_eq!(
        http_get(addrs.http, "web.test", "/").await.status,
        StatusCode::OK,
        "accepting during the grace period"
    );

    // After the grace period, new connections are refused.
    eventually(
        "new connections to be refused after the grace period",
        Duration::from_secs(5),
        async || tokio::net::TcpStream::connect(addrs.http).await.is_err(),
    )
    .await;

    let reply = slow.await.expect("join");
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the in-flight request completed"
    );
    let status = eventually("the process to exit", Duration::from_secs(10), async || {
        running.0.try_wait().expect("wait")
    })
    .await;
    assert_eq!(status.code(), Some(0), "exit status");
}

fn routes_with_configmap(file: &Path) -> (Option<i32>, String) {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo");
    let out = gatehouse()
        .arg("routes")
        .arg("--manifests")
        .arg(demo)
        .arg("--configmap-file")
        .arg(file)
        .output()
        .expect("run routes");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn routes_lints_a_controller_configmap_and_names_each_key_it_cannot_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("configmap.yaml");
    let clean = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: gatehouse, namespace: ingress}\ndata:\n  proxy-body-size: 8m\n  use-forwarded-headers: \"true\"\n  ssl-protocols: TLSv1.3\n";
    std::fs::write(&file, clean).expect("write");
    let (code, out) = routes_with_configmap(&file);
    assert_eq!(code, Some(0), "{out}");
    let broken = format!("{clean}  no-such-key: \"1\"\n  keep-alive: forever\n");
    std::fs::write(&file, broken).expect("write");
    let (code, out) = routes_with_configmap(&file);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("ConfigMap ingress/gatehouse"), "{out}");
    assert!(
        out.contains("no-such-key: is not an ingress-nginx ConfigMap key"),
        "{out}"
    );
    assert!(out.contains("keep-alive: \"forever\""), "{out}");
    // Not a ConfigMap at all: a clear error, status 1.
    std::fs::write(&file, "kind: [").expect("write");
    let (code, out) = routes_with_configmap(&file);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("configmap.yaml"), "{out}");
}
