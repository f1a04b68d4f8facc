//! The Gateway API kinds Gatehouse reads (gateway.networking.k8s.io,
//! standard channel, following the v1.6.1 CRDs kept in `deploy/gateway-api/`).
//!
//! Only the fields Gatehouse acts on are typed; the rest are ignored when
//! read. The API server fills in the CRD schema's defaults; the manifests
//! source has no API server, so every default the schema declares is also
//! declared here (`#[serde(default = …)]`), and both sources read the same
//! objects the same way.

use std::collections::BTreeMap;

use kube::CustomResource;

use serde::{Deserialize, Serialize};

pub const GROUP: &str = "gateway.networking.k8s.io";

/// `GatewayClass`: which controller serves the Gateways that name it.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    derive = "PartialEq",
    version = "v1",
    kind = "GatewayClass",
    status = "serde_json::Value",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    pub controller_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<serde_json::Value>,
}

/// `Gateway`: listeners, each a port, a protocol and maybe a hostname.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    derive = "PartialEq",
    version = "v1",
    kind = "Gateway",
    namespaced,
    status = "serde_json::Value",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    pub gateway_class_name: String,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<GatewayInfrastructure>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfrastructure {
    /// Gatehouse takes no parameters: a Gateway that names some is
    /// refused (`InvalidParameters`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub port: i32,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP` or a domain-prefixed name.
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    #[serde(default)]
    pub allowed_routes: AllowedRoutes,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// `Terminate` (the default) or `Passthrough`.
    #[serde(default = "terminate")]
    pub mode: String,
    #[serde(default)]
    pub certificate_refs: Vec<ObjectRef>,
}

fn terminate() -> String {
    "Terminate".into()
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    #[serde(default)]
    pub namespaces: RouteNamespaces,
    /// Empty: the kinds the listener's protocol supports.
    #[serde(default)]
    pub kinds: Vec<RouteGroupKind>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// `Same` (the default), `All` or `Selector`.
    #[serde(default = "same")]
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

impl Default for RouteNamespaces {
    fn default() -> Self {
        RouteNamespaces {
            from: same(),
            selector: None,
        }
    }
}

fn same() -> String {
    "Same".into()
}

/// A label selector (`matchLabels` and `matchExpressions`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether `labels` satisfy every term; `None` for an operator this
    /// does not know (the selector then selects nothing).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> Option<bool> {
        let mut all = self
            .match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v));
        for term in &self.match_expressions {
            let value = labels.get(&term.key);
            let holds = match term.operator.as_str() {
                "In" => value.is_some_and(|v| term.values.contains(v)),
                "NotIn" => value.is_none_or(|v| !term.values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => return None,
            };
            all &= holds;
        }
        Some(all)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKind {
    #[serde(default = "group")]
    pub group: String,
    pub kind: String,
}

fn group() -> String {
    GROUP.into()
}

/// A reference to a Secret (a listener's certificate).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(default)]
    pub group: String,
    #[serde(default = "secret")]
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

fn secret() -> String {
    "Secret".into()
}

/// `HTTPRoute`: rules of matches, filters and weighted backends.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    derive = "PartialEq",
    version = "v1",
    kind = "HTTPRoute",
    namespaced,
    status = "serde_json::Value",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default = "one_rule")]
    pub rules: Vec<HTTPRouteRule>,
}

/// The schema's default: one rule matching every path, with no backends.
fn one_rule() -> Vec<HTTPRouteRule> {
    vec![HTTPRouteRule::default()]
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    #[serde(default = "group")]
    pub group: String,
    #[serde(default = "gateway")]
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

fn gateway() -> String {
    "Gateway".into()
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "match_everything")]
    pub matches: Vec<HTTPRouteMatch>,
    #[serde(default)]
    pub filters: Vec<HTTPRouteFilter>,
    #[serde(default)]
    pub backend_refs: Vec<HTTPBackendRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<HTTPRouteTimeouts>,
}

impl Default for HTTPRouteRule {
    fn default() -> Self {
        HTTPRouteRule {
            name: None,
            matches: match_everything(),
            filters: Vec::new(),
            backend_refs: Vec::new(),
            timeouts: None,
        }
    }
}

