//! The webhook's own certificate, when no certificate files are given:
//! replicas on the local API server (the real kube-rs client), real TLS.
//! The elected replica creates and renews the Secret and keeps the
//! configuration's caBundle its CA's; every replica serves from the
//! Secret, and one that does not lead never writes.

use crate::support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::json;

use gatehouse::admission::managed::authority::{self, Data, Upkeep};
use gatehouse::admission::{CertificateSource, ManagedCertificate, WebhookConfig};
use gatehouse::app::Running;
use gatehouse::cluster::ObjectKey;
use gatehouse::issuing::manager::Held;
use gatehouse::status::Publish;
use support::admission::{ask, review, WEBHOOK_HOST};
use support::fake_api::{Call, FakeApi};
use support::logs::Logs;
use support::*;

/// Gatehouse's namespace, where the Secret, the Service and the Lease are.
const NS: &str = "gatehouse";
/// The Secret's, the Service's and the configuration's name
/// (`WEBHOOK_HOST` is the Service's).
const NAME: &str = "gatehouse-admission";
const WITHIN: Duration = Duration::from_secs(30);

fn managed() -> ManagedCertificate {
    ManagedCertificate {
        secret: ObjectKey::new(NS, NAME),
        service: ObjectKey::new(NS, NAME),
        configuration: NAME.to_owned(),
    }
}

fn service_names() -> Vec<String> {
    authority::service_names(&ObjectKey::new(NS, NAME))
}

/// A replica `name` with the webhook on, its certificate managed.
async fn replica(api: &FakeApi, name: &str) -> Running {
    let mut config = replica_config(api, name, NS, Publish::Nothing);
    config.webhook = Some(WebhookConfig {
        addr: "127.0.0.1:0".parse().expect("addr"),
        certificate: CertificateSource::Managed(managed()),
        admission: Default::default(),
        limits: Default::default(),
    });
    tokio::time::timeout(WITHIN, gatehouse::app::start(config))
        .await
        .expect("initial sync in time")
        .expect("start")
}

/// Our class, a Service, and the configuration (without caBundle).
fn cluster(api: &FakeApi) {
    let endpoint: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    api.put_manifests(&(INGRESS_CLASS.to_owned() + &service("web", &[endpoint])));
    put_configuration(api);
}

/// The ValidatingWebhookConfiguration, with two webhooks and no caBundle.
fn put_configuration(api: &FakeApi) {
    let webhook = |name: &str, path: &str| {
        json!({
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "clientConfig": {"service": {"name": NAME, "namespace": NS, "path": path, "port": 443}},
        })
    };
    api.put(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": NAME},
        "webhooks": [
            webhook("ingresses.admission.gatehouse.dev", "/networking/v1/ingresses"),
            webhook("gateway-api.admission.gatehouse.dev", "/gateway.networking.k8s.io"),
        ],
    }));
}

fn leader(api: &FakeApi) -> Option<String> {
    let lease = api.get("coordination.k8s.io/v1", "Lease", NS, "gatehouse-leader")?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

/// The Secret's data, decoded, once it exists.
fn stored(api: &FakeApi) -> Option<BTreeMap<String, Vec<u8>>> {
    let secret = api.get("v1", "Secret", NS, NAME)?;
    let engine = base64::engine::general_purpose::STANDARD;
    let data = secret["data"].as_object()?;
    let decoded = data.iter().map(|(key, value)| {
        let bytes = engine.decode(value.as_str().unwrap_or_default());
        (key.clone(), bytes.expect("base64"))
    });
    Some(decoded.collect())
}

/// Puts the Secret with `data`, as another writer (or an earlier
/// Gatehouse) would have.
fn put_secret(api: &FakeApi, data: Data) {
    let key = ObjectKey::new(NS, NAME);
    let secret = gatehouse::issuing::store::new_secret(&key, "kubernetes.io/tls", data);
    api.put(serde_json::to_value(secret).expect("json"));
}

/// The Secret's data as a Gatehouse that wrote it at `at` for `names`
/// would have written it (from `data`'s CA, when it has one).
fn issued(data: &Data, names: &[String], at: SystemTime) -> Data {
    match authority::upkeep(data, names, at).expect("issued") {
        Upkeep::Write { data, .. } => data,
        Upkeep::Current { .. } => data.clone(),
    }
}

fn der(pem: &[u8]) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem).expect("PEM certificate")
}

