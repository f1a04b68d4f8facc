//! Every query of ingress-nginx's two official Grafana dashboards and of
//! its chart's example alert rules, evaluated by a real Prometheus that
//! scrapes a Gatehouse serving `--metrics-compat ingress-nginx` under
//! steady traffic. The dashboards and rules are kept unchanged in
//! `tests/fixtures/ingress-nginx/` (their source is named there).

use crate::ingress_nginx_metrics::{serve, Setup};
use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use support::prometheus::Prometheus;
use support::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ingress-nginx");

/// The target labels a Kubernetes scrape of the controller's pod adds
/// (the pod's namespace, and the pod name the dashboards' certificate
/// panel selects on, as Prometheus's example Kubernetes configuration
/// relabels it). The namespace is the one the controller's own
/// `controller_namespace` names, as it is in a cluster.
const TARGET: [(&str, &str); 2] = [
    ("namespace", "ingress"),
    ("kubernetes_pod_name", "gatehouse-0"),
];

/// A dashboard's queries: its template variables' `label_values(…)` in
/// the order Grafana resolves them, then every panel's and annotation's
/// expression.
struct Dashboard {
    variables: Vec<(String, String)>,
    expressions: Vec<String>,
}

impl Dashboard {
    fn read(file: &str) -> Dashboard {
        let text = std::fs::read_to_string(Path::new(FIXTURES).join(file)).expect("dashboard");
        let json: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
        let variables = json["templating"]["list"]
            .as_array()
            .expect("templating")
            .iter()
            .filter(|v| v["type"] == "query")
            .map(|v| {
                let query = v["query"]["query"].as_str().or(v["query"].as_str());
                (
                    v["name"].as_str().expect("name").to_owned(),
                    query.expect("variable query").trim().to_owned(),
                )
            })
            .collect();
        let mut expressions = Vec::new();
        collect_expressions(&json, &mut expressions);
        Dashboard {
            variables,
            expressions,
        }
    }
}

fn collect_expressions(json: &serde_json::Value, found: &mut Vec<String>) {
    match json {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => found.push(expr.clone()),
                    _ => collect_expressions(value, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_expressions(v, found)),
        _ => {}
    }
}

/// `expr` with each `$variable` replaced by its chosen value, the longest
/// names first (`$controller_class` before `$controller`).
fn substitute(expr: &str, chosen: &[(String, String)]) -> String {
    let mut by_length: Vec<&(String, String)> = chosen.iter().collect();
    by_length.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    by_length
        .into_iter()
        .fold(expr.to_owned(), |expr, (name, value)| {
            expr.replace(&format!("${{{name}}}"), value)
                .replace(&format!("${name}"), value)
        })
}

/// `label_values(SELECTOR, LABEL)` split into its selector and label.
fn label_values_query(query: &str) -> (&str, &str) {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a label_values query: {query}"));
    let (selector, label) = inner.rsplit_once(',').expect("selector and label");
    (selector.trim(), label.trim())
}

/// Steady traffic until dropped: for every eight requests to shop.test
/// (HTTPS), three to errors.test that its backend answers 200, 502 and
/// 404, so both error alerts have a share above their 5 % and each
/// Ingress has successes.
struct Traffic(tokio::task::JoinHandle<()>);

