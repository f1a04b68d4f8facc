//! What answers when no rule does: an Ingress's `defaultBackend`, the
//! `default-backend` annotation (also for a Service without endpoints),
//! `custom-http-errors` pages, and the controller's
//! `--default-backend-service` and `--default-ssl-certificate`.

use std::sync::Arc;

use super::ingress::{describe, IngressView};
use super::{Build, IngressAnnotations, TranslateOptions, WarningKind};
use crate::cluster::ObjectKey;
use crate::policy::error_pages::ErrorPages;
use crate::policy::proxy_settings::ProxySettings;
use crate::table::{Action, HostPattern, PathType, Route};
use crate::tls::TlsError;

impl Build<'_> {
    /// `spec.defaultBackend`: with rules, it serves the unmatched paths of
    /// this Ingress's hosts; without rules, every request no rule matches.
    pub(super) fn add_default_backend(&mut self, view: &IngressView<'_>) {
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

    /// `default-backend`: also serves a rule whose Service has no ready
    /// endpoint, as in ingress-nginx.
    pub(super) fn default_backend_fallback(
        &mut self,
        view: &IngressView<'_>,
        action: Action,
    ) -> Action {
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

    /// `custom-http-errors`, rendered by `default-backend` (a Service of
    /// the Ingress's namespace, its first port) or else by
    /// `--default-backend-service`.
    pub(super) fn error_pages(
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

    /// `--default-backend-service` (when no Ingress provides a default) and
    /// `--default-ssl-certificate`. Problems with either are logged by the
    /// caller as warnings about the controller's own configuration.
    pub(super) fn add_controller_defaults(&mut self, options: &TranslateOptions) {
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
            let policy = Arc::new(ProxySettings {
                body_limit: None,
                ..ProxySettings::default()
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
}