/// The leaf the webhook presents when the client trusts only `ca`, or
/// why the handshake failed.
async fn presented(addr: SocketAddr, ca: &[u8]) -> Result<CertificateDer<'static>, String> {
    let config = tls_config(Some(&der(ca)), &[b"http/1.1"]);
    let connected = tls_connect(addr, WEBHOOK_HOST, config).await;
    connected.map(|(_, leaf)| leaf).map_err(|e| e.to_string())
}

/// The caBundle of each webhook of the configuration.
fn ca_bundles(api: &FakeApi) -> Vec<Vec<u8>> {
    let config = api.get(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        "",
        NAME,
    );
    let engine = base64::engine::general_purpose::STANDARD;
    let webhooks = config.and_then(|c| c["webhooks"].as_array().cloned());
    webhooks
        .unwrap_or_default()
        .iter()
        .map(|w| {
            let bundle = w["clientConfig"]["caBundle"].as_str().unwrap_or_default();
            engine.decode(bundle).expect("base64")
        })
        .collect()
}

/// Every call `replica` made that writes a Secret or a configuration,
/// and every call it made to a configuration.
fn writes_and_configuration_calls(api: &FakeApi, replica: &str) -> Vec<Call> {
    let writes = [
        http::Method::POST,
        http::Method::PUT,
        http::Method::PATCH,
        http::Method::DELETE,
    ];
    api.calls()
        .into_iter()
        .filter(|c| c.replica.as_deref() == Some(replica))
        .filter(|c| {
            c.resource == "validatingwebhookconfigurations"
                || c.resource == "secrets" && writes.contains(&c.method)
        })
        .collect()
}

