//! An Ingress's TLS: the certificates of its `tls` entries, the client
//! certificates `auth-tls-*` ask for (by host), and `ssl-passthrough`.

use super::ingress::{IngressView, PathContext, NO_HOST_FOR_CLIENT_CERTS};
use super::{Build, TranslateOptions, WarningKind};
use crate::cluster::ObjectKey;
use crate::table::{Action, HostPattern};
use crate::tls::TlsError;

impl Build<'_> {
    pub(super) fn add_tls(&mut self, view: &IngressView<'_>) {
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

    /// `auth-tls-*` apply to the whole host; the oldest Ingress that sets
    /// them for a host decides them.
    pub(super) fn add_client_auth(&mut self, view: &IngressView<'_>, host: &HostPattern) {
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

    /// `ssl-passthrough`: TLS connections for the Ingress's hosts go whole
    /// to the backend of the host's `/` rule (ingress-nginx's rule), never
    /// terminated; the oldest Ingress keeps a contested host.
    pub(super) fn add_passthrough(&mut self, view: &IngressView<'_>, options: &TranslateOptions) {
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
}
