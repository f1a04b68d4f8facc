//! An access log line in ingress-nginx's format: the compiled
//! `log-format-upstream` (or ingress-nginx's default line) rendered from
//! what the request path kept, with nginx's formats: `$time_local` as
//! `07/Dec/2026:18:05:38 +0000`, durations in seconds with milliseconds,
//! an absent value as `-` (empty under `escape=json`), and one entry per
//! attempt in the `$upstream_*` lists.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use http::uri::Authority;
use http::{Method, Uri};

use crate::policy::log_format::{Escape, LogFormat, Part, Var};
use crate::upstream::Backend;

/// What a templated line needs beyond the log record, kept only while the
/// access log is on (one allocation per request, none when it is off).
#[derive(Debug)]
pub struct Captured {
    pub format: Arc<LogFormat>,
    pub escape: Escape,
    /// The values of `format.headers`, as the client sent them.
    headers: Vec<Option<HeaderValue>>,
    /// The Basic credentials' user name (never the password).
    remote_user: Option<String>,
    /// The request line and headers, as HTTP/1.1 would send them.
    pub request_head: u64,
    /// The response status line and headers, likewise.
    pub response_head: u64,
    /// The request came over TLS (`$scheme`).
    pub https: bool,
    /// `$ssl_protocol`, `$ssl_cipher` in OpenSSL's names.
    pub tls: Option<(&'static str, &'static str)>,
    /// The route's own backend, when a canary took the request.
    pub main_backend: Option<Arc<Backend>>,
    pub attempts: Vec<Attempt>,
}

/// One attempt at an endpoint.
#[derive(Debug)]
pub struct Attempt {
    pub addr: Authority,
    pub status: u16,
    pub started: Instant,
    /// Until the response head (or the failure).
    pub took: Duration,
    /// The endpoint answered: the last such attempt lasts until the body
    /// has been sent, and its body is the response's.
    pub answered: bool,
}

impl Captured {
    pub fn new(format: Arc<LogFormat>, escape: Escape, headers: &HeaderMap) -> Self {
        let values = format
            .headers
            .iter()
            .map(|name| joined(headers, name))
            .collect();
        Captured {
            format,
            escape,
            headers: values,
            remote_user: basic_user(headers),
            request_head: 0,
            response_head: 0,
            https: false,
            tls: None,
            main_backend: None,
            attempts: Vec::new(),
        }
    }
}

/// nginx joins a repeated header's values with `, `.
fn joined(headers: &HeaderMap, name: &http::HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let rest: Vec<&HeaderValue> = values.collect();
    if rest.is_empty() {
        return Some(first.clone());
    }
    let mut all = first.as_bytes().to_vec();
    for value in rest {
        all.extend_from_slice(b", ");
        all.extend_from_slice(value.as_bytes());
    }
    HeaderValue::from_bytes(&all).ok()
}

/// `$remote_user`: the user name of `Authorization: Basic`.
fn basic_user(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let user = decoded.split(|b| *b == b':').next()?;
    Some(String::from_utf8_lossy(user).into_owned())
}

/// The finished request, as the line sees it.
pub struct Line<'a> {
    pub captured: &'a Captured,
    pub client: IpAddr,
    pub method: &'a Method,
    pub protocol: &'static str,
    pub uri: &'a Uri,
    pub host: Option<&'a str>,
    pub scheme: &'static str,
    pub status: u16,
    pub body_sent: u64,
    pub body_received: u64,
    pub duration: Duration,
    pub finished: Instant,
    pub request_id: &'a str,
    /// The Ingress's (or HTTPRoute's) namespace and name.
    pub origin: Option<(&'a str, &'a str)>,
    pub backend: Option<&'a Backend>,
    pub now: time::OffsetDateTime,
}

