//! Translate, table-driven: manifests in `tests/fixtures/translate/NAME.yaml`,
//! expected decisions beside them in `NAME.expect.yaml`.
//!
//! Each expectation is a request (host, path) and its decision (backend and
//! endpoints, or status), a server name and the Secret whose certificate it
//! gets (`default` for the default certificate), and the exact set of
//! warnings (by Ingress and kind, with a fragment of the message).

use std::path::{Path, PathBuf};

use gatehouse::cluster::{ClusterState, ObjectKey};
use gatehouse::policy::proxy_settings::ProxySettings as Policy;
use gatehouse::policy::{AccessOptions, ProtectionMode};
use gatehouse::source::manifest;
use gatehouse::table::{Action, Decision, Forward, RequestFacts, Upstream};
use gatehouse::translate::{translate, TranslateOptions};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    options: Options,
    #[serde(default)]
    requests: Vec<RequestCase>,
    #[serde(default)]
    certificates: Vec<CertCase>,
    warnings: Vec<WarningCase>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default)]
    watch_ingress_without_class: bool,
    annotations_prefix: Option<String>,
    default_backend_service: Option<String>,
    default_ssl_certificate: Option<String>,
    /// `--unsupported-protection` (`deny` or `warn`).
    unsupported_protection: Option<String>,
}

/// A request and the decision expected for it: a status of the proxy's own,
/// a redirect (status + location), or a backend (with endpoints and the
/// upstream path when they are given).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestCase {
    host: String,
    path: String,
    query: Option<String>,
    /// Over HTTPS (default: plain HTTP).
    #[serde(default)]
    tls: bool,
    /// The client's address (default 192.0.2.10).
    client: Option<std::net::IpAddr>,
    status: Option<u16>,
    location: Option<String>,
    backend: Option<String>,
    endpoints: Option<Vec<String>>,
    /// The path and query sent upstream (rewrite-target).
    upstream: Option<String>,
    /// The route's policy, where given: backend-protocol, body limit in
    /// bytes or `unlimited`, [connect, read, send] timeouts in seconds,
    /// upstream-vhost, x-forwarded-prefix, load-balance.
    protocol: Option<String>,
    body_limit: Option<String>,
    timeouts: Option<[u64; 3]>,
    upstream_vhost: Option<String>,
    x_forwarded_prefix: Option<String>,
    load_balance: Option<String>,
    /// The route's access column (`public`, `basic`, `allowlist|basic`…).
    access: Option<String>,
    /// Whether credentials must still be checked.
    authenticate: Option<bool>,
    /// Whether HTTPS responses carry Strict-Transport-Security.
    hsts: Option<bool>,
    /// The route's canary: `ns/svc:port <rule>`, or `-` for none.
    canary: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertCase {
    sni: String,
    secret: String,
    /// How many certificates are served (leaf + intermediates).
    chain: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WarningCase {
    ingress: String,
    kind: String,
    contains: String,
}

fn policy_mismatches(what: &str, policy: &Policy, case: &RequestCase) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, want: &Option<String>, got: String| {
        if want.as_ref().is_some_and(|w| *w != got) {
            out.push(format!(
                "{what}: {name} {got}, want {}",
                want.as_deref().unwrap_or_default()
            ));
        }
    };
    let text = |v: &Option<http::HeaderValue>| {
        v.as_ref()
            .map_or("-".to_owned(), |v| v.to_str().unwrap_or("?").to_owned())
    };
    check(
        "protocol",
        &case.protocol,
        format!("{:?}", policy.protocol).to_uppercase(),
    );
    check(
        "body_limit",
        &case.body_limit,
        policy
            .body_limit
            .map_or("unlimited".to_owned(), |l| l.to_string()),
    );
    check(
        "upstream_vhost",
        &case.upstream_vhost,
        text(&policy.upstream_vhost),
    );
    check(
        "x_forwarded_prefix",
        &case.x_forwarded_prefix,
        text(&policy.x_forwarded_prefix),
    );
    let lb = serde_json::to_value(policy.load_balance).expect("json");
    check(
        "load_balance",
        &case.load_balance,
        lb.as_str().unwrap_or_default().to_owned(),
    );
    let t = policy.timeouts;
    let got = [t.connect.as_secs(), t.read.as_secs(), t.send.as_secs()];
    if case.timeouts.is_some_and(|want| want != got) {
        out.push(format!(
            "{what}: timeouts {got:?}, want {:?}",
            case.timeouts
        ));
    }
    out
}

