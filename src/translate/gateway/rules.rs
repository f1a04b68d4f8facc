//! A rule's compilation: its filters (fail closed: a filter that cannot be
//! applied makes the rule answer 500), its mirrors and weighted backends
//! (a Service in the route's namespace, or one a ReferenceGrant allows),
//! its timeouts and its policy; and what was wrong, for the route's status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::networking::v1::{IngressBackend, IngressServiceBackend, ServiceBackendPort};

use super::super::gateway_status::{Condition, ParentReport};
use super::filters::apply_filter;
use super::grants::granted;
use super::Who;
use crate::gateway::{self, HTTPBackendRef, HTTPRouteTimeouts, RequestMirror};
use crate::policy::proxy_settings::{BackendProtocol, ProxySettings};
use crate::table::{GatewayRule, Split};
use crate::translate::{Build, WarningKind};

/// What was wrong with a route's rules, for its status.
#[derive(Default)]
pub(super) struct Problems {
    /// The first backend that cannot be used: the reason and what.
    unresolved: Option<(&'static str, String)>,
    /// The first filter that is not supported.
    unsupported: Option<String>,
}

impl Problems {
    fn resolved_refs(&self) -> Condition {
        match &self.unresolved {
            None => Condition::yes("ResolvedRefs", "ResolvedRefs"),
            Some((reason, message)) => Condition::no("ResolvedRefs", reason, message.clone()),
        }
    }

    /// Adds the route's `ResolvedRefs` to a parent's status, and makes an
    /// unsupported filter its `Accepted` condition's reason.
    pub(super) fn report_to(&self, parent: &mut ParentReport) {
        parent.conditions.push(self.resolved_refs());
        if let Some(accepted) = &self.unsupported {
            if parent.conditions[0].status {
                parent.conditions[0] =
                    Condition::no("Accepted", "UnsupportedValue", accepted.clone());
            }
        }
    }
}

impl Build<'_> {
    /// A rule's filters and backends. What cannot be used is warned about
    /// and fails closed: an unknown filter makes the whole rule answer 500,
    /// an unresolvable backend its share.
    pub(super) fn compile_rule(
        &mut self,
        who: Who<'_>,
        index: usize,
        rule: &gateway::HTTPRouteRule,
        context: &str,
        problems: &mut Problems,
    ) -> GatewayRule {
        let key = who.key;
        let mut compiled = GatewayRule {
            kind: who.kind,
            origin: key.clone(),
            rule: index,
            ..GatewayRule::default()
        };
        let mut closed = false;
        for filter in &rule.filters {
            if let (Some(mirror), "RequestMirror") = (&filter.request_mirror, filter.type_.as_str())
            {
                self.add_mirror(who, context, mirror, &mut compiled, problems);
                continue;
            }
            if let Err(why) = apply_filter(&mut compiled, filter) {
                let message = format!("{context}: {why}; the rule answers 500");
                self.warn_object(who.kind, key, WarningKind::RouteRefs, message);
                problems
                    .unsupported
                    .get_or_insert(format!("{context}: {why}"));
                closed = true;
            }
        }
        if closed {
            compiled.redirect = None;
            compiled.backends = Split::default();
            compiled.backends.push(1, None);
            return compiled;
        }
        if compiled.redirect.is_some() {
            return compiled;
        }
        for backend in &rule.backend_refs {
            let resolved = self.rule_backend(who, context, backend, problems);
            compiled.backends.push(backend.weight, resolved);
        }
        if let Some(t) = &rule.timeouts {
            compiled.deadline = self.rule_deadline(who, context, t);
        }
        compiled
    }

    /// A `RequestMirror` filter. A mirror that cannot be resolved is left
    /// out: it protects nothing, and the requests themselves are served.
    fn add_mirror(
        &mut self,
        who: Who<'_>,
        context: &str,
        mirror: &RequestMirror,
        compiled: &mut GatewayRule,
        problems: &mut Problems,
    ) {
        match self.gateway_backend(who, &mirror.backend_ref.as_backend_ref()) {
            Ok(backend) => compiled.mirrors.push((backend, mirror.per_million())),
            Err((reason, why)) => {
                let what = format!(
                    "{context}: RequestMirror {}: {why}",
                    mirror.backend_ref.name
                );
                problems.unresolved.get_or_insert((reason, what.clone()));
                let message = format!("{what}; requests are not mirrored");
                self.warn_object(who.kind, who.key, WarningKind::RouteRefs, message);
            }
        }
    }

