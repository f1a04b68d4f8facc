//! One build: the Ingresses of ours, oldest first, each turned into
//! routes, certificates and fallbacks, then the Gateway API's routes and
//! the controller's own defaults; and the `Build` they all write into,
//! with the warnings it collects.

use std::fmt::Display;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

use super::settings::Settings;
use super::{
    backend, canary, class, ownership, BackendError, HostOwnership, IngressSummary, Parsed, Reuse,
    Summaries, TranslateOptions, Translation, Warning, WarningKind,
};
use crate::cluster::{ClusterState, ObjectKey};
use crate::policy::objects::ObjectLookup;
use crate::policy::rate_limit::{LimitConfig, RouteLimits, Statuses};
use crate::table::{Action, HostPattern, Route, RouteTableBuilder};

/// Translates the Ingresses of `only` (all of them when `None`) with the
/// rest of `state`: the Gateway API objects and the controller's own
/// settings always.
pub(super) fn build(
    state: &ClusterState,
    options: &TranslateOptions,
    previous: &Reuse,
    only: Option<&HashSet<ObjectKey>>,
) -> Translation {
    let ingresses = ours_oldest_first(state, options, only);
    let mut build = Build::new(state, options, previous, &ingresses);
    build.preparse(&ingresses, options);
    let settings = build.settings(options);
    let defaults = &settings.routes;
    let hsts = defaults.hsts.header();
    let prefix = options.annotations_prefix.as_str();
    for (key, ingress) in &ingresses {
        build.check_acme(key, ingress, options);
    }
    let (canary_ingresses, ingresses): (Vec<_>, Vec<_>) = ingresses
        .into_iter()
        .partition(|(_, ingress)| canary::Canaries::is_canary(ingress, prefix));
    let mut canaries = canary::Canaries::with_capacity(canary_ingresses.len());
    let mut summaries = Vec::with_capacity(ingresses.len() + canary_ingresses.len());
    for (key, ingress) in canary_ingresses {
        summaries.push(canaries.add(&mut build, key, ingress, prefix));
    }
    build.canaries = canaries;
    build.claim_server_snippets(&ingresses, prefix, &defaults.access);
    for (key, ingress) in ingresses {
        summaries.push(build.add_ingress(key, ingress, options, defaults, hsts.as_ref()));
    }
    build.add_www_redirects();
    build.add_gateway_api(options, defaults);
    build.add_controller_defaults(options);
    let canaries = std::mem::take(&mut build.canaries);
    canaries.warn_unmatched(&mut build);
    build.table.edge = Arc::new(settings.edge.clone());
    build.table.challenges = build.acme_challenges(options);
    build.finish(summaries, settings)
}

/// The Ingresses of `only` (all when `None`) that are ours, oldest first
/// (then by namespace/name): on a conflict the older one wins.
fn ours_oldest_first<'s>(
    state: &'s ClusterState,
    options: &TranslateOptions,
    only: Option<&HashSet<ObjectKey>>,
) -> Vec<(&'s ObjectKey, &'s Ingress)> {
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
    ingresses
}

pub(crate) struct Build<'a> {
    pub(super) state: &'a ClusterState,
    pub(super) backends: backend::Backends<'a>,
    /// The previous build's parsed Secrets.
    pub(super) previous: &'a Reuse,
    /// Each Secret parsed once per build, however many hosts name it.
    pub(super) certs: HashMap<ObjectKey, Parsed>,
    pub(super) table: RouteTableBuilder,
    pub(super) warnings: Vec<Warning>,
    /// Canary Ingresses waiting for their main routes.
    pub(super) canaries: canary::Canaries,
    /// Each Ingress's limits, for the next build.
    pub(super) limits: HashMap<ObjectKey, Arc<RouteLimits>>,
    /// `from-to-www-redirect` hosts, added once every Ingress's own.
    pub(super) www_redirects: Vec<(ObjectKey, String, Route)>,
    /// `--host-ownership namespace`: each host's owner.
    pub(super) owners: Option<ownership::Owners>,
    /// The Gateway API objects' status.
    pub(super) report: super::gateway_status::StatusReport,
    /// Each host's server-snippet.
    pub(super) server_snippets: HashMap<HostPattern, super::server_snippet::Claim>,
}

impl<'a> Build<'a> {
    fn new(
        state: &'a ClusterState,
        options: &TranslateOptions,
        previous: &'a Reuse,
        ingresses: &[(&ObjectKey, &Ingress)],
    ) -> Self {
        Build {
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
                    ingresses,
                    &options.annotations_prefix,
                )),
            },
            report: Default::default(),
            server_snippets: HashMap::new(),
        }
    }

    /// The translation: the table, the sorted warnings, the summaries by
    /// Ingress, and what the next build may reuse.
    fn finish(self, summaries: Vec<IngressSummary>, settings: Settings) -> Translation {
        let summaries: Summaries = summaries
            .into_iter()
            .map(|s| (s.ingress.clone(), Arc::new(s)))
            .collect();
        let mut warnings = self.warnings;
        warnings.sort();
        warnings.dedup();
        Translation {
            table: self.table.build(),
            warnings,
            summaries,
            settings,
            gateway_status: self.report,
            reuse: Reuse {
                secrets: self.certs,
                backends: self.backends.into_resolved(),
                limits: self.limits,
                last: None,
            },
        }
    }
}

impl Build<'_> {
    /// Whether the Ingress `key` may not publish `what` for `host`: says
    /// why in a warning.
    pub(super) fn not_owned(&mut self, key: &ObjectKey, host: &HostPattern, what: &str) -> bool {
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

    /// An Ingress's limits: the previous build's, counters and all, when
    /// they are configured the same; else new ones.
    pub(super) fn limits_of(
        &mut self,
        key: &ObjectKey,
        config: Option<LimitConfig>,
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
}
