//! A Gateway's listeners: which of them Gatehouse serves (HTTP on port 80,
//! HTTPS with `Terminate` on 443, for the route kinds it knows), each
//! Gateway's and listener's status, and the certificates of the HTTPS
//! listeners.

use std::collections::BTreeMap;

use super::super::gateway_status::{Condition, GatewayReport, ListenerReport};
use super::attach::ListenerHosts;
use super::grants::granted;
use crate::cluster::{ClusterState, ObjectKey};
use crate::gateway::{self, Gateway, Listener};
use crate::table::{CertEntry, HostPattern};
use crate::translate::{Build, WarningKind};

/// The route kinds served on HTTP and HTTPS listeners.
const ROUTE_KINDS: [&str; 2] = ["HTTPRoute", "GRPCRoute"];

/// The ports Gateway listeners may use: Gatehouse's HTTP and HTTPS ports,
/// as the LoadBalancer in front of it publishes them.
const HTTP_PORT: i32 = 80;
pub(super) const HTTPS_PORT: i32 = 443;

/// A listener of one of our Gateways that Gatehouse accepts. Routes attach
/// to it whether or not it is programmed (its status counts them), but
/// only a programmed one serves them.
pub(super) struct Open<'a> {
    pub(super) gateway: &'a ObjectKey,
    /// The listener's place in its Gateway's report.
    pub(super) index: usize,
    pub(super) listener: &'a Listener,
    pub(super) hostname: Option<HostPattern>,
    pub(super) tls: bool,
    /// The route kinds `allowedRoutes.kinds` admits of those served here.
    pub(super) kinds: Vec<&'static str>,
    /// An HTTPS listener's certificate and its Secret; `None` for plain
    /// HTTP, and for an HTTPS listener whose certificate cannot be used,
    /// which is not programmed.
    pub(super) cert: Option<(ObjectKey, CertEntry)>,
}

impl Open<'_> {
    /// Whether the listener serves its routes: plain HTTP always, HTTPS
    /// with a usable certificate.
    pub(super) fn programmed(&self) -> bool {
        !self.tls || self.cert.is_some()
    }
}