    /// One weighted backend of a rule; `None` (its share answers 500) when
    /// it cannot be used.
    fn rule_backend(
        &mut self,
        who: Who<'_>,
        context: &str,
        backend: &HTTPBackendRef,
        problems: &mut Problems,
    ) -> Option<Arc<crate::table::Backend>> {
        match self.gateway_backend(who, backend) {
            Ok(b) => Some(b),
            Err((reason, why)) => {
                problems.unresolved.get_or_insert((
                    reason,
                    format!("{context}: backendRef {}: {why}", backend.name),
                ));
                let message = format!(
                    "{context}: backendRef {}: {why}; its share of requests gets 500",
                    backend.name
                );
                self.warn_object(who.kind, who.key, WarningKind::RouteRefs, message);
                None
            }
        }
    }

    /// A rule's deadline: the shorter of `request` and `backendRequest`.
    fn rule_deadline(
        &mut self,
        who: Who<'_>,
        context: &str,
        t: &HTTPRouteTimeouts,
    ) -> Option<Duration> {
        let mut deadline = None;
        for (field, text) in [
            ("request", &t.request),
            ("backendRequest", &t.backend_request),
        ] {
            let Some(text) = text else { continue };
            match gateway::parse_duration(text) {
                // `0s`: no timeout.
                Some(d) if d.is_zero() => {}
                Some(d) => deadline = Some(deadline.map_or(d, |old: Duration| old.min(d))),
                None => {
                    let message = format!("{context}: timeouts.{field} {text:?} is not a duration (GEP-2257: 1h, 10s, 500ms); ignored");
                    self.warn_object(who.kind, who.key, WarningKind::RouteRefs, message);
                }
            }
        }
        deadline
    }

    /// A Service backendRef: in the route's namespace, or another one that
    /// grants it with a ReferenceGrant.
    fn gateway_backend(
        &mut self,
        who: Who<'_>,
        backend: &HTTPBackendRef,
    ) -> Result<Arc<crate::table::Backend>, (&'static str, String)> {
        let key = who.key;
        if !backend.group.is_empty() || backend.kind != "Service" {
            return Err((
                "InvalidKind",
                format!(
                    "kind {}/{} is not supported (InvalidKind); Service is",
                    backend.group, backend.kind
                ),
            ));
        }
        if !backend.filters.is_empty() {
            return Err((
                "UnsupportedValue",
                "backendRef filters are not implemented yet".into(),
            ));
        }
        let namespace = backend.namespace.as_deref().unwrap_or(&key.namespace);
        if namespace != key.namespace
            && !granted(
                self.state,
                &key.namespace,
                who.kind,
                namespace,
                "",
                "Service",
                &backend.name,
            )
        {
            return Err(("RefNotPermitted", format!(
                "Service {namespace}/{} is in another namespace and no ReferenceGrant allows it (RefNotPermitted)",
                backend.name
            )));
        }
        let Some(port) = backend.port else {
            return Err((
                "UnsupportedValue",
                "a Service backendRef needs a port".into(),
            ));
        };
        let reference = IngressBackend {
            service: Some(IngressServiceBackend {
                name: backend.name.clone(),
                port: Some(ServiceBackendPort {
                    number: Some(port),
                    name: None,
                }),
            }),
            resource: None,
        };
        self.backends
            .resolve(namespace, &reference)
            .map_err(|e| ("BackendNotFound", format!("{e} (BackendNotFound)")))
    }
}

/// A rule's policy: the controller's defaults, with `URLRewrite`'s
/// hostname as the upstream `Host`, and gRPC over cleartext HTTP/2 (h2c)
/// to a GRPCRoute's backends.
pub(super) fn policy_for(base: &Arc<ProxySettings>, rule: &GatewayRule) -> Arc<ProxySettings> {
    let grpc = rule.kind == "GRPCRoute";
    if rule.upstream_host.is_none() && !grpc {
        return base.clone();
    }
    let mut policy = (**base).clone();
    if let Some(host) = &rule.upstream_host {
        policy.upstream_vhost = Some(host.clone());
    }
    if grpc {
        policy.protocol = BackendProtocol::Grpc;
    }
    Arc::new(policy)
}
