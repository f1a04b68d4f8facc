//! Translate, table-driven: manifests in `tests/fixtures/translate/NAME.yaml`,
//! expected decisions beside them in `NAME.expect.yaml`.
//!
//! Each expectation is a request (host, path) and its decision (backend and
//! endpoints, or status), a server name and the Secret whose certificate it
//! gets (`default` for the default certificate), and the exact set of
//! warnings (by Ingress and kind, with a fragment of the message).

use std::path::{Path, PathBuf};

use gatehouse::cluster::ClusterState;
use gatehouse::source::manifest;
use gatehouse::table::Decision;
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestCase {
    host: String,
    path: String,
    status: Option<u16>,
    backend: Option<String>,
    endpoints: Option<Vec<String>>,
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

    let options = TranslateOptions {
        watch_ingress_without_class: expect.options.watch_ingress_without_class,
        ..TranslateOptions::default()
    };
    let translation = translate(&ClusterState::from_objects(objects), &options);
    let table = &translation.table;
    let mut failures = Vec::new();

    for case in &expect.requests {
        let what = format!("{} {}", case.host, case.path);
        match (table.decide(&case.host, &case.path), case.status) {
            (Decision::Respond(status), Some(want)) if status.as_u16() == want => {}
            (Decision::Forward(backend), None) => {
                let got = format!("{}:{}", backend.service, backend.port);
                if case.backend.as_deref() != Some(got.as_str()) {
                    failures.push(format!("{what}: backend {got}, want {:?}", case.backend));
                }
                let endpoints: Vec<String> = backend
                    .endpoints
                    .addrs()
                    .iter()
                    .map(|a| a.to_string())
                    .collect();
                if let Some(want) = &case.endpoints {
                    if &endpoints != want {
                        failures.push(format!("{what}: endpoints {endpoints:?}, want {want:?}"));
                    }
                }
            }
            (got, _) => failures.push(format!(
                "{what}: got {got:?}, want status {:?} backend {:?}",
                case.status, case.backend
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
