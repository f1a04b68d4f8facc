//! Headers the upstream request carries because a route or the controller
//! ConfigMap asks for them: `proxy-set-headers` (templates expanded per
//! request), `upstream-vhost` (the `Host` the endpoint sees) and
//! `x-forwarded-prefix`. They are applied after the `X-Forwarded-*`
//! family, so each replaces what was there.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::template::{Facts, Template};

static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// `proxy-set-headers`: each template expanded from the request as the
/// client sent it; one that expands to no valid header value is left out.
/// Set on the upstream request with [`set_all`] once its own headers are
/// prepared.
pub fn expand(
    templates: &[(HeaderName, Template)],
    facts: &Facts<'_>,
) -> Vec<(HeaderName, HeaderValue)> {
    let expand = |(name, template): &(HeaderName, Template)| {
        let value = HeaderValue::from_str(&template.expand(facts)).ok()?;
        Some((name.clone(), value))
    };
    templates.iter().filter_map(expand).collect()
}

/// Sets each header, replacing what was there.
pub fn set_all(expanded: Vec<(HeaderName, HeaderValue)>, headers: &mut HeaderMap) {
    for (name, value) in expanded {
        headers.insert(name, value);
    }
}

/// `upstream-vhost` and `x-forwarded-prefix`.
pub fn set_route_headers(
    vhost: Option<&HeaderValue>,
    prefix: Option<&HeaderValue>,
    headers: &mut HeaderMap,
) {
    if let Some(vhost) = vhost {
        headers.insert(header::HOST, vhost.clone());
    }
    if let Some(prefix) = prefix {
        headers.insert(X_FORWARDED_PREFIX.clone(), prefix.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::template::Vars;

    #[test]
    fn templates_expand_from_the_request_as_sent_and_replace_its_headers() {
        let uri: http::Uri = "/a?b=c".parse().unwrap();
        let mut sent = HeaderMap::new();
        sent.insert("x-tenant", HeaderValue::from_static("forged"));
        let facts = Facts {
            host: "shop.example",
            tls: true,
            port: 443,
            ..Facts::sample(&uri, &sent)
        };
        let template = Template::parse("$host $scheme", Vars::Request).unwrap();
        let templates = [(HeaderName::from_static("x-tenant"), template)];
        let expanded = expand(&templates, &facts);
        set_all(expanded, &mut sent);
        assert_eq!(sent["x-tenant"], "shop.example https");
    }

    #[test]
    fn vhost_and_prefix_replace_host_and_the_prefix_header() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("shop.example"));
        let vhost = HeaderValue::from_static("internal.svc");
        let prefix = HeaderValue::from_static("/shop");
        set_route_headers(Some(&vhost), Some(&prefix), &mut headers);
        assert_eq!(headers[header::HOST], "internal.svc");
        assert_eq!(headers["x-forwarded-prefix"], "/shop");
        let mut untouched = HeaderMap::new();
        set_route_headers(None, None, &mut untouched);
        assert!(untouched.is_empty());
    }
}
