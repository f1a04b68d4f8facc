//! nginx variables in annotation values, as the oauth2-proxy, Authelia and
//! authentik docs write them (`https://$host/oauth2/auth`,
//! `$scheme://$http_host$escaped_request_uri`). A fixed, typed set is
//! expanded per request; any other variable is refused when the table is
//! built, so an annotation can never reach into anything else.

use std::fmt::Write;
use std::net::IpAddr;

use http::header::{HeaderMap, HeaderValue};
use http::{Method, Uri};

/// A value with variables, split once at build time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    /// As written.
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Var {
    /// `$host`: the request's host, lower case, without port.
    Host,
    /// `$http_host`: the Host header as sent.
    HttpHost,
    Scheme,
    /// `$request_uri`: path and query as sent.
    RequestUri,
    /// `$escaped_request_uri`: the same, escaped as a URL component.
    EscapedRequestUri,
    /// `$uri`: the path without the query, as sent (nginx's is decoded
    /// and normalized; the same for a plain path).
    Uri,
    RequestMethod,
    RemoteAddr,
    /// `$args`: the query string, without `?`.
    Args,
    /// `$is_args`: `?` when there is a query string.
    IsArgs,
    /// `$http_<name>`: a request header (dashes as underscores).
    Header(String),
    /// `$cookie_<name>`: a request cookie.
    Cookie(String),
    /// `$arg_<name>`: a query argument.
    Arg(String),
    /// `$1`…`$9`: a group of the regular expression a `rewrite` matched.
    Capture(usize),
}

/// Which variables a value may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vars {
    /// The request's place: host, scheme, URI, method, client address.
    Location,
    /// Those, and request headers, cookies and query arguments (for cache
    /// keys, which must tell clients apart).
    Request,
    /// Those, and `$1`…`$9` (a `rewrite`'s replacement).
    Captures,
}

/// What a template is expanded from.
#[derive(Clone, Copy)]
pub struct Facts<'a> {
    pub method: &'a Method,
    /// The URI as a snippet's `rewrite` left it (`$uri`, `$args`), else
    /// as sent.
    pub uri: &'a Uri,
    /// The URI as the client sent it (`$request_uri`), whatever a
    /// `rewrite` made of `uri`.
    pub request_uri: &'a Uri,
    /// `Host` (or `:authority`) as sent.
    pub host: &'a str,
    pub tls: bool,
    pub client: IpAddr,
    pub headers: &'a HeaderMap,
}

impl Template {
    pub fn parse(value: &str, vars: Vars) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = value;
        while let Some(at) = rest.find('$') {
            if at > 0 {
                parts.push(Part::Text(rest[..at].to_owned()));
            }
            let after = &rest[at + 1..];
            let (name, tail) = match after.strip_prefix('{') {
                // `$1`…`$9` are one digit long, as in nginx.
                None if after.starts_with(|c: char| c.is_ascii_digit()) => after.split_at(1),
                Some(braced) => {
                    let end = braced.find('}').ok_or("has an unclosed ${")?;
                    (&braced[..end], &braced[end + 1..])
                }
                None => {
                    let end = after
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            parts.push(Part::Var(variable(name, vars)?));
            rest = tail;
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template {
            parts,
            text: value.to_owned(),
        })
    }

    /// The value as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text parts alone, variables left out.
    pub fn literal_text(&self) -> String {
        let texts = self.parts.iter().filter_map(|p| match p {
            Part::Text(text) => Some(text.as_str()),
            Part::Var(_) => None,
        });
        texts.collect()
    }

    pub fn expand(&self, facts: &Facts<'_>) -> String {
        self.expand_with(facts, None)
    }

    /// Expanded with the groups of the regular expression a `rewrite`
    /// matched (a group that did not take part is empty, as in nginx).
    pub fn expand_with(&self, facts: &Facts<'_>, groups: Option<&regex::Captures<'_>>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(Var::Capture(n)) => {
                    let group = groups.and_then(|g| g.get(*n));
                    out.push_str(group.map_or("", |m| m.as_str()));
                }
                Part::Var(var) => expand(var, facts, &mut out),
            }
        }
        out
    }
}

fn variable(name: &str, vars: Vars) -> Result<Var, String> {
    let var = match name {
        "host" => Var::Host,
        "http_host" | "best_http_host" => Var::HttpHost,
        "scheme" | "pass_access_scheme" => Var::Scheme,
        "request_uri" => Var::RequestUri,
        "escaped_request_uri" => Var::EscapedRequestUri,
        "uri" => Var::Uri,
        "request_method" => Var::RequestMethod,
        "remote_addr" => Var::RemoteAddr,
        "args" | "query_string" => Var::Args,
        "is_args" => Var::IsArgs,
        digit if vars == Vars::Captures && matches!(digit.as_bytes(), [b'1'..=b'9']) => {
            Var::Capture(usize::from(digit.as_bytes()[0] - b'0'))
        }
        _ if vars != Vars::Location => {
            if let Some(header) = name.strip_prefix("http_").filter(|h| !h.is_empty()) {
                Var::Header(header.replace('_', "-"))
            } else if let Some(cookie) = name.strip_prefix("cookie_").filter(|c| !c.is_empty()) {
                Var::Cookie(cookie.to_owned())
            } else if let Some(arg) = name.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                Var::Arg(arg.to_owned())
            } else {
                return Err(unknown(name, vars));
            }
        }
        _ => return Err(unknown(name, vars)),
    };
    Ok(var)
}

