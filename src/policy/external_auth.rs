//! External authentication (`auth-url` and its companions), as
//! ingress-nginx's `auth_request`: each request is first sent, without its
//! body, to an auth service (oauth2-proxy, Authelia, authentik...), whose
//! answer decides.
//!
//! - 2xx: the request goes on, with the `auth-response-headers` copied from
//!   the answer (a client's own copies of those headers are removed first,
//!   so they cannot be forged).
//! - 401: a 302 to `auth-signin` with `rd=` the original URL, or, without
//!   sign-in URL, 401 with the service's `WWW-Authenticate`.
//! - 403: 403. Anything else, or no answer in time: 500. The request is
//!   never forwarded unless the service said yes.
//!
//! The subrequest goes through the worker's upstream pools, bounded by the
//! route's connect and read timeouts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};

use super::access::{Granted, Refusal};
use super::objects::ObjectLookup;
use super::protection::{AccessOptions, Problems};
use super::template::{escape_component, Facts, Template, Vars};
use super::Annotations;
use crate::connection::{prepare_request, ConnInfo};
use crate::upstream::{OwnRequest, Timeouts, Upstreams};

/// The most of an auth service's response body that is read (and dropped)
/// so that its connection can be reused.
const BODY_LIMIT: usize = 64 * 1024;
/// Cached answers per Ingress; past this the cache starts over.
const CACHE_CAPACITY: usize = 10_000;

static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_AUTH_REQUEST_REDIRECT: HeaderName = HeaderName::from_static("x-auth-request-redirect");
static X_SENT_FROM: HeaderName = HeaderName::from_static("x-sent-from");

#[derive(Debug)]
pub struct ExternalAuth {
    url: Template,
    method: Method,
    signin: Option<Signin>,
    /// Copied from a 2xx answer into the upstream request.
    response_headers: Vec<HeaderName>,
    /// `X-Auth-Request-Redirect` (default: the request URI).
    request_redirect: Option<Template>,
    always_set_cookie: bool,
    cache: Option<AnswerCache>,
    /// `auth-proxy-set-headers`: headers set on the subrequest.
    set_headers: Vec<(HeaderName, Template)>,
}

#[derive(Debug)]
struct Signin {
    url: Template,
    /// `auth-signin-redirect-param` (`rd`), appended unless the URL has it.
    param: Option<String>,
}

/// The parts of an auth service's answer that matter.
#[derive(Clone, Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
}

