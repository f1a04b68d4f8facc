//! An Ingress's rules: each host and path becomes a route (with the
//! `server-alias` names and the `from-to-www-redirect` twin), shaped by
//! what the Ingress's annotations decided; a path already routed by an
//! older Ingress is a conflict, with a warning.

use std::fmt::Display;
use std::sync::Arc;

use http::HeaderValue;
use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress};

use super::settings::RouteDefaults;
use super::PATH_REGEX_BYTES;
use super::{
    annotations, Build, IngressAnnotations, IngressSummary, TranslateOptions, WarningKind,
};
use crate::cluster::ObjectKey;
use crate::policy::error_pages::ErrorPages;
use crate::policy::objects::ObjectLookup;
use crate::policy::proxy_settings::ProxySettings;
use crate::policy::rate_limit::RouteLimits;
use crate::policy::rewrite::{has_captures, Rewrite};
use crate::policy::AccessPolicy;
use crate::table::{Action, HostPattern, PathType, Route};

/// One Ingress with what its annotations decided.
pub(super) struct IngressView<'a> {
    pub(super) key: &'a ObjectKey,
    pub(super) ingress: &'a Ingress,
    pub(super) policy: Arc<ProxySettings>,
    pub(super) annotations: &'a IngressAnnotations,
    /// The HSTS header value, when HSTS is on.
    pub(super) hsts: Option<&'a http::HeaderValue>,
    /// `ssl-redirect`'s default (the controller ConfigMap's).
    pub(super) ssl_redirect: bool,
    pub(super) limits: Option<Arc<RouteLimits>>,
    pub(super) error_pages: Option<Arc<ErrorPages>>,
    /// The access of this Ingress's rules without host, when it differs:
    /// closed, when the Ingress asks for client certificates, which are
    /// asked for by server name.
    pub(super) any_host_access: Option<Arc<AccessPolicy>>,
}

pub(super) const NO_HOST_FOR_CLIENT_CERTS: &str =
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

    pub(super) fn route(
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
            snippet: None,
            metrics: Default::default(),
        }
    }
}

impl Build<'_> {
    /// An Ingress of ours: its annotations parsed, its rules, passthrough,
    /// default backend and TLS added; its migration summary.
    pub(super) fn add_ingress(
        &mut self,
        key: &ObjectKey,
        ingress: &Ingress,
        options: &TranslateOptions,
        defaults: &RouteDefaults,
        hsts: Option<&HeaderValue>,
    ) -> IngressSummary {
        let state = self.state;
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
            self.warn(key, kind, message);
        }
        let limits = self.limits_of(key, parsed.limits.clone(), defaults.limit_statuses);
        let error_pages = self.error_pages(key, &parsed, options);
        let ingress = IngressView {
            key,
            ingress,
            limits,
            error_pages,
            policy: Arc::new(parsed.policy.clone()),
            annotations: &parsed,
            hsts,
            ssl_redirect: defaults.ssl_redirect,
            any_host_access: parsed.access.client_cert.as_ref().map(|_| {
                Arc::new(AccessPolicy {
                    denied: Some(NO_HOST_FOR_CLIENT_CERTS.into()),
                    ..AccessPolicy::default()
                })
            }),
        };
        self.add_rules(&ingress);
        self.add_passthrough(&ingress, options);
        self.add_default_backend(&ingress);
        self.add_tls(&ingress);
        let mut summary = parsed.summary.clone();
        summary.ingress = key.clone();
        summary
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
                self.add_path(view, &host, path);
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

    /// One path of a rule: a route for its host, and one for each of the
    /// host's `server-alias` names.
    fn add_path(&mut self, view: &IngressView<'_>, host: &HostPattern, path: &HTTPIngressPath) {
        let key = view.key;
        let path_text = path.path.as_deref().unwrap_or("/");
        // Formatted only into a warning.
        let context = PathContext {
            host,
            path: path_text,
        };
        let Some(path_type) = PathType::parse(&path.path_type) else {
            let message = format!("{context}: unknown pathType {:?}; ignored", path.path_type);
            self.warn(key, WarningKind::InvalidPath, message);
            return;
        };
        let regex = match self.path_regex(view, path_text, path_type) {
            Ok(regex) => regex,
            Err(why) => {
                self.warn(
                    key,
                    WarningKind::InvalidPath,
                    format!("{context}: {why}; ignored"),
                );
                return;
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
        for name in std::iter::once(host).chain(aliases) {
            if name != host && self.not_owned(key, name, "server-alias") {
                continue;
            }
            let action = match &action {
                Action::Forward(b) => Action::Forward(b.clone()),
                Action::Unavailable => Action::Unavailable,
            };
            let mut route = view.route(host.clone(), path_text, path_type, action, regex.is_some());
            route.host = name.clone();
            route.snippet = self.route_snippet(view, host, &route);
            self.server_body_timeout(host, &mut route);
            if name != host {
                self.alias_server_snippet(host, name);
            }
            route.canary = self.canaries.take(host, path_text);
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

    /// `from-to-www-redirect`: the other name (with or without `www.`)
    /// redirects to the rule's host, unless some Ingress routes that name
    /// itself.
    pub(super) fn add_www_redirects(&mut self) {
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
}

pub(super) fn describe(route: &Route) -> String {
    match &route.ingress {
        Some(key) => format!("Ingress {key}"),
        None => "--default-backend-service".into(),
    }
}

/// Where in an Ingress a warning is about: a rule's host and path.
pub(crate) struct PathContext<'a> {
    pub(super) host: &'a HostPattern,
    pub(super) path: &'a str,
}

impl Display for PathContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host {}: path {}", self.host, self.path)
    }
}

pub(super) fn conflict(key: &ObjectKey, holder: &Route, context: &dyn Display) -> String {
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
