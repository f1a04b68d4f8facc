//! `/debug/routes` and `/debug/certs`: the current table as JSON.
//! Certificates are described by their public parts only; no key material
//! is ever serialised.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::certs::describe;
use crate::acme::status::CertificateStatus;
use crate::table::{Route, RouteTable};
use crate::upstream::{Action, Upstream};

pub fn routes(table: &RouteTable) -> Value {
    let routes: Vec<Value> = table.routes().iter().map(|r| route(r)).collect();
    let certificates: Vec<Value> = table
        .certs
        .iter()
        .map(|(host, entry)| json!({"host": host.to_string(), "secret": entry.secret.to_string()}))
        .collect();
    json!({
        "routes": routes,
        "default_backend": table.default_route().map(|r| route(r)),
        "certificates": certificates,
    })
}

fn route(route: &Route) -> Value {
    let backend = match &route.action {
        Action::Unavailable => Value::Null,
        Action::Forward(b) => {
            let targets: Vec<String> = match &*b.upstream() {
                Upstream::Endpoints(set) => set.addrs().iter().map(|a| a.to_string()).collect(),
                Upstream::External(authority) => vec![authority.to_string()],
            };
            json!({"service": b.service.to_string(), "port": b.port, "endpoints": targets})
        }
    };
    let p = &route.policy;
    let access = &route.access;
    let nets = |nets: &[ipnet::IpNet]| nets.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    json!({
        "ingress": route.ingress.as_ref().map(|k| k.to_string()),
        "origin": route.origin(),
        "conditions": route.conditions,
        "gateway": route.gateway.as_ref().map(|g| g.describe()),
        "host": route.host.to_string(),
        "path": route.path,
        "path_type": route.path_type,
        "regex": route.regex,
        "backend": backend,
        "ssl_redirect": route.ssl_redirect || p.force_ssl_redirect,
        "rewrite": route.rewrite.as_ref().map(|r| format!("{r:?}")),
        "access": access.describe(),
        "cors": route.cors.as_ref().map(|c| c.describe()),
        "limits": route.limits.as_ref().map(|l| l.describe()),
        "affinity": route.stickiness.as_ref().map(|a| a.describe()),
        "canary": route.canary.as_ref().map(|c| json!({
            "ingress": c.ingress.to_string(),
            "rule": c.rule.describe(),
            "backend": match &c.action {
                Action::Forward(b) => Some(format!("{}:{}", b.service, b.port)),
                Action::Unavailable => None,
            },
        })),
        "hsts": route.hsts.is_some(),
        "policy": {
            "backend_protocol": p.protocol,
            "load_balance": p.load_balance,
            "timeouts_seconds": {"connect": p.timeouts.connect.as_secs(), "read": p.timeouts.read.as_secs(), "send": p.timeouts.send.as_secs()},
            "body_limit": p.body_limit,
            "allow": access.sources.as_ref().and_then(|s| s.allowed()).map(nets),
            "deny": access.sources.as_ref().map(|s| nets(s.denied())),
            "auth_secret": access.basic.as_ref().map(|b| b.secret().to_string()),
            "auth_url": access.external.as_ref().map(|e| e.url()),
            "auth_proxy_set_headers": access.external.as_ref().map(|e| e.proxy_set_headers().map(|h| h.as_str()).collect::<Vec<_>>()),
            "auth_tls_secret": access.client_cert.as_ref().map(|c| c.secret.to_string()),
            "app_root": p.app_root,
            "redirect": p.redirect.as_ref().map(|r| json!({"status": r.status.as_u16(), "location": r.location.to_str().unwrap_or_default()})),
            "upstream_vhost": p.upstream_vhost.as_ref().map(|v| v.to_str().unwrap_or_default()),
            "x_forwarded_prefix": p.x_forwarded_prefix.as_ref().map(|v| v.to_str().unwrap_or_default()),
        },
    })
}

/// Each TLS host's certificate and Secret; for a Secret an ACME issuer
/// keeps current, how it stands (`acme`): on the leading replica, also
/// for hosts still served with the default certificate.
pub fn certs(table: &RouteTable, acme: &BTreeMap<String, CertificateStatus>) -> Value {
    let mut hosts = serde_json::Map::new();
    for (host, entry) in table.certs.iter() {
        let info = describe(&entry.key);
        let secret = entry.secret.to_string();
        let mut described = json!({"secret": secret, "certificate": info});
        if let Some(status) = acme.get(&secret) {
            described["acme"] = json!(status);
        }
        hosts.insert(host.to_string(), described);
    }
    for status in acme.values() {
        for host in &status.hosts {
            if !hosts.contains_key(host) {
                hosts.insert(
                    host.clone(),
                    json!({"secret": status.secret, "certificate": null, "acme": status}),
                );
            }
        }
    }
    Value::Object(hosts)
}