impl ExternalAuth {
    pub fn compile(
        annotations: &Annotations<'_>,
        lookup: &ObjectLookup<'_>,
        options: &AccessOptions,
        problems: &mut Problems,
    ) -> Option<ExternalAuth> {
        let (url_key, url) = annotations.get("auth-url")?;
        let before = problems.len();
        let mut template = |name: &str, vars: Vars| {
            let (key, value) = annotations.get(name)?;
            Template::parse(value, vars)
                .map_err(|why| problems.add(&key, format!("{value:?} {why}")))
                .ok()
        };
        let signin = template("auth-signin", Vars::Location);
        let request_redirect = template("auth-request-redirect", Vars::Location);
        let cache_key = template("auth-cache-key", Vars::Request);
        let url = match Template::parse(url, Vars::Location).and_then(|t| check_url(&t).map(|_| t))
        {
            Ok(t) => t,
            Err(why) => {
                problems.add(&url_key, format!("{url:?} {why}"));
                return None;
            }
        };
        let method = match annotations.get("auth-method") {
            None => Method::GET,
            Some((key, value)) => match Method::from_bytes(value.as_bytes()) {
                Ok(m) if !value.is_empty() && value.bytes().all(|b| b.is_ascii_uppercase()) => m,
                _ => {
                    problems.add(&key, format!("{value:?} is not an HTTP method"));
                    Method::GET
                }
            },
        };
        let param = match annotations.get("auth-signin-redirect-param") {
            None => "rd".to_owned(),
            Some((key, value)) => {
                if value.is_empty()
                    || !value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    problems.add(&key, format!("{value:?} is not a query parameter name"));
                }
                value.to_owned()
            }
        };
        let response_headers = match annotations.get("auth-response-headers") {
            None => Vec::new(),
            Some((key, value)) => {
                let names: Result<Vec<HeaderName>, _> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|name| HeaderName::from_bytes(name.as_bytes()))
                    .collect();
                names.unwrap_or_else(|_| {
                    problems.add(&key, format!("{value:?} is not a list of header names"));
                    Vec::new()
                })
            }
        };
        let always_set_cookie = match annotations.get("auth-always-set-cookie") {
            None => false,
            Some((key, value)) => crate::policy::parse_bool(value).unwrap_or_else(|| {
                problems.add(&key, format!("{value:?} is not a boolean"));
                false
            }),
        };
        let cache = match (cache_key, annotations.get("auth-cache-duration")) {
            (None, _) => None,
            (Some(key), duration) => {
                let parsed = match duration {
                    None => Ok(CacheRule::default()),
                    Some((name, value)) => CacheRule::parse(value)
                        .map_err(|why| problems.add(&name, format!("{value:?} {why}"))),
                };
                parsed.ok().map(|rule| AnswerCache {
                    key,
                    rule,
                    answers: Mutex::new(HashMap::new()),
                })
            }
        };
        let set_headers = match annotations.get("auth-proxy-set-headers") {
            None => Vec::new(),
            Some((key, reference)) => {
                proxy_set_headers(lookup, reference, options).unwrap_or_else(|why| {
                    problems.add(&key, why);
                    Vec::new()
                })
            }
        };
        if problems.len() > before {
            return None;
        }
        let signin = signin.map(|url| {
            let has_param = signin_has_param(&url, &param);
            Signin {
                url,
                param: (!has_param).then_some(param),
            }
        });
        Some(ExternalAuth {
            url,
            method,
            signin,
            response_headers,
            request_redirect,
            always_set_cookie,
            cache,
            set_headers,
        })
    }

    /// The auth URL as written.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The headers `auth-proxy-set-headers` adds to each subrequest.
    pub fn proxy_set_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.set_headers.iter().map(|(name, _)| name)
    }

    /// Asks the auth service about one request; on yes, what to copy into
    /// the upstream request and the client's response.
    pub async fn check(
        &self,
        facts: &Facts<'_>,
        conn: &ConnInfo,
        upstreams: &Upstreams,
        timeouts: Timeouts,
    ) -> Result<Granted, Refusal> {
        let cache_key = self.cache.as_ref().map(|c| c.key.expand(facts));
        let cached = self
            .cache
            .as_ref()
            .zip(cache_key.as_deref())
            .and_then(|(cache, key)| cache.get(key));
        let answer = match cached {
            Some(answer) => answer,
            None => {
                let answer = self.ask(facts, conn, upstreams, timeouts).await?;
                if let (Some(cache), Some(key)) = (&self.cache, cache_key) {
                    cache.put(key, &answer);
                }
                answer
            }
        };
        let set_cookies: Vec<HeaderValue> = answer
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .cloned()
            .collect();
        match answer.status {
            s if s.is_success() => {
                let upstream_headers = self
                    .response_headers
                    .iter()
                    .map(|name| {
                        let values = answer.headers.get_all(name).iter().cloned().collect();
                        (name.clone(), values)
                    })
                    .collect();
                Ok(Granted {
                    set_cookies,
                    always: self.always_set_cookie,
                    upstream_headers,
                    remove_authorization: false,
                })
            }
            StatusCode::UNAUTHORIZED => {
                let mut refusal = match &self.signin {
                    Some(signin) => match signin_location(signin, facts) {
                        Some(location) => refusal(StatusCode::FOUND, header::LOCATION, location),
                        None => Refusal::status(StatusCode::INTERNAL_SERVER_ERROR),
                    },
                    None => {
                        let mut r = Refusal::status(StatusCode::UNAUTHORIZED);
                        if let Some(challenge) = answer.headers.get(header::WWW_AUTHENTICATE) {
                            r.headers
                                .insert(header::WWW_AUTHENTICATE, challenge.clone());
                        }
                        r
                    }
                };
                let granted = Granted {
                    set_cookies,
                    always: self.always_set_cookie,
                    ..Granted::default()
                };
                granted.apply_to_response(refusal.status, &mut refusal.headers);
                Err(refusal)
            }
            StatusCode::FORBIDDEN => Err(Refusal::status(StatusCode::FORBIDDEN)),
            other => {
                tracing::warn!(status = %other, "the auth service answered neither 2xx, 401 nor 403");
                Err(Refusal::status(StatusCode::INTERNAL_SERVER_ERROR))
            }
        }
    }

    /// The subrequest itself: headers of the original request, no body.
    async fn ask(
        &self,
        facts: &Facts<'_>,
        conn: &ConnInfo,
        upstreams: &Upstreams,
        timeouts: Timeouts,
    ) -> Result<Answer, Refusal> {
        let failed = |why: &dyn std::fmt::Display| {
            tracing::warn!("external auth failed: {why}");
            Refusal::status(StatusCode::INTERNAL_SERVER_ERROR)
        };
        let url = self.url.expand(facts);
        let (tls, authority, host, path) =
            split_url(&url).ok_or_else(|| failed(&"the auth URL does not expand to a URL"))?;
        let mut headers = facts.headers.clone();
        let original_host = HeaderValue::from_str(facts.host).map_err(|e| failed(&e))?;
        prepare_request(&mut headers, conn, &original_host, false);
        for name in [header::CONTENT_LENGTH, header::CONTENT_TYPE, header::EXPECT] {
            headers.remove(name);
        }
        headers.insert(header::HOST, host);
        let mut original_url = String::new();
        original_url.push_str(if facts.tls { "https://" } else { "http://" });
        original_url.push_str(facts.host);
        original_url.push_str(facts.uri.path_and_query().map_or("/", |p| p.as_str()));
        let value = |text: String| HeaderValue::from_str(&text).map_err(|e| failed(&e));
        headers.insert(X_ORIGINAL_URL.clone(), value(original_url)?);
        let method = value(facts.method.to_string())?;
        headers.insert(X_ORIGINAL_METHOD.clone(), method.clone());
        // What Authelia's older setups added with an auth-snippet.
        headers.insert(X_FORWARDED_METHOD.clone(), method);
        let redirect = match &self.request_redirect {
            Some(t) => t.expand(facts),
            None => facts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
        };
        headers.insert(X_AUTH_REQUEST_REDIRECT.clone(), value(redirect)?);
        headers.insert(X_SENT_FROM.clone(), HeaderValue::from_static("gatehouse"));
        for (name, template) in &self.set_headers {
            headers.insert(name.clone(), value(template.expand(facts))?);
        }

        // The whole exchange, body included, within connect + read.
        let deadline = tokio::time::Instant::now() + timeouts.connect + timeouts.read;
        let request = OwnRequest {
            method: self.method.clone(),
            uri: Uri::from(path),
            headers,
        };
        let response = upstreams
            .send_own(request, &authority, tls, timeouts)
            .await
            .map_err(|e| failed(&e))?;
        let (parts, body) = response.into_parts();
        // Read to its end so the connection goes back to the pool.
        let drain = Limited::new(body, BODY_LIMIT).collect();
        if tokio::time::timeout_at(deadline, drain).await.is_err() {
            return Err(failed(&"the auth service did not answer in time"));
        }
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
        })
    }
}

