//! Translate: `ClusterState + Options -> RouteTable + warnings`.
//!
//! Pure: no I/O, no clock, no globals. Every Ingress rule is decided here;
//! the proxy only executes the decisions. Ingresses are processed oldest
//! first (creationTimestamp, then namespace/name), so on a conflict the older
//! one keeps the host+path and the newer one gets a warning.
//!
//! This file holds the entry points and what they take and give; `build`
//! drives one build, `ingress`, `ingress_tls` and `defaults` turn an
//! Ingress into routes, certificates and fallbacks, `parsed_secrets` parses
//! each TLS Secret once and keeps it for the next build, and `gateway`
//! does the Gateway API's share.

pub mod acme;
pub mod admission;
mod annotations;
mod backend;
mod build;
mod canary;
mod class;
mod defaults;
mod gateway;
pub mod gateway_status;
mod incremental;
mod ingress;
mod ingress_tls;
mod ownership;
mod parsed_secrets;
mod server_snippet;
pub mod settings;
mod summary;
mod warning;

use foldhash::HashMap;
use std::sync::Arc;

pub use crate::policy::NGINX_PREFIX;
pub use acme::{certificate_requests, AcmeOptions, CertificateRequest, Owner};
pub use admission::{AdmissionOptions, Verdict};
pub use annotations::IngressAnnotations;
pub use backend::BackendError;
pub use class::is_ours;
pub use incremental::HostIndex;
pub use ownership::HostOwnership;
pub use summary::{totals, IngressSummary, SnippetSummary};
pub use warning::{Warning, WarningKind};

pub(crate) use build::Build;
pub(crate) use ingress::PathContext;

use crate::cluster::{ClusterState, ObjectKey};
use crate::policy::hsts::HstsOptions;
use crate::policy::rate_limit::{RouteLimits, Statuses};
use crate::policy::AccessOptions;
use crate::table::{GlobalSettings, RouteTable};
use parsed_secrets::Parsed;
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
    pub edge: GlobalSettings,
    /// `--host-ownership`: who may publish rules for a host.
    pub host_ownership: HostOwnership,
    /// `--gateway-controller-name`: the `controllerName` of GatewayClasses
    /// that are ours.
    pub gateway_controller: String,
    /// `--acme-default-issuer`, and where the challenge answers are.
    pub acme: AcmeOptions,
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
            edge: GlobalSettings::default(),
            host_ownership: HostOwnership::Shared,
            gateway_controller: "gatehouse.dev/gateway-controller".into(),
            acme: AcmeOptions::default(),
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
    let translation = build::build(state, options, &previous, None);
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
    build::build(state, options, previous, None)
}
