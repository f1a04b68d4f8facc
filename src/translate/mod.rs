//! Translate: `ClusterState + Options -> RouteTable + warnings`.
//!
//! Pure: no I/O, no clock, no globals. Every Ingress rule is decided here;
//! the proxy only executes the decisions. Ingresses are processed oldest
//! first (creationTimestamp, then namespace/name), so on a conflict the older
//! one keeps the host+path and the newer one gets a warning.

mod annotations;
mod backend;
mod canary;
mod class;
mod gateway;
pub mod gateway_status;
mod incremental;
mod ownership;
pub mod settings;
mod summary;
mod warning;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::fmt::Display;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

pub use crate::policy::NGINX_PREFIX;
pub use annotations::IngressAnnotations;
pub use backend::BackendError;
pub use class::is_ours;
pub use ownership::HostOwnership;
pub use summary::{totals, IngressSummary};
pub use warning::{Warning, WarningKind};

use crate::cluster::{tls_secret_keys, ClusterState, ObjectKey};
use crate::policy::access::ObjectLookup;
use crate::policy::error_pages::ErrorPages;
use crate::policy::hsts::HstsOptions;
use crate::policy::rate_limit::{RouteLimits, Statuses};
use crate::policy::{AccessOptions, AccessPolicy};
use crate::table::{
    has_captures, CertEntry, Edge, HostPattern, PathType, Policy, Rewrite, Route, RouteTable,
    RouteTableBuilder,
};
use crate::tls::{self, certified_key, TlsError};
use crate::upstream::Action;
use settings::Settings;

/// The controller-wide settings translate depends on.
#[derive(Clone, Debug)]
pub struct TranslateOptions {
    /// `--ingress-class`: the IngressClass name that is ours.
    pub ingress_class: String,
    /// `--controller-class`: the `spec.controller` of IngressClasses that are ours.
    pub controller_class: String,
    /// `--watch-ingress-without-class`.
    pub watch_ingress_without_class: bool,
    /// `--annotations-prefix`: our annotation prefix (besides ingress-nginx's).
    pub annotations_prefix: String,
    /// `--default-backend-service`: receives what no rule matches.
    pub default_backend_service: Option<ObjectKey>,
    /// `--default-ssl-certificate`: served to names no Ingress covers.
    pub default_ssl_certificate: Option<ObjectKey>,
    /// `--unsupported-protection`, `--allow-cross-namespace-secrets`.
    pub access: AccessOptions,
    /// `--hsts*`.
    pub hsts: HstsOptions,
    /// `--limit-req-status-code`, `--limit-conn-status-code`.
    pub limit_statuses: Statuses,
    /// `--enable-ssl-passthrough`: `ssl-passthrough` annotations apply.
    pub ssl_passthrough: bool,
    /// `--configmap`: the controller ConfigMap, over the flags' defaults.
    pub config_map: Option<ObjectKey>,
    /// The edge settings the flags set (`--proxy-protocol`,
    /// `--use-forwarded-headers` …), before the ConfigMap.
    pub edge: Edge,
    /// `--host-ownership`: who may publish rules for a host.
    pub host_ownership: HostOwnership,
    /// `--gateway-controller-name`: the `controllerName` of GatewayClasses
    /// that are ours.
    pub gateway_controller: String,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        TranslateOptions {
            ingress_class: "gatehouse".into(),
            controller_class: "gatehouse.dev/ingress-controller".into(),
            watch_ingress_without_class: false,
            annotations_prefix: "gatehouse.dev".into(),
            default_backend_service: None,
            default_ssl_certificate: None,
            access: AccessOptions::default(),
            hsts: HstsOptions::default(),
            limit_statuses: Statuses::default(),
            ssl_passthrough: false,
            config_map: None,
            edge: Edge::default(),
            host_ownership: HostOwnership::Shared,
            gateway_controller: "gatehouse.dev/gateway-controller".into(),
        }
    }
}

/// The compiled size one path's regular expression may reach (the
/// `regex` crate's `size_limit`).
const PATH_REGEX_BYTES: usize = 256 * 1024;

/// The result of one translation.
#[derive(Debug)]
pub struct Translation {
    pub table: RouteTable,
    pub warnings: Vec<Warning>,
    /// What became of each Ingress's annotations, by Ingress.
    pub summaries: Summaries,
    /// The flags and the controller ConfigMap, compiled.
    pub settings: Settings,
    /// What this build parsed and resolved, for the next build to reuse.
    pub reuse: Reuse,
    /// The status of the Gateway API objects of ours.
    pub gateway_status: gateway_status::StatusReport,
}

/// Each Ingress's migration summary, by Ingress (persistent: a rebuild
/// that translates a few Ingresses shares the others' with the previous
/// build).
pub type Summaries = imbl::OrdMap<ObjectKey, Arc<IngressSummary>>;