/// The headers of an `auth-proxy-set-headers` ConfigMap (or the
/// controller ConfigMap's `proxy-set-headers`): each key a header name,
/// each value its value (which may use the request variables).
pub(crate) fn proxy_set_headers(
    lookup: &ObjectLookup<'_>,
    reference: &str,
    options: &AccessOptions,
) -> Result<Vec<(HeaderName, Template)>, String> {
    let (key, map) = lookup.config_map(reference, options)?;
    let mut headers = Vec::new();
    for (name, value) in map.data.iter().flatten() {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("ConfigMap {key}: {name:?} is not a header name"))?;
        let template = Template::parse(value, Vars::Request)
            .map_err(|why| format!("ConfigMap {key}: header {name}: {value:?} {why}"))?;
        if HeaderValue::from_str(&template.literal_text()).is_err() {
            return Err(format!(
                "ConfigMap {key}: header {name}: {value:?} is not a header value"
            ));
        }
        headers.push((header, template));
    }
    Ok(headers)
}

fn refusal(status: StatusCode, name: HeaderName, value: HeaderValue) -> Refusal {
    let mut r = Refusal::status(status);
    r.headers.insert(name, value);
    r
}

/// Whether an auth URL is an absolute http(s) URL once expanded (with
/// sample values, so that a `$host` in it is a host).
fn check_url(template: &Template) -> Result<(), String> {
    let uri: Uri = "/x?y=1".parse().map_err(|_| String::new())?;
    let headers = HeaderMap::new();
    let facts = Facts {
        method: &Method::GET,
        uri: &uri,
        request_uri: &uri,
        host: "example.com",
        tls: true,
        port: 443,
        client: std::net::IpAddr::from([192, 0, 2, 1]),
        headers: &headers,
    };
    split_url(&template.expand(&facts))
        .map(|_| ())
        .ok_or_else(|| "is not an absolute http:// or https:// URL".into())
}

