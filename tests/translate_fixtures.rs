//! Translate, table-driven: manifests in `tests/fixtures/translate/NAME.yaml`,
//! expected decisions beside them in `NAME.expect.yaml`.
//!
//! Each expectation is a request (host, path) and its decision (backend and
//! endpoints, or status), a server name and the Secret whose certificate it
//! gets (`default` for the default certificate), and the exact set of
//! warnings (by Ingress and kind, with a fragment of the message).

use std::path::{Path, PathBuf};

use gatehouse::cluster::{ClusterState, ObjectKey};
use gatehouse::source::manifest;
use gatehouse::table::{Decision, RequestFacts, Upstream};
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertCase {
    sni: String,
    secret: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WarningCase {
    ingress: String,
    kind: String,
    contains: String,
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
            path: &case.path,
            query: case.query.as_deref(),
            tls: case.tls,
            client: case.client.unwrap_or("192.0.2.10".parse().expect("ip")),
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
                    let endpoints: Vec<String> = match &backend.upstream {
                        Upstream::Endpoints(set) => {
                            set.addrs().iter().map(|a| a.to_string()).collect()
                        }
                        Upstream::External { host, port } => vec![format!("{host}:{port}")],
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
            }
            got => failures.push(format!(
                "{what}: got {got:?}, want status {:?} location {:?} backend {:?}",
                case.status, case.location, case.backend
            )),
        }
    }

    for case in &expect.certificates {
        let got = table
            .certs
            .resolve(&case.sni)
            .map(|entry| entry.secret.to_string())
            .unwrap_or_else(|| "default".to_owned());
        if got != case.secret {
            failures.push(format!(
                "SNI {}: certificate of {got}, want {}",
                case.sni, case.secret
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
