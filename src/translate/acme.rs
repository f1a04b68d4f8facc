//! Which certificates Ingresses ask Gatehouse to obtain over ACME, and the
//! challenge answers the table serves. Gateways ask with the same
//! annotations (`gateway::acme`).
//!
//! An Ingress asks with `<prefix>/acme-issuer: NAME` (our prefix only), or
//! with `kubernetes.io/tls-acme: "true"`, which names the issuer of
//! `--acme-default-issuer`. Each `spec.tls` entry is then one certificate:
//! its hosts, stored in its `secretName` in the Ingress's namespace. An
//! Ingress with `cert-manager.io/*` annotations is cert-manager's. What
//! cannot be asked for (an unknown issuer, a wildcard host, a name too
//! long, an entry without `secretName`) is a warning and no request; the
//! Ingress's routes and certificates are never affected by it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;

use super::build::Build;
use super::{class, gateway, TranslateOptions, WarningKind};
use crate::acme::{AcmeIssuer, ChallengeAnswers, CHALLENGES_SECRET};
use crate::cluster::{ClusterState, ObjectKey, OrderedMap};

/// The annotation (under our prefix) that names an `AcmeIssuer`.
pub const ISSUER_ANNOTATION: &str = "acme-issuer";
/// The annotation that asks for `--acme-default-issuer` (kube-lego's, also
/// read by cert-manager).
pub const TLS_ACME_ANNOTATION: &str = "kubernetes.io/tls-acme";
const CERT_MANAGER_PREFIX: &str = "cert-manager.io/";
/// RFC 1035's limit on a name's text form, which CAs enforce.
const MAX_NAME_LENGTH: usize = 253;

/// The ACME settings translate depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeOptions {
    /// `--acme-default-issuer`: what `kubernetes.io/tls-acme: "true"` means.
    pub default_issuer: Option<String>,
    /// The Secret that holds the challenge answers (`CHALLENGES_SECRET`
    /// in the controller's namespace).
    pub challenges: ObjectKey,
}

impl Default for AcmeOptions {
    fn default() -> Self {
        AcmeOptions {
            default_issuer: None,
            challenges: ObjectKey::new("default", CHALLENGES_SECRET),
        }
    }
}

/// One certificate to obtain: a `spec.tls` entry of an Ingress that asks
/// for one, or a certificate Secret of the HTTPS listeners of a Gateway
/// that does.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CertificateRequest {
    /// The `AcmeIssuer` (it exists in the state the request came from).
    pub issuer: String,
    /// The object that asks, for the log and `/debug/certs`.
    pub owner: Owner,
    /// Where the certificate goes: `secretName`, in the Ingress's
    /// namespace; a listener's certificate Secret.
    pub secret: ObjectKey,
    /// The names, lowercase, in the order written, without repeats.
    pub hosts: Vec<String>,
}

/// The object that asks for a certificate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    Ingress(ObjectKey),
    Gateway(ObjectKey),
}

/// `Ingress shop/web`: the kind, then `namespace/name`.
impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Ingress(key) => write!(f, "Ingress {key}"),
            Owner::Gateway(key) => write!(f, "Gateway {key}"),
        }
    }
}

/// The certificates the Ingresses of ours ask for, in Ingress order, then
/// those the Gateways of ours ask for (`gateway::acme`); the warnings
/// about them are in the translation. One request per Secret: when two
/// objects ask for the same Secret, the first asks (two requests with
/// different names would replace each other's certificate forever).
pub fn certificate_requests(
    state: &ClusterState,
    options: &TranslateOptions,
) -> Vec<CertificateRequest> {
    let ours = state
        .ingresses
        .iter()
        .filter(|(_, i)| class::is_ours(i, &state.ingress_classes, options));
    let ingresses =
        ours.flat_map(|(key, ingress)| requests_of(key, ingress, &state.acme_issuers, options).0);
    let mut secrets = std::collections::HashSet::new();
    ingresses
        .chain(gateway::acme_requests(state, options))
        .filter(|request| secrets.insert(request.secret.clone()))
        .collect()
}

