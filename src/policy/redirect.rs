//! The redirect phase (nginx's rewrite phase, before access): an Ingress's
//! `from-to-www-redirect`, `app-root`, `permanent-redirect` /
//! `temporal-redirect` and the HTTPS redirect (`ssl-redirect`,
//! `force-ssl-redirect`), in that order, as ingress-nginx applies them.
//! `/.well-known/acme-challenge/` is never sent to HTTPS, so HTTP-01
//! solvers answer over plain HTTP.

use http::header::{HeaderValue, InvalidHeaderValue};
use http::{StatusCode, Uri};

use super::Annotations;

/// Paths under this prefix are never redirected to HTTPS, so ACME HTTP-01
/// solvers (cert-manager's, and Gatehouse's own answers) work over plain
/// HTTP.
pub const ACME_CHALLENGE_PREFIX: &str = crate::acme::challenges::PATH_PREFIX;

/// A redirect of every request (`permanent-redirect`, `temporal-redirect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub location: HeaderValue,
    pub status: StatusCode,
}

/// A route's redirects, as translate compiled them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Redirects<'a> {
    /// `from-to-www-redirect`: every request goes (308) to this host.
    pub www: Option<&'a str>,
    /// `app-root`: `/` goes (302) to this path.
    pub app_root: Option<&'a str>,
    pub fixed: Option<&'a Redirect>,
    /// Plain HTTP goes (308) to HTTPS.
    pub https: bool,
}

/// What the redirect phase looks at.
#[derive(Clone, Copy, Debug)]
pub struct Asked<'a> {
    /// `Host` or `:authority` as sent.
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub tls: bool,
}

/// Where a redirected request is sent; an `Err` location (from a host
/// and path that made no valid header) earns 400.
pub type Redirected = (Result<HeaderValue, InvalidHeaderValue>, StatusCode);

impl Redirects<'_> {
    /// The first redirect that applies to the request, if any.
    pub fn apply(&self, req: &Asked<'_>) -> Option<Redirected> {
        let scheme = if req.tls { "https" } else { "http" };
        let query = || req.query.map(|q| format!("?{q}")).unwrap_or_default();
        if let Some(www) = self.www {
            let location = format!("{scheme}://{www}{}{}", req.path, query());
            return Some((
                HeaderValue::try_from(location),
                StatusCode::PERMANENT_REDIRECT,
            ));
        }
        if let Some(app_root) = self.app_root.filter(|_| req.path == "/") {
            let location = format!("{scheme}://{}{app_root}", req.host);
            return Some((HeaderValue::try_from(location), StatusCode::FOUND));
        }
        if let Some(fixed) = self.fixed {
            return Some((Ok(fixed.location.clone()), fixed.status));
        }
        if self.https && !req.tls && !req.path.starts_with(ACME_CHALLENGE_PREFIX) {
            let host = crate::connection::strip_port(req.host);
            let location = format!("https://{host}{}{}", req.path, query());
            return Some((
                HeaderValue::try_from(location),
                StatusCode::PERMANENT_REDIRECT,
            ));
        }
        None
    }
}

/// `permanent-redirect` (which wins, as in ingress-nginx) or
/// `temporal-redirect`, each with its `-code`.
pub fn compile_fixed(annotations: &Annotations<'_>, notes: &mut Vec<String>) -> Option<Redirect> {
    let read = |name: &str, notes: &mut Vec<String>| annotations.parsed(name, parse_url, notes);
    let (location, code_name, default) = match read("permanent-redirect", notes) {
        Some(location) => (
            location,
            "permanent-redirect-code",
            StatusCode::MOVED_PERMANENTLY,
        ),
        None => {
            let location = read("temporal-redirect", notes)?;
            (location, "temporal-redirect-code", StatusCode::FOUND)
        }
    };
    let code = annotations.parsed(code_name, parse_code, notes);
    Some(Redirect {
        location,
        status: code.unwrap_or(default),
    })
}

