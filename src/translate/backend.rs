//! Ingress backends into Service ports and their ready endpoints.
//!
//! `service.port.number` or `service.port.name` selects a Service port.
//! EndpointSlices (label `kubernetes.io/service-name`) name their ports after
//! the Service port, and carry the resolved target port number, so a named
//! `targetPort` needs no Pod lookup. Only endpoints whose `ready` condition is
//! not `false` receive traffic (an absent condition means ready).

use foldhash::HashMap;
use foldhash::HashMapExt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::uri::Authority;
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IngressBackend;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::cluster::{ClusterState, ObjectKey};
use crate::upstream::{Backend, EndpointSet, Upstream};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("Service {0} not found")]
    MissingService(ObjectKey),
    #[error("Service {service} has no port {port}")]
    MissingPort { service: ObjectKey, port: String },
    #[error("backend names neither a Service nor a port")]
    Incomplete,
    #[error("resource backends are not supported")]
    Resource,
    #[error("Service {0} is of type ExternalName but has no externalName")]
    NoExternalName(ObjectKey),
    #[error("Service {service} has externalName {name:?}, which is not a host name")]
    BadExternalName { service: ObjectKey, name: String },
    #[error("Service {0} has no ports")]
    NoPorts(ObjectKey),
}

/// Resolves backends against one state, each Service port once: routes that
/// share a Service port share one `Backend` and so one round-robin turn.
/// A Service port whose Service and EndpointSlices are the same objects as
/// in the previous build keeps its `Backend` (and so its round-robin turn,
/// latency averages and passive-health marks) without being resolved again.
/// A change of a Service's EndpointSlices alone is applied to its
/// `Backend`s in place instead (`refresh_endpoints`), by incremental
/// builds.
pub struct Backends<'a> {
    state: &'a ClusterState,
    previous: &'a ResolvedBackends,
    resolved: ResolvedBackends,
}

/// The Service ports one build resolved, for the next build to reuse: by
/// Service and port as the Ingress named it (a port name always has a
/// letter, so a number and a name never share a text).
pub type ResolvedBackends = HashMap<(ObjectKey, String), Resolved>;

/// One resolved Service port, with the objects it was resolved from.
#[derive(Clone, Debug)]
pub struct Resolved {
    service: Option<Arc<Service>>,
    slices: Vec<Arc<EndpointSlice>>,
    result: Result<Arc<Backend>, BackendError>,
}