#[tokio::test]
async fn the_leader_creates_the_secret_serves_from_it_and_sets_the_ca_bundle() {
    let api = FakeApi::start().await;
    cluster(&api);
    let a = replica(&api, "a").await;
    let addr = a.webhook_addr.expect("webhook");
    eventually("a leads", WITHIN, async || {
        leader(&api).as_deref() == Some("a")
    })
    .await;
    let data = eventually("the Secret", WITHIN, async || stored(&api)).await;
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(keys, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    let secret = api.get("v1", "Secret", NS, NAME).expect("Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");

    // Verified against the Secret's CA, for the Service's name.
    let ca = data["ca.crt"].clone();
    let leaf = eventually("the Secret's pair served", WITHIN, async || {
        presented(addr, &ca).await
    })
    .await;
    assert_eq!(leaf, der(&data["tls.crt"]));
    let good = ingress("shop", "shop.test", "/", "web", None);
    assert!(ask(addr, &der(&ca), &review("CREATE", &good))
        .await
        .allowed());

    eventually("every caBundle is the CA", WITHIN, async || {
        let bundles = ca_bundles(&api);
        bundles.len() == 2 && bundles.iter().all(|b| *b == ca)
    })
    .await;
    // A current Secret is not written again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.versions("v1", "Secret", NS, NAME).len(), 1);
}

#[tokio::test]
async fn a_configuration_applied_after_the_leader_started_gets_the_ca_bundle_then() {
    let logs = Logs::capture();
    let api = FakeApi::start().await;
    let endpoint: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    api.put_manifests(&(INGRESS_CLASS.to_owned() + &service("web", &[endpoint])));
    let a = replica(&api, "a").await;
    let data = eventually("the Secret", WITHIN, async || stored(&api)).await;
    let addr = a.webhook_addr.expect("webhook");
    eventually("served", WITHIN, async || {
        presented(addr, &data["ca.crt"]).await
    })
    .await;
    eventually("the missing configuration logged", WITHIN, async || {
        logs.text().contains("no ValidatingWebhookConfiguration")
    })
    .await;

    put_configuration(&api);
    eventually("every caBundle is the CA", WITHIN, async || {
        let bundles = ca_bundles(&api);
        bundles.len() == 2 && bundles.iter().all(|b| *b == data["ca.crt"])
    })
    .await;
    let warnings = logs
        .text()
        .matches("no ValidatingWebhookConfiguration")
        .count();
    assert_eq!(warnings, 1, "warned once, not at every look");
}

#[tokio::test]
async fn a_replica_that_does_not_lead_serves_from_the_same_secret_and_never_writes() {
    let api = FakeApi::start().await;
    cluster(&api);
    let a = replica(&api, "a").await;
    eventually("a leads", WITHIN, async || {
        leader(&api).as_deref() == Some("a")
    })
    .await;
    let data = eventually("the Secret", WITHIN, async || stored(&api)).await;
    let b = replica(&api, "b").await;
    let addr = b.webhook_addr.expect("webhook");
    let leaf = eventually("b serves the Secret's pair", WITHIN, async || {
        presented(addr, &data["ca.crt"]).await
    })
    .await;
    assert_eq!(leaf, der(&data["tls.crt"]));
    let good = ingress("shop", "shop.test", "/", "web", None);
    let answer = ask(addr, &der(&data["ca.crt"]), &review("CREATE", &good)).await;
    assert!(answer.allowed(), "{answer:?}");

    assert_eq!(leader(&api).as_deref(), Some("a"));
    assert_eq!(writes_and_configuration_calls(&api, "b"), []);
    assert!(!writes_and_configuration_calls(&api, "a").is_empty());
    drop(a);
}

#[tokio::test]
async fn the_leader_renews_a_serving_certificate_near_its_end_or_for_other_names_with_the_same_ca()
{
    let api = FakeApi::start().await;
    cluster(&api);
    // Written 250 days ago: a third of its year is left no longer.
    let old = SystemTime::now() - Duration::from_secs(250 * 24 * 3600);
    let first = issued(&Data::new(), &service_names(), old);
    let ca = first["ca.crt"].0.clone();
    put_secret(&api, first.clone());
    let a = replica(&api, "a").await;
    let addr = a.webhook_addr.expect("webhook");

    let renewed = eventually("a new serving certificate", WITHIN, async || {
        stored(&api).filter(|d| d["tls.crt"] != first["tls.crt"].0)
    })
    .await;
    assert_eq!(renewed["ca.crt"], ca, "the CA is kept");
    assert_eq!(renewed["ca.key"], first["ca.key"].0);
    let held = Held::of_pem(&renewed["tls.crt"]).expect("a certificate");
    let left = held
        .not_after
        .duration_since(SystemTime::now())
        .expect("valid");
    assert!(left > Duration::from_secs(300 * 24 * 3600), "{left:?}");
    eventually("the renewed pair served", WITHIN, async || {
        let leaf = presented(addr, &ca).await.ok();
        leaf.filter(|leaf| *leaf == der(&renewed["tls.crt"]))
    })
    .await;

    // Another writer leaves a certificate for other names, same CA.
    let elsewhere = authority::service_names(&ObjectKey::new("other", NAME));
    let current = eventually("the Secret", WITHIN, async || stored(&api)).await;
    let current: Data = current
        .into_iter()
        .map(|(k, v)| (k, k8s_openapi::ByteString(v)))
        .collect();
    let misnamed = issued(&current, &elsewhere, SystemTime::now());
    assert_eq!(misnamed["ca.crt"].0, ca);
    put_secret(&api, misnamed.clone());
    let again = eventually("a certificate for the Service again", WITHIN, async || {
        stored(&api).filter(|d| d["tls.crt"] != misnamed["tls.crt"].0)
    })
    .await;
    assert_eq!(again["ca.crt"], ca);
    let mut names = Held::of_pem(&again["tls.crt"])
        .expect("a certificate")
        .names;
    names.sort();
    assert_eq!(names, service_names());
    eventually("served, verified for the Service", WITHIN, async || {
        let leaf = presented(addr, &ca).await.ok();
        leaf.filter(|leaf| *leaf == der(&again["tls.crt"]))
    })
    .await;
    eventually("the caBundle is the one CA", WITHIN, async || {
        ca_bundles(&api).iter().all(|b| *b == ca)
    })
    .await;
}

/// A CA that can no longer be used (its key lost) is replaced; the API
/// server is told to trust the new CA beside the old one before the
/// Secret changes, so that no replica is distrusted while they change.
#[tokio::test]
async fn a_new_ca_is_trusted_beside_the_old_one_before_the_secret_changes() {
    let api = FakeApi::start().await;
    cluster(&api);
    let _a = replica(&api, "a").await;
    let first = eventually("created", WITHIN, async || stored(&api)).await;
    eventually("the caBundle is the CA", WITHIN, async || {
        ca_bundles(&api).iter().all(|b| *b == first["ca.crt"])
    })
    .await;
    let keyless: Data = first
        .iter()
        .filter(|(k, _)| k.as_str() != "ca.key")
        .map(|(k, v)| (k.clone(), k8s_openapi::ByteString(v.clone())))
        .collect();
    put_secret(&api, keyless);
    let second = eventually("a new CA", WITHIN, async || {
        stored(&api).filter(|d| d["ca.crt"] != first["ca.crt"] && d.contains_key("ca.key"))
    })
    .await;
    let both = [second["ca.crt"].clone(), first["ca.crt"].clone()].concat();
    eventually("both CAs trusted", WITHIN, async || {
        ca_bundles(&api).iter().all(|b| *b == both)
    })
    .await;
    let calls = writes_and_configuration_calls(&api, "a");
    let last = |resource: &str, method: http::Method| {
        calls
            .iter()
            .rposition(|c| c.resource == resource && c.method == method)
    };
    let patched = last("validatingwebhookconfigurations", http::Method::PATCH);
    let replaced = last("secrets", http::Method::PUT);
    assert!(
        patched.is_some() && patched < replaced,
        "the caBundle was not set to both before the Secret was replaced: {calls:#?}"
    );
}

/// Another writer (a leader whose Lease ran out, say) renews the Secret
/// between the leader's read and its write: the leader's write is refused
/// for its stale resourceVersion, and on reading again it finds the
/// Secret current and leaves it.
#[tokio::test]
async fn a_renewal_that_meets_another_writers_renewal_reads_again_and_keeps_it() {
    let api = FakeApi::start().await;
    cluster(&api);
    let old = SystemTime::now() - Duration::from_secs(250 * 24 * 3600);
    let first = issued(&Data::new(), &service_names(), old);
    let theirs = issued(&first, &service_names(), SystemTime::now());
    put_secret(&api, first.clone());
    let data = serde_json::to_value(&theirs).expect("json");
    api.interleave_write("v1", "Secret", NS, NAME, move |secret| {
        secret["data"] = data;
    });
    let a = replica(&api, "a").await;
    let addr = a.webhook_addr.expect("webhook");
    eventually("their pair served", WITHIN, async || {
        let leaf = presented(addr, &first["ca.crt"].0).await.ok();
        leaf.filter(|leaf| *leaf == der(&theirs["tls.crt"].0))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let versions = api.versions("v1", "Secret", NS, NAME);
    assert_eq!(versions.len(), 2, "the first, theirs, and no other");
    assert_eq!(
        stored(&api).expect("Secret")["tls.crt"],
        theirs["tls.crt"].0
    );
    let refused = api.calls().into_iter().filter(|c| {
        c.replica.as_deref() == Some("a")
            && c.resource == "secrets"
            && c.method == http::Method::PUT
    });
    assert_eq!(refused.count(), 1, "one write, refused");
}

#[tokio::test]
async fn a_secret_that_does_not_load_is_logged_and_the_last_good_pair_keeps_serving() {
    let logs = Logs::capture();
    let api = FakeApi::start().await;
    cluster(&api);
    // Another replica leads, for good: nobody here repairs the Secret.
    api.put(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "gatehouse-leader", "namespace": NS},
        "spec": {"holderIdentity": "elsewhere", "leaseDurationSeconds": 3600,
                 "renewTime": "2099-01-01T00:00:00.000000Z"},
    }));
    let a = replica(&api, "a").await;
    let addr = a.webhook_addr.expect("webhook");

    // No Secret yet: no handshake is answered.
    eventually("the wait logged", WITHIN, async || {
        let text = logs.text();
        text.contains("answers no handshake until its Secret exists")
            .then_some(())
            .ok_or(text)
    })
    .await;
    let good = issued(&Data::new(), &service_names(), SystemTime::now());
    assert!(presented(addr, &good["ca.crt"].0).await.is_err());

    put_secret(&api, good.clone());
    let leaf = eventually("the good pair served", WITHIN, async || {
        presented(addr, &good["ca.crt"].0).await
    })
    .await;

    // The key of another certificate.
    let other = issued(&Data::new(), &service_names(), SystemTime::now());
    let mut broken = good.clone();
    broken.insert("tls.key".into(), other["tls.key"].clone());
    put_secret(&api, broken);
    eventually("the broken Secret logged", WITHIN, async || {
        logs.text()
            .contains("does not load, the previous pair still serves")
    })
    .await;
    let text = logs.text();
    assert!(text.contains("does not match"), "{text}");
    assert!(text.contains(&format!("{NS}/{NAME}")), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "key material logged: {text}");
    assert_eq!(presented(addr, &good["ca.crt"].0).await, Ok(leaf));

    // A good version again (another CA): served.
    put_secret(&api, other.clone());
    eventually("the new pair served", WITHIN, async || {
        presented(addr, &other["ca.crt"].0).await
    })
    .await;
    assert_eq!(writes_and_configuration_calls(&api, "a"), []);
}