fn access_mismatches(what: &str, forward: &Forward, case: &RequestCase) -> Vec<String> {
    let mut out = Vec::new();
    let access = forward.route.access.describe();
    if case.access.as_ref().is_some_and(|want| *want != access) {
        out.push(format!("{what}: access {access}, want {:?}", case.access));
    }
    if case
        .authenticate
        .is_some_and(|want| want != forward.authenticate)
    {
        out.push(format!(
            "{what}: authenticate {}, want {:?}",
            forward.authenticate, case.authenticate
        ));
    }
    let canary = match &forward.route.canary {
        None => "-".to_owned(),
        Some(c) => match &c.action {
            Action::Forward(b) => format!("{}:{} {}", b.service, b.port, c.rule.describe()),
            Action::Unavailable => format!("(unavailable) {}", c.rule.describe()),
        },
    };
    if case.canary.as_ref().is_some_and(|want| *want != canary) {
        out.push(format!("{what}: canary {canary}, want {:?}", case.canary));
    }
    let hsts = forward.route.hsts.is_some();
    if case.hsts.is_some_and(|want| want != hsts) {
        out.push(format!("{what}: hsts {hsts}, want {:?}", case.hsts));
    }
    out
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/translate")
}

fn check(name: &str) {
    let dir = fixture_dir();
    let text = std::fs::read_to_string(dir.join(format!("{name}.yaml"))).expect("fixture");
    let objects = manifest::parse(&text).unwrap_or_else(|e| panic!("{name}.yaml: {e}"));
    let expect_text =
        std::fs::read_to_string(dir.join(format!("{name}.expect.yaml"))).expect("expectations");
    let expect: Expect =
        serde_yaml_ng::from_str(&expect_text).unwrap_or_else(|e| panic!("{name}.expect.yaml: {e}"));

    let key = |s: &Option<String>| {
        s.as_deref().map(|v| {
            let (ns, name) = v.split_once('/').expect("NS/NAME");
            ObjectKey::new(ns, name)
        })
    };
    let defaults = TranslateOptions::default();
    let options = TranslateOptions {
        watch_ingress_without_class: expect.options.watch_ingress_without_class,
        annotations_prefix: expect
            .options
            .annotations_prefix
            .clone()
            .unwrap_or(defaults.annotations_prefix),
        default_backend_service: key(&expect.options.default_backend_service),
        default_ssl_certificate: key(&expect.options.default_ssl_certificate),
        access: AccessOptions {
            unsupported_protection: match expect.options.unsupported_protection.as_deref() {
                None | Some("deny") => ProtectionMode::Deny,
                Some("warn") => ProtectionMode::Warn,
                Some(other) => panic!("{name}: unsupported_protection {other:?}"),
            },
            ..AccessOptions::default()
        },
        ..TranslateOptions::default()
    };
    let translation = translate(&ClusterState::from_objects(objects), &options);
    let table = &translation.table;
    let mut failures = Vec::new();

    for case in &expect.requests {
        let what = format!(
            "{} {} {}{}",
            if case.tls { "https" } else { "http" },
            case.host,
            case.path,
            case.query
                .as_deref()
                .map(|q| format!("?{q}"))
                .unwrap_or_default()
        );
        let facts = RequestFacts {
            host: &case.host,
            method: &http::Method::GET,
            headers: &http::HeaderMap::new(),
            path: &case.path,
            query: case.query.as_deref(),
            tls: case.tls,
            port: 80,
            client: case.client.unwrap_or("192.0.2.10".parse().expect("ip")),
            peer: None,
        };
        match table.decide(&facts) {
            Decision::Respond(status)
                if case.status == Some(status.as_u16())
                    && case.backend.is_none()
                    && case.location.is_none() => {}
            Decision::Redirect { location, status }
                if case.status == Some(status.as_u16())
                    && case.location.as_deref() == location.to_str().ok() => {}
            Decision::Forward(forward) if case.status.is_none() && case.location.is_none() => {
                let backend = &forward.backend;
                let got = format!("{}:{}", backend.service, backend.port);
                if case.backend.as_deref() != Some(got.as_str()) {
                    failures.push(format!("{what}: backend {got}, want {:?}", case.backend));
                }
                if let Some(want) = &case.endpoints {
                    let endpoints: Vec<String> = match &*backend.upstream() {
                        Upstream::Endpoints(set) => {
                            set.addrs().iter().map(|a| a.to_string()).collect()
                        }
                        Upstream::External(authority) => vec![authority.to_string()],
                    };
                    if &endpoints != want {
                        failures.push(format!("{what}: endpoints {endpoints:?}, want {want:?}"));
                    }
                }
                if case.upstream.is_some() && forward.rewritten != case.upstream {
                    failures.push(format!(
                        "{what}: upstream path {:?}, want {:?}",
                        forward.rewritten, case.upstream
                    ));
                }
                failures.extend(policy_mismatches(&what, &forward.route.policy, case));
                failures.extend(access_mismatches(&what, &forward, case));
            }
            got => failures.push(format!(
                "{what}: got {got:?}, want status {:?} location {:?} backend {:?}",
                case.status, case.location, case.backend
            )),
        }
    }

    for case in &expect.certificates {
        let entry = table.certs.resolve_or_default(Some(&case.sni));
        let got = entry
            .map(|entry| entry.secret.to_string())
            .unwrap_or_else(|| "default".to_owned());
        if got != case.secret {
            failures.push(format!(
                "SNI {}: certificate of {got}, want {}",
                case.sni, case.secret
            ));
        }
        let served = entry.map_or(0, |e| e.key.cert.len());
        if case.chain.is_some_and(|want| want != served) {
            failures.push(format!(
                "SNI {}: {served} certificates served, want {:?}",
                case.sni, case.chain
            ));
        }
    }

    let mut unmatched: Vec<_> = translation.warnings.iter().collect();
    for case in &expect.warnings {
        let found = unmatched.iter().position(|w| {
            w.ingress.to_string() == case.ingress
                && serde_json::to_value(w.kind).ok() == Some(case.kind.clone().into())
                && w.message.contains(&case.contains)
        });
        match found {
            Some(i) => {
                unmatched.remove(i);
            }
            None => failures.push(format!(
                "missing warning {} {} {:?}",
                case.ingress, case.kind, case.contains
            )),
        }
    }
    for extra in unmatched {
        failures.push(format!("unexpected warning: {extra} ({:?})", extra.kind));
    }

    assert!(failures.is_empty(), "{name}:\n  {}", failures.join("\n  "));
}

