//! What a tenant's pathological Ingresses cost the table build: the three
//! of `tests/support/pathological.rs` (ten thousand paths under a 1 MiB
//! annotation, a 1 MiB allowlist, a regular expression past the size
//! limit) beside 1,000 ordinary Ingresses, against the same cluster
//! without them. Run with `cargo bench --bench pathological`.

#[path = "../tests/support/pathological.rs"]
mod pathological;

use std::time::{Duration, Instant};

use gatehouse::cluster::{ClusterState, Object};
use gatehouse::source::manifest;
use gatehouse::translate::{translate, TranslateOptions};

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn build_time(state: &ClusterState) -> (Duration, usize, usize) {
    let options = TranslateOptions::default();
    let mut runs = Vec::new();
    let mut sizes = (0, 0);
    for _ in 0..7 {
        let started = Instant::now();
        let t = translate(state, &options);
        runs.push(started.elapsed());
        sizes = (t.table.routes().len(), t.warnings.len());
    }
    (median(runs), sizes.0, sizes.1)
}

fn main() {
    let backend = "198.18.0.10:8080".parse().expect("addr");
    let text = pathological::manifests(backend, 1_000);
    let started = Instant::now();
    let objects = manifest::parse(&text).expect("manifests");
    let parsed = started.elapsed();
    let pathological = ["huge", "closed", "regex"];
    let without: Vec<Object> = objects
        .iter()
        .filter(|o| !matches!(o, Object::Ingress(i) if pathological.contains(&i.metadata.name.as_deref().unwrap_or(""))))
        .cloned()
        .collect();
    let with = ClusterState::from_objects(objects);
    let without = ClusterState::from_objects(without);
    println!(
        "manifests: {:.1} MiB parsed in {:.0} ms",
        text.len() as f64 / (1 << 20) as f64,
        parsed.as_secs_f64() * 1e3
    );
    for (label, state) in [("without", &without), ("with", &with)] {
        let (took, routes, warnings) = build_time(state);
        println!(
            "{label:>7} the pathological Ingresses: table built in {:.1} ms (median of 7), {routes} routes, {warnings} warnings",
            took.as_secs_f64() * 1e3
        );
    }
}