fn unknown(name: &str, vars: Vars) -> String {
    let known = "$host, $http_host, $scheme, $request_uri, $escaped_request_uri, $uri, $request_method, $remote_addr, $args, $is_args";
    match vars {
        Vars::Location => format!("uses ${name}; Gatehouse expands only {known}"),
        Vars::Request | Vars::Captures => format!(
            "uses ${name}; Gatehouse expands only {known}, $http_<header>, $cookie_<name> and $arg_<name>"
        ),
    }
}

fn expand(var: &Var, facts: &Facts<'_>, out: &mut String) {
    match var {
        Var::Host => {
            let host = crate::connection::normalize_host(facts.host);
            out.push_str(&host);
        }
        Var::HttpHost => out.push_str(facts.host),
        Var::Scheme => out.push_str(if facts.tls { "https" } else { "http" }),
        Var::RequestUri => out.push_str(request_uri(facts.request_uri)),
        Var::EscapedRequestUri => escape_component(request_uri(facts.request_uri), out),
        Var::Uri => out.push_str(facts.uri.path()),
        Var::RequestMethod => out.push_str(facts.method.as_str()),
        Var::RemoteAddr => {
            let _ = write!(out, "{}", facts.client);
        }
        Var::Args => out.push_str(facts.uri.query().unwrap_or_default()),
        Var::IsArgs => {
            if facts.uri.query().is_some() {
                out.push('?');
            }
        }
        Var::Header(name) => {
            let values = facts.headers.get_all(name.as_str());
            let texts: Vec<&str> = values.iter().filter_map(|v| v.to_str().ok()).collect();
            out.push_str(&texts.join(", "));
        }
        Var::Cookie(name) => {
            if let Some(value) = cookie(facts.headers, name) {
                out.push_str(value);
            }
        }
        Var::Arg(name) => {
            let value = crate::connection::query_value(facts.uri.query(), name);
            out.push_str(value.unwrap_or_default());
        }
        // Only `expand_with` has groups to give.
        Var::Capture(_) => {}
    }
}

fn request_uri(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v: &HeaderValue| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Escapes all but RFC 3986's unreserved characters, as `ngx.escape_uri`
/// (which ingress-nginx's `$escaped_request_uri` uses) does.
pub fn escape_component(text: &str, out: &mut String) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(uri: &'a Uri, headers: &'a HeaderMap, method: &'a Method) -> Facts<'a> {
        Facts {
            method,
            uri,
            request_uri: uri,
            host: "Shop.Example.com:8443",
            tls: true,
            client: "192.0.2.7".parse().unwrap(),
            headers,
        }
    }

    #[test]
    fn the_documented_setups_expand() {
        let uri: Uri = "/cart/items?id=7&x=a b"
            .replace(' ', "%20")
            .parse()
            .unwrap();
        let headers = HeaderMap::new();
        let method = Method::POST;
        let f = facts(&uri, &headers, &method);
        let expand = |v: &str| Template::parse(v, Vars::Location).unwrap().expand(&f);
        assert_eq!(
            expand("https://$host/oauth2/auth"),
            "https://shop.example.com/oauth2/auth"
        );
        assert_eq!(
            expand("https://$host/oauth2/start?rd=$escaped_request_uri"),
            "https://shop.example.com/oauth2/start?rd=%2Fcart%2Fitems%3Fid%3D7%26x%3Da%2520b"
        );
        assert_eq!(
            expand("$scheme://$http_host$request_uri"),
            "https://Shop.Example.com:8443/cart/items?id=7&x=a%20b"
        );
        assert_eq!(expand("${request_method}:$remote_addr"), "POST:192.0.2.7");
        assert_eq!(expand("$uri$is_args$args"), "/cart/items?id=7&x=a%20b");
        assert_eq!(
            expand("https://$host$request_uri$is_args$args"),
            "https://shop.example.com/cart/items?id=7&x=a%20b?id=7&x=a%20b"
        );
    }

    #[test]
    fn other_variables_are_refused() {
        for value in [
            "http://$upstream_addr/",
            "$http_cookie",
            "${host",
            "$cookie_session",
        ] {
            assert!(Template::parse(value, Vars::Location).is_err(), "{value}");
        }
    }

    #[test]
    fn cache_keys_may_use_headers_cookies_and_arguments() {
        let uri: Uri = "/?tenant=blue".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        headers.insert(
            "cookie",
            HeaderValue::from_static("a=1; _oauth2_proxy=s3ss"),
        );
        let method = Method::GET;
        let f = facts(&uri, &headers, &method);
        let key = Template::parse(
            "$http_authorization|$cookie__oauth2_proxy|$arg_tenant",
            Vars::Request,
        )
        .unwrap();
        assert_eq!(key.expand(&f), "Bearer t|s3ss|blue");
    }
}
