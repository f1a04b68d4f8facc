//! `gatehouse routes`: the routing table as a person reads it.

use std::fmt::Write;

use crate::cluster::ObjectKey;
use crate::policy::proxy_settings::{BackendProtocol, ProxySettings, DEFAULT_BODY_LIMIT};
use crate::policy::rewrite::Rewrite;
use crate::source::files::FileError;
use crate::table::{Route, RouteTable};
use crate::translate::{totals, IngressSummary, Verdict, Warning};
use crate::upstream::{Action, LoadBalance, Timeouts, Upstream};

/// Renders routes, certificates, manifest errors, warnings and the
/// migration summary as text.
pub fn render(
    table: &RouteTable,
    warnings: &[Warning],
    errors: &[FileError],
    summaries: &[IngressSummary],
) -> String {
    let mut rows = vec![[
        "HOST".to_owned(),
        "PATH".into(),
        "TYPE".into(),
        "BACKEND".into(),
        "ENDPOINTS".into(),
        "ORIGIN".into(),
        "ACCESS".into(),
        "IN EFFECT".into(),
    ]];
    for route in table.routes() {
        rows.push(route_row(&route));
    }
    let mut out = String::new();
    write_table(&mut out, &rows);

    let mut certs: Vec<_> = table.certs.iter().collect();
    certs.sort_by_key(|(host, _)| host.to_string());
    if !certs.is_empty() {
        out.push('\n');
        let mut rows = vec![[
            "TLS HOST".to_owned(),
            "SECRET".into(),
            "NOT AFTER".into(),
            "ORIGIN".into(),
            "RENEWS".into(),
        ]];
        for (host, entry) in certs {
            let info = crate::telemetry::certs::describe(&entry.key);
            let expiry = info
                .as_ref()
                .map(|info| info.not_after.clone())
                .unwrap_or_else(|| "unreadable".into());
            let (origin, renews) = match (&entry.acme_issuer, &info) {
                (Some(issuer), Some(info)) => {
                    (format!("acme:{issuer}"), renewal(&entry.secret, info))
                }
                (Some(issuer), None) => (format!("acme:{issuer}"), "-".into()),
                (None, _) => ("secret".into(), "-".into()),
            };
            rows.push([
                host.to_string(),
                entry.secret.to_string(),
                expiry,
                origin,
                renews,
            ]);
        }
        write_table(&mut out, &rows);
    }
    if !errors.is_empty() {
        out.push_str("\nMANIFEST ERRORS\n");
        for error in errors {
            let _ = writeln!(out, "{error}");
        }
    }
    if !warnings.is_empty() {
        out.push_str("\nWARNINGS\n");
        for warning in warnings {
            let _ = writeln!(out, "{warning}");
        }
    }
    if !summaries.is_empty() {
        out.push_str(
            "\nMIGRATION SUMMARY (annotations under our prefix and nginx.ingress.kubernetes.io/)\n",
        );
        for summary in summaries {
            let _ = writeln!(out, "{}", summary.line());
        }
        let _ = writeln!(out, "{}", totals(summaries));
    }
    out
}

/// What the admission webhook answers for each Ingress: the refused ones
/// with their reasons, then the count.
pub fn admission(verdicts: &[(ObjectKey, Verdict)]) -> String {
    let mut out =
        String::from("\nADMISSION (what --validating-webhook answers for each Ingress)\n");
    let refused: Vec<_> = verdicts.iter().filter(|(_, v)| !v.allowed()).collect();
    for (key, verdict) in &refused {
        let _ = writeln!(out, "REFUSED {}", verdict.message("Ingress", key));
    }
    let _ = writeln!(
        out,
        "{} Ingresses: {} allowed, {} refused",
        verdicts.len(),
        verdicts.len() - refused.len(),
        refused.len()
    );
    out
}

/// When the ACME manager renews the certificate (without ARI), RFC 3339.
fn renewal(secret: &crate::cluster::ObjectKey, info: &crate::telemetry::certs::CertInfo) -> String {
    use crate::acme::schedule;
    let at = |unix: i64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    let when = schedule::renewal_time(
        at(info.not_before_unix),
        at(info.not_after_unix),
        schedule::seed(&secret.namespace, &secret.name),
    );
    time::OffsetDateTime::from(when)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "-".into())
}

