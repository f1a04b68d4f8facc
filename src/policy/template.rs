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
    /// `$server_port`: the port the connection came in on, which
    /// Gatehouse also sends as `X-Forwarded-Port`.
    ServerPort,
    /// `$proxy_add_x_forwarded_for`: the request's `X-Forwarded-For`
    /// with the client's address added, as nginx.
    ForwardedFor,
    /// One of ingress-nginx's location variables, until `bind` fills it
    /// in for a route; empty outside one, as in nginx's server block.
    Route(RouteVar),
}

/// The variables ingress-nginx `set`s at the top of every location it
/// writes: known when the table is built, so they are filled in then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteVar {
    Namespace,
    IngressName,
    ServiceName,
    ServicePort,
}

/// The values of the `RouteVar`s for one route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteNames {
    pub namespace: String,
    pub ingress_name: String,
    pub service_name: String,
    /// The port as the Ingress names it: a number or a name.
    pub service_port: String,
}

impl RouteNames {
    fn get(&self, var: RouteVar) -> &str {
        match var {
            RouteVar::Namespace => &self.namespace,
            RouteVar::IngressName => &self.ingress_name,
            RouteVar::ServiceName => &self.service_name,
            RouteVar::ServicePort => &self.service_port,
        }
    }
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
    /// The port the connection came in on (`$server_port`).
    pub port: u16,
    pub client: IpAddr,
    pub headers: &'a HeaderMap,
}

#[cfg(test)]
impl<'a> Facts<'a> {
    /// For tests: a GET of `uri` as sent, with `headers`, over plain HTTP
    /// on port 80, to `shop.test` from 192.0.2.1.
    pub fn sample(uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        Facts {
            method: &Method::GET,
            uri,
            request_uri: uri,
            host: "shop.test",
            tls: false,
            port: 80,
            client: IpAddr::from([192, 0, 2, 1]),
            headers,
        }
    }
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
            match variable(name, vars)? {
                // ingress-nginx's `proxy_pass http://upstream_balancer;`.
                None => parts.push(Part::Text("upstream_balancer".to_owned())),
                Some(var) => parts.push(Part::Var(var)),
            }
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

    /// Whether it uses a location variable (`$namespace`, …).
    pub fn uses_route_names(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Var(Var::Route(_))))
    }

    /// The location variables filled in with the route's values.
    pub fn bind(&mut self, names: &RouteNames) {
        for part in &mut self.parts {
            if let Part::Var(Var::Route(var)) = part {
                *part = Part::Text(names.get(*var).to_owned());
            }
        }
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

/// The variable of that name; `None` is `$proxy_host`, a constant.
fn variable(name: &str, vars: Vars) -> Result<Option<Var>, String> {
    let var = match name {
        // ingress-nginx's `$req_id` is the request's `X-Request-ID`, or a
        // new one: the header as Gatehouse sets it on the request.
        "req_id" => Var::Header("x-request-id".to_owned()),
        "proxy_add_x_forwarded_for" => Var::ForwardedFor,
        "proxy_host" => return Ok(None),
        "server_port" => Var::ServerPort,
        "namespace" if vars != Vars::Location => Var::Route(RouteVar::Namespace),
        "ingress_name" if vars != Vars::Location => Var::Route(RouteVar::IngressName),
        "service_name" if vars != Vars::Location => Var::Route(RouteVar::ServiceName),
        "service_port" if vars != Vars::Location => Var::Route(RouteVar::ServicePort),
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
    Ok(Some(var))
}

fn unknown(name: &str, vars: Vars) -> String {
    let known = "$host, $http_host, $scheme, $request_uri, $escaped_request_uri, $uri, $request_method, $remote_addr, $args, $is_args, $server_port, $req_id, $proxy_add_x_forwarded_for, $proxy_host";
    match vars {
        Vars::Location => format!("uses ${name}; Gatehouse expands only {known}"),
        Vars::Request | Vars::Captures => format!(
            "uses ${name}; Gatehouse expands only {known}, $namespace, $ingress_name, $service_name, $service_port, $http_<header>, $cookie_<name> and $arg_<name>"
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
        Var::ServerPort => {
            let _ = write!(out, "{}", facts.port);
        }
        Var::ForwardedFor => {
            for value in facts.headers.get_all("x-forwarded-for") {
                if let Ok(text) = value.to_str() {
                    out.push_str(text);
                    out.push_str(", ");
                }
            }
            let _ = write!(out, "{}", facts.client);
        }
        // Only `expand_with` has groups to give; an unbound location
        // variable is empty.
        Var::Capture(_) | Var::Route(_) => {}
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
            port: 8443,
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
    fn ingress_nginx_variables_expand_as_its_nginx_does() {
        let uri: Uri = "/".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("abc-123"));
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.2"));
        let method = Method::GET;
        let f = facts(&uri, &headers, &method);
        let expand = |v: &str| Template::parse(v, Vars::Request).unwrap().expand(&f);
        assert_eq!(expand("$req_id"), "abc-123");
        assert_eq!(
            expand("$proxy_add_x_forwarded_for"),
            "203.0.113.1, 203.0.113.2, 192.0.2.7"
        );
        assert_eq!(expand("$proxy_host"), "upstream_balancer");
        let alone = HeaderMap::new();
        let f = facts(&uri, &alone, &method);
        let template = Template::parse("$proxy_add_x_forwarded_for", Vars::Location).unwrap();
        assert_eq!(template.expand(&f), "192.0.2.7");
        assert_eq!(expand("$scheme:$server_port"), "https:8443");
    }

    #[test]
    fn location_variables_are_filled_in_for_a_route_and_empty_before() {
        let mut template = Template::parse(
            "$service_name.$namespace.svc.cluster.local:$service_port/$ingress_name",
            Vars::Request,
        )
        .unwrap();
        assert!(template.uses_route_names());
        let uri: Uri = "/".parse().unwrap();
        let headers = HeaderMap::new();
        let method = Method::GET;
        let f = facts(&uri, &headers, &method);
        assert_eq!(template.expand(&f), "..svc.cluster.local:/");
        template.bind(&RouteNames {
            namespace: "shop".into(),
            ingress_name: "web".into(),
            service_name: "cart".into(),
            service_port: "http".into(),
        });
        assert!(!template.uses_route_names());
        assert_eq!(template.expand(&f), "cart.shop.svc.cluster.local:http/web");
        // Not in the annotations that name a place (auth URLs).
        assert!(Template::parse("$namespace", Vars::Location).is_err());
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
