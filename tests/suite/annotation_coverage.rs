//! docs/annotations.md's coverage table says what Gatehouse does with each
//! ingress-nginx annotation; this checks the table against the migration
//! summary, so the two cannot drift apart.

use gatehouse::cluster::ClusterState;
use gatehouse::policy::protection::is_protective;
use gatehouse::source::manifest;
use gatehouse::translate::{translate, TranslateOptions};

/// (annotation, status) rows of the coverage table.
pub(crate) fn rows() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/annotations.md"))
        .expect("docs/annotations.md");
    let after = doc.split("## Coverage").nth(1).expect("a Coverage section");
    let section = after.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_owned(), cells.get(2)?.to_string()))
        })
        .collect()
}

/// What the migration summary makes of an Ingress with only `name: "1"`.
fn outcome(name: &str) -> &'static str {
    let yaml = format!(
        "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: gatehouse}}
spec: {{controller: gatehouse.dev/ingress-controller}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: probe
  annotations: {{nginx.ingress.kubernetes.io/{name}: \"1\"}}
spec:
  ingressClassName: gatehouse
  rules:
  - host: probe.test
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"
    );
    let state = ClusterState::from_objects(manifest::parse(&yaml).expect("yaml"));
    let translation = translate(&state, &TranslateOptions::default());
    let summary = translation.summaries.values().next().expect("a summary");
    if !summary.enforced.is_empty() {
        "enforced"
    } else if !summary.accepted.is_empty() {
        "accepted"
    } else if !summary.refused_denied.is_empty() {
        "denied"
    } else {
        "served"
    }
}

#[test]
fn the_coverage_table_matches_what_gatehouse_does() {
    let rows = rows();
    assert!(
        rows.len() >= 117,
        "every annotation of ingress-nginx's docs: {}",
        rows.len()
    );
    let mut wrong = Vec::new();
    for (name, status) in &rows {
        let protective = is_protective(name);
        let got = outcome(name);
        let ok = match status.as_str() {
            // A protective annotation with a dummy value may be closed.
            "implemented" if protective => got == "enforced" || got == "denied",
            "implemented" => got == "enforced",
            "accepted without effect" => got == "accepted" || (protective && got == "enforced"),
            "refused" | "not implemented" if protective => got == "denied",
            "refused" | "not implemented" => got == "served",
            other => panic!("{name}: unknown status {other:?}"),
        };
        if !ok {
            wrong.push(format!("{name}: table says {status}, Gatehouse {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