fn route_row(route: &Route) -> [String; 8] {
    let split = route.gateway.as_ref().map(|g| &g.backends);
    let redirects = route.gateway.as_ref().is_some_and(|g| g.redirect.is_some());
    let (backend, endpoints) = match &route.action {
        _ if redirects => ("(redirect)".to_owned(), "-".to_owned()),
        _ if split.is_some_and(|s| s.iter().count() > 1 || s.is_empty()) => {
            let shares: Vec<String> = split
                .into_iter()
                .flat_map(|s| s.iter())
                .map(|(weight, b)| match b {
                    Some(b) => format!("{}:{} ×{weight}", b.service, b.port),
                    None => format!("(unresolved: 500) ×{weight}"),
                })
                .collect();
            let backend = match shares.is_empty() {
                true => "(none: 500)".to_owned(),
                false => shares.join(", "),
            };
            (backend, "-".to_owned())
        }
        Action::Unavailable => ("(unavailable: 503)".to_owned(), "-".to_owned()),
        Action::Forward(b) => {
            let endpoints = match &*b.upstream() {
                Upstream::Endpoints(set) if set.is_empty() => "none ready (503)".to_owned(),
                Upstream::Endpoints(set) => set
                    .addrs()
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                Upstream::External(authority) => format!("{authority} (ExternalName)"),
            };
            (format!("{}:{}", b.service, b.port), endpoints)
        }
    };
    let kind = match (route.regex, route.ingress.is_none(), &route.gateway) {
        (_, _, Some(_)) if route.regex => "RegularExpression".to_owned(),
        (_, _, Some(_)) => match route.path_type {
            crate::table::PathType::Prefix => "PathPrefix".to_owned(),
            other => format!("{other:?}"),
        },
        (_, true, None) => "default".to_owned(),
        (true, _, None) => format!("{:?} (regex)", route.path_type),
        (false, _, None) => format!("{:?}", route.path_type),
    };
    let ingress = route.origin();
    [
        route.host.to_string(),
        route.path.clone(),
        kind,
        backend,
        endpoints,
        ingress,
        route.access.describe(),
        in_effect(route),
    ]
}

/// The behaviour that differs from the defaults, in annotation terms (in
/// Gateway API terms for an HTTPRoute's).
fn in_effect(route: &Route) -> String {
    if let Some(rule) = &route.gateway {
        let parts: Vec<String> = [route.conditions.clone(), Some(rule.describe())]
            .into_iter()
            .flatten()
            .filter(|p| !p.is_empty())
            .collect();
        return parts.join(", ");
    }
    let p: &ProxySettings = &route.policy;
    let mut parts = Vec::new();
    if route.ssl_redirect || p.force_ssl_redirect {
        parts.push("ssl-redirect".to_owned());
    }
    match &route.rewrite {
        Some(Rewrite::Replace(t)) | Some(Rewrite::Captures(t)) => {
            parts.push(format!("rewrite-target={t}"))
        }
        None => {}
    }
    if let Some(root) = &p.app_root {
        parts.push(format!("app-root={root}"));
    }
    if let Some(r) = &p.redirect {
        parts.push(format!(
            "redirect={} {}",
            r.status.as_u16(),
            r.location.to_str().unwrap_or("?")
        ));
    }
    if p.protocol != BackendProtocol::Http {
        parts.push(format!("backend-protocol={:?}", p.protocol).to_uppercase());
    }
    if p.timeouts != Timeouts::default() {
        let t = p.timeouts;
        parts.push(format!(
            "timeouts=connect {}s/read {}s/send {}s",
            t.connect.as_secs(),
            t.read.as_secs(),
            t.send.as_secs()
        ));
    }
    if p.body_limit != Some(DEFAULT_BODY_LIMIT) {
        parts.push(match p.body_limit {
            Some(n) => format!("proxy-body-size={n}"),
            None => "proxy-body-size=unlimited".into(),
        });
    }
    let sources = route.access.sources.as_ref();
    if let Some(nets) = sources.and_then(|s| s.allowed()) {
        parts.push(format!("allowlist={}", join(nets)));
    }
    if let Some(nets) = sources.map(|s| s.denied()).filter(|n| !n.is_empty()) {
        parts.push(format!("denylist={}", join(nets)));
    }
    if let Some(basic) = &route.access.basic {
        parts.push(format!("auth-secret={}", basic.secret()));
    }
    if let Some(v) = &p.upstream_vhost {
        parts.push(format!("upstream-vhost={}", v.to_str().unwrap_or("?")));
    }
    if let Some(v) = &p.x_forwarded_prefix {
        parts.push(format!("x-forwarded-prefix={}", v.to_str().unwrap_or("?")));
    }
    if let Some(canary) = &route.canary {
        parts.push(format!(
            "canary={} ({})",
            canary.ingress,
            canary.rule.describe()
        ));
    }
    if let Some(sticky) = &route.stickiness {
        parts.push(sticky.describe());
    }
    if let Some(pages) = &route.error_pages {
        parts.push(pages.describe());
    }
    if let Some(limits) = &route.limits {
        parts.push(limits.describe());
    }
    if let Some(cors) = &route.cors {
        parts.push(cors.describe());
    }
    if !p.next_upstream.is_default() {
        parts.push(p.next_upstream.describe());
    }
    if p.load_balance == LoadBalance::Ewma {
        parts.push("load-balance=ewma".into());
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn join(nets: &[ipnet::IpNet]) -> String {
    let nets: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
    nets.join(",")
}

fn write_table<const N: usize>(out: &mut String, rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}
