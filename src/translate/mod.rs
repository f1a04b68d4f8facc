//! Translate: `ClusterState + Options -> RouteTable + warnings`.
//!
//! Pure: no I/O, no clock, no globals. Every Ingress rule is decided here;
//! the proxy only executes the decisions. Ingresses are processed oldest
//! first (creationTimestamp, then namespace/name), so on a conflict the older
//! one keeps the host+path and the newer one gets a warning.

mod backend;
mod class;
mod tls;
mod warning;

use std::collections::HashMap;

use k8s_openapi::api::networking::v1::Ingress;

pub use backend::BackendError;
pub use tls::{certified_key, certified_key_from_der, provider, TlsError};
pub use warning::{Warning, WarningKind};

use crate::cluster::{ClusterState, ObjectKey};
use crate::table::{
    Action, CertEntry, HostPattern, PathType, Route, RouteTable, RouteTableBuilder,
};

/// The controller-wide settings translate depends on.
#[derive(Clone, Debug)]
pub struct TranslateOptions {
    /// `--ingress-class`: the IngressClass name that is ours.
    pub ingress_class: String,
    /// `--controller-class`: the `spec.controller` of IngressClasses that are ours.
    pub controller_class: String,
    /// `--watch-ingress-without-class`.
    pub watch_ingress_without_class: bool,
}

impl Default for TranslateOptions {
    fn default() -> Self {
        TranslateOptions {
            ingress_class: "gatehouse".into(),
            controller_class: "gatehouse.dev/ingress-controller".into(),
            watch_ingress_without_class: false,
        }
    }
}

/// The result of one translation.
#[derive(Debug)]
pub struct Translation {
    pub table: RouteTable,
    pub warnings: Vec<Warning>,
}

pub fn translate(state: &ClusterState, options: &TranslateOptions) -> Translation {
    let mut ingresses: Vec<(&ObjectKey, &Ingress)> = state
        .ingresses
        .iter()
        .filter(|(_, ing)| class::is_ours(ing, &state.ingress_classes, options))
        .collect();
    ingresses.sort_by(|(ka, a), (kb, b)| {
        let age = |i: &Ingress| i.metadata.creation_timestamp.as_ref().map(|t| t.0);
        age(a).cmp(&age(b)).then_with(|| ka.cmp(kb))
    });

    let mut build = Build {
        state,
        backends: backend::Backends::new(state),
        certs: HashMap::new(),
        table: RouteTableBuilder::default(),
        warnings: Vec::new(),
    };
    for (key, ingress) in ingresses {
        build.add_rules(key, ingress);
        build.add_tls(key, ingress);
    }
    let mut warnings = build.warnings;
    warnings.sort();
    warnings.dedup();
    Translation {
        table: build.table.build(),
        warnings,
    }
}

struct Build<'a> {
    state: &'a ClusterState,
    backends: backend::Backends<'a>,
    /// Each Secret parsed once per build, however many hosts name it.
    certs: HashMap<ObjectKey, Result<CertEntry, TlsError>>,
    table: RouteTableBuilder,
    warnings: Vec<Warning>,
}

impl Build<'_> {
    fn warn(&mut self, ingress: &ObjectKey, kind: WarningKind, message: String) {
        self.warnings.push(Warning {
            ingress: ingress.clone(),
            kind,
            message,
        });
    }

    fn add_rules(&mut self, key: &ObjectKey, ingress: &Ingress) {
        let rules = ingress.spec.as_ref().and_then(|s| s.rules.as_ref());
        for rule in rules.into_iter().flatten() {
            let host = HostPattern::parse(rule.host.as_deref());
            let paths = rule.http.as_ref().map(|h| h.paths.as_slice());
            for path in paths.unwrap_or_default() {
                let path_text = path.path.as_deref().unwrap_or("/");
                if !path_text.starts_with('/') {
                    self.warn(
                        key,
                        WarningKind::InvalidPath,
                        format!("host {host}: path {path_text:?} does not start with '/'; ignored"),
                    );
                    continue;
                }
                let Some(path_type) = PathType::parse(&path.path_type) else {
                    self.warn(
                        key,
                        WarningKind::InvalidPath,
                        format!(
                            "host {host}: path {path_text}: unknown pathType {:?}; ignored",
                            path.path_type
                        ),
                    );
                    continue;
                };
                let action = match self.backends.resolve(&key.namespace, &path.backend) {
                    Ok(backend) => Action::Forward(backend),
                    Err(e) => {
                        let kind = match e {
                            BackendError::MissingService(_) => WarningKind::MissingService,
                            BackendError::MissingPort { .. } => WarningKind::MissingServicePort,
                            _ => WarningKind::UnsupportedBackend,
                        };
                        self.warn(
                            key,
                            kind,
                            format!("host {host}: path {path_text}: {e}; requests get 503"),
                        );
                        Action::Unavailable
                    }
                };
                let route = Route {
                    ingress: key.clone(),
                    host: host.clone(),
                    path: path_text.to_owned(),
                    path_type,
                    action,
                };
                if let Err(holder) = self.table.add_route(route) {
                    let message = if &holder.ingress == key {
                        format!("host {host}: path {path_text} ({path_type:?}) appears twice; the first is used")
                    } else {
                        format!(
                            "host {host}: path {path_text} ({path_type:?}) is already routed by the older Ingress {}; this rule is ignored",
                            holder.ingress
                        )
                    };
                    self.warn(key, WarningKind::RouteConflict, message);
                }
            }
        }
    }

    fn add_tls(&mut self, key: &ObjectKey, ingress: &Ingress) {
        let tls = ingress.spec.as_ref().and_then(|s| s.tls.as_ref());
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
            for host in entry.hosts.iter().flatten() {
                let pattern = HostPattern::parse(Some(host));
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

    fn cert(&mut self, secret: &ObjectKey) -> Result<CertEntry, TlsError> {
        if let Some(done) = self.certs.get(secret) {
            return done.clone();
        }
        let result = match self.state.secrets.get(secret) {
            None => Err(TlsError::NotFound),
            Some(s) => certified_key(s).map(|key| CertEntry {
                key,
                secret: secret.clone(),
            }),
        };
        self.certs.insert(secret.clone(), result.clone());
        result
    }
}