/// What one Ingress asks for, and the problems (warning messages).
fn requests_of(
    key: &ObjectKey,
    ingress: &Ingress,
    issuers: &OrderedMap<String, Arc<AcmeIssuer>>,
    options: &TranslateOptions,
) -> (Vec<CertificateRequest>, Vec<String>) {
    let annotations = ingress.metadata.annotations.as_ref();
    let issuer = match asked_issuer(annotations, issuers, options) {
        Ok(Some(issuer)) => issuer,
        Ok(None) => return (Vec::new(), Vec::new()),
        Err(problem) => return (Vec::new(), vec![problem]),
    };
    let mut problems = Vec::new();
    let tls = ingress.spec.as_ref().and_then(|s| s.tls.as_ref());
    let mut requests = Vec::new();
    for (index, entry) in tls.into_iter().flatten().enumerate() {
        let context = format!("tls[{index}]");
        let Some(secret) = entry.secret_name.as_deref().filter(|s| !s.is_empty()) else {
            problems.push(format!("{context} has no secretName: no place to store a certificate, so none is requested; its hosts are served with the default certificate"));
            continue;
        };
        let mut hosts: Vec<String> = Vec::new();
        let mut refused = Vec::new();
        for host in entry.hosts.iter().flatten() {
            let host = host.trim().to_ascii_lowercase();
            match refusal(&host) {
                Some(why) => refused.push(format!("{host:.64}: {why}")),
                None if hosts.contains(&host) => {}
                None => hosts.push(host),
            }
        }
        if !refused.is_empty() {
            problems.push(format!("{context} (secret {secret}) is not requested, the hosts keep the certificate they have: {}", refused.join("; ")));
            continue;
        }
        if hosts.is_empty() {
            problems.push(format!(
                "{context} (secret {secret}) has no hosts; no certificate is requested"
            ));
            continue;
        }
        requests.push(CertificateRequest {
            issuer: issuer.clone(),
            owner: Owner::Ingress(key.clone()),
            secret: ObjectKey::new(&key.namespace, secret),
            hosts,
        });
    }
    (requests, problems)
}

/// The `AcmeIssuer` an object's annotations ask for (`None`: they ask
/// for nothing), or why nothing is requested (a warning message): an
/// empty or unknown issuer, `tls-acme` without a default issuer, or
/// cert-manager annotations beside ours.
pub(super) fn asked_issuer(
    annotations: Option<&BTreeMap<String, String>>,
    issuers: &OrderedMap<String, Arc<AcmeIssuer>>,
    options: &TranslateOptions,
) -> Result<Option<String>, String> {
    let get = |name: &str| annotations.and_then(|a| a.get(name)).map(|v| v.trim());
    let ours = format!("{}/{ISSUER_ANNOTATION}", options.annotations_prefix);
    let issuer = match (get(&ours), get(TLS_ACME_ANNOTATION)) {
        (Some(name), _) if !name.is_empty() => name.to_owned(),
        (Some(_), _) => {
            return Err(format!(
                "annotation {ours} is empty; no certificate is requested"
            ))
        }
        (None, Some(value)) => match crate::policy::parse_bool(value) {
            Some(true) => match &options.acme.default_issuer {
                Some(name) => name.clone(),
                None => return Err(format!("annotation {TLS_ACME_ANNOTATION}: \"true\" needs --acme-default-issuer to name an AcmeIssuer; no certificate is requested")),
            },
            Some(false) => return Ok(None),
            None => return Err(format!("annotation {TLS_ACME_ANNOTATION}: {value:?} is not a boolean; no certificate is requested")),
        },
        (None, None) => return Ok(None),
    };
    let cert_manager = annotations
        .into_iter()
        .flatten()
        .any(|(name, _)| name.starts_with(CERT_MANAGER_PREFIX));
    if cert_manager {
        return Err(format!("asks for an ACME certificate from issuer {issuer} but carries cert-manager.io annotations: left to cert-manager, Gatehouse requests nothing (remove one or the other)"));
    }
    if !issuers.contains_key(&issuer) {
        return Err(format!("AcmeIssuer {issuer} not found; no certificate is requested, the hosts keep the certificate they have"));
    }
    Ok(Some(issuer))
}