impl Build<'_> {
    /// Each Gateway's report, and the listeners of ours Gatehouse serves.
    pub(super) fn open_gateways<'a>(
        &mut self,
        gateways: &BTreeMap<&'a ObjectKey, &'a Gateway>,
    ) -> Vec<Open<'a>> {
        let mut open = Vec::new();
        for (&key, &gateway) in gateways {
            let report = self.open_gateway(key, gateway, &mut open);
            self.report.gateways.insert(key.clone(), report);
        }
        open
    }

    /// One Gateway's report; the listeners Gatehouse serves go to `open`.
    fn open_gateway<'a>(
        &mut self,
        key: &'a ObjectKey,
        gateway: &'a Gateway,
        open: &mut Vec<Open<'a>>,
    ) -> GatewayReport {
        let mut report = GatewayReport {
            generation: gateway.metadata.generation,
            ..GatewayReport::default()
        };
        let parameters = gateway.spec.infrastructure.as_ref();
        if parameters.is_some_and(|i| i.parameters_ref.is_some()) {
            let why = "infrastructure.parametersRef names parameters, and Gatehouse takes none";
            let message = format!("{why} (InvalidParameters); the Gateway is not served");
            self.warn(key, WarningKind::GatewayListener, message);
            report.conditions = vec![
                Condition::no("Accepted", "InvalidParameters", why),
                Condition::no("Programmed", "Invalid", why),
            ];
            self.report.refused.insert(key.clone());
            return report;
        }
        for (index, listener) in gateway.spec.listeners.iter().enumerate() {
            let (listener_report, served) = self.listener_report(key, index, listener);
            open.extend(served);
            report.listeners.push(listener_report);
        }
        report
    }

    /// A listener's status, and the listener when Gatehouse serves it.
    fn listener_report<'a>(
        &mut self,
        key: &'a ObjectKey,
        index: usize,
        listener: &'a Listener,
    ) -> (ListenerReport, Option<Open<'a>>) {
        let mut report = ListenerReport {
            name: listener.name.clone(),
            ..ListenerReport::default()
        };
        match self.open_listener(key, index, listener) {
            Ok((mut l, kinds)) => {
                report.supported_kinds = l.kinds.clone();
                if l.tls {
                    match self.listener_cert(&l) {
                        Ok(found) => l.cert = Some(found),
                        Err((reason, why)) => {
                            let message = format!(
                                "listener {}: {why} ({reason}); not programmed: its routes are not served over HTTPS, and a handshake for its hostnames fails unless another certificate covers them",
                                listener.name
                            );
                            self.warn(key, WarningKind::GatewayListener, message);
                            report.conditions = vec![
                                Condition::yes("Accepted", "Accepted"),
                                Condition::no("ResolvedRefs", reason, why.clone()),
                                Condition::no("Programmed", "Invalid", why),
                            ];
                            return (report, Some(l));
                        }
                    }
                }
                report.conditions = vec![
                    Condition::yes("Accepted", "Accepted"),
                    kinds.unwrap_or_else(|| Condition::yes("ResolvedRefs", "ResolvedRefs")),
                    Condition::yes("Programmed", "Programmed"),
                ];
                (report, Some(l))
            }
            Err(refused) => {
                let message = refused.message.clone();
                report.conditions = vec![
                    refused,
                    Condition::yes("ResolvedRefs", "ResolvedRefs"),
                    Condition::no("Programmed", "Invalid", message),
                ];
                (report, None)
            }
        }
    }

    /// A listener Gatehouse can serve (with a `ResolvedRefs` condition
    /// when its route kinds are wrong), or the `Accepted` condition that
    /// says why not; each problem is a warning too.
    fn open_listener<'a>(
        &mut self,
        gateway: &'a ObjectKey,
        index: usize,
        listener: &'a Listener,
    ) -> Result<(Open<'a>, Option<Condition>), Condition> {
        let name = &listener.name;
        let mut refuse = |reason: &'static str, why: String| {
            let message = format!("listener {name}: {why} ({reason})");
            self.warn(gateway, WarningKind::GatewayListener, message);
            Err(Condition::no("Accepted", reason, why))
        };
        let tls = match (listener.protocol.as_str(), listener.port) {
            ("HTTP", HTTP_PORT) => false,
            ("HTTPS", HTTPS_PORT) => true,
            ("HTTP" | "HTTPS", port) => {
                return refuse("PortUnavailable", format!(
                    "port {port} is not served: every Gateway of this class shares Gatehouse's ports, HTTP {HTTP_PORT} and HTTPS {HTTPS_PORT}"
                ));
            }
            (protocol, _) => {
                return refuse(
                    "UnsupportedProtocol",
                    format!("protocol {protocol} is not supported; HTTP and HTTPS are"),
                );
            }
        };
        if tls {
            let mode = listener
                .tls
                .as_ref()
                .map_or("Terminate", |t| t.mode.as_str());
            if mode != "Terminate" {
                return refuse(
                    "UnsupportedValue",
                    format!("TLS mode {mode} is not supported; Terminate is"),
                );
            }
        }
        let kinds = &listener.allowed_routes.kinds;
        let served: Vec<&'static str> = ROUTE_KINDS
            .into_iter()
            .filter(|served| {
                kinds.is_empty()
                    || kinds
                        .iter()
                        .any(|k| k.group == gateway::GROUP && k.kind == *served)
            })
            .collect();
        let unknown = kinds
            .iter()
            .any(|k| k.group != gateway::GROUP || !ROUTE_KINDS.contains(&k.kind.as_str()));
        let mut kinds_condition = None;
        if unknown {
            let why =
                "allowedRoutes.kinds names a kind not served here; HTTPRoute and GRPCRoute are";
            let message = format!("listener {name}: {why} (InvalidRouteKinds)");
            self.warn(gateway, WarningKind::GatewayListener, message);
            kinds_condition = Some(Condition::no("ResolvedRefs", "InvalidRouteKinds", why));
        }
        let open = Open {
            gateway,
            index,
            listener,
            hostname: listener
                .hostname
                .as_deref()
                .map(|h| HostPattern::parse_gateway(Some(h))),
            tls,
            kinds: served,
            cert: None,
        };
        Ok((open, kinds_condition))
    }

    /// Each Gateway's own conditions and its listeners' attached routes.
    pub(super) fn sum_up_gateways(&mut self) {
        let refused = &self.report.refused;
        let reports = self.report.gateways.iter_mut();
        for (_, report) in reports.filter(|(key, _)| !refused.contains(*key)) {
            let accepted = report
                .listeners
                .iter()
                .filter(|l| {
                    l.conditions
                        .iter()
                        .all(|c| c.type_ != "Accepted" || c.status)
                })
                .count();
            let programmed = report
                .listeners
                .iter()
                .filter(|l| {
                    l.conditions
                        .iter()
                        .any(|c| c.type_ == "Programmed" && c.status)
                })
                .count();
            let all = report.listeners.len();
            let invalid = format!("{} of {all} listeners are not valid", all - accepted);
            report.conditions = vec![
                match accepted {
                    n if n == all => Condition::yes("Accepted", "Accepted"),
                    0 => Condition::no("Accepted", "ListenersNotValid", invalid),
                    _ => Condition {
                        message: invalid,
                        ..Condition::yes("Accepted", "ListenersNotValid")
                    },
                },
                match programmed {
                    0 => Condition::no("Programmed", "Invalid", "no listener is programmed"),
                    _ => Condition::yes("Programmed", "Programmed"),
                },
            ];
        }
    }

    /// The Secret and certificate an HTTPS listener names.
    fn listener_cert(
        &mut self,
        l: &Open<'_>,
    ) -> Result<(ObjectKey, CertEntry), (&'static str, String)> {
        let secret = certificate_secret(self.state, l.gateway, l.listener)?;
        match self.cert(&secret) {
            Ok(cert) => Ok((secret, cert)),
            Err(e) => Err(("InvalidCertificateRef", format!("TLS Secret {secret}: {e}"))),
        }
    }

    /// The certificate of each programmed HTTPS listener: for its
    /// hostname, or, when it has none, for the hosts of the routes it took.
    /// The same names of a listener that is not programmed are refused,
    /// so that no handshake serves them with the default certificate as
    /// if it were; a name another certificate covers (an Ingress's, or
    /// another listener's) keeps it, and so do all names while a
    /// programmed HTTPS listener without a hostname takes every name.
    pub(super) fn add_listener_certs(
        &mut self,
        open: &[Open<'_>],
        listener_hosts: &ListenerHosts<'_>,
    ) {
        let catch_all = open
            .iter()
            .any(|l| l.tls && l.hostname.is_none() && l.programmed());
        for l in open.iter().filter(|l| l.tls) {
            let name = &l.listener.name;
            let hosts = match &l.hostname {
                Some(h) => vec![h.clone()],
                None => listener_hosts
                    .get(&(l.gateway, name.as_str()))
                    .cloned()
                    .unwrap_or_default(),
            };
            let Some((secret, cert)) = &l.cert else {
                if !catch_all {
                    for host in &hosts {
                        self.table.certs.refuse(host);
                    }
                }
                continue;
            };
            // A listener for every name answers every name it has no
            // other certificate for (`--default-ssl-certificate`, set
            // later, wins over it).
            if l.hostname.is_none() && !self.table.certs.has_default() {
                self.table.certs.set_default(cert.clone());
            }
            for host in hosts {
                if !self.table.certs.insert_first(&host, cert.clone()) {
                    let message = format!("listener {name}: host {host} already has a certificate (from an Ingress or an older listener); Secret {secret} is not used for it");
                    self.warn(l.gateway, WarningKind::TlsConflict, message);
                }
            }
        }
    }
}

