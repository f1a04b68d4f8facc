//! The answers a request can get: the upstream's response, streamed, or a
//! short one of the proxy's own.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use crate::policy::Refusal;
use crate::upstream::exchange_timeouts::ReadPaced;
use crate::upstream::UpstreamResponse;

/// A response body before telemetry wraps it: the upstream's, streamed
/// under the read timeout, or a short one of the proxy's own.
pub type Inner = Either<ReadPaced<UpstreamResponse>, Full<Bytes>>;

/// A short response of the proxy's own.
pub fn status(status: StatusCode) -> Response<Inner> {
    let body = match status {
        StatusCode::NOT_FOUND => "404 page not found\n",
        StatusCode::UNAUTHORIZED => "401 authorization required\n",
        StatusCode::FORBIDDEN => "403 forbidden\n",
        StatusCode::PAYLOAD_TOO_LARGE => "413 request entity too large\n",
        StatusCode::BAD_GATEWAY => "502 bad gateway\n",
        StatusCode::SERVICE_UNAVAILABLE => "503 service unavailable\n",
        StatusCode::GATEWAY_TIMEOUT => "504 gateway timeout\n",
        StatusCode::INTERNAL_SERVER_ERROR => "500 internal server error\n",
        StatusCode::BAD_REQUEST => "400 bad request\n",
        StatusCode::REQUEST_TIMEOUT => "408 request timeout\n",
        StatusCode::TOO_MANY_REQUESTS => "429 too many requests\n",
        _ => "",
    };
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
        body.as_bytes(),
    ))));
    *response.status_mut() = status;
    if !body.is_empty() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

/// A status with a body of the proxy's making.
pub fn body(status: StatusCode, body: Bytes) -> Response<Inner> {
    let mut response = Response::new(Either::Right(Full::new(body)));
    *response.status_mut() = status;
    response
}

/// An ACME HTTP-01 challenge's answer (RFC 8555 §8.3): 200, the key
/// authorization as the body.
pub fn key_authorization(body: Bytes) -> Response<Inner> {
    let mut response = Response::new(Either::Right(Full::new(body)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// A redirect decided by the table.
pub fn redirect(location: HeaderValue, code: StatusCode) -> Response<Inner> {
    let mut response = status(code);
    response.headers_mut().insert(header::LOCATION, location);
    response
}

/// The access phase's refusal: 401 (with the challenge), a sign-in
/// redirect, 403 or 500.
pub fn refusal(refusal: Refusal) -> Response<Inner> {
    let mut response = status(refusal.status);
    response.headers_mut().extend(refusal.headers);
    response
}

/// `204` for a CORS preflight, with an empty text body as nginx sends it.
pub fn no_content() -> Response<Inner> {
    let mut response = status(StatusCode::NO_CONTENT);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain charset=UTF-8"),
    );
    response
}

/// An upstream response, its body read under `proxy-read-timeout`.
pub fn streamed(
    response: Response<UpstreamResponse>,
    read: std::time::Duration,
    from: Authority,
) -> Response<Inner> {
    response.map(|body| Either::Left(ReadPaced::new(body, read, from)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn text(response: Response<Inner>) -> String {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn own_answers_say_their_status_in_plain_text() {
        let answer = status(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            answer.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(text(answer).await, "503 service unavailable\n");
        let answer = status(StatusCode::NO_CONTENT);
        assert!(answer.headers().get(header::CONTENT_TYPE).is_none());
    }

    #[tokio::test]
    async fn a_preflight_gets_204_with_nginxs_content_type() {
        let answer = no_content();
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            answer.headers()[header::CONTENT_TYPE],
            "text/plain charset=UTF-8"
        );
        assert_eq!(text(answer).await, "");
    }

    #[test]
    fn a_refusal_carries_its_headers_and_a_redirect_its_location() {
        let mut refused = Refusal::status(StatusCode::UNAUTHORIZED);
        refused.headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"x\""),
        );
        let answer = refusal(refused);
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            answer.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"x\""
        );
        let location = HeaderValue::from_static("https://a.example/");
        let answer = redirect(location, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(answer.headers()[header::LOCATION], "https://a.example/");
    }
}