impl Line<'_> {
    /// The line, with its newline.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        for part in &self.captured.format.parts {
            match part {
                Part::Text(text) => out.extend_from_slice(text.as_bytes()),
                Part::Var(var) => self.variable(*var, &mut out),
            }
        }
        out.push(b'\n');
        out
    }

    fn variable(&self, var: Var, out: &mut Vec<u8>) {
        let mut text = String::new();
        let value: Option<&[u8]> = match self.value(var, &mut text) {
            Value::Absent => None,
            Value::Static(s) => Some(s.as_bytes()),
            Value::Borrowed(b) => Some(b),
            Value::Written => Some(text.as_bytes()),
        };
        write_escaped(value, self.captured.escape, out);
    }

    /// A variable's value: `text` is its buffer when it is formatted.
    fn value<'v>(&'v self, var: Var, text: &mut String) -> Value<'v> {
        let captured = self.captured;
        let mut write = |args: std::fmt::Arguments<'_>| {
            let _ = text.write_fmt(args);
            Value::Written
        };
        match var {
            Var::RemoteAddr => write(format_args!("{}", self.client)),
            Var::RemoteUser => captured
                .remote_user
                .as_deref()
                .map_or(Value::Absent, |u| Value::Borrowed(u.as_bytes())),
            Var::TimeLocal => {
                let t = self.now;
                let month = &t.month().to_string()[..3];
                write(format_args!(
                    "{:02}/{month}/{}:{:02}:{:02}:{:02} +0000",
                    t.day(),
                    t.year(),
                    t.hour(),
                    t.minute(),
                    t.second()
                ))
            }
            Var::TimeIso8601 => {
                let t = self.now;
                write(format_args!(
                    "{}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                ))
            }
            Var::Request => write(format_args!(
                "{} {} {}",
                self.method,
                request_uri(self.uri),
                self.protocol
            )),
            Var::RequestMethod => Value::Borrowed(self.method.as_str().as_bytes()),
            Var::RequestUri => Value::Borrowed(request_uri(self.uri).as_bytes()),
            Var::Uri => {
                let decoded = percent_decoded(self.uri.path());
                *text = String::from_utf8_lossy(&decoded).into_owned();
                Value::Written
            }
            Var::Args => self
                .uri
                .query()
                .map_or(Value::Absent, |q| Value::Borrowed(q.as_bytes())),
            Var::ServerProtocol => Value::Static(self.protocol),
            Var::Scheme => Value::Static(self.scheme),
            Var::Status => write(format_args!("{}", self.status)),
            Var::BodyBytesSent => write(format_args!("{}", self.body_sent)),
            Var::BytesSent => write(format_args!("{}", captured.response_head + self.body_sent)),
            Var::Header(i) => match captured.headers.get(i) {
                Some(Some(value)) => Value::Borrowed(value.as_bytes()),
                _ => Value::Absent,
            },
            Var::RequestLength => write(format_args!(
                "{}",
                captured.request_head + self.body_received
            )),
            Var::RequestTime => write(format_args!("{}", Seconds(self.duration))),
            Var::ProxyUpstreamName => match captured.main_backend.as_deref().or(self.backend) {
                Some(backend) => upstream_name(backend, text),
                None => Value::Static("upstream-default-backend"),
            },
            Var::ProxyAlternativeUpstreamName => match (&captured.main_backend, self.backend) {
                (Some(_), Some(canary)) => upstream_name(canary, text),
                _ => Value::Static(""),
            },
            Var::UpstreamAddr => self.attempts(text, |a, _, out| {
                let _ = write!(out, "{}", a.addr);
            }),
            Var::UpstreamResponseLength => self.attempts(text, |a, last, out| {
                let length = if last && a.answered {
                    self.body_sent
                } else {
                    0
                };
                let _ = write!(out, "{length}");
            }),
            Var::UpstreamResponseTime => self.attempts(text, |a, last, out| {
                let took = if last && a.answered {
                    self.finished.saturating_duration_since(a.started)
                } else {
                    a.took
                };
                let _ = write!(out, "{}", Seconds(took));
            }),
            Var::UpstreamStatus => self.attempts(text, |a, _, out| {
                let _ = write!(out, "{}", a.status);
            }),
            Var::ReqId => Value::Borrowed(self.request_id.as_bytes()),
            Var::Host => match self.host {
                Some(host) => {
                    *text = crate::connection::normalize_host(host).into_owned();
                    Value::Written
                }
                None => Value::Static(""),
            },
            Var::Namespace => self
                .origin
                .map_or(Value::Static(""), |(ns, _)| Value::Borrowed(ns.as_bytes())),
            Var::IngressName => self.origin.map_or(Value::Static(""), |(_, name)| {
                Value::Borrowed(name.as_bytes())
            }),
            Var::ServiceName => self.backend.map_or(Value::Static(""), |b| {
                Value::Borrowed(b.service.name.as_bytes())
            }),
            Var::ServicePort => self
                .backend
                .map_or(Value::Static(""), |b| Value::Borrowed(b.port.as_bytes())),
            Var::SslProtocol => captured
                .tls
                .map_or(Value::Absent, |(protocol, _)| Value::Static(protocol)),
            Var::SslCipher => captured
                .tls
                .map_or(Value::Absent, |(_, cipher)| Value::Static(cipher)),
            Var::Unknown => Value::Static(""),
        }
    }

    /// An `$upstream_*` list: one entry per attempt, `, ` between them;
    /// absent when the request was not forwarded.
    fn attempts(
        &self,
        text: &mut String,
        entry: impl Fn(&Attempt, bool, &mut String),
    ) -> Value<'static> {
        let attempts = &self.captured.attempts;
        if attempts.is_empty() {
            return Value::Absent;
        }
        for (i, attempt) in attempts.iter().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            entry(attempt, i + 1 == attempts.len(), text);
        }
        Value::Written
    }
}