/// Why a CA would not issue for `host`, if it would not.
pub(super) fn refusal(host: &str) -> Option<&'static str> {
    if host.starts_with("*.") {
        return Some("a wildcard name needs the DNS-01 challenge, which Gatehouse does not support; use cert-manager for wildcard certificates");
    }
    if host.len() > MAX_NAME_LENGTH {
        return Some("longer than 253 characters");
    }
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !host.contains('.') || !host.split('.').all(valid_label) {
        return Some("not a DNS name a public CA issues for");
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Some("an IP address; HTTP-01 certificates name hosts");
    }
    None
}

impl Build<'_> {
    /// Warns about what an Ingress asks for that cannot be requested.
    pub(super) fn check_acme(
        &mut self,
        key: &ObjectKey,
        ingress: &Ingress,
        options: &TranslateOptions,
    ) {
        let (_, problems) = requests_of(key, ingress, &self.state.acme_issuers, options);
        for problem in problems {
            self.warn(key, WarningKind::AcmeRequest, problem);
        }
    }

    /// The challenge answers the challenge Secret holds; its entries that
    /// are not answers are warnings on it.
    pub(super) fn acme_challenges(&mut self, options: &TranslateOptions) -> Arc<ChallengeAnswers> {
        let key = &options.acme.challenges;
        let Some(secret) = self.state.secrets.get(key) else {
            return Arc::default();
        };
        let (answers, problems) = ChallengeAnswers::from_secret(secret);
        for problem in problems {
            self.warn(key, WarningKind::AcmeChallenges, problem);
        }
        Arc::new(answers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::{translate, Warning};

    const BASE: &str = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: gatehouse}
spec: {controller: gatehouse.dev/ingress-controller}
---
apiVersion: gatehouse.dev/v1alpha1
kind: AcmeIssuer
metadata: {name: letsencrypt}
spec:
  server: https://acme-v02.api.letsencrypt.org/directory
  privateKeySecretRef: {name: account, namespace: gatehouse}
"#;

    /// An Ingress `shop/web` with these annotations and tls entries.
    fn ingress(annotations: &str, tls: &str) -> String {
        format!(
            r#"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: shop
  annotations: {{{annotations}}}
spec:
  ingressClassName: gatehouse
  tls: {tls}
  rules:
  - host: shop.example.com
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"#
        )
    }

    fn run(yaml: &str, default_issuer: Option<&str>) -> (Vec<CertificateRequest>, Vec<Warning>) {
        let state = ClusterState::from_objects(
            crate::source::manifest::parse(&format!("{BASE}{yaml}")).expect("manifests"),
        );
        let options = TranslateOptions {
            acme: AcmeOptions {
                default_issuer: default_issuer.map(str::to_owned),
                ..AcmeOptions::default()
            },
            ..TranslateOptions::default()
        };
        let warnings = translate(&state, &options)
            .warnings
            .into_iter()
            .filter(|w| w.kind == WarningKind::AcmeRequest)
            .collect();
        (certificate_requests(&state, &options), warnings)
    }

    fn request(secret: &str, hosts: &[&str]) -> CertificateRequest {
        CertificateRequest {
            issuer: "letsencrypt".into(),
            owner: Owner::Ingress(ObjectKey::new("shop", "web")),
            secret: ObjectKey::new("shop", secret),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn acme_issuer_annotation_requests_one_certificate_per_tls_entry() {
        let tls = "[{hosts: [Shop.example.com, www.shop.example.com, shop.example.com], secretName: shop-tls}, {hosts: [api.example.com], secretName: api-tls}]";
        let (requests, warnings) = run(
            &ingress("gatehouse.dev/acme-issuer: letsencrypt", tls),
            None,
        );
        assert_eq!(
            requests,
            [
                request("shop-tls", &["shop.example.com", "www.shop.example.com"]),
                request("api-tls", &["api.example.com"]),
            ]
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn acme_tls_acme_annotation_means_the_default_issuer() {
        let tls = "[{hosts: [shop.example.com], secretName: shop-tls}]";
        let yaml = ingress("kubernetes.io/tls-acme: \"true\"", tls);
        let (requests, warnings) = run(&yaml, Some("letsencrypt"));
        assert_eq!(requests, [request("shop-tls", &["shop.example.com"])]);
        assert!(warnings.is_empty(), "{warnings:?}");
        // Without the flag: nothing, and a warning that says so.
        let (requests, warnings) = run(&yaml, None);
        assert!(requests.is_empty());
        assert!(
            warnings[0].message.contains("--acme-default-issuer"),
            "{warnings:?}"
        );
        // "false" asks for nothing, silently.
        let (requests, warnings) = run(
            &ingress("kubernetes.io/tls-acme: \"false\"", tls),
            Some("letsencrypt"),
        );
        assert!(requests.is_empty() && warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn acme_ingress_without_the_annotations_asks_for_nothing() {
        let tls = "[{hosts: [shop.example.com], secretName: shop-tls}]";
        let (requests, warnings) = run(&ingress("", tls), Some("letsencrypt"));
        assert!(requests.is_empty() && warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn acme_cert_manager_annotations_leave_the_ingress_to_cert_manager() {
        let tls = "[{hosts: [shop.example.com], secretName: shop-tls}]";
        let both = "gatehouse.dev/acme-issuer: letsencrypt, cert-manager.io/cluster-issuer: le";
        let (requests, warnings) = run(&ingress(both, tls), None);
        assert!(requests.is_empty());
        assert!(warnings[0].message.contains("cert-manager"), "{warnings:?}");
        // cert-manager's alone: none of our business, no warning.
        let (requests, warnings) = run(&ingress("cert-manager.io/cluster-issuer: le", tls), None);
        assert!(requests.is_empty() && warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn acme_bad_input_is_warned_about_and_leaves_other_entries_requested() {
        let long = format!("{}.example.com", vec!["a".repeat(60); 4].join("."));
        let tls = format!(
            "[{{hosts: [shop.example.com], secretName: shop-tls}}, {{hosts: [\"*.example.com\"], secretName: wild-tls}}, {{hosts: [{long}], secretName: long-tls}}, {{hosts: [api.example.com]}}]"
        );
        let (requests, warnings) = run(
            &ingress("gatehouse.dev/acme-issuer: letsencrypt", &tls),
            None,
        );
        assert_eq!(requests, [request("shop-tls", &["shop.example.com"])]);
        let messages: Vec<&str> = warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(
            messages[0].contains("wild-tls") && messages[0].contains("DNS-01"),
            "{messages:?}"
        );
        assert!(
            messages[1].contains("long-tls") && messages[1].contains("253"),
            "{messages:?}"
        );
        assert!(
            messages[2].contains("tls[3]") && messages[2].contains("secretName"),
            "{messages:?}"
        );
        assert!(warnings
            .iter()
            .all(|w| w.ingress == ObjectKey::new("shop", "web")));
    }

    #[test]
    fn acme_unknown_issuer_is_warned_about_and_the_routes_are_untouched() {
        let tls = "[{hosts: [shop.example.com], secretName: shop-tls}]";
        let yaml = ingress("gatehouse.dev/acme-issuer: nowhere", tls);
        let (requests, warnings) = run(&yaml, None);
        assert!(requests.is_empty());
        assert!(
            warnings[0].message.contains("AcmeIssuer nowhere not found"),
            "{warnings:?}"
        );
        let plain = ingress("", tls);
        let table = |yaml: &str| {
            let state = ClusterState::from_objects(
                crate::source::manifest::parse(&format!("{BASE}{yaml}")).expect("manifests"),
            );
            let table = translate(&state, &TranslateOptions::default()).table;
            let headers = http::HeaderMap::new();
            let facts = crate::table::RequestFacts {
                host: "shop.example.com",
                method: &http::Method::GET,
                headers: &headers,
                path: "/",
                query: None,
                tls: false,
                port: 80,
                client: std::net::Ipv4Addr::LOCALHOST.into(),
                peer: None,
            };
            let hosts: Vec<String> = table.certs.iter().map(|(h, _)| h.to_string()).collect();
            format!("{hosts:?} {:?}", table.decide(&facts))
        };
        assert_eq!(table(&yaml), table(&plain));
    }

    /// A Gateway `shop/edge` of our class with these annotations and
    /// listeners (YAML flow mappings).
    fn gateway(annotations: &str, listeners: &[String]) -> String {
        let listeners = listeners.join(", ");
        format!(
            r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gatehouse}}
spec: {{controllerName: gatehouse.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: edge
  namespace: shop
  annotations: {{{annotations}}}
spec:
  gatewayClassName: gatehouse
  listeners: [{listeners}]
"#
        )
    }

    /// An HTTPS listener on 443 for `hostname` (none when empty) whose
    /// certificate is the Secret `secret` (`NAME` or `NAMESPACE/NAME`).
    fn https(name: &str, hostname: &str, secret: &str) -> String {
        let hostname = match hostname {
            "" => String::new(),
            h => format!("hostname: \"{h}\", "),
        };
        let secret = match secret.split_once('/') {
            Some((namespace, name)) => format!("name: {name}, namespace: {namespace}"),
            None => format!("name: {secret}"),
        };
        format!("{{name: {name}, port: 443, protocol: HTTPS, {hostname}tls: {{mode: Terminate, certificateRefs: [{{group: \"\", kind: Secret, {secret}}}]}}}}")
    }

    const ASKS: &str = "gatehouse.dev/acme-issuer: letsencrypt";

    fn gateway_request(secret: &str, hosts: &[&str]) -> CertificateRequest {
        CertificateRequest {
            owner: Owner::Gateway(ObjectKey::new("shop", "edge")),
            ..request(secret, hosts)
        }
    }

    #[test]
    fn acme_gateway_https_listener_asks_for_its_hostname_in_its_secret() {
        let yaml = gateway(ASKS, &[https("shop", "Shop.example.com", "shop-tls")]);
        let (requests, warnings) = run(&yaml, None);
        assert_eq!(
            requests,
            [gateway_request("shop-tls", &["shop.example.com"])]
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        // A Secret that exists keeps the request: it is what renews it.
        let secret = r#"
---
apiVersion: v1
kind: Secret
metadata: {name: shop-tls, namespace: shop}
type: kubernetes.io/tls
stringData: {tls.crt: "", tls.key: ""}
"#;
        let (requests, _) = run(&format!("{yaml}{secret}"), None);
        assert_eq!(
            requests,
            [gateway_request("shop-tls", &["shop.example.com"])]
        );
    }

    #[test]
    fn acme_gateway_listeners_sharing_a_secret_ask_for_one_certificate() {
        let listeners = [
            https("shop", "shop.example.com", "shop-tls"),
            https("api", "api.example.com", "api-tls"),
            https("www", "www.shop.example.com", "shop-tls"),
            https("again", "SHOP.example.com", "shop-tls"),
        ];
        let (requests, warnings) = run(&gateway(ASKS, &listeners), None);
        assert_eq!(
            requests,
            [
                gateway_request("shop-tls", &["shop.example.com", "www.shop.example.com"]),
                gateway_request("api-tls", &["api.example.com"]),
            ]
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn acme_gateway_listener_without_a_hostname_or_with_a_wildcard_is_warned_about() {
        let listeners = [
            https("any", "", "any-tls"),
            https("wild", "*.example.com", "wild-tls"),
            https("shop", "shop.example.com", "shop-tls"),
            // Sharing a Secret with a wildcard: the Secret is not requested,
            // as a `tls` entry with a wildcard host is not.
            https("api", "api.example.com", "mixed-tls"),
            https("wild-api", "*.api.example.com", "mixed-tls"),
        ];
        let (requests, warnings) = run(&gateway(ASKS, &listeners), None);
        assert_eq!(
            requests,
            [gateway_request("shop-tls", &["shop.example.com"])]
        );
        // Warnings are sorted by message: one per Secret not requested.
        let messages: Vec<&str> = warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        for (secret, why) in [
            ("any-tls", "no hostname"),
            ("mixed-tls", "listener wild-api: *.api.example.com"),
            ("wild-tls", "DNS-01"),
        ] {
            assert!(
                messages
                    .iter()
                    .any(|m| m.contains(secret) && m.contains(why)),
                "{secret}: {messages:?}"
            );
        }
        assert!(warnings
            .iter()
            .all(|w| w.object == "Gateway" && w.ingress == ObjectKey::new("shop", "edge")));
    }

    #[test]
    fn acme_gateway_unknown_issuer_is_warned_about() {
        let yaml = gateway(
            "gatehouse.dev/acme-issuer: nowhere",
            &[https("shop", "shop.example.com", "shop-tls")],
        );
        let (requests, warnings) = run(&yaml, None);
        assert!(requests.is_empty());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].message.contains("AcmeIssuer nowhere not found"),
            "{warnings:?}"
        );
        assert_eq!(warnings[0].object, "Gateway");
    }

    #[test]
    fn acme_gateway_without_the_annotations_asks_for_nothing() {
        let listeners = [https("shop", "shop.example.com", "shop-tls")];
        let (requests, warnings) = run(&gateway("", &listeners), Some("letsencrypt"));
        assert!(requests.is_empty() && warnings.is_empty(), "{warnings:?}");
        // `kubernetes.io/tls-acme` asks the default issuer, as on an Ingress.
        let yaml = gateway("kubernetes.io/tls-acme: \"true\"", &listeners);
        let (requests, warnings) = run(&yaml, Some("letsencrypt"));
        assert_eq!(
            requests,
            [gateway_request("shop-tls", &["shop.example.com"])]
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        // Another controller's Gateway is none of ours.
        let theirs = gateway(ASKS, &listeners)
            .replace("gatewayClassName: gatehouse", "gatewayClassName: other");
        let (requests, warnings) = run(&theirs, None);
        assert!(requests.is_empty() && warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn acme_gateway_http_listener_asks_for_nothing() {
        let http = "{name: http, port: 80, protocol: HTTP, hostname: shop.example.com}".to_owned();
        let (requests, warnings) = run(&gateway(ASKS, &[http]), None);
        assert!(requests.is_empty() && warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn acme_gateway_secret_in_another_namespace_needs_a_reference_grant() {
        let yaml = gateway(ASKS, &[https("shop", "shop.example.com", "certs/shop-tls")]);
        let (requests, warnings) = run(&yaml, None);
        assert!(requests.is_empty());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].message.contains("ReferenceGrant"),
            "{warnings:?}"
        );
        let grant = r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: shop-certs, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: shop}]
  to: [{group: "", kind: Secret, name: shop-tls}]
"#;
        let (requests, warnings) = run(&format!("{yaml}{grant}"), None);
        assert_eq!(
            requests,
            [CertificateRequest {
                secret: ObjectKey::new("certs", "shop-tls"),
                ..gateway_request("shop-tls", &["shop.example.com"])
            }]
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn acme_challenge_secret_becomes_the_tables_answers() {
        let secret = r#"
---
apiVersion: v1
kind: Secret
metadata: {name: gatehouse-acme-challenges, namespace: default}
stringData:
  http-01.tok: tok.thumb
  junk: x
"#;
        let state = ClusterState::from_objects(
            crate::source::manifest::parse(&format!("{BASE}{secret}")).expect("manifests"),
        );
        let translation = translate(&state, &TranslateOptions::default());
        let get = http::Method::GET;
        let answer = translation
            .table
            .acme_answer(&get, "/.well-known/acme-challenge/tok");
        assert_eq!(answer.map(|b| &b[..]), Some(&b"tok.thumb"[..]));
        assert_eq!(
            translation
                .table
                .acme_answer(&http::Method::POST, "/.well-known/acme-challenge/tok"),
            None
        );
        let warned: Vec<&Warning> = translation
            .warnings
            .iter()
            .filter(|w| w.kind == WarningKind::AcmeChallenges)
            .collect();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!(warned[0].object, "Secret");
        // The same Secret in another namespace is nobody's answer.
        let elsewhere = secret.replace("namespace: default", "namespace: shop");
        let state = ClusterState::from_objects(
            crate::source::manifest::parse(&format!("{BASE}{elsewhere}")).expect("manifests"),
        );
        let table = translate(&state, &TranslateOptions::default()).table;
        assert_eq!(
            table.acme_answer(&get, "/.well-known/acme-challenge/tok"),
            None
        );
    }

    #[test]
    fn acme_two_ingresses_asking_for_one_secret_make_one_request_the_first_ones() {
        let tls = "[{hosts: [shop.example.com], secretName: shared}]";
        let first = ingress("gatehouse.dev/acme-issuer: letsencrypt", tls);
        let second = first
            .replace("name: web", "name: zz-web")
            .replace("hosts: [shop.example.com]", "hosts: [other.example.com]");
        let (requests, _) = run(&format!("{first}{second}"), None);
        assert_eq!(requests, [request("shared", &["shop.example.com"])]);
    }
}