/// The schema's default for `matches`: a `PathPrefix` of `/`.
fn match_everything() -> Vec<HTTPRouteMatch> {
    vec![HTTPRouteMatch::default()]
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteMatch {
    #[serde(default)]
    pub path: HTTPPathMatch,
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
    #[serde(default)]
    pub query_params: Vec<ValueMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPPathMatch {
    /// `Exact`, `PathPrefix` (the default) or `RegularExpression`.
    #[serde(default = "path_prefix", rename = "type")]
    pub type_: String,
    #[serde(default = "slash")]
    pub value: String,
}

impl Default for HTTPPathMatch {
    fn default() -> Self {
        HTTPPathMatch {
            type_: path_prefix(),
            value: slash(),
        }
    }
}

fn path_prefix() -> String {
    "PathPrefix".into()
}

fn slash() -> String {
    "/".into()
}

/// A header or query parameter match.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ValueMatch {
    /// `Exact` (the default) or `RegularExpression`.
    #[serde(default = "exact", rename = "type")]
    pub type_: String,
    pub name: String,
    pub value: String,
}

fn exact() -> String {
    "Exact".into()
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteFilter {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<RequestRedirect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<UrlRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<RequestMirror>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_ref: Option<serde_json::Value>,
}

/// `RequestMirror`: a copy of each request (or of a share of them) to
/// another backend, whose answer is ignored.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestMirror {
    pub backend_ref: BackendObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<Fraction>,
}

/// A reference to a backend without weight or filters (a mirror's).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct BackendObjectRef {
    #[serde(default)]
    pub group: String,
    #[serde(default = "service")]
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

impl BackendObjectRef {
    /// As a route's backendRef of weight 1, to be resolved like one.
    pub fn as_backend_ref(&self) -> HTTPBackendRef {
        HTTPBackendRef {
            group: self.group.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            port: self.port,
            weight: 1,
            filters: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Fraction {
    pub numerator: u32,
    #[serde(default = "hundred")]
    pub denominator: u32,
}

fn hundred() -> u32 {
    100
}

impl RequestMirror {
    /// The share of requests mirrored, in millionths.
    pub fn per_million(&self) -> u32 {
        let (numerator, denominator) = match (&self.fraction, self.percent) {
            (Some(f), _) => (u64::from(f.numerator), u64::from(f.denominator.max(1))),
            (None, Some(percent)) => (u64::from(percent), 100),
            (None, None) => (1, 1),
        };
        (numerator.min(denominator) * 1_000_000 / denominator) as u32
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeaderModifier {
    #[serde(default)]
    pub set: Vec<Header>,
    #[serde(default)]
    pub add: Vec<Header>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestRedirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default = "found")]
    pub status_code: u16,
}

fn found() -> u16 {
    302
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UrlRewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathModifier>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPBackendRef {
    #[serde(default)]
    pub group: String,
    #[serde(default = "service")]
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default = "weight_one")]
    pub weight: u32,
    #[serde(default)]
    pub filters: Vec<HTTPRouteFilter>,
}

fn service() -> String {
    "Service".into()
}

fn weight_one() -> u32 {
    1
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteTimeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<String>,
}

/// `GRPCRoute`: gRPC service and method matches, served over HTTP/2 to
/// the backends. Translate reads it as the HTTPRoute it amounts to
/// (`GRPCRoute::as_http_route`).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    derive = "PartialEq",
    version = "v1",
    kind = "GRPCRoute",
    namespaced,
    status = "serde_json::Value",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct GRPCRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<GRPCRouteRule>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GRPCRouteRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Empty: every gRPC request.
    #[serde(default)]
    pub matches: Vec<GRPCRouteMatch>,
    /// The same filters as an HTTPRoute's (the spec allows a subset).
    #[serde(default)]
    pub filters: Vec<HTTPRouteFilter>,
    #[serde(default)]
    pub backend_refs: Vec<HTTPBackendRef>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GRPCRouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<GRPCMethodMatch>,
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GRPCMethodMatch {
    /// `Exact` (the default) or `RegularExpression`.
    #[serde(default = "exact", rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl GRPCRoute {
    /// The HTTPRoute this GRPCRoute amounts to: a gRPC call is a POST to
    /// `/<service>/<method>`, so a service and method match is an exact
    /// path, a service alone a path prefix, and anything else (a method
    /// alone, regular expressions) a path regular expression.
    pub fn as_http_route(&self) -> HTTPRoute {
        let rules = self.spec.rules.iter().map(|rule| HTTPRouteRule {
            name: rule.name.clone(),
            matches: match rule.matches.is_empty() {
                true => vec![HTTPRouteMatch::default()],
                false => rule.matches.iter().map(grpc_match).collect(),
            },
            filters: rule.filters.clone(),
            backend_refs: rule.backend_refs.clone(),
            timeouts: None,
        });
        HTTPRoute {
            metadata: self.metadata.clone(),
            spec: HTTPRouteSpec {
                parent_refs: self.spec.parent_refs.clone(),
                hostnames: self.spec.hostnames.clone(),
                rules: rules.collect(),
            },
            status: None,
        }
    }
}

fn grpc_match(m: &GRPCRouteMatch) -> HTTPRouteMatch {
    let path = match &m.method {
        None => HTTPPathMatch::default(),
        Some(method) => {
            let exact = method.type_ == "Exact";
            match (exact, method.service.as_deref(), method.method.as_deref()) {
                (true, Some(service), Some(name)) => HTTPPathMatch {
                    type_: "Exact".into(),
                    value: format!("/{service}/{name}"),
                },
                (true, Some(service), None) => HTTPPathMatch {
                    type_: "PathPrefix".into(),
                    value: format!("/{service}"),
                },
                (true, None, None) => HTTPPathMatch::default(),
                (_, service, name) => {
                    let part = |p: Option<&str>| match (p, exact) {
                        (None, _) => "[^/]+".to_owned(),
                        (Some(p), true) => regex::escape(p),
                        (Some(p), false) => format!("(?:{p})"),
                    };
                    HTTPPathMatch {
                        type_: "RegularExpression".into(),
                        value: format!("/{}/{}", part(service), part(name)),
                    }
                }
            }
        }
    };
    HTTPRouteMatch {
        path,
        headers: m.headers.clone(),
        query_params: Vec::new(),
        method: None,
    }
}

/// `ReferenceGrant`: which objects of other namespaces may refer to
/// objects of this one (served as v1beta1 and v1; read as either).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    derive = "PartialEq",
    version = "v1beta1",
    kind = "ReferenceGrant",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantSpec {
    #[serde(default)]
    pub from: Vec<GrantFrom>,
    #[serde(default)]
    pub to: Vec<GrantTo>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct GrantFrom {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct GrantTo {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Parses a Gateway API duration (GEP-2257: `1h`, `10s`, `500ms`, and
/// combinations such as `1m30s`); `0s` means no timeout.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return None;
        };
        total += unit * u32::try_from(number).ok()?;
        rest = &rest[len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_route_gets_the_schema_defaults() {
        let route: HTTPRoute = serde_yaml_ng::from_str(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{name: gw}]\n  rules:\n  - backendRefs: [{name: svc, port: 80}]\n",
        )
        .unwrap();
        let parent = &route.spec.parent_refs[0];
        assert_eq!(
            (parent.group.as_str(), parent.kind.as_str()),
            (GROUP, "Gateway")
        );
        let rule = &route.spec.rules[0];
        assert_eq!(rule.matches, vec![HTTPRouteMatch::default()]);
        assert_eq!(rule.matches[0].path.type_, "PathPrefix");
        let backend = &rule.backend_refs[0];
        assert_eq!((backend.kind.as_str(), backend.weight), ("Service", 1));
    }

    #[test]
    fn durations_follow_gep_2257() {
        use std::time::Duration;
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("1.5s"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn a_grpc_route_is_the_http_route_of_its_paths() {
        let route: GRPCRoute = serde_yaml_ng::from_str(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\nspec:\n  rules:\n  - matches:\n    - method: {service: a.B, method: Get}\n    - method: {service: a.B}\n    - method: {method: Get}\n    - method: {type: RegularExpression, service: 'a\\..*', method: 'Get|Put'}\n  - backendRefs: [{name: s, port: 50051}]\n",
        )
        .unwrap();
        let http = route.as_http_route();
        let paths: Vec<(&str, &str)> = http.spec.rules[0]
            .matches
            .iter()
            .map(|m| (m.path.type_.as_str(), m.path.value.as_str()))
            .collect();
        assert_eq!(
            paths,
            [
                ("Exact", "/a.B/Get"),
                ("PathPrefix", "/a.B"),
                ("RegularExpression", "/[^/]+/Get"),
                ("RegularExpression", "/(?:a\\..*)/(?:Get|Put)"),
            ]
        );
        assert_eq!(http.spec.rules[1].matches, vec![HTTPRouteMatch::default()]);
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels: BTreeMap<String, String> = [("team".to_owned(), "a".to_owned())].into();
        let selector: LabelSelector = serde_yaml_ng::from_str(
            "matchLabels: {team: a}\nmatchExpressions: [{key: env, operator: DoesNotExist}]",
        )
        .unwrap();
        assert_eq!(selector.matches(&labels), Some(true));
        let other: LabelSelector =
            serde_yaml_ng::from_str("matchExpressions: [{key: team, operator: In, values: [b]}]")
                .unwrap();
        assert_eq!(other.matches(&labels), Some(false));
    }
}