enum Value<'v> {
    /// Not set: `-`, or nothing under `escape=json`.
    Absent,
    Static(&'static str),
    Borrowed(&'v [u8]),
    /// In the variable's text buffer.
    Written,
}

/// `NAMESPACE-SERVICE-PORT`, as ingress-nginx names its upstreams.
fn upstream_name<'v>(backend: &Backend, text: &mut String) -> Value<'v> {
    let service = &backend.service;
    let _ = write!(
        text,
        "{}-{}-{}",
        service.namespace, service.name, backend.port
    );
    Value::Written
}

/// nginx's `%T.%03M`: seconds with (truncated) milliseconds.
struct Seconds(Duration);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        write!(f, "{}.{:03}", ms / 1000, ms % 1000)
    }
}

/// Path and query as sent, whatever the request's form (an HTTP/2
/// request's URI is absolute).
fn request_uri(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |p| p.as_str())
}

/// nginx's `$uri`: the path with `%XX` decoded.
fn percent_decoded(path: &str) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// A value as nginx's `escape=` writes it; `None` is an absent value.
fn write_escaped(value: Option<&[u8]>, escape: Escape, out: &mut Vec<u8>) {
    let Some(value) = value else {
        if escape != Escape::Json {
            out.push(b'-');
        }
        return;
    };
    match escape {
        Escape::None => out.extend_from_slice(value),
        Escape::Default => {
            for &b in value {
                if b == b'"' || b == b'\\' || !(0x20..=0x7e).contains(&b) {
                    out.extend_from_slice(&[
                        b'\\',
                        b'x',
                        HEX[(b >> 4) as usize],
                        HEX[(b & 15) as usize],
                    ]);
                } else {
                    out.push(b);
                }
            }
        }
        Escape::Json => {
            for &b in value {
                match b {
                    b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    0x08 => out.extend_from_slice(b"\\b"),
                    0x0c => out.extend_from_slice(b"\\f"),
                    b if b < 0x20 => {
                        out.extend_from_slice(b"\\u00");
                        out.extend_from_slice(&[HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
                    }
                    b => out.push(b),
                }
            }
        }
    }
}

/// The size of a head as HTTP/1.1 sends it: the start line, each header
/// as `name: value` with CRLF, and the blank line.
pub fn head_size(start_line: usize, headers: &HeaderMap) -> u64 {
    let fields: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    (start_line + 2 + fields + 2) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(value: Option<&str>, escape: Escape) -> String {
        let mut out = Vec::new();
        write_escaped(value.map(str::as_bytes), escape, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_are_escaped_as_nginx_escapes_them() {
        let value = Some("a\"b\\c\td\u{1}é");
        assert_eq!(
            escaped(value, Escape::Default),
            r#"a\x22b\x5Cc\x09d\x01\xC3\xA9"#
        );
        assert_eq!(escaped(value, Escape::Json), "a\\\"b\\\\c\\td\\u0001é");
        assert_eq!(escaped(value, Escape::None), "a\"b\\c\td\u{1}é");
    }

    #[test]
    fn an_absent_value_is_a_dash_but_empty_in_json() {
        assert_eq!(escaped(None, Escape::Default), "-");
        assert_eq!(escaped(None, Escape::None), "-");
        assert_eq!(escaped(None, Escape::Json), "");
        assert_eq!(escaped(Some(""), Escape::Default), "");
    }

    #[test]
    fn durations_are_seconds_with_truncated_milliseconds() {
        assert_eq!(Seconds(Duration::from_micros(3_999)).to_string(), "0.003");
        assert_eq!(Seconds(Duration::from_millis(12_045)).to_string(), "12.045");
    }

    #[test]
    fn the_uri_is_decoded_and_bad_escapes_kept() {
        assert_eq!(percent_decoded("/a%20b%2f%zz%4"), b"/a b/%zz%4");
    }

    #[test]
    fn basic_credentials_give_the_user_and_never_the_password() {
        let mut headers = HeaderMap::new();
        // alice:s3cret
        headers.insert(AUTHORIZATION, "Basic YWxpY2U6czNjcmV0".parse().unwrap());
        assert_eq!(basic_user(&headers).as_deref(), Some("alice"));
        headers.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(basic_user(&headers), None);
    }

    #[test]
    fn repeated_headers_are_joined() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "10.0.0.1".parse().unwrap());
        headers.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        let name = http::HeaderName::from_static("x-forwarded-for");
        assert_eq!(joined(&headers, &name).unwrap(), "10.0.0.1, 10.0.0.2");
    }
}