/// TLS or not, the authority to connect to (with its port), the `Host`
/// header, and the path and query of an absolute URL.
fn split_url(url: &str) -> Option<(bool, Authority, HeaderValue, PathAndQuery)> {
    let uri: Uri = url.parse().ok()?;
    let tls = match uri.scheme() {
        Some(s) if *s == Scheme::HTTPS => true,
        Some(s) if *s == Scheme::HTTP => false,
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let connect = format!("{}:{port}", authority.host()).parse().ok()?;
    let host = HeaderValue::from_str(authority.as_str()).ok()?;
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Some((tls, connect, host, path))
}

/// Whether the written sign-in URL already names the parameter in its
/// query (as ingress-nginx checks before appending it).
fn signin_has_param(url: &Template, param: &str) -> bool {
    let literal = url.literal_text();
    let Some((_, query)) = literal.split_once('?') else {
        return false;
    };
    query
        .split('&')
        .any(|pair| pair.split_once('=').map_or(pair, |(k, _)| k) == param)
}

/// The sign-in URL with `rd=<scheme>://<host><escaped request URI>`, as
/// ingress-nginx builds it.
fn signin_location(signin: &Signin, facts: &Facts<'_>) -> Option<HeaderValue> {
    let mut location = signin.url.expand(facts);
    if let Some(param) = &signin.param {
        location.push(if location.contains('?') { '&' } else { '?' });
        location.push_str(param);
        location.push('=');
        location.push_str(if facts.tls { "https://" } else { "http://" });
        location.push_str(facts.host);
        escape_component(
            facts.uri.path_and_query().map_or("/", |p| p.as_str()),
            &mut location,
        );
    }
    HeaderValue::from_str(&location).ok()
}

/// `auth-cache-duration`: which statuses are kept, and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CacheRule {
    statuses: Vec<u16>,
    ttl: Duration,
}

impl Default for CacheRule {
    /// ingress-nginx's default: `200 202 401 5m`.
    fn default() -> Self {
        CacheRule {
            statuses: vec![200, 202, 401],
            ttl: Duration::from_secs(300),
        }
    }
}

impl CacheRule {
    /// nginx's `proxy_cache_valid` form: status codes, then a duration
    /// (`30s`, `5m`, `1h`, `1d`).
    fn parse(value: &str) -> Result<CacheRule, String> {
        let mut words: Vec<&str> = value.split_whitespace().collect();
        let duration = words.pop().ok_or("is empty")?;
        let (digits, unit) = duration.split_at(duration.len().saturating_sub(1));
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err("does not end with a duration like 5m".into()),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| "does not end with a duration like 5m")?;
        let statuses = words
            .iter()
            .map(|w| w.parse::<u16>().ok().filter(|s| (100..600).contains(s)))
            .collect::<Option<Vec<_>>>()
            .ok_or("has something that is not a status code")?;
        let statuses = if statuses.is_empty() {
            vec![200, 301, 302]
        } else {
            statuses
        };
        Ok(CacheRule {
            statuses,
            ttl: Duration::from_secs(n * scale),
        })
    }
}

/// Auth answers by the expanded `auth-cache-key`.
#[derive(Debug)]
struct AnswerCache {
    key: Template,
    rule: CacheRule,
    answers: Mutex<HashMap<String, (Instant, Answer)>>,
}

impl AnswerCache {
    fn get(&self, key: &str) -> Option<Answer> {
        let answers = self.answers.lock().ok()?;
        let (until, answer) = answers.get(key)?;
        (Instant::now() < *until).then(|| answer.clone())
    }