#[test]
fn hosts_exact_then_one_label_wildcard_then_any() {
    check("hosts");
}

#[test]
fn paths_exact_prefix_and_longest_match() {
    check("paths");
}

#[test]
fn backends_named_and_numbered_ports_ready_endpoints_and_missing_services() {
    check("backends");
}

#[test]
fn tls_secrets_wildcards_and_fallback_to_the_default_certificate() {
    check("tls");
}

#[test]
fn only_ingresses_of_our_class_are_visible() {
    check("classes");
}

#[test]
fn default_ingress_class_takes_ingresses_without_class() {
    check("default_class");
}

#[test]
fn watch_ingress_without_class_takes_ingresses_without_class() {
    check("without_class_flag");
}

#[test]
fn older_ingress_keeps_a_contested_path() {
    check("conflicts");
}

#[test]
fn tls_chains_and_every_key_type() {
    check("tls_keys");
}

#[test]
fn default_ssl_certificate_serves_uncovered_names() {
    check("default_certificate");
}

#[test]
fn default_backends_per_host_and_cluster_wide() {
    check("default_backend");
}

#[test]
fn default_backend_service_flag_takes_unmatched_requests() {
    check("default_backend_flag");
}

#[test]
fn regex_paths_are_anchored_case_insensitive_and_validated() {
    check("regex");
}

#[test]
fn rewrite_target_with_and_without_capture_groups() {
    check("rewrite");
}

#[test]
fn ssl_redirect_force_and_acme_exemption() {
    check("ssl_redirect");
}

#[test]
fn app_root_permanent_and_temporal_redirects() {
    check("redirects");
}

#[test]
fn forwarding_annotations_become_typed_policy() {
    check("policy");
}

#[test]
fn external_name_services_forward_to_their_dns_name() {
    check("external_name");
}

#[test]
fn protections_that_cannot_be_enforced_close_only_their_ingress() {
    check("access");
}

#[test]
fn warn_mode_serves_without_what_cannot_be_enforced() {
    check("access_warn");
}

#[test]
fn canary_ingresses_join_the_main_route_of_their_host_and_path() {
    check("canary");
}

#[test]
fn server_aliases_and_www_redirects() {
    check("aliases");
}

#[test]
fn annotations_prefix_moves_our_annotations() {
    check("custom_prefix");
}

/// Every fixture has a test above: a new file cannot be silently skipped.
#[test]
fn every_fixture_is_checked() {
    let source = include_str!("translate_fixtures.rs");
    for entry in std::fs::read_dir(fixture_dir()).expect("fixture dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        if let Some(stem) = name.strip_suffix(".expect.yaml") {
            assert!(
                source.contains(&format!("check(\"{stem}\")")),
                "fixture {stem} has no test"
            );
        }
    }
}