/// `app-root`: a path like `/app`.
pub fn parse_app_root(value: &str) -> Result<String, String> {
    no_variables(value)?;
    let valid = value.starts_with('/')
        && value.len() > 1
        && value.parse::<http::uri::PathAndQuery>().is_ok();
    if !valid {
        return Err("is not a path like /app".into());
    }
    Ok(value.to_owned())
}

fn parse_url(value: &str) -> Result<HeaderValue, String> {
    no_variables(value)?;
    let uri: Uri = value.parse().map_err(|_| "is not a URL".to_owned())?;
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err("is not an absolute URL like https://example.com/".into());
    }
    HeaderValue::from_str(value).map_err(|_| "is not a valid Location".into())
}

/// ingress-nginx accepts 300–308 and falls back to the default otherwise.
fn parse_code(value: &str) -> Result<StatusCode, String> {
    value
        .parse::<u16>()
        .ok()
        .filter(|c| (300..=308).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| "is not a redirect status between 300 and 308".into())
}

/// nginx variables would be text pasted into configuration; they are the
/// one thing an annotation value can never carry here.
pub fn no_variables(value: &str) -> Result<(), String> {
    if value.contains('$') {
        return Err("uses nginx variables, which Gatehouse does not expand".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::nginx_annotations;

    fn asked(host: &str, path: &'static str, tls: bool) -> Asked<'static> {
        Asked {
            host: Box::leak(host.to_owned().into_boxed_str()),
            path,
            query: Some("q=1"),
            tls,
        }
    }

    fn location(r: Option<Redirected>) -> (String, u16) {
        let (location, status) = r.expect("a redirect");
        (
            location.unwrap().to_str().unwrap().to_owned(),
            status.as_u16(),
        )
    }

    #[test]
    fn www_comes_first_then_app_root_then_the_fixed_redirect_then_https() {
        let fixed = Redirect {
            location: HeaderValue::from_static("https://moved.example/"),
            status: StatusCode::MOVED_PERMANENTLY,
        };
        let all = Redirects {
            www: Some("www.shop.test"),
            app_root: Some("/app"),
            fixed: Some(&fixed),
            https: true,
        };
        let req = asked("shop.test", "/", false);
        assert_eq!(
            location(all.apply(&req)),
            ("http://www.shop.test/?q=1".into(), 308)
        );
        let no_www = Redirects { www: None, ..all };
        assert_eq!(
            location(no_www.apply(&req)),
            ("http://shop.test/app".into(), 302)
        );
        let req = asked("shop.test", "/cart", false);
        assert_eq!(
            location(no_www.apply(&req)),
            ("https://moved.example/".into(), 301)
        );
        let https = Redirects {
            https: true,
            ..Redirects::default()
        };
        let req = asked("shop.test:8080", "/cart", false);
        assert_eq!(
            location(https.apply(&req)),
            ("https://shop.test/cart?q=1".into(), 308)
        );
        assert!(https.apply(&asked("shop.test", "/cart", true)).is_none());
    }

    #[test]
    fn acme_challenges_stay_on_plain_http() {
        let https = Redirects {
            https: true,
            ..Redirects::default()
        };
        let req = asked("shop.test", "/.well-known/acme-challenge/token", false);
        assert!(https.apply(&req).is_none());
    }

    #[test]
    fn permanent_wins_over_temporal_and_a_bad_code_falls_back_with_a_note() {
        let map = nginx_annotations(&[
            ("permanent-redirect", "https://a.example/"),
            ("permanent-redirect-code", "399"),
            ("temporal-redirect", "https://b.example/"),
        ]);
        let mut notes = Vec::new();
        let fixed = compile_fixed(&Annotations::new(Some(&map), "gatehouse.dev"), &mut notes);
        let fixed = fixed.expect("redirect");
        assert_eq!(fixed.location, "https://a.example/");
        assert_eq!(fixed.status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(parse_url("/relative").is_err() && parse_url("https://$host/").is_err());
        assert!(parse_app_root("/app").is_ok() && parse_app_root("/").is_err());
    }
}