impl Drop for Traffic {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn steady_traffic(s: &Setup) -> Traffic {
    let https = s.gatehouse.https_addr;
    let http = s.gatehouse.http_addr;
    let ca = Arc::new(s.pki.ca.clone());
    Traffic(tokio::spawn(async move {
        let (mut conn, _) = https_connect(https, "shop.test", &ca).await;
        for round in 0u64.. {
            for _ in 0..8 {
                let reply = send(&mut conn, "shop.test", &format!("/api/items/{round}")).await;
                assert_eq!(reply.expect("request").status, StatusCode::OK);
            }
            for status in [200, 502, 404] {
                let reply = http_get(http, "errors.test", &format!("/status/{status}")).await;
                assert_eq!(reply.status.as_u16(), status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }))
}

/// Gatehouse with ingress-nginx's series under traffic, scraped by a real
/// Prometheus until the stored counters have moved between two scrapes
/// (what `rate` and `irate` need); shop.test's certificate has three days
/// left, so the expiry alert has something to say.
async fn scraped_under_traffic() -> (Setup, Traffic, Prometheus) {
    let pki = Pki::new();
    let day = Duration::from_secs(86_400);
    let leaf = pki.leaf_aged(&["shop.test"], day, 3 * day);
    let s = serve(pki, leaf).await;
    let traffic = steady_traffic(&s);
    let prometheus = Prometheus::start(s.gatehouse.metrics_addr, &TARGET).await;
    let moving = prometheus
        .query_until_found(
            "sum(irate(nginx_ingress_controller_requests[2m])) > 0",
            Duration::from_secs(30),
        )
        .await;
    assert!(
        !moving.is_empty(),
        "no rate after 30 s\n{}",
        prometheus.log()
    );
    (s, traffic, prometheus)
}

/// The variables resolved as Grafana resolves them, each query seeing the
/// variables before it: with `all`, every variable is "All" (the
/// dashboards' `allValue`, `.*`); otherwise each is the first value its
/// query lists, as a user picking one would. Every query must list values.
async fn resolve(
    prometheus: &Prometheus,
    dashboard: &Dashboard,
    all: bool,
) -> Vec<(String, String)> {
    let mut chosen: Vec<(String, String)> = Vec::new();
    for (name, query) in &dashboard.variables {
        let (selector, label) = label_values_query(query);
        let values = prometheus
            .label_values(label, &substitute(selector, &chosen))
            .await;
        assert!(!values.is_empty(), "${name}: {query} lists no values");
        let value = match all {
            true => ".*".to_owned(),
            false => values[0].clone(),
        };
        chosen.push((name.clone(), value));
    }
    chosen
}

/// Each expression returns at least one series, and no value is NaN
/// (which a rate of nothing, or a quantile of no observations, gives).
/// `expected_empty` holds what returns nothing for a stated reason.
async fn assert_every_expression_returns_series(
    prometheus: &Prometheus,
    dashboard: &Dashboard,
    chosen: &[(String, String)],
    expected_empty: &[&str],
) {
    let mut failures = Vec::new();
    for expr in &dashboard.expressions {
        let query = substitute(expr, chosen);
        let result = prometheus.query(&query).await;
        let empty_expected = expected_empty.iter().any(|e| expr.contains(e));
        let nan = result.iter().any(|s| s["value"][1] == "NaN");
        match (result.is_empty(), empty_expected) {
            (false, true) => failures.push(format!("expected no series: {query}: {result:?}")),
            (true, false) => failures.push(format!("no series: {query}")),
            _ if nan => failures.push(format!("NaN: {query}: {result:?}")),
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} expressions:\n{}",
        failures.len(),
        dashboard.expressions.len(),
        failures.join("\n")
    );
}

/// The "Config Reloads Failed" panel counts controllers whose last reload
/// failed: with every table swap successful there are none, on Gatehouse
/// as on a healthy ingress-nginx.
const RELOADS_FAILED: &str = "config_last_reload_successful{";

/// The certificate panel's `ingress=~"$ingress"`: the expiry series has no
/// `ingress` label (ingress-nginx's neither), so it is empty once one
/// Ingress is picked.
const CERTIFICATE_EXPIRY: &str = "ssl_expire_time_seconds{";

#[tokio::test]
async fn every_query_of_the_nginx_ingress_controller_dashboard_returns_series() {
    let test = "every_query_of_the_nginx_ingress_controller_dashboard_returns_series";
    if !Prometheus::installed(test) {
        return;
    }
    let (_s, _traffic, prometheus) = scraped_under_traffic().await;
    let dashboard = Dashboard::read("nginx.json");
    assert_eq!(dashboard.expressions.len(), 22);

    let all = resolve(&prometheus, &dashboard, true).await;
    assert_every_expression_returns_series(&prometheus, &dashboard, &all, &[RELOADS_FAILED]).await;
    let picked = resolve(&prometheus, &dashboard, false).await;
    assert_eq!(
        picked,
        [
            ("namespace", "ingress"),
            ("controller_class", "gatehouse.dev/ingress-controller"),
            ("controller", "gatehouse-0"),
            ("exported_namespace", "test"),
            ("ingress", "errors"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
    assert_every_expression_returns_series(
        &prometheus,
        &dashboard,
        &picked,
        &[RELOADS_FAILED, CERTIFICATE_EXPIRY],
    )
    .await;
    // What the reload panel counts is there, and healthy.
    let reloaded = prometheus
        .query("nginx_ingress_controller_config_last_reload_successful")
        .await;
    assert_eq!(reloaded.len(), 1, "{reloaded:?}");
    assert_eq!(reloaded[0]["value"][1], "1");
}

#[tokio::test]
async fn every_query_of_the_request_handling_performance_dashboard_returns_series() {
    let test = "every_query_of_the_request_handling_performance_dashboard_returns_series";
    if !Prometheus::installed(test) {
        return;
    }
    let (_s, _traffic, prometheus) = scraped_under_traffic().await;
    let dashboard = Dashboard::read("request-handling-performance.json");
    assert_eq!(dashboard.expressions.len(), 13);

    for all in [true, false] {
        let chosen = resolve(&prometheus, &dashboard, all).await;
        assert_every_expression_returns_series(&prometheus, &dashboard, &chosen, &[]).await;
    }
}

#[derive(serde::Deserialize)]
struct Rule {
    alert: String,
    expr: String,
}

/// The chart's example alerts, against traffic that is 9 % 5xx and
/// 9 % 4xx and a certificate with three days left: those three fire (their
/// expressions return series), and the failed-reload alert does not.
#[tokio::test]
async fn the_chart_example_alerts_fire_on_what_they_watch() {
    let test = "the_chart_example_alerts_fire_on_what_they_watch";
    if !Prometheus::installed(test) {
        return;
    }
    let (_s, _traffic, prometheus) = scraped_under_traffic().await;
    let text =
        std::fs::read_to_string(Path::new(FIXTURES).join("prometheus-rules.yaml")).expect("rules");
    let rules: Vec<Rule> = serde_yaml_ng::from_str(&text).expect("rules YAML");
    let mut firing = Vec::new();
    for rule in &rules {
        let result = prometheus.query(&rule.expr).await;
        if !result.is_empty() {
            firing.push(rule.alert.as_str());
        }
        if rule.alert == "NGINXCertificateExpiry" {
            assert_eq!(result.len(), 1, "{result:?}");
            assert_eq!(result[0]["metric"]["host"], "shop.test");
        }
    }
    assert_eq!(
        firing,
        [
            "NGINXCertificateExpiry",
            "NGINXTooMany500s",
            "NGINXTooMany400s"
        ]
    );
}