    fn put(&self, key: String, answer: &Answer) {
        if !self.rule.statuses.contains(&answer.status.as_u16()) {
            return;
        }
        if let Ok(mut answers) = self.answers.lock() {
            if answers.len() >= CACHE_CAPACITY {
                answers.clear();
            }
            answers.insert(key, (Instant::now() + self.rule.ttl, answer.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::annotations::nginx_annotations;

    fn compile(pairs: &[(&str, &str)]) -> (Option<ExternalAuth>, Problems) {
        let map = nginx_annotations(pairs);
        let mut problems = Problems::default();
        let (secrets, config_maps) = (Default::default(), Default::default());
        let lookup = ObjectLookup {
            namespace: "shop",
            secrets: &secrets,
            config_maps: &config_maps,
        };
        let auth = ExternalAuth::compile(
            &Annotations::new(Some(&map), "gatehouse.dev"),
            &lookup,
            &AccessOptions::default(),
            &mut problems,
        );
        (auth, problems)
    }

    fn location(auth: &ExternalAuth, uri: &str) -> String {
        let uri: Uri = uri.parse().unwrap();
        let headers = HeaderMap::new();
        let facts = Facts {
            host: "app.example.com",
            tls: true,
            port: 443,
            ..Facts::sample(&uri, &headers)
        };
        let signin = auth.signin.as_ref().unwrap();
        signin_location(signin, &facts)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn the_sign_in_url_gets_rd_unless_it_has_it() {
        let (auth, _) = compile(&[
            ("auth-url", "https://$host/oauth2/auth"),
            ("auth-signin", "https://$host/oauth2/start"),
        ]);
        assert_eq!(
            location(&auth.unwrap(), "/a/b?c=d"),
            "https://app.example.com/oauth2/start?rd=https://app.example.com%2Fa%2Fb%3Fc%3Dd"
        );
        let (auth, _) = compile(&[
            ("auth-url", "https://$host/oauth2/auth"),
            (
                "auth-signin",
                "https://$host/oauth2/start?rd=$escaped_request_uri",
            ),
        ]);
        assert_eq!(
            location(&auth.unwrap(), "/a"),
            "https://app.example.com/oauth2/start?rd=%2Fa"
        );
        let (auth, _) = compile(&[
            ("auth-url", "http://authelia.auth.svc/api/verify"),
            ("auth-signin", "https://login.example.com/?x=1"),
            ("auth-signin-redirect-param", "redirect"),
        ]);
        assert_eq!(
            location(&auth.unwrap(), "/"),
            "https://login.example.com/?x=1&redirect=https://app.example.com%2F"
        );
    }

    #[test]
    fn values_that_do_not_parse_are_problems() {
        for pairs in [
            &[("auth-url", "ftp://auth/")][..],
            &[("auth-url", "http://$upstream_addr/")],
            &[("auth-url", "/relative")],
            &[
                ("auth-url", "http://a/"),
                ("auth-signin", "https://$server_name/"),
            ],
            &[("auth-url", "http://a/"), ("auth-method", "get me")],
            &[
                ("auth-url", "http://a/"),
                ("auth-response-headers", "X-Ok, Bad Header"),
            ],
            &[
                ("auth-url", "http://a/"),
                ("auth-cache-key", "$cookie_s"),
                ("auth-cache-duration", "soon"),
            ],
            &[
                ("auth-url", "http://a/"),
                ("auth-always-set-cookie", "yes please"),
            ],
        ] {
            let (auth, problems) = compile(pairs);
            assert!(auth.is_none() && !problems.is_empty(), "{pairs:?}");
        }
    }

    #[test]
    fn cache_durations_read_like_proxy_cache_valid() {
        assert_eq!(
            CacheRule::parse("200 202 30m").unwrap(),
            CacheRule {
                statuses: vec![200, 202],
                ttl: Duration::from_secs(1800)
            }
        );
        assert_eq!(
            CacheRule::parse("10s").unwrap().statuses,
            vec![200, 301, 302]
        );
        assert!(CacheRule::parse("200 forever").is_err());
    }

    #[test]
    fn cookies_reach_the_client_on_success_statuses_or_always() {
        let granted = Granted {
            set_cookies: vec![HeaderValue::from_static("s=1")],
            ..Granted::default()
        };
        let mut headers = HeaderMap::new();
        granted.apply_to_response(StatusCode::INTERNAL_SERVER_ERROR, &mut headers);
        assert!(headers.is_empty());
        granted.apply_to_response(StatusCode::OK, &mut headers);
        assert_eq!(headers[header::SET_COOKIE], "s=1");
        let always = Granted {
            always: true,
            ..granted
        };
        let mut headers = HeaderMap::new();
        always.apply_to_response(StatusCode::UNAUTHORIZED, &mut headers);
        assert_eq!(headers.len(), 1);
    }
}
