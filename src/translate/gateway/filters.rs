//! HTTPRoute filters: header modifiers, redirects and URL rewrites, each
//! compiled into the rule it belongs to (`RequestMirror` needs a backend,
//! and is resolved with the rule's backends).

use http::header::{HeaderName, HeaderValue};
use http::StatusCode;

use crate::gateway::{self, HTTPRouteFilter, HeaderModifier};
use crate::table::{GatewayRedirect, GatewayRule, HeaderEdits, PathModifier};

/// Applies one filter to its rule; what cannot be applied says why.
pub(super) fn apply_filter(rule: &mut GatewayRule, filter: &HTTPRouteFilter) -> Result<(), String> {
    match filter.type_.as_str() {
        "RequestHeaderModifier" => {
            let m = filter
                .request_header_modifier
                .as_ref()
                .ok_or("RequestHeaderModifier without its settings")?;
            rule.request_headers = Some(header_edits(m)?);
        }
        "ResponseHeaderModifier" => {
            let m = filter
                .response_header_modifier
                .as_ref()
                .ok_or("ResponseHeaderModifier without its settings")?;
            rule.response_headers = Some(header_edits(m)?);
        }
        "RequestRedirect" => {
            let r = filter
                .request_redirect
                .as_ref()
                .ok_or("RequestRedirect without its settings")?;
            let status = match r.status_code {
                301 | 302 | 303 | 307 | 308 => {
                    StatusCode::from_u16(r.status_code).map_err(|e| e.to_string())?
                }
                other => return Err(format!("RequestRedirect status {other} is not a redirect")),
            };
            let port = match r.port {
                None => None,
                Some(p) => Some(u16::try_from(p).map_err(|_| format!("port {p} is out of range"))?),
            };
            rule.redirect = Some(GatewayRedirect {
                scheme: r.scheme.clone(),
                hostname: r.hostname.clone(),
                port,
                path: r.path.as_ref().map(path_modifier).transpose()?,
                status,
            });
        }
        "URLRewrite" => {
            let r = filter
                .url_rewrite
                .as_ref()
                .ok_or("URLRewrite without its settings")?;
            if let Some(host) = &r.hostname {
                rule.upstream_host = Some(
                    HeaderValue::from_str(host)
                        .map_err(|_| format!("hostname {host:?} is not valid"))?,
                );
            }
            rule.rewrite = r.path.as_ref().map(path_modifier).transpose()?;
        }
        other => return Err(format!("filter {other} is not implemented")),
    }
    Ok(())
}

fn path_modifier(m: &gateway::PathModifier) -> Result<PathModifier, String> {
    match (
        m.type_.as_str(),
        &m.replace_full_path,
        &m.replace_prefix_match,
    ) {
        ("ReplaceFullPath", Some(path), _) => Ok(PathModifier::Full(path.clone())),
        ("ReplacePrefixMatch", _, Some(prefix)) => Ok(PathModifier::Prefix(prefix.clone())),
        (other, _, _) => Err(format!("path modifier {other} without its value")),
    }
}

fn header_edits(m: &HeaderModifier) -> Result<HeaderEdits, String> {
    let pair = |h: &gateway::Header| -> Result<(HeaderName, HeaderValue), String> {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("header name {:?} is not valid", h.name))?;
        let value = HeaderValue::from_str(&h.value)
            .map_err(|_| format!("header {:?}: value is not valid", h.name))?;
        Ok((name, value))
    };
    Ok(HeaderEdits {
        set: m.set.iter().map(pair).collect::<Result<_, _>>()?,
        add: m.add.iter().map(pair).collect::<Result<_, _>>()?,
        remove: m
            .remove
            .iter()
            .map(|n| {
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| format!("header name {n:?} is not valid"))
            })
            .collect::<Result<_, _>>()?,
    })
}
