//! ingress-nginx's access log line (`log-format-upstream`): an nginx
//! `log_format` string, compiled once when the ConfigMap is read into
//! literal text and typed variables, so that writing a line is a walk over
//! a short list. The access log (telemetry) renders it; the request path
//! only keeps what the variables need.
//!
//! The value is read as nginx reads the quoted string ingress-nginx puts it
//! in: `\"`, `\'`, `\\`, `\t`, `\r` and `\n` are unescaped, a variable is
//! `$name` or `${name}`, and a `$` that starts no name is literal text.

/// ingress-nginx's default `log-format-upstream`.
pub const INGRESS_NGINX_DEFAULT: &str = concat!(
    r#"$remote_addr - $remote_user [$time_local] "$request" "#,
    r#"$status $body_bytes_sent "$http_referer" "$http_user_agent" "#,
    "$request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr ",
    "$upstream_response_length $upstream_response_time $upstream_status $req_id",
);

/// A compiled access log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFormat {
    pub parts: Vec<Part>,
    /// The request headers the line names (`$http_NAME`), in the order
    /// `Var::Header` indexes them.
    pub headers: Vec<http::HeaderName>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Var(Var),
}

/// The variables Gatehouse renders; the docs' access log table says what
/// each one writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    RemoteAddr,
    RemoteUser,
    TimeLocal,
    TimeIso8601,
    Request,
    RequestMethod,
    RequestUri,
    Uri,
    Args,
    ServerProtocol,
    Scheme,
    Status,
    BodyBytesSent,
    BytesSent,
    /// `$http_NAME`: the index of the header in `LogFormat::headers`.
    Header(usize),
    RequestLength,
    RequestTime,
    ProxyUpstreamName,
    ProxyAlternativeUpstreamName,
    UpstreamAddr,
    UpstreamResponseLength,
    UpstreamResponseTime,
    UpstreamStatus,
    ReqId,
    Host,
    Namespace,
    IngressName,
    ServiceName,
    ServicePort,
    SslProtocol,
    SslCipher,
    /// A variable Gatehouse does not have: it renders empty.
    Unknown,
}

/// How variable values are escaped (`log-format-escape-json`,
/// `log-format-escape-none`), as nginx's `log_format ... escape=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Escape {
    /// `"`, `\`, control characters and bytes above 126 as `\xHH`.
    #[default]
    Default,
    /// JSON string escapes; a value that is absent renders empty.
    Json,
    /// Nothing escaped.
    None,
}

/// The access log settings of the controller ConfigMap.
#[derive(Clone, Debug, Default)]
pub struct AccessLogSettings {
    /// `log-format-upstream`, when the ConfigMap sets it.
    pub upstream: Option<std::sync::Arc<LogFormat>>,
    pub escape_json: bool,
    pub escape_none: bool,
}

impl AccessLogSettings {
    /// ingress-nginx's template: `escape=none` wins over `escape=json`.
    pub fn escape(&self) -> Escape {
        match (self.escape_none, self.escape_json) {
            (true, _) => Escape::None,
            (false, true) => Escape::Json,
            (false, false) => Escape::Default,
        }
    }
}

impl LogFormat {
    /// Compiles `value`; the names of unknown variables come back beside
    /// it. `Err` when nginx would refuse the value (an unclosed `${`).
    pub fn parse(value: &str) -> Result<(LogFormat, Vec<String>), String> {
        let text = unquote(value);
        let mut format = LogFormat {
            parts: Vec::new(),
            headers: Vec::new(),
        };
        let mut unknown = Vec::new();
        let mut literal = String::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            let Some((name, tail)) = variable_name(&rest[at + 1..])? else {
                literal.push('$');
                rest = &rest[at + 1..];
                continue;
            };
            if !literal.is_empty() {
                format.parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            let name = name.to_ascii_lowercase();
            let var = format.variable(&name);
            if var == Var::Unknown {
                unknown.push(name);
            }
            format.parts.push(Part::Var(var));
            rest = tail;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            format.parts.push(Part::Text(literal));
        }
        Ok((format, unknown))
    }

    /// ingress-nginx's default line, which has no unknown variable.
    pub fn ingress_nginx_default() -> LogFormat {
        // The constant parses: it has no `${`.
        Self::parse(INGRESS_NGINX_DEFAULT)
            .map(|(format, _)| format)
            .unwrap_or(LogFormat {
                parts: Vec::new(),
                headers: Vec::new(),
            })
    }

    fn variable(&mut self, name: &str) -> Var {
        match name {
            "remote_addr" => Var::RemoteAddr,
            "remote_user" => Var::RemoteUser,
            "time_local" => Var::TimeLocal,
            "time_iso8601" => Var::TimeIso8601,
            "request" => Var::Request,
            "request_method" => Var::RequestMethod,
            "request_uri" => Var::RequestUri,
            "uri" | "document_uri" => Var::Uri,
            "args" | "query_string" => Var::Args,
            "server_protocol" => Var::ServerProtocol,
            "scheme" => Var::Scheme,
            "status" => Var::Status,
            "body_bytes_sent" => Var::BodyBytesSent,
            "bytes_sent" => Var::BytesSent,
            "request_length" => Var::RequestLength,
            "request_time" => Var::RequestTime,
            "proxy_upstream_name" => Var::ProxyUpstreamName,
            "proxy_alternative_upstream_name" => Var::ProxyAlternativeUpstreamName,
            "upstream_addr" => Var::UpstreamAddr,
            "upstream_response_length" => Var::UpstreamResponseLength,
            "upstream_response_time" => Var::UpstreamResponseTime,
            "upstream_status" => Var::UpstreamStatus,
            "req_id" => Var::ReqId,
            "host" => Var::Host,
            "namespace" => Var::Namespace,
            "ingress_name" => Var::IngressName,
            "service_name" => Var::ServiceName,
            "service_port" => Var::ServicePort,
            "ssl_protocol" => Var::SslProtocol,
            "ssl_cipher" => Var::SslCipher,
            _ => match name.strip_prefix("http_").map(header_name) {
                Some(Some(header)) => Var::Header(self.header_index(header)),
                _ => Var::Unknown,
            },
        }
    }