impl Translation {
    /// The migration summaries in Ingress order.
    pub fn summary_list(&self) -> Vec<IngressSummary> {
        self.summaries.values().map(|s| (**s).clone()).collect()
    }
}

/// What one build hands to the next: parsed TLS Secrets by name (each with
/// a fingerprint of the bytes it was parsed from) and resolved Service
/// ports (with the objects they were resolved from). Passing the previous
/// build's `Reuse` to the next one makes a rebuild parse only the Secrets
/// and resolve only the backends that changed; the table is the same as
/// without it, except that unchanged backends keep their load-balancing
/// and passive-health state.
#[derive(Clone, Debug, Default)]
pub struct Reuse {
    secrets: HashMap<ObjectKey, Parsed>,
    backends: backend::ResolvedBackends,
    /// Each Ingress's limits, with their counters: a rebuild must not give
    /// every client a fresh allowance.
    limits: HashMap<ObjectKey, Arc<RouteLimits>>,
    /// The previous build's output and what it depended on, for
    /// `translate_next` to patch.
    last: Option<Box<incremental::Last>>,
}

/// One parsed Secret: the object it came from (unchanged objects are the
/// same `Arc`, which is checked first), the fingerprint of its bytes (for a
/// re-read object with the same content), and the outcome.
#[derive(Clone, Debug)]
struct Parsed {
    source: Arc<Secret>,
    fingerprint: u64,
    result: Result<CertEntry, TlsError>,
}

impl Parsed {
    fn fresh(key: &ObjectKey, secret: &Arc<Secret>) -> Self {
        Parsed {
            source: secret.clone(),
            fingerprint: fingerprint(secret),
            result: parse_secret(key, secret),
        }
    }

    fn reusable_for(&self, secret: &Arc<Secret>) -> bool {
        Arc::ptr_eq(&self.source, secret) || self.fingerprint == fingerprint(secret)
    }
}

/// A fingerprint of what a Secret's certificate depends on.
fn fingerprint(secret: &Secret) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    secret.type_.hash(&mut hasher);
    for key in ["tls.crt", "tls.key"] {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| &b.0)
            .hash(&mut hasher);
    }
    hasher.finish()
}

pub fn translate(state: &ClusterState, options: &TranslateOptions) -> Translation {
    translate_with(state, options, &Reuse::default())
}

/// How `translate_next` built its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildKind {
    /// Every Ingress translated.
    Full,
    /// Only the hosts the changes touched, the rest shared.
    Incremental,
}

/// Translates `state`, which continues (by its journal) the state of the
/// build that left `previous`: only the hosts the changes since touch are
/// translated again, and the rest of the table is shared with the
/// previous one. Falls back to a full build when the journal does not
/// reach back, or a change can affect every host. The result equals
/// `translate` of the same state.
pub fn translate_next(
    state: &ClusterState,
    options: &TranslateOptions,
    mut previous: Reuse,
) -> (Translation, BuildKind) {
    if let Some(last) = previous.last.take() {
        match incremental::patch(state, options, &mut previous, *last) {
            Ok(translation) => return (translation, BuildKind::Incremental),
            Err(why) => tracing::debug!(?why, "full rebuild"),
        }
    }
    let translation = build(state, options, &previous, None);
    let last = incremental::Last::of(&translation, state, options);
    (incremental::with_last(translation, last), BuildKind::Full)
}

/// `translate`, reusing what `previous` parsed and resolved from objects
/// that did not change.
pub fn translate_with(
    state: &ClusterState,
    options: &TranslateOptions,
    previous: &Reuse,
) -> Translation {
    build(state, options, previous, None)
}

