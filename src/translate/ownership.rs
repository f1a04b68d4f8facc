//! Host ownership (`--host-ownership`).
//!
//! In ingress-nginx any namespace can add a path to any host: the rules
//! for one host merge across Ingresses, so a tenant can publish `/admin`
//! on a neighbour's domain. With `namespace`, a host belongs to the
//! namespace of its oldest Ingress (creation time, then namespace/name,
//! the order translate already uses); rules and TLS entries for it from
//! other namespaces are refused, unless an Ingress of the owner's that
//! names the host lists their namespace in `<prefix>/allow-namespaces`.
//! Rules without a host (every unmatched request) are owned the same way.

use foldhash::HashMap;

use k8s_openapi::api::networking::v1::Ingress;

use crate::cluster::ObjectKey;
use crate::table::HostPattern;

/// Who may publish rules for a host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HostOwnership {
    /// Any namespace, as in ingress-nginx.
    #[default]
    Shared,
    /// The namespace of the host's oldest Ingress, and those it allows.
    Namespace,
}

/// The owner of each host: its namespace and the namespaces it allows.
#[derive(Debug, Default)]
pub struct Owners {
    hosts: HashMap<HostPattern, Owner>,
}

#[derive(Debug)]
struct Owner {
    namespace: String,
    allowed: Vec<String>,
}

impl Owners {
    /// Owners from `ingresses`, oldest first. `prefix` is our annotation
    /// prefix: `allow-namespaces` is read under it alone, as it is
    /// Gatehouse's own.
    pub fn new(ingresses: &[(&ObjectKey, &Ingress)], prefix: &str) -> Self {
        let annotation = format!("{prefix}/allow-namespaces");
        let mut hosts: HashMap<HostPattern, Owner> = HashMap::default();
        for (key, ingress) in ingresses {
            let allowed: Vec<String> = ingress
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(&annotation))
                .map(|list| {
                    let names = list.split(',').map(str::trim).filter(|n| !n.is_empty());
                    names.map(str::to_owned).collect()
                })
                .unwrap_or_default();
            for host in hosts_of(ingress) {
                let owner = hosts.entry(host).or_insert_with(|| Owner {
                    namespace: key.namespace.clone(),
                    allowed: Vec::new(),
                });
                if owner.namespace == key.namespace {
                    owner.allowed.extend(allowed.iter().cloned());
                }
            }
        }
        Owners { hosts }
    }

    /// The owning namespace, when `namespace` may not publish for `host`.
    pub fn refuses(&self, host: &HostPattern, namespace: &str) -> Option<&str> {
        let owner = self.hosts.get(host)?;
        let allowed = owner.namespace == namespace || owner.allowed.iter().any(|n| n == namespace);
        (!allowed).then_some(owner.namespace.as_str())
    }
}

/// The hosts an Ingress publishes for: its rules' (a rule without a host
/// stands for every host) and its TLS entries'.
fn hosts_of(ingress: &Ingress) -> impl Iterator<Item = HostPattern> + '_ {
    let spec = ingress.spec.as_ref();
    let rules = spec.and_then(|s| s.rules.as_ref()).into_iter().flatten();
    let rule_hosts = rules.map(|r| HostPattern::parse(r.host.as_deref()));
    let tls = spec.and_then(|s| s.tls.as_ref()).into_iter().flatten();
    let tls_hosts = tls
        .flat_map(|t| t.hosts.iter().flatten())
        .map(|h| HostPattern::parse(Some(h)));
    rule_hosts.chain(tls_hosts)
}