impl Resolved {
    fn same_service(&self, service: Option<&Arc<Service>>) -> bool {
        match (&self.service, service) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    fn still_valid(&self, service: Option<&Arc<Service>>, slices: &[&Arc<EndpointSlice>]) -> bool {
        self.same_service(service)
            && self.slices.len() == slices.len()
            && self
                .slices
                .iter()
                .zip(slices)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

/// After a change of `service`'s EndpointSlices alone: puts the new ready
/// endpoints of each of its resolved ports in place in their `Backend`,
/// so that no route needs rebuilding. Returns false, changing nothing,
/// when that is not enough: the Service object itself changed, a port is
/// not known, or a port went from no ready endpoint to some or back.
pub fn refresh_endpoints(
    state: &ClusterState,
    resolved: &mut ResolvedBackends,
    service: &ObjectKey,
) -> bool {
    let object = state.services.get(service);
    // The ports a build can have resolved with endpoints: the Service's
    // own, by number and by name (a port it does not have resolved to an
    // error that no slice changes).
    let ports = object
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten();
    let mut keys: Vec<((ObjectKey, String), PortRef<'_>)> = Vec::new();
    for port in ports {
        let number = (service.clone(), port.port.to_string());
        keys.push((number, PortRef::Number(port.port)));
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            keys.push(((service.clone(), name.to_owned()), PortRef::Name(name)));
        }
    }
    let mut replacements = Vec::new();
    let mut found = false;
    for (key, port) in &keys {
        let Some(before) = resolved.get(key) else {
            continue;
        };
        found = true;
        if !before.same_service(object) {
            return false;
        }
        let backend = match &before.result {
            Ok(backend) if matches!(*backend.upstream(), Upstream::Endpoints(_)) => backend,
            // What failed, or an ExternalName, does not depend on slices.
            _ => continue,
        };
        let Ok(fresh) = upstream_of(state, service, *port) else {
            return false;
        };
        let has_targets = match &fresh {
            Upstream::Endpoints(set) => !set.is_empty(),
            Upstream::External(_) => return false,
        };
        if has_targets != backend.has_targets() {
            return false;
        }
        replacements.push((backend.clone(), fresh));
    }
    if !found {
        return false;
    }
    for (backend, fresh) in replacements {
        backend.replace_upstream(fresh);
    }
    let slices: Vec<Arc<EndpointSlice>> = state.slices_of(service).cloned().collect();
    for (key, _) in &keys {
        if let Some(before) = resolved.get_mut(key) {
            before.slices.clone_from(&slices);
        }
    }
    true
}

impl<'a> Backends<'a> {
    /// Resolves against `state`, reusing `previous`; room for about
    /// `expected` Service ports.
    pub fn new(state: &'a ClusterState, previous: &'a ResolvedBackends, expected: usize) -> Self {
        Backends {
            state,
            previous,
            resolved: HashMap::with_capacity(expected),
        }
    }

    /// What this build resolved, for the next one.
    pub fn into_resolved(self) -> ResolvedBackends {
        self.resolved
    }

    /// The backend of an Ingress in `namespace` (Services are always looked
    /// up in the Ingress's own namespace).
    pub fn resolve(
        &mut self,
        namespace: &str,
        backend: &IngressBackend,
    ) -> Result<Arc<Backend>, BackendError> {
        if backend.resource.is_some() {
            return Err(BackendError::Resource);
        }
        let service = backend.service.as_ref().ok_or(BackendError::Incomplete)?;
        let port = service.port.as_ref().ok_or(BackendError::Incomplete)?;
        let port = match (&port.name, port.number) {
            (Some(name), _) if !name.is_empty() => PortRef::Name(name),
            (_, Some(number)) => PortRef::Number(number),
            _ => return Err(BackendError::Incomplete),
        };
        self.resolve_port(ObjectKey::new(namespace, &service.name), port)
    }

    /// `service-upstream`: the Service's ClusterIP and port as the one
    /// endpoint, instead of its Pods (kube-proxy balances). ExternalName
    /// Services stay as they are.
    pub fn service_upstream(&self, backend: &Arc<Backend>) -> Result<Arc<Backend>, String> {
        if matches!(*backend.upstream(), Upstream::External(_)) {
            return Ok(backend.clone());
        }
        let service = self
            .state
            .services
            .get(&backend.service)
            .ok_or_else(|| format!("Service {} not found", backend.service))?;
        let spec = service.spec.as_ref();
        let ip = spec
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .ok_or_else(|| format!("Service {} has no ClusterIP (headless)", backend.service))?;
        let port = spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .find(|p| {
                p.name.as_deref() == Some(&backend.port) || p.port.to_string() == backend.port
            })
            .ok_or_else(|| format!("Service {} has no port {}", backend.service, backend.port))?;
        let port = u16::try_from(port.port).map_err(|_| "port out of range".to_owned())?;
        Ok(Arc::new(Backend::new(
            backend.service.clone(),
            backend.port.clone(),
            Upstream::Endpoints(EndpointSet::new(vec![SocketAddr::new(ip, port)])),
        )))
    }

    /// The first port of a Service (`--default-backend-service`, as
    /// ingress-nginx uses it).
    pub fn resolve_first_port(&mut self, key: &ObjectKey) -> Result<Arc<Backend>, BackendError> {
        let service = self
            .state
            .services
            .get(key)
            .ok_or_else(|| BackendError::MissingService(key.clone()))?;
        let first = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
            .ok_or_else(|| BackendError::NoPorts(key.clone()))?;
        self.resolve_port(key.clone(), PortRef::Number(first.port))
    }

    fn resolve_port(
        &mut self,
        key: ObjectKey,
        port: PortRef<'_>,
    ) -> Result<Arc<Backend>, BackendError> {
        let cache_key = (key, port.to_string());
        if let Some(done) = self.resolved.get(&cache_key) {
            return done.result.clone();
        }
        let key = &cache_key.0;
        let service = self.state.services.get(key);
        let slices: Vec<&Arc<EndpointSlice>> = self.state.slices_of(key).collect();
        let result = match self.previous.get(&cache_key) {
            Some(before) if before.still_valid(service, &slices) => before.result.clone(),
            _ => self.resolve_uncached(key, port).map(Arc::new),
        };
        let resolved = Resolved {
            service: service.cloned(),
            slices: slices.iter().map(|s| Arc::clone(s)).collect(),
            result: result.clone(),
        };
        self.resolved.insert(cache_key, resolved);
        result
    }

    fn resolve_uncached(
        &self,
        key: &ObjectKey,
        port: PortRef<'_>,
    ) -> Result<Backend, BackendError> {
        let upstream = upstream_of(self.state, key, port)?;
        Ok(Backend::new(key.clone(), port.to_string(), upstream))
    }
}

/// Where a Service port's traffic goes in `state`: its ready endpoints, or
/// an ExternalName's name.
fn upstream_of(
    state: &ClusterState,
    key: &ObjectKey,
    port: PortRef<'_>,
) -> Result<Upstream, BackendError> {
    let service = state
        .services
        .get(key)
        .ok_or_else(|| BackendError::MissingService(key.clone()))?;
    let spec = service.spec.as_ref();
    let service_port = find_port(service, port);
    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        return external(
            key,
            spec.and_then(|s| s.external_name.as_deref()),
            service_port,
            port,
        );
    }
    let service_port = service_port.ok_or_else(|| BackendError::MissingPort {
        service: key.clone(),
        port: port.to_string(),
    })?;
    let addrs = state
        .slices_of(key)
        .flat_map(|slice| ready_addresses(slice.as_ref(), service_port))
        .collect();
    Ok(Upstream::Endpoints(EndpointSet::new(addrs)))
}

/// An ExternalName Service forwards to its DNS name. The port is the Service
/// port's numeric `targetPort`, else its `port`; a port number the Service
/// does not list is used as it is (ExternalName Services often list none).
fn external(
    key: &ObjectKey,
    name: Option<&str>,
    service_port: Option<&ServicePort>,
    port: PortRef<'_>,
) -> Result<Upstream, BackendError> {
    let host = name
        .map(|n| n.trim_end_matches('.'))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| BackendError::NoExternalName(key.clone()))?;
    let number = match (service_port, port) {
        (Some(sp), _) => match &sp.target_port {
            Some(IntOrString::Int(n)) if *n > 0 => *n,
            _ => sp.port,
        },
        (None, PortRef::Number(n)) => n,
        (None, PortRef::Name(_)) => {
            return Err(BackendError::MissingPort {
                service: key.clone(),
                port: port.to_string(),
            })
        }
    };
    let number = u16::try_from(number)
        .ok()
        .filter(|n| *n != 0)
        .ok_or_else(|| BackendError::MissingPort {
            service: key.clone(),
            port: number.to_string(),
        })?;
    // Checked here, once, rather than on every request: a name that does
    // not make an authority with its port, or that brings user info along,
    // gets a warning and 503s.
    let authority = Authority::try_from(format!("{host}:{number}"))
        .ok()
        .filter(|a| a.host() == host)
        .ok_or_else(|| BackendError::BadExternalName {
            service: key.clone(),
            name: host.to_owned(),
        })?;
    Ok(Upstream::External(authority))
}

#[derive(Clone, Copy, Debug)]
enum PortRef<'a> {
    Number(i32),
    Name(&'a str),
}

impl std::fmt::Display for PortRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(name) => f.write_str(name),
        }
    }
}