/// Translates the Ingresses of `only` (all of them when `None`) with the
/// rest of `state`: the Gateway API objects and the controller's own
/// settings always.
fn build(
    state: &ClusterState,
    options: &TranslateOptions,
    previous: &Reuse,
    only: Option<&HashSet<ObjectKey>>,
) -> Translation {
    let candidates: Vec<(&ObjectKey, &Arc<Ingress>)> = match only {
        None => state.ingresses.iter().collect(),
        Some(keys) => keys
            .iter()
            .filter_map(|key| state.ingresses.get_key_value(key))
            .collect(),
    };
    let mut ingresses: Vec<(&ObjectKey, &Ingress)> = candidates
        .into_iter()
        .filter(|(_, ing)| class::is_ours(ing, &state.ingress_classes, options))
        .map(|(key, ing)| (key, &**ing))
        .collect();
    ingresses.sort_by(|(ka, a), (kb, b)| {
        let age = |i: &Ingress| i.metadata.creation_timestamp.as_ref().map(|t| t.0);
        age(a).cmp(&age(b)).then_with(|| ka.cmp(kb))
    });

    let mut build = Build {
        state,
        backends: backend::Backends::new(state, &previous.backends, ingresses.len()),
        previous,
        certs: HashMap::with_capacity(ingresses.len()),
        table: RouteTableBuilder::with_capacity(ingresses.len()),
        warnings: Vec::new(),
        canaries: canary::Canaries::default(),
        limits: HashMap::new(),
        www_redirects: Vec::new(),
        owners: match options.host_ownership {
            HostOwnership::Shared => None,
            HostOwnership::Namespace => Some(ownership::Owners::new(
                &ingresses,
                &options.annotations_prefix,
            )),
        },
        report: Default::default(),
    };
    build.preparse(&ingresses, options);
    let settings = build.settings(options);
    let defaults = &settings.routes;
    let hsts = defaults.hsts.header();
    let prefix = options.annotations_prefix.as_str();
    let (canary_ingresses, ingresses): (Vec<_>, Vec<_>) = ingresses
        .into_iter()
        .partition(|(_, ingress)| canary::Canaries::is_canary(ingress, prefix));
    let mut canaries = canary::Canaries::with_capacity(canary_ingresses.len());
    let mut summaries = Vec::with_capacity(ingresses.len() + canary_ingresses.len());
    for (key, ingress) in canary_ingresses {
        summaries.push(canaries.add(&mut build, key, ingress, prefix));
    }
    build.canaries = canaries;
    for (key, ingress) in ingresses {
        let secrets = ObjectLookup {
            namespace: &key.namespace,
            secrets: &state.secrets,
            config_maps: &state.config_maps,
        };
        let (parsed, warnings) = annotations::parse(
            ingress.metadata.annotations.as_ref(),
            &options.annotations_prefix,
            &secrets,
            defaults,
        );
        for (kind, message) in warnings {
            build.warn(key, kind, message);
        }
        let limits = build.limits_of(key, parsed.limits.clone(), defaults.limit_statuses);
        let error_pages = build.error_pages(key, &parsed, options);
        let ingress = IngressView {
            key,
            ingress,
            limits,
            error_pages,
            policy: Arc::new(parsed.policy.clone()),
            annotations: &parsed,
            hsts: hsts.as_ref(),
            ssl_redirect: defaults.ssl_redirect,
            any_host_access: parsed.access.client_cert.as_ref().map(|_| {
                Arc::new(AccessPolicy {
                    denied: Some(NO_HOST_FOR_CLIENT_CERTS.into()),
                    ..AccessPolicy::default()
                })
            }),
        };
        build.add_rules(&ingress);
        build.add_passthrough(&ingress, options);
        build.add_default_backend(&ingress);
        build.add_tls(&ingress);
        let mut summary = parsed.summary.clone();
        summary.ingress = key.clone();
        summaries.push(summary);
    }
    let summaries: Summaries = summaries
        .into_iter()
        .map(|s| (s.ingress.clone(), Arc::new(s)))
        .collect();
    build.add_www_redirects();
    build.add_gateway_api(options, defaults);
    build.add_controller_defaults(options);
    let canaries = std::mem::take(&mut build.canaries);
    canaries.warn_unmatched(&mut build);
    build.table.edge = Arc::new(settings.edge.clone());
    let mut warnings = build.warnings;
    warnings.sort();
    warnings.dedup();
    Translation {
        table: build.table.build(),
        warnings,
        summaries,
        settings,
        gateway_status: build.report,
        reuse: Reuse {
            secrets: build.certs,
            backends: build.backends.into_resolved(),
            limits: build.limits,
            last: None,
        },
    }
}

/// One Ingress with what its annotations decided.
struct IngressView<'a> {
    key: &'a ObjectKey,
    ingress: &'a Ingress,
    policy: Arc<Policy>,
    annotations: &'a IngressAnnotations,
    /// The HSTS header value, when HSTS is on.
    hsts: Option<&'a http::HeaderValue>,
    /// `ssl-redirect`'s default (the controller ConfigMap's).
    ssl_redirect: bool,
    limits: Option<Arc<RouteLimits>>,
    error_pages: Option<Arc<ErrorPages>>,
    /// The access of this Ingress's rules without host, when it differs:
    /// closed, when the Ingress asks for client certificates, which are
    /// asked for by server name.
    any_host_access: Option<Arc<AccessPolicy>>,
}

const NO_HOST_FOR_CLIENT_CERTS: &str =
    "auth-tls-secret: client certificates are asked for by host name, and this rule has no host";