    fn header_index(&mut self, header: http::HeaderName) -> usize {
        match self.headers.iter().position(|h| *h == header) {
            Some(index) => index,
            None => {
                self.headers.push(header);
                self.headers.len() - 1
            }
        }
    }
}

/// nginx's `$http_NAME`: the header with underscores as dashes.
fn header_name(name: &str) -> Option<http::HeaderName> {
    if name.is_empty() {
        return None;
    }
    http::HeaderName::from_bytes(name.replace('_', "-").as_bytes()).ok()
}

/// The variable name after a `$` and what follows it; `None` when the `$`
/// starts no name.
fn variable_name(after: &str) -> Result<Option<(&str, &str)>, String> {
    if let Some(braced) = after.strip_prefix('{') {
        let end = braced
            .find('}')
            .ok_or("has a ${ without its closing }; nginx refuses it")?;
        let name = &braced[..end];
        if name.is_empty() || !name.bytes().all(is_name_byte) {
            return Err(format!("has ${{{name}}}, which is not a variable name"));
        }
        return Ok(Some((name, &braced[end + 1..])));
    }
    let end = after
        .bytes()
        .position(|b| !is_name_byte(b))
        .unwrap_or(after.len());
    Ok((end > 0).then(|| (&after[..end], &after[end..])))
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The escapes nginx's configuration parser undoes in a quoted string.
fn unquote(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(q @ ('"' | '\'' | '\\')) => out.push(q),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(value: &str) -> Vec<Part> {
        LogFormat::parse(value).unwrap().0.parts
    }

    fn text(t: &str) -> Part {
        Part::Text(t.into())
    }

    #[test]
    fn text_and_variables_alternate_as_written() {
        assert_eq!(
            parts(r#"$remote_addr - [$time_local] "$request""#),
            [
                Part::Var(Var::RemoteAddr),
                text(" - ["),
                Part::Var(Var::TimeLocal),
                text("] \""),
                Part::Var(Var::Request),
                text("\""),
            ]
        );
    }

    #[test]
    fn braces_end_a_name_that_text_would_continue() {
        assert_eq!(
            parts("${status}ms$status_x"),
            [Part::Var(Var::Status), text("ms"), Part::Var(Var::Unknown),]
        );
    }

    #[test]
    fn a_dollar_that_starts_no_name_is_text() {
        assert_eq!(parts("cost $ 5 $"), [text("cost $ 5 $")]);
    }

    #[test]
    fn an_unclosed_or_empty_brace_is_refused() {
        assert!(LogFormat::parse("${status").is_err());
        assert!(LogFormat::parse("${}").is_err());
        assert!(LogFormat::parse("${a-b}").is_err());
    }

    #[test]
    fn unknown_variables_are_named_and_kept_as_such() {
        let (format, unknown) = LogFormat::parse("$status $geoip_country $Pipe").unwrap();
        assert_eq!(unknown, ["geoip_country", "pipe"]);
        assert_eq!(format.parts[2], Part::Var(Var::Unknown));
    }

    #[test]
    fn nginx_quoted_string_escapes_are_undone() {
        assert_eq!(
            parts(r#"{\"a\":\t\'$status\'}\x"#),
            [text("{\"a\":\t'"), Part::Var(Var::Status), text("'}\\x")]
        );
    }

    #[test]
    fn request_headers_are_named_with_dashes_and_shared() {
        let (format, unknown) =
            LogFormat::parse("$http_user_agent $http_x_forwarded_for $HTTP_USER_AGENT").unwrap();
        assert!(unknown.is_empty());
        assert_eq!(format.headers, ["user-agent", "x-forwarded-for"]);
        assert_eq!(format.parts[4], Part::Var(Var::Header(0)));
        let (_, unknown) = LogFormat::parse("$http_").unwrap();
        assert_eq!(unknown, ["http_"]);
    }

    #[test]
    fn the_ingress_nginx_default_knows_every_variable() {
        let (format, unknown) = LogFormat::parse(INGRESS_NGINX_DEFAULT).unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(format, LogFormat::ingress_nginx_default());
        assert_eq!(format.headers, ["referer", "user-agent"]);
    }

    #[test]
    fn escape_none_wins_over_escape_json() {
        let mut settings = AccessLogSettings::default();
        assert_eq!(settings.escape(), Escape::Default);
        settings.escape_json = true;
        assert_eq!(settings.escape(), Escape::Json);
        settings.escape_none = true;
        assert_eq!(settings.escape(), Escape::None);
    }
}
