//! Custom error pages: `custom-http-errors` with `default-backend` (a
//! Service of the Ingress's namespace) or `--default-backend-service`.
//!
//! When the backend answers one of the listed statuses, its response is
//! replaced by the default backend's answer to a `GET /` that carries, as
//! ingress-nginx sends them, `X-Code`, `X-Format` (the client's `Accept`),
//! `X-Original-URI`, `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`,
//! `X-Service-Port` and `X-Request-ID`. The client gets the default
//! backend's status and body. If the default backend cannot answer, the
//! original response is sent instead.

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Method, Response, Uri};

use crate::cluster::ObjectKey;
use crate::upstream::{
    Backend, LoadBalance, OwnRequest, Timeouts, Upstream, UpstreamResponse, Upstreams,
};

#[derive(Debug)]
pub struct ErrorPages {
    codes: Vec<u16>,
    /// The default backend that renders them.
    pub backend: Arc<Backend>,
}

/// What the error request says about the request that failed.
pub struct Failed<'a> {
    pub code: u16,
    pub headers: &'a HeaderMap,
    pub uri: &'a Uri,
    pub ingress: Option<&'a ObjectKey>,
    /// The route's backend (the Service that answered with the code).
    pub service: &'a Backend,
}

/// What a custom error page needs of a request, noted before the request
/// goes on (its headers and URI are then the upstream's).
pub struct Noted {
    pages: Arc<ErrorPages>,
    headers: HeaderMap,
    uri: Uri,
    ingress: Option<ObjectKey>,
    service: Arc<Backend>,
}

impl Noted {
    /// The default backend's page when `status` is one the route lists
    /// and the default backend answers.
    pub async fn page(
        &self,
        status: u16,
        upstreams: &Upstreams,
        timeouts: Timeouts,
    ) -> Option<(Response<UpstreamResponse>, Authority)> {
        if !self.pages.intercepts(status) {
            return None;
        }
        let failed = Failed {
            code: status,
            headers: &self.headers,
            uri: &self.uri,
            ingress: self.ingress.as_ref(),
            service: &self.service,
        };
        self.pages.fetch(&failed, upstreams, timeouts).await
    }
}

impl ErrorPages {
    pub fn new(codes: Vec<u16>, backend: Arc<Backend>) -> Self {
        ErrorPages { codes, backend }
    }

    /// `custom-http-errors`: comma-separated status codes.
    pub fn parse_codes(value: &str) -> Result<Vec<u16>, String> {
        let codes = value
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| c.parse::<u16>().ok().filter(|c| (400..600).contains(c)))
            .collect::<Option<Vec<u16>>>()
            .ok_or("is not a list of status codes between 400 and 599")?;
        if codes.is_empty() {
            return Err("lists no status code".into());
        }
        Ok(codes)
    }

    /// Notes what a page for this request would need: its headers and
    /// URI as they are now, its Ingress and the Service it was sent to.
    pub fn note(
        self: &Arc<Self>,
        headers: &HeaderMap,
        uri: &Uri,
        ingress: Option<&ObjectKey>,
        service: &Arc<Backend>,
    ) -> Noted {
        Noted {
            pages: self.clone(),
            headers: headers.clone(),
            uri: uri.clone(),
            ingress: ingress.cloned(),
            service: service.clone(),
        }
    }

    pub fn intercepts(&self, status: u16) -> bool {
        self.codes.contains(&status)
    }

    /// The response phase: the default backend's page for a failed request,
    /// or `None` when it cannot answer.
    pub async fn fetch(
        &self,
        failed: &Failed<'_>,
        upstreams: &Upstreams,
        timeouts: Timeouts,
    ) -> Option<(Response<UpstreamResponse>, Authority)> {
        let upstream = self.backend.upstream();
        let Upstream::Endpoints(set) = &*upstream else {
            return None;
        };
        let pick = set.pick(LoadBalance::RoundRobin)?;
        let authority = set.authority(pick);
        let mut headers = HeaderMap::new();
        let copy = |name: &HeaderName, to: &mut HeaderMap| {
            if let Some(v) = failed.headers.get(name) {
                to.insert(name.clone(), v.clone());
            }
        };
        copy(&header::HOST, &mut headers);
        copy(&HeaderName::from_static("x-request-id"), &mut headers);
        if let Some(accept) = failed.headers.get(header::ACCEPT) {
            headers.insert(HeaderName::from_static("x-format"), accept.clone());
        }
        let text = |name: &'static str, value: String, to: &mut HeaderMap| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                to.insert(HeaderName::from_static(name), v);
            }
        };
        text("x-code", failed.code.to_string(), &mut headers);
        let uri = failed.uri.path_and_query().map_or("/", |p| p.as_str());
        text("x-original-uri", uri.to_owned(), &mut headers);
        if let Some(ingress) = failed.ingress {
            text("x-namespace", ingress.namespace.clone(), &mut headers);
            text("x-ingress-name", ingress.name.clone(), &mut headers);
        }
        text(
            "x-service-name",
            failed.service.service.name.clone(),
            &mut headers,
        );
        text("x-service-port", failed.service.port.clone(), &mut headers);

        let request = OwnRequest {
            method: Method::GET,
            uri: Uri::from_static("/"),
            headers,
        };
        match upstreams
            .send_own(request, &authority, false, timeouts)
            .await
        {
            Ok(response) => Some((response, authority)),
            Err(e) => {
                tracing::warn!(upstream = %authority, "custom error page: {e}");
                None
            }
        }
    }

    pub fn describe(&self) -> String {
        let codes: Vec<String> = self.codes.iter().map(u16::to_string).collect();
        format!(
            "custom-http-errors={} via {}",
            codes.join(","),
            self.backend.service
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_4xx_and_5xx() {
        assert_eq!(ErrorPages::parse_codes("404, 503").unwrap(), [404, 503]);
        assert!(ErrorPages::parse_codes("200").is_err());
        assert!(ErrorPages::parse_codes("404,oops").is_err());
        assert!(ErrorPages::parse_codes("").is_err());
    }
}