impl IngressView<'_> {
    /// Whether this Ingress's `tls` section covers `host` (the default of
    /// `ssl-redirect`).
    fn has_tls_for(&self, host: &HostPattern) -> bool {
        let tls = self.ingress.spec.as_ref().and_then(|s| s.tls.as_ref());
        let tls_hosts = tls
            .into_iter()
            .flatten()
            .flat_map(|t| t.hosts.iter().flatten());
        tls_hosts
            .map(|h| HostPattern::parse(Some(h)))
            .any(|tls_host| match (&tls_host, host) {
                (a, b) if a == b => true,
                (HostPattern::Wildcard(suffix), HostPattern::Exact(name)) => {
                    name.split_once('.').is_some_and(|(_, rest)| rest == suffix)
                }
                _ => false,
            })
    }

    fn route(
        &self,
        host: HostPattern,
        path: &str,
        path_type: PathType,
        action: Action,
        regex: bool,
    ) -> Route {
        let tls = self.has_tls_for(&host);
        let access = match (&host, &self.any_host_access) {
            (HostPattern::Any, Some(closed)) => closed.clone(),
            _ => self.annotations.access.clone(),
        };
        let ssl_redirect = self
            .annotations
            .ssl_redirect
            .unwrap_or(tls && self.ssl_redirect);
        let rewrite = self.annotations.rewrite_target.as_ref().map(|target| {
            if regex && has_captures(target) {
                Rewrite::Captures(target.clone())
            } else {
                Rewrite::Replace(target.clone())
            }
        });
        Route {
            ingress: Some(self.key.clone()),
            host,
            path: path.to_owned(),
            path_type,
            regex,
            action,
            policy: self.policy.clone(),
            access,
            cors: self.annotations.cors.clone(),
            canary: None,
            limits: self.limits.clone(),
            stickiness: self.annotations.stickiness.clone(),
            host_redirect: None,
            error_pages: self.error_pages.clone(),
            ssl_redirect,
            hsts: self.hsts.filter(|_| tls).cloned(),
            rewrite,
            gateway: None,
            conditions: None,
            metrics: Default::default(),
        }
    }
}

pub(crate) struct Build<'a> {
    state: &'a ClusterState,
    backends: backend::Backends<'a>,
    /// The previous build's parsed Secrets.
    previous: &'a Reuse,
    /// Each Secret parsed once per build, however many hosts name it.
    certs: HashMap<ObjectKey, Parsed>,
    table: RouteTableBuilder,
    warnings: Vec<Warning>,
    /// Canary Ingresses waiting for their main routes.
    canaries: canary::Canaries,
    /// Each Ingress's limits, for the next build.
    limits: HashMap<ObjectKey, Arc<RouteLimits>>,
    /// `from-to-www-redirect` hosts, added once every Ingress's own.
    www_redirects: Vec<(ObjectKey, String, Route)>,
    /// `--host-ownership namespace`: each host's owner.
    owners: Option<ownership::Owners>,
    /// The Gateway API objects' status.
    report: gateway_status::StatusReport,
}

