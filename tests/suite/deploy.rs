//! `deploy/` holds Kubernetes objects: every document must deserialise as
//! the k8s-openapi type its kind names, and the Pod template must keep the
//! promises docs/deploy.md makes.

use std::path::{Path, PathBuf};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, PodTemplateSpec, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Deserialize;
use serde_yaml_ng::Value;

fn manifests() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("deploy dir") {
            let path = entry.expect("entry").path();
            if path.ends_with("deploy/helm") {
                // Templates, not manifests: tests/suite/helm.rs renders them.
                continue;
            } else if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).expect("read");
                for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                    let value = Value::deserialize(doc)
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    if !value.is_null() {
                        out.push((path.clone(), value));
                    }
                }
            }
        }
    }
    out
}

fn typed<T: serde::de::DeserializeOwned>(path: &Path, value: &Value) -> T {
    serde_yaml_ng::from_value(value.clone()).unwrap_or_else(|e| {
        panic!(
            "{}: not a valid {}: {e}",
            path.display(),
            std::any::type_name::<T>()
        )
    })
}

#[test]
fn every_document_is_the_kubernetes_type_it_claims_to_be() {
    let all = manifests();
    assert!(all.len() >= 10, "deploy/ looks empty: {}", all.len());
    for (path, value) in &all {
        let kind = value["kind"].as_str().unwrap_or_default();
        match kind {
            "Namespace" => drop(typed::<Namespace>(path, value)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(path, value)),
            "ClusterRole" => drop(typed::<ClusterRole>(path, value)),
            "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(path, value)),
            "Role" => drop(typed::<Role>(path, value)),
            "RoleBinding" => drop(typed::<RoleBinding>(path, value)),
            "IngressClass" => drop(typed::<IngressClass>(path, value)),
            "Service" => drop(typed::<Service>(path, value)),
            "ConfigMap" => drop(typed::<k8s_openapi::api::core::v1::ConfigMap>(path, value)),
            "Deployment" => drop(typed::<Deployment>(path, value)),
            "DaemonSet" => drop(typed::<DaemonSet>(path, value)),
            "CustomResourceDefinition" => drop(typed::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(path, value)),
            "ValidatingWebhookConfiguration" => drop(typed::<ValidatingWebhookConfiguration>(path, value)),
            // cert-manager's kinds, for the webhook's certificate.
            "Issuer" | "Certificate" => assert_eq!(value["apiVersion"], "cert-manager.io/v1"),
            // kustomize's own file is not a Kubernetes object.
            "Kustomization" => assert_eq!(value["apiVersion"], "kustomize.config.k8s.io/v1beta1"),
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        }
    }
}

fn pod_templates() -> Vec<(String, PodTemplateSpec)> {
    let mut out = Vec::new();
    for (path, value) in manifests() {
        match value["kind"].as_str() {
            Some("Deployment") => out.push((
                "Deployment".into(),
                typed::<Deployment>(&path, &value).spec.template,
            )),
            Some("DaemonSet") => out.push((
                "DaemonSet".into(),
                typed::<DaemonSet>(&path, &value).spec.template,
            )),
            _ => {}
        }
    }
    out
}

#[test]
fn both_workloads_are_hardened_probed_and_drain_within_their_grace_period() {
    let templates = pod_templates();
    let kinds: Vec<&str> = templates.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.len(), 2, "a Deployment and a DaemonSet: {kinds:?}");
    for (kind, template) in templates {
        let spec = template.spec.expect("pod spec");
        assert!(
            spec.termination_grace_period_seconds.expect("grace") > 35,
            "{kind}: grace must exceed shutdown grace + drain (35 s)"
        );
        let pod_security = spec.security_context.expect("pod securityContext");
        assert_eq!(pod_security.run_as_non_root, Some(true), "{kind}");
        let container = &spec.containers[0];
        let security = container
            .security_context
            .as_ref()
            .expect("container securityContext");
        assert_eq!(security.read_only_root_filesystem, Some(true), "{kind}");
        assert_eq!(security.allow_privilege_escalation, Some(false), "{kind}");
        let dropped = security
            .capabilities
            .as_ref()
            .and_then(|c| c.drop.clone())
            .unwrap_or_default();
        assert_eq!(dropped, ["ALL"], "{kind}");
        let path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
            probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .and_then(|h| h.path.clone())
        };
        assert_eq!(
            path(&container.liveness_probe).as_deref(),
            Some("/healthz"),
            "{kind}"
        );
        assert_eq!(
            path(&container.readiness_probe).as_deref(),
            Some("/readyz"),
            "{kind}"
        );
        let requests = container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .expect("resource requests");
        assert!(
            requests.contains_key("cpu") && requests.contains_key("memory"),
            "{kind}"
        );
        let env: Vec<&str> = container
            .env
            .iter()
            .flatten()
            .map(|e| e.name.as_str())
            .collect();
        assert!(
            env.contains(&"POD_NAME") && env.contains(&"POD_NAMESPACE"),
            "{kind}: leader election needs both"
        );
    }
}

#[test]
fn the_load_balancer_maps_80_and_443_to_the_listeners() {
    let (path, value) = manifests()
        .into_iter()
        .find(|(_, v)| v["kind"] == "Service" && v["metadata"]["name"] == "gatehouse")
        .expect("the gatehouse Service");
    let service: Service = typed(&path, &value);
    let spec = service.spec.expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    let ports: Vec<(i32, String)> = spec
        .ports
        .expect("ports")
        .into_iter()
        .map(|p| (p.port, format!("{:?}", p.target_port.expect("targetPort"))))
        .collect();
    assert_eq!(
        ports,
        [
            (80, "String(\"http\")".to_owned()),
            (443, "String(\"https\")".to_owned())
        ]
    );
    let templates = pod_templates();
    let container = &templates[0].1.spec.as_ref().expect("spec").containers[0];
    let named: Vec<(String, i32)> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
        .collect();
    assert!(
        named.contains(&("http".into(), 8080)) && named.contains(&("https".into(), 8443)),
        "{named:?}"
    );
}