#[tokio::test]
async fn with_manifests_the_one_replica_writes_the_secret_into_the_directory_and_serves_it() {
    let endpoint: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let manifests = INGRESS_CLASS.to_owned() + &service("web", &[endpoint]);
    let (dir, gatehouse) = serve_manifests_with(&manifests, |config| {
        config.webhook = Some(WebhookConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            certificate: CertificateSource::Managed(managed()),
            admission: Default::default(),
            limits: Default::default(),
        });
    })
    .await;
    let file = dir
        .path()
        .join(gatehouse::issuing::store::file_name(&ObjectKey::new(
            NS, NAME,
        )));
    let text = eventually("the Secret's file", WITHIN, async || {
        std::fs::read_to_string(&file).ok()
    })
    .await;
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_yaml_ng::from_str(&text).expect("a Secret");
    let ca = secret.data.expect("data")["ca.crt"].0.clone();
    let addr = gatehouse.webhook_addr.expect("webhook");
    eventually("its pair served", WITHIN, async || {
        presented(addr, &ca).await
    })
    .await;
    let good = ingress("shop", "shop.test", "/", "web", None);
    assert!(ask(addr, &der(&ca), &review("CREATE", &good))
        .await
        .allowed());
}

/// The verb a call is authorized as, and the name it is authorized for
/// (a list or watch by `metadata.name` field selector is authorized for
/// that name, as the API server does it).
fn verb_and_name(call: &Call) -> (&'static str, Option<String>) {
    let by_field = call
        .field_selector
        .as_deref()
        .and_then(|s| s.strip_prefix("metadata.name="))
        .map(str::to_owned);
    match (&call.method, &call.name, call.watch) {
        (&http::Method::GET, Some(name), _) => ("get", Some(name.clone())),
        (&http::Method::GET, None, true) => ("watch", by_field),
        (&http::Method::GET, None, false) => ("list", by_field),
        (&http::Method::POST, _, _) => ("create", None),
        (&http::Method::PUT, name, _) => ("update", name.clone()),
        (&http::Method::PATCH, name, _) => ("patch", name.clone()),
        (_, name, _) => ("delete", name.clone()),
    }
}