impl Build<'_> {
    /// Whether the Ingress `key` may not publish `what` for `host`: says
    /// why in a warning.
    fn not_owned(&mut self, key: &ObjectKey, host: &HostPattern, what: &str) -> bool {
        let Some(owner) = self
            .owners
            .as_ref()
            .and_then(|o| o.refuses(host, &key.namespace))
        else {
            return false;
        };
        let message = format!(
            "{what} for host {host} refused: the host belongs to namespace {owner} (--host-ownership namespace), whose Ingresses can allow this one with allow-namespaces"
        );
        self.warn(key, WarningKind::HostNotOwned, message);
        true
    }

    pub(crate) fn warn(&mut self, ingress: &ObjectKey, kind: WarningKind, message: String) {
        self.warn_object(kind.object(), ingress, kind, message);
    }

    /// A warning about an object of a kind other than the warning kind's.
    pub(crate) fn warn_object(
        &mut self,
        object: &'static str,
        key: &ObjectKey,
        kind: WarningKind,
        message: String,
    ) {
        self.warnings.push(Warning {
            object,
            ingress: key.clone(),
            kind,
            message,
        });
    }

    /// Resolves a backend; an unusable one becomes `Unavailable` (503) with
    /// a warning that says where.
    pub(crate) fn action(
        &mut self,
        ingress: &ObjectKey,
        backend: &IngressBackend,
        context: &dyn Display,
    ) -> Action {
        match self.backends.resolve(&ingress.namespace, backend) {
            Ok(backend) => Action::Forward(backend),
            Err(e) => {
                let kind = match e {
                    BackendError::MissingService(_) => WarningKind::MissingService,
                    BackendError::MissingPort { .. } => WarningKind::MissingServicePort,
                    _ => WarningKind::UnsupportedBackend,
                };
                self.warn(ingress, kind, format!("{context}: {e}; requests get 503"));
                Action::Unavailable
            }
        }
    }

    fn add_rules(&mut self, view: &IngressView<'_>) {
        let key = view.key;
        let rules = view.ingress.spec.as_ref().and_then(|s| s.rules.as_ref());
        for rule in rules.into_iter().flatten() {
            let host = HostPattern::parse(rule.host.as_deref());
            if self.not_owned(key, &host, "rules") {
                continue;
            }
            self.add_client_auth(view, &host);
            let paths = rule.http.as_ref().map(|h| h.paths.as_slice());
            for path in paths.unwrap_or_default() {
                let path_text = path.path.as_deref().unwrap_or("/");
                // Formatted only into a warning.
                let context = PathContext {
                    host: &host,
                    path: path_text,
                };
                let Some(path_type) = PathType::parse(&path.path_type) else {
                    let message =
                        format!("{context}: unknown pathType {:?}; ignored", path.path_type);
                    self.warn(key, WarningKind::InvalidPath, message);
                    continue;
                };
                let regex = match self.path_regex(view, path_text, path_type) {
                    Ok(regex) => regex,
                    Err(why) => {
                        self.warn(
                            key,
                            WarningKind::InvalidPath,
                            format!("{context}: {why}; ignored"),
                        );
                        continue;
                    }
                };
                let action = self.action(key, &path.backend, &context);
                let action = self.service_upstream(view, action, &context);
                let action = self.default_backend_fallback(view, action);
                // `server-alias` names serve the same rules, as the host
                // itself (its TLS redirect included), as ingress-nginx's
                // server_name does.
                let aliases = match host {
                    HostPattern::Any => &[][..],
                    _ => view.annotations.server_alias.as_slice(),
                };
                for name in std::iter::once(&host).chain(aliases) {
                    if name != &host && self.not_owned(key, name, "server-alias") {
                        continue;
                    }
                    let action = match &action {
                        Action::Forward(b) => Action::Forward(b.clone()),
                        Action::Unavailable => Action::Unavailable,
                    };
                    let mut route =
                        view.route(host.clone(), path_text, path_type, action, regex.is_some());
                    route.host = name.clone();
                    route.canary = self.canaries.take(&host, path_text);
                    if let Err(holder) = self.table.add_route(route, regex.clone()) {
                        let context = PathContext {
                            host: name,
                            path: path_text,
                        };
                        self.warn(
                            key,
                            WarningKind::RouteConflict,
                            conflict(key, &holder, &context),
                        );
                    }
                }
            }
            if view.annotations.from_to_www {
                if let HostPattern::Exact(name) = &host {
                    self.www_redirects.push((
                        key.clone(),
                        name.clone(),
                        view.route(
                            host.clone(),
                            "/",
                            PathType::Prefix,
                            Action::Unavailable,
                            false,
                        ),
                    ));
                }
            }
        }
    }

    /// `custom-http-errors`, rendered by `default-backend` (a Service of
    /// the Ingress's namespace, its first port) or else by
    /// `--default-backend-service`.
    fn error_pages(
        &mut self,
        key: &ObjectKey,
        annotations: &IngressAnnotations,
        options: &TranslateOptions,
    ) -> Option<Arc<ErrorPages>> {
        let codes = annotations.custom_errors.clone()?;
        let service = match (
            &annotations.default_backend,
            &options.default_backend_service,
        ) {
            (Some(name), _) => ObjectKey::new(&key.namespace, name),
            (None, Some(flag)) => flag.clone(),
            (None, None) => {
                let message = "custom-http-errors: no default-backend annotation and no --default-backend-service; the backend's own error responses are sent".to_owned();
                self.warn(key, WarningKind::InvalidAnnotation, message);
                return None;
            }
        };
        match self.backends.resolve_first_port(&service) {
            Ok(backend) => Some(Arc::new(ErrorPages::new(codes, backend))),
            Err(e) => {
                let message =
                    format!("custom-http-errors: {e}; the backend's own error responses are sent");
                self.warn(key, WarningKind::MissingService, message);
                None
            }
        }
    }

    /// `default-backend`: also serves a rule whose Service has no ready
    /// endpoint, as in ingress-nginx.
    fn default_backend_fallback(&mut self, view: &IngressView<'_>, action: Action) -> Action {
        let Some(name) = &view.annotations.default_backend else {
            return action;
        };
        let empty = match &action {
            Action::Forward(b) => !b.has_targets(),
            Action::Unavailable => false,
        };
        if !empty {
            return action;
        }
        let service = ObjectKey::new(&view.key.namespace, name);
        match self.backends.resolve_first_port(&service) {
            Ok(backend) if backend.has_targets() => Action::Forward(backend),
            _ => action,
        }
    }

    /// `service-upstream`: the Service's ClusterIP in place of its
    /// endpoints; a Service without one keeps its endpoints, with a
    /// warning.
    fn service_upstream(
        &mut self,
        view: &IngressView<'_>,
        action: Action,
        context: &dyn Display,
    ) -> Action {
        let Action::Forward(backend) = &action else {
            return action;
        };
        if !view.annotations.service_upstream {
            return action;
        }
        match self.backends.service_upstream(backend) {
            Ok(backend) => Action::Forward(backend),
            Err(why) => {
                let message = format!("{context}: service-upstream: {why}; its endpoints are used");
                self.warn(view.key, WarningKind::UnsupportedBackend, message);
                action
            }
        }
    }

    /// `ssl-passthrough`: TLS connections for the Ingress's hosts go whole
    /// to the backend of the host's `/` rule (ingress-nginx's rule), never
    /// terminated; the oldest Ingress keeps a contested host.
    fn add_passthrough(&mut self, view: &IngressView<'_>, options: &TranslateOptions) {
        if !view.annotations.ssl_passthrough {
            return;
        }
        let key = view.key;
        if !options.ssl_passthrough {
            let message = "ssl-passthrough needs --enable-ssl-passthrough; the host's TLS is terminated as usual".to_owned();
            self.warn(key, WarningKind::InvalidAnnotation, message);
            return;
        }
        let rules = view.ingress.spec.as_ref().and_then(|s| s.rules.as_ref());
        for rule in rules.into_iter().flatten() {
            let host = HostPattern::parse(rule.host.as_deref());
            let refused = self
                .owners
                .as_ref()
                .map(|o| o.refuses(&host, &key.namespace));
            if refused.flatten().is_some() {
                continue; // said with the host's rules
            }
            let root = rule
                .http
                .iter()
                .flat_map(|h| h.paths.iter())
                .find(|p| p.path.as_deref().unwrap_or("/") == "/");
            let Some(root) = root else {
                let message = format!(
                    "host {host}: ssl-passthrough needs a rule for path /; not passed through"
                );
                self.warn(key, WarningKind::InvalidPath, message);
                continue;
            };
            let context = PathContext {
                host: &host,
                path: "/",
            };
            let Action::Forward(backend) = self.action(key, &root.backend, &context) else {
                continue;
            };
            if !self.table.passthrough.insert_first(&host, backend) {
                let message =
                    format!("host {host}: already passed through by an older Ingress; ignored");
                self.warn(key, WarningKind::RouteConflict, message);
            }
        }
    }

    /// `from-to-www-redirect`: the other name (with or without `www.`)
    /// redirects to the rule's host, unless some Ingress routes that name
    /// itself.
    fn add_www_redirects(&mut self) {
        for (key, name, mut route) in std::mem::take(&mut self.www_redirects) {
            let other = match name.strip_prefix("www.") {
                Some(bare) => bare.to_owned(),
                None => format!("www.{name}"),
            };
            let other_host = HostPattern::parse(Some(&other));
            if self.table.has_host(&other_host) {
                continue;
            }
            route.host = other_host;
            route.host_redirect = Some(name);
            if let Err(holder) = self.table.add_route(route, None) {
                let message = format!(
                    "from-to-www-redirect: {other} is already redirected by {}; ignored",
                    describe(&holder)
                );
                self.warn(&key, WarningKind::RouteConflict, message);
            }
        }
    }

    /// An Ingress's limits: the previous build's, counters and all, when
    /// they are configured the same; else new ones.
    fn limits_of(
        &mut self,
        key: &ObjectKey,
        config: Option<crate::policy::rate_limit::LimitConfig>,
        statuses: Statuses,
    ) -> Option<Arc<RouteLimits>> {
        let config = config?;
        let kept = self
            .previous
            .limits
            .get(key)
            .filter(|l| l.config == config && l.statuses() == statuses)
            .cloned();
        let limits = kept.unwrap_or_else(|| Arc::new(config.compile(statuses)));
        self.limits.insert(key.clone(), limits.clone());
        Some(limits)
    }

    /// `auth-tls-*` apply to the whole host; the oldest Ingress that sets
    /// them for a host decides them.
    fn add_client_auth(&mut self, view: &IngressView<'_>, host: &HostPattern) {
        let Some(client_auth) = &view.annotations.access.client_cert else {
            if view.annotations.client_cert_denied {
                self.table.client_auth_denied.insert_first(host, ());
            }
            return;
        };
        if *host == HostPattern::Any {
            let message = format!("{NO_HOST_FOR_CLIENT_CERTS}; its routes answer 503");
            self.warn(view.key, WarningKind::ProtectionDenied, message);
            return;
        }
        if self
            .table
            .client_auth
            .insert_first(host, client_auth.clone())
        {
            return;
        }
        let same = self
            .table
            .client_auth
            .get(&host.to_string())
            .is_some_and(|present| present.fingerprint == client_auth.fingerprint);
        if !same {
            let message = format!("host {host}: client certificates are already configured by an older Ingress; its auth-tls-* settings apply to this host");
            self.warn(view.key, WarningKind::TlsConflict, message);
        }
    }

    /// The compiled pattern when this path is a regular expression; an
    /// error when the path is unusable.
    fn path_regex(
        &self,
        view: &IngressView<'_>,
        path: &str,
        path_type: PathType,
    ) -> Result<Option<regex::Regex>, String> {
        let is_regex = path_type != PathType::Exact && view.annotations.regex_paths();
        if !is_regex {
            if !path.starts_with('/') {
                return Err("path does not start with '/'".into());
            }
            return Ok(None);
        }
        // ingress-nginx: `location ~* "^<path>"`, case-insensitive, anchored
        // at the start only. The flag is inline so that the host's
        // `RegexSet`, built from the pattern text, keeps it.
        // Bounded, so that one Ingress's pattern cannot make the table
        // large or its build slow.
        regex::RegexBuilder::new(&format!("(?i)^(?:{path})"))
            .size_limit(PATH_REGEX_BYTES)
            .build()
            .map(Some)
            .map_err(|e| format!("invalid regular expression: {}", first_line(&e.to_string())))
    }

    /// `spec.defaultBackend`: with rules, it serves the unmatched paths of
    /// this Ingress's hosts; without rules, every request no rule matches.
    fn add_default_backend(&mut self, view: &IngressView<'_>) {
        let key = view.key;
        let spec = view.ingress.spec.as_ref();
        let Some(backend) = spec.and_then(|s| s.default_backend.as_ref()) else {
            return;
        };
        let action = self.action(key, backend, &"defaultBackend");
        let rules = spec
            .and_then(|s| s.rules.as_ref())
            .filter(|r| !r.is_empty());
        let Some(rules) = rules else {
            let route = view.route(HostPattern::Any, "/", PathType::Prefix, action, false);
            if let Err(holder) = self.table.set_default(route) {
                let message = format!(
                    "defaultBackend: the default backend is already provided by the older {}; ignored",
                    describe(&holder)
                );
                self.warn(key, WarningKind::DefaultBackendConflict, message);
            }
            return;
        };
        let action = Arc::new(action);
        let mut hosts: Vec<HostPattern> = rules
            .iter()
            .map(|r| HostPattern::parse(r.host.as_deref()))
            .collect();
        hosts.dedup();
        for host in hosts {
            let action = match action.as_ref() {
                Action::Forward(b) => Action::Forward(b.clone()),
                Action::Unavailable => Action::Unavailable,
            };
            let route = view.route(host.clone(), "/", PathType::Prefix, action, false);
            if let Err(holder) = self.table.add_fallback(route) {
                let message = format!(
                    "defaultBackend: unmatched paths of host {host} already go to the older {}; ignored",
                    describe(&holder)
                );
                self.warn(key, WarningKind::DefaultBackendConflict, message);
            }
        }
    }

    fn add_tls(&mut self, view: &IngressView<'_>) {
        let key = view.key;
        let tls = view.ingress.spec.as_ref().and_then(|s| s.tls.as_ref());
        for entry in tls.into_iter().flatten() {
            // No secretName: the host is served with the default certificate.
            let Some(secret_name) = entry.secret_name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let secret_key = ObjectKey::new(&key.namespace, secret_name);
            let cert = match self.cert(&secret_key) {
                Ok(cert) => cert,
                Err(e) => {
                    let kind = match e {
                        TlsError::NotFound => WarningKind::MissingSecret,
                        _ => WarningKind::InvalidSecret,
                    };
                    let message = format!(
                        "TLS Secret {secret_key}: {e}; its hosts get the default certificate"
                    );
                    self.warn(key, kind, message);
                    continue;
                }
            };
            // `server-alias` names are served with the certificate of the
            // hosts they alias (one nginx server block).
            let aliases = view.annotations.server_alias.iter().map(|a| a.to_string());
            for host in entry.hosts.iter().flatten().cloned().chain(aliases) {
                let pattern = HostPattern::parse(Some(&host));
                if self.not_owned(key, &pattern, "the TLS entry") {
                    continue;
                }
                if !self.table.certs.insert_first(&pattern, cert.clone()) {
                    self.warn(
                        key,
                        WarningKind::TlsConflict,
                        format!("TLS host {pattern} already has a certificate from an older Ingress; Secret {secret_key} is not used for it"),
                    );
                }
            }
        }
    }

    /// `--default-backend-service` (when no Ingress provides a default) and
    /// `--default-ssl-certificate`. Problems with either are logged by the
    /// caller as warnings about the controller's own configuration.
    fn add_controller_defaults(&mut self, options: &TranslateOptions) {
        let controller = ObjectKey::new("", "(controller flags)");
        if let Some(service) = &options.default_backend_service {
            let action = match self.backends.resolve_first_port(service) {
                Ok(backend) => Action::Forward(backend),
                Err(e) => {
                    let message = format!(
                        "--default-backend-service {service}: {e}; unmatched requests get 503"
                    );
                    self.warn(&controller, WarningKind::MissingService, message);
                    Action::Unavailable
                }
            };
            let policy = Arc::new(Policy {
                body_limit: None,
                ..Policy::default()
            });
            let route = Route::bare(HostPattern::Any, "/", PathType::Prefix, action, policy);
            // An Ingress-provided default backend wins over the flag.
            let _ = self.table.set_default(route);
        }
        if let Some(secret) = &options.default_ssl_certificate {
            match self.cert(secret) {
                Ok(cert) => self.table.certs.set_default(cert),
                Err(e) => {
                    let message = format!("--default-ssl-certificate {secret}: {e}; the generated certificate is served instead");
                    let kind = match e {
                        TlsError::NotFound => WarningKind::MissingSecret,
                        _ => WarningKind::InvalidSecret,
                    };
                    self.warn(&controller, kind, message);
                }
            }
        }
    }

    /// The flags' defaults with the controller ConfigMap applied; its
    /// problems are warnings on the ConfigMap.
    fn settings(&mut self, options: &TranslateOptions) -> Settings {
        let mut settings = Settings::from_options(options);
        let Some(key) = &options.config_map else {
            return settings;
        };
        let Some(map) = self.state.config_maps.get(key) else {
            let message = "not found; the built-in defaults and flags apply".to_owned();
            self.warn(key, WarningKind::ConfigMapKey, message);
            return settings;
        };
        let lookup = ObjectLookup {
            namespace: &key.namespace,
            secrets: &self.state.secrets,
            config_maps: &self.state.config_maps,
        };
        for problem in settings.apply(map, &lookup) {
            self.warn(key, WarningKind::ConfigMapKey, problem);
        }
        settings
    }

    /// Parses, on every core, the referenced Secrets the previous build
    /// cannot provide: at start-up that is all of them, and certificate
    /// parsing is most of a cold build.
    fn preparse(&mut self, ingresses: &[(&ObjectKey, &Ingress)], options: &TranslateOptions) {
        let mut wanted: Vec<(ObjectKey, Arc<Secret>)> = Vec::new();
        let mut queued = HashSet::new();
        let names = ingresses
            .iter()
            .flat_map(|(_, ingress)| tls_secret_keys(ingress));
        for key in names.chain(options.default_ssl_certificate.clone()) {
            if self.certs.contains_key(&key) || queued.contains(&key) {
                continue;
            }
            let Some(secret) = self.state.secrets.get(&key) else {
                continue;
            };
            match self.reused(&key, secret) {
                Some(parsed) => {
                    self.certs.insert(key, parsed);
                }
                None => {
                    queued.insert(key.clone());
                    wanted.push((key, secret.clone()));
                }
            }
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = wanted.len().div_ceil(threads).max(16);
        let parsed: Vec<Vec<(ObjectKey, Parsed)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = wanted
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(key, secret)| (key.clone(), Parsed::fresh(key, secret)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().filter_map(|w| w.join().ok()).collect()
        });
        // A Secret a failed worker did not return is parsed by `cert`.
        self.certs.extend(parsed.into_iter().flatten());
    }

    /// The previous build's result for this Secret, if it still applies.
    fn reused(&self, key: &ObjectKey, secret: &Arc<Secret>) -> Option<Parsed> {
        let parsed = self
            .previous
            .secrets
            .get(key)
            .filter(|p| p.reusable_for(secret))?;
        Some(Parsed {
            source: secret.clone(),
            ..parsed.clone()
        })
    }

    fn cert(&mut self, secret: &ObjectKey) -> Result<CertEntry, TlsError> {
        if let Some(done) = self.certs.get(secret) {
            return done.result.clone();
        }
        let Some(object) = self.state.secrets.get(secret) else {
            return Err(TlsError::NotFound);
        };
        let parsed = self
            .reused(secret, object)
            .unwrap_or_else(|| Parsed::fresh(secret, object));
        let result = parsed.result.clone();
        self.certs.insert(secret.clone(), parsed);
        result
    }
}

fn parse_secret(key: &ObjectKey, secret: &Secret) -> Result<CertEntry, TlsError> {
    certified_key(secret).map(|certified| CertEntry {
        not_after: tls::not_after(&certified),
        key: certified,
        secret: key.clone(),
    })
}

fn describe(route: &Route) -> String {
    match &route.ingress {
        Some(key) => format!("Ingress {key}"),
        None => "--default-backend-service".into(),
    }
}

/// Where in an Ingress a warning is about: a rule's host and path.
pub(crate) struct PathContext<'a> {
    host: &'a HostPattern,
    path: &'a str,
}

impl Display for PathContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host {}: path {}", self.host, self.path)
    }
}

fn conflict(key: &ObjectKey, holder: &Route, context: &dyn Display) -> String {
    let kind = format!("{:?}", holder.path_type);
    if holder.ingress.as_ref() == Some(key) {
        format!("{context} ({kind}) appears twice; the first is used")
    } else {
        format!(
            "{context} ({kind}) is already routed by the older {}; this rule is ignored",
            describe(holder)
        )
    }
}

fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or(text)
}