#[test]
fn both_workloads_read_the_controller_configmap_that_deploy_ships_and_their_args_parse() {
    let (path, value) = manifests()
        .into_iter()
        .find(|(_, v)| v["kind"] == "ConfigMap")
        .expect("the controller ConfigMap");
    let map: k8s_openapi::api::core::v1::ConfigMap = typed(&path, &value);
    let key = format!(
        "{}/{}",
        map.metadata.namespace.expect("namespace"),
        map.metadata.name.expect("name")
    );
    for (kind, template) in pod_templates() {
        let spec = template.spec.expect("pod spec");
        let args = spec.containers[0].args.clone().unwrap_or_default();
        assert!(
            args.contains(&format!("--configmap={key}")),
            "{kind}: {args:?}"
        );
        let argv = std::iter::once("gatehouse".to_owned()).chain(args);
        let parsed = <gatehouse::cli::Cli as clap::Parser>::try_parse_from(argv);
        assert!(parsed.is_ok(), "{kind}: {:?}", parsed.err());
    }
}

fn one<T: serde::de::DeserializeOwned>(kind: &str) -> Vec<T> {
    let all = manifests().into_iter();
    all.filter(|(_, v)| v["kind"].as_str() == Some(kind))
        .map(|(path, value)| typed::<T>(&path, &value))
        .collect()
}

#[test]
fn the_webhook_is_asked_through_the_admission_service_within_its_deadline() {
    let configs: Vec<ValidatingWebhookConfiguration> = one("ValidatingWebhookConfiguration");
    assert_eq!(configs.len(), 1);
    let services: Vec<Service> = one("Service");
    let deadline = gatehouse::admission::Limits::default().deadline;
    for webhook in configs[0].webhooks.iter().flatten() {
        let service = webhook.client_config.service.as_ref().expect("by Service");
        let target = services.iter().find(|s| {
            s.metadata.name.as_deref() == Some(service.name.as_str())
                && s.metadata.namespace.as_deref() == Some(service.namespace.as_str())
        });
        let target =
            target.unwrap_or_else(|| panic!("{}: no Service {}", webhook.name, service.name));
        let ports = target
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default();
        assert!(
            ports.iter().any(|p| Some(p.port) == service.port),
            "{}",
            webhook.name
        );
        // Our 503 at the deadline reaches the API server before its timeout.
        let timeout = webhook.timeout_seconds.expect("timeoutSeconds");
        assert!(deadline.as_secs() < timeout as u64, "{}", webhook.name);
        assert_eq!(webhook.admission_review_versions, ["v1"]);
        assert_eq!(webhook.side_effects, "None");
    }
    let ingresses = configs[0]
        .webhooks
        .iter()
        .flatten()
        .find(|w| w.name.starts_with("ingresses."));
    let ingresses = ingresses.expect("the Ingress webhook");
    assert_eq!(ingresses.failure_policy.as_deref(), Some("Fail"));
    assert!(ingresses.match_conditions.is_some(), "scoped to our class");
}

/// deploy/admission: Gatehouse keeps the webhook's certificate. The
/// configuration carries no caBundle and no cert-manager annotation (its
/// elected replica sets the caBundle), and the RBAC that keeping the
/// certificate needs names only the Secret and the configuration the
/// flags default to; the Service is the one they default to as well.
#[test]
fn the_managed_webhook_has_no_ca_bundle_and_its_rbac_names_only_what_gatehouse_keeps() {
    use gatehouse::admission::managed::DEFAULT_NAME;
    let configs: Vec<ValidatingWebhookConfiguration> = one("ValidatingWebhookConfiguration");
    let config = &configs[0];
    assert_eq!(config.metadata.name.as_deref(), Some(DEFAULT_NAME));
    assert_eq!(config.metadata.annotations, None);
    for webhook in config.webhooks.iter().flatten() {
        assert_eq!(webhook.client_config.ca_bundle, None, "{}", webhook.name);
        let service = webhook.client_config.service.as_ref().expect("by Service");
        assert_eq!(
            (service.namespace.as_str(), service.name.as_str()),
            ("gatehouse", DEFAULT_NAME)
        );
    }
    let grants = |rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule>| {
        let mut out = Vec::new();
        for rule in rules {
            for verb in &rule.verbs {
                for resource in rule.resources.iter().flatten() {
                    let names = rule.resource_names.clone().unwrap_or_default();
                    out.push(format!("{resource} {verb} {}", names.join(",")));
                }
            }
        }
        out.sort();
        out
    };
    let roles: Vec<Role> = one("Role");
    let role = roles
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some(DEFAULT_NAME))
        .expect("the admission Role");
    assert_eq!(role.metadata.namespace.as_deref(), Some("gatehouse"));
    let named = ["get", "list", "update", "watch"].map(|v| format!("secrets {v} {DEFAULT_NAME}"));
    let expected: Vec<String> = std::iter::once("secrets create ".to_owned())
        .chain(named)
        .collect();
    assert_eq!(grants(role.rules.unwrap_or_default()), expected);
    let cluster_roles: Vec<ClusterRole> = one("ClusterRole");
    let cluster_role = cluster_roles
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some(DEFAULT_NAME))
        .expect("the admission ClusterRole");
    assert_eq!(
        grants(cluster_role.rules.unwrap_or_default()),
        [
            format!("validatingwebhookconfigurations get {DEFAULT_NAME}"),
            format!("validatingwebhookconfigurations patch {DEFAULT_NAME}"),
        ]
    );
}