fn find_port<'s>(service: &'s Service, port: PortRef<'_>) -> Option<&'s ServicePort> {
    let ports = service.spec.as_ref()?.ports.as_ref()?;
    ports.iter().find(|p| match port {
        PortRef::Number(n) => p.port == n,
        PortRef::Name(name) => p.name.as_deref() == Some(name),
    })
}

/// The ready addresses of one slice for one Service port.
fn ready_addresses<'s>(
    slice: &'s EndpointSlice,
    service_port: &ServicePort,
) -> impl Iterator<Item = SocketAddr> + 's {
    let port = slice_port(slice, service_port);
    let usable = matches!(slice.address_type.as_str(), "IPv4" | "IPv6");
    slice
        .endpoints
        .iter()
        .flatten()
        .filter(move |_| usable && port.is_some())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .flat_map(|e| e.addresses.iter())
        .filter_map(move |a| {
            let ip: IpAddr = a.parse().ok()?;
            Some(SocketAddr::new(ip, port?))
        })
}

/// The target port number this slice gives for a Service port: the slice
/// port of the same name, else a numeric `targetPort`, else the port itself.
fn slice_port(slice: &EndpointSlice, service_port: &ServicePort) -> Option<u16> {
    let wanted = service_port.name.as_deref().unwrap_or("");
    let from_slice = slice
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref().unwrap_or("") == wanted)
        .and_then(|p| p.port);
    let number = match (from_slice, &service_port.target_port) {
        (Some(n), _) => n,
        (None, Some(IntOrString::Int(n))) => *n,
        (None, None) => service_port.port,
        (None, Some(IntOrString::String(_))) => return None,
    };
    u16::try_from(number).ok().filter(|n| *n != 0)
}