/// Every call keeping the certificate makes (the Secret, by either
/// replica; the configuration) is granted by deploy/admission/rbac.yaml
/// alone: the Role in Gatehouse's namespace and the ClusterRole, each
/// limited to the names the flags default to.
#[tokio::test]
async fn deploy_admission_rbac_grants_every_call_keeping_the_certificate_makes() {
    use k8s_openapi::api::rbac::v1::PolicyRule;
    let api = FakeApi::start().await;
    cluster(&api);
    let old = SystemTime::now() - Duration::from_secs(250 * 24 * 3600);
    let first = issued(&Data::new(), &service_names(), old);
    put_secret(&api, first.clone());
    let (a, b) = (replica(&api, "a").await, replica(&api, "b").await);
    let renewed = eventually("renewed", WITHIN, async || {
        stored(&api).filter(|d| d["tls.crt"] != first["tls.crt"].0)
    })
    .await;
    // Deleted: created again, with a new CA, which the caBundle trusts
    // beside the one replaced (replicas still serving it stay trusted).
    api.delete("v1", "Secret", NS, NAME);
    let again = eventually("created again", WITHIN, async || {
        stored(&api).filter(|d| d["ca.crt"] != renewed["ca.crt"])
    })
    .await;
    let both = [again["ca.crt"].clone(), renewed["ca.crt"].clone()].concat();
    eventually("the caBundle follows", WITHIN, async || {
        ca_bundles(&api).iter().all(|b| *b == both)
    })
    .await;
    drop((a, b));

    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/admission/rbac.yaml"
    ))
    .expect("rbac.yaml");
    let mut rules: Vec<(Option<String>, PolicyRule)> = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = <serde_json::Value as serde::Deserialize>::deserialize(doc).expect("yaml");
        let namespace = value["metadata"]["namespace"].as_str().map(str::to_owned);
        let role_rules: Vec<PolicyRule> =
            serde_json::from_value(value["rules"].clone()).unwrap_or_default();
        rules.extend(role_rules.into_iter().map(|r| (namespace.clone(), r)));
    }
    let granted = |call: &Call| {
        let (verb, name) = verb_and_name(call);
        let group = call.group.split_once('/').map_or("", |(g, _)| g);
        rules.iter().any(|(namespace, rule)| {
            (namespace.is_none() || *namespace == call.namespace)
                && rule.api_groups.iter().flatten().any(|g| g == group)
                && rule.resources.iter().flatten().any(|r| *r == call.resource)
                && rule.verbs.iter().any(|v| v == verb)
                && rule
                    .resource_names
                    .as_ref()
                    .is_none_or(|names| name.as_ref().is_some_and(|n| names.contains(n)))
        })
    };
    let calls: Vec<Call> = api
        .calls()
        .into_iter()
        .filter(|c| c.replica.is_some())
        .filter(|c| {
            c.resource == "validatingwebhookconfigurations"
                || c.resource == "secrets"
                    && (c.name.as_deref() == Some(NAME)
                        || c.field_selector.as_deref() == Some(&format!("metadata.name={NAME}"))
                        || c.method == http::Method::POST)
        })
        .collect();
    for verb in ["get", "watch", "create", "update", "patch"] {
        assert!(
            calls.iter().any(|c| verb_and_name(c).0 == verb),
            "no {verb} call in {calls:#?}"
        );
    }
    for call in &calls {
        assert!(
            granted(call),
            "deploy/admission/rbac.yaml does not allow {call:?}"
        );
    }
}