/// A rebuild reuses the certificates of Secrets whose bytes did not change,
/// and parses the ones that did.
#[test]
fn a_rebuild_parses_only_the_secrets_that_changed() {
    use gatehouse::translate::translate_with;
    let text = std::fs::read_to_string(fixture_dir().join("tls_keys.yaml")).expect("fixture");
    let mut state = ClusterState::from_objects(manifest::parse(&text).expect("parse"));
    let options = TranslateOptions::default();
    let first = translate(&state, &options);
    let second = translate_with(&state, &options, &first.reuse);
    let key = |t: &gatehouse::translate::Translation, sni: &str| {
        t.table.certs.resolve(sni).expect("cert").key.clone()
    };
    assert!(std::sync::Arc::ptr_eq(
        &key(&first, "rsa.example.com"),
        &key(&second, "rsa.example.com")
    ));

    // Change one Secret's certificate: only that one is parsed again.
    let p384 = state
        .secrets
        .get(&ObjectKey::new("default", "p384-tls"))
        .expect("secret")
        .clone();
    let rsa = state
        .secrets
        .get_mut(&ObjectKey::new("default", "rsa-tls"))
        .expect("secret");
    *rsa = p384;
    let third = translate_with(&state, &options, &second.reuse);
    assert!(!std::sync::Arc::ptr_eq(
        &key(&second, "rsa.example.com"),
        &key(&third, "rsa.example.com")
    ));
    assert_eq!(
        key(&third, "rsa.example.com").cert,
        key(&third, "p384.example.com").cert
    );
    assert!(std::sync::Arc::ptr_eq(
        &key(&second, "ed.example.com"),
        &key(&third, "ed.example.com")
    ));
}

/// A rebuild keeps the backends whose Service and EndpointSlices did not
/// change (with their load-balancing state) and resolves the others again.
#[test]
fn a_rebuild_resolves_only_the_backends_that_changed() {
    use gatehouse::table::Action;
    use gatehouse::translate::translate_with;
    let service = |name: &str, ip: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{port: 80}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{port: 8080}}]\nendpoints: [{{addresses: [\"{ip}\"]}}]\n\
             ---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}}}\nspec:\n  ingressClassName: gatehouse\n  rules:\n  - host: {name}.test\n    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: {name}, port: {{number: 80}}}}}}}}]}}\n"
        )
    };
    let class = "---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: gatehouse}\nspec: {controller: gatehouse.dev/ingress-controller}\n";
    let text = [
        class.to_owned(),
        service("a", "10.0.0.1"),
        service("b", "10.0.0.2"),
    ]
    .concat();
    let mut state = ClusterState::from_objects(manifest::parse(&text).expect("parse"));
    let options = TranslateOptions::default();
    let backend = |t: &gatehouse::translate::Translation, service: &str| {
        let route = t
            .table
            .routes()
            .into_iter()
            .find(|r| r.path == "/" && r.host.to_string() == format!("{service}.test"));
        match &route.expect("route").action {
            Action::Forward(backend) => backend.clone(),
            Action::Unavailable => panic!("{service} unavailable"),
        }
    };
    let first = translate(&state, &options);
    let second = translate_with(&state, &options, &first.reuse);
    assert!(std::sync::Arc::ptr_eq(
        &backend(&first, "a"),
        &backend(&second, "a")
    ));
    assert!(std::sync::Arc::ptr_eq(
        &backend(&first, "b"),
        &backend(&second, "b")
    ));

    // b's endpoints move: b is resolved again, a is kept.
    let moved =
        ClusterState::from_objects(manifest::parse(&service("b", "10.0.0.9")).expect("parse"));
    for (key, slice) in moved.endpoint_slices {
        state.endpoint_slices.insert(key, slice);
    }
    let third = translate_with(&state, &options, &second.reuse);
    assert!(std::sync::Arc::ptr_eq(
        &backend(&second, "a"),
        &backend(&third, "a")
    ));
    let b = backend(&third, "b");
    assert!(!std::sync::Arc::ptr_eq(&backend(&second, "b"), &b));
    match &*b.upstream() {
        Upstream::Endpoints(set) => {
            assert_eq!(set.addrs(), ["10.0.0.9:8080".parse().expect("addr")]);
        }
        Upstream::External(_) => panic!("b is not ExternalName"),
    }
}