/// The Secret an HTTPS listener's certificate is in: its first
/// `certificateRefs` entry, a core Secret in the Gateway's namespace or in
/// one whose ReferenceGrant allows it; or the `ResolvedRefs` reason and
/// why not.
pub(super) fn certificate_secret(
    state: &ClusterState,
    gateway: &ObjectKey,
    listener: &Listener,
) -> Result<ObjectKey, (&'static str, String)> {
    let refs = listener.tls.as_ref().map(|t| t.certificate_refs.as_slice());
    let Some(cert_ref) = refs.and_then(<[_]>::first) else {
        return Err((
            "InvalidCertificateRef",
            "HTTPS without certificateRefs".into(),
        ));
    };
    if !cert_ref.group.is_empty() || cert_ref.kind != "Secret" {
        return Err((
            "InvalidCertificateRef",
            format!(
                "certificateRef kind {}/{} is not supported; Secret is",
                cert_ref.group, cert_ref.kind
            ),
        ));
    }
    let namespace = cert_ref.namespace.as_deref().unwrap_or(&gateway.namespace);
    if namespace != gateway.namespace
        && !granted(
            state,
            &gateway.namespace,
            "Gateway",
            namespace,
            "",
            "Secret",
            &cert_ref.name,
        )
    {
        return Err((
            "RefNotPermitted",
            format!(
                "Secret {namespace}/{} is in another namespace and no ReferenceGrant allows it",
                cert_ref.name
            ),
        ));
    }
    Ok(ObjectKey::new(namespace, &cert_ref.name))
}
