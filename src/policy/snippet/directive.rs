//! The directives a snippet may hold, each read from its statement into a
//! typed value, or refused with the reason. The list is fixed: anything
//! else is an "unsupported directive", whatever it is. Values may use the
//! typed `$variable`s of `template` and nothing else.

use std::time::Duration;

use http::header::HeaderName;
use http::StatusCode;
use ipnet::IpNet;

use super::answer::{is_redirect, Answer, PathRegex};
use super::headers::{AddHeader, HeaderChange, InputEdit, NamePattern, OutputEdit, UpstreamHeader};
use super::path::UriRewrite;
use super::script::Flag;
use super::syntax::{Statement, Word};
use crate::policy::access::Satisfy;
use crate::policy::proxy_settings::parse_size;
use crate::policy::template::{Template, Vars};

/// One directive, understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Directive {
    /// `more_set_headers`, `more_clear_headers`.
    Output(OutputEdit),
    /// `more_set_input_headers`, `more_clear_input_headers`.
    Input(InputEdit),
    AddHeader(AddHeader),
    ProxySetHeader(UpstreamHeader),
    ProxyHideHeader(HeaderName),
    Return(Answer),
    /// A `rewrite` to a path (`break`, `last` or no flag).
    Rewrite(UriRewrite),
    /// `allow` (true) or `deny`; `None` is `all`.
    Access(bool, Option<IpNet>),
    Satisfy(Satisfy),
    Timeout(Timeout, Duration),
    /// `client_max_body_size`; 0 is unlimited.
    BodySize(u64),
    /// `proxy_buffering`, `proxy_request_buffering`: accepted, as the
    /// annotations of the same names, without effect (bodies stream).
    Buffering,
    /// `grpc_connect_timeout`, `grpc_send_timeout`, `grpc_read_timeout`:
    /// nginx's for `grpc_pass`, which ingress-nginx uses for the GRPC and
    /// GRPCS backend protocols only.
    GrpcTimeout(Timeout, Duration),
    /// `client_body_timeout`: the longest the client may go quiet within
    /// its request body.
    ClientBodyTimeout(Duration),
    /// The hand-written WebSocket lines (`proxy_set_header Upgrade
    /// $http_upgrade;`, `proxy_set_header Connection $connection_upgrade;`
    /// or `"upgrade"`, `proxy_http_version 1.1;`): Gatehouse forwards
    /// upgrades as nginx does with them, so there is nothing to do.
    Upgrade,
}

/// Which of the proxy timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    Connect,
    Send,
    Read,
}

/// Directives that restrict who may reach a route: one of them that is
/// not understood closes the route rather than leave it open.
pub fn is_protective(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "allow" | "deny" | "satisfy")
        || name.starts_with("auth_")
        || name.starts_with("limit_")
        // Lua run in nginx's access phase: whatever it checks, it checks
        // who may pass.
        || name.starts_with("access_by_lua")
}

/// The statement as a directive, or why it is refused.
pub fn read(statement: &Statement) -> Result<Directive, String> {
    let args = statement.args();
    if statement.block.is_some() {
        return Err(format!("unsupported block {}", statement.name()));
    }
    match statement.name() {
        "more_set_headers" => output(args, true).map(Directive::Output),
        "more_clear_headers" => output(args, false).map(Directive::Output),
        "more_set_input_headers" => input(args, true).map(Directive::Input),
        "more_clear_input_headers" => input(args, false).map(Directive::Input),
        "add_header" => add_header(args).map(Directive::AddHeader),
        "proxy_set_header" => proxy_set_header(args),
        "proxy_http_version" => match texts(args).as_slice() {
            ["1.1"] => Ok(Directive::Upgrade),
            _ => Err("proxy_http_version: Gatehouse forwards HTTP/1.1; only 1.1 is read".into()),
        },
        "proxy_hide_header" => match args {
            [name] => header_name(&name.text).map(Directive::ProxyHideHeader),
            _ => Err(arity("proxy_hide_header", "a header name")),
        },
        "return" => answer(args).map(Directive::Return),
        "rewrite" => rewrite(args),
        "allow" => access(args, true),
        "deny" => access(args, false),
        "satisfy" => match texts(args).as_slice() {
            ["all"] => Ok(Directive::Satisfy(Satisfy::All)),
            ["any"] => Ok(Directive::Satisfy(Satisfy::Any)),
            _ => Err("satisfy takes all or any".into()),
        },
        "proxy_connect_timeout" => timeout(args, Timeout::Connect),
        "proxy_send_timeout" => timeout(args, Timeout::Send),
        "proxy_read_timeout" => timeout(args, Timeout::Read),
        "client_body_timeout" => match args {
            [value] => parse_time(&value.text)
                .map(Directive::ClientBodyTimeout)
                .ok_or_else(|| format!("{:?} is not a time like 60s or 2m", value.text)),
            _ => Err(arity("client_body_timeout", "one time")),
        },
        "grpc_connect_timeout" => grpc_timeout(args, Timeout::Connect),
        "grpc_send_timeout" => grpc_timeout(args, Timeout::Send),
        "grpc_read_timeout" => grpc_timeout(args, Timeout::Read),
        "client_max_body_size" => match args {
            [size] => parse_size(&size.text)
                .map(Directive::BodySize)
                .map_err(|why| format!("client_max_body_size {:?} {why}", size.text)),
            _ => Err(arity("client_max_body_size", "a size")),
        },
        "proxy_buffering" | "proxy_request_buffering" => match texts(args).as_slice() {
            ["on" | "off"] => Ok(Directive::Buffering),
            _ => Err(arity(statement.name(), "on or off")),
        },
        name => Err(unsupported(name)),
    }
}

fn unsupported(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let runs_code = lower.contains("lua")
        || lower.starts_with("js_")
        || lower.starts_with("perl")
        || matches!(lower.as_str(), "include" | "load_module" | "ssl_engine");
    if runs_code {
        format!("unsupported directive {name} (it loads files or runs code)")
    } else {
        format!("unsupported directive {name}")
    }
}

fn arity(name: &str, wants: &str) -> String {
    format!("{name} takes {wants}")
}

fn texts(args: &[Word]) -> Vec<&str> {
    args.iter().map(|w| w.text.as_str()).collect()
}

/// `-s` and `-t` options (each a list in one word, as headers-more reads
/// them), then the header specs.
fn output(args: &[Word], set: bool) -> Result<OutputEdit, String> {
    let name = if set {
        "more_set_headers"
    } else {
        "more_clear_headers"
    };
    let mut statuses = Vec::new();
    let (types, changes) = headers_more(args, set, name, |option, rest| {
        if option != "-s" {
            return Ok(false);
        }
        let list = option_value(rest.next(), name, "-s")?;
        for code in list.split_whitespace() {
            let status = code.parse::<u16>().ok().filter(|c| (100..1000).contains(c));
            let status = status.ok_or_else(|| format!("{name} -s has {code:?}, not a status"))?;
            statuses.push(status);
        }
        Ok(true)
    })?;
    Ok(OutputEdit {
        statuses,
        types,
        changes,
    })
}

/// `-r` (set only) and `-t`, then the header specs.
fn input(args: &[Word], set: bool) -> Result<InputEdit, String> {
    let name = if set {
        "more_set_input_headers"
    } else {
        "more_clear_input_headers"
    };
    let mut replace_only = false;
    let (types, changes) = headers_more(args, set, name, |option, _| {
        replace_only |= set && option == "-r";
        Ok(set && option == "-r")
    })?;
    Ok(InputEdit {
        replace_only,
        types,
        changes,
    })
}

/// A headers-more command's words: `-t` (the media types, a list in one
/// word), the options `option` reads (it says whether it knew the one it
/// was given, and may take the next word), and at least one header spec.
fn headers_more<'a>(
    args: &'a [Word],
    set: bool,
    name: &str,
    mut option: impl FnMut(&str, &mut std::slice::Iter<'a, Word>) -> Result<bool, String>,
) -> Result<(Vec<String>, Vec<HeaderChange>), String> {
    let (mut types, mut changes) = (Vec::new(), Vec::new());
    let mut rest = args.iter();
    while let Some(word) = rest.next() {
        match word.text.as_str() {
            "-t" => {
                let list = option_value(rest.next(), name, "-t")?;
                types.extend(list.split_whitespace().map(str::to_owned));
            }
            flag if flag.starts_with('-') => {
                if !option(flag, &mut rest)? {
                    return Err(format!("{name} option {flag} is not supported"));
                }
            }
            spec => changes.push(change(spec, set, name)?),
        }
    }
    if changes.is_empty() {
        return Err(arity(name, "at least one header"));
    }
    Ok((types, changes))
}

fn option_value<'a>(word: Option<&'a Word>, name: &str, option: &str) -> Result<&'a str, String> {
    word.map(|w| w.text.as_str())
        .ok_or_else(|| format!("{name} {option} has no value"))
}

/// `Name: value` sets; `Name:` or `Name` clears (headers-more's rule);
/// clearing takes a `*` at the end of a name too.
fn change(spec: &str, set: bool, directive: &str) -> Result<HeaderChange, String> {
    let (name, value) = match spec.split_once(':') {
        Some((name, value)) if set => (name, Some(value.trim_start())),
        Some((name, _)) => (name, None),
        None => (spec, None),
    };
    let value = value.filter(|v| !v.is_empty());
    let name = match (name.strip_suffix('*'), &value) {
        (Some(prefix), None) if !prefix.is_empty() => {
            NamePattern::Prefix(header_name(prefix)?.as_str().to_owned())
        }
        _ => NamePattern::Exact(header_name(name)?),
    };
    if let NamePattern::Exact(exact) = &name {
        if frames_the_message(exact) {
            return Err(format!(
                "{directive} may not change {exact}, which frames the message"
            ));
        }
    }
    let value = match value {
        Some(text) => Some(template(text, directive)?),
        None => None,
    };
    Ok(HeaderChange { name, value })
}

fn add_header(args: &[Word]) -> Result<AddHeader, String> {
    let (name, value, always) = match args {
        [name, value] => (name, value, false),
        [name, value, always] if always.text == "always" => (name, value, true),
        _ => return Err(arity("add_header", "a name, a value and optionally always")),
    };
    let name = header_name(&name.text)?;
    if frames_the_message(&name) {
        return Err(format!(
            "add_header may not add {name}, which frames the message"
        ));
    }
    Ok(AddHeader {
        name,
        value: template(&value.text, "add_header")?,
        always,
    })
}

fn proxy_set_header(args: &[Word]) -> Result<Directive, String> {
    let [name, value] = args else {
        return Err(arity("proxy_set_header", "a name and a value"));
    };
    let name = header_name(&name.text)?;
    if is_upgrade_idiom(&name, &value.text) {
        return Ok(Directive::Upgrade);
    }
    if frames_the_message(&name) {
        return Err(format!(
            "proxy_set_header may not set {name}, which frames the message (only the WebSocket lines Upgrade $http_upgrade and Connection $connection_upgrade or \"upgrade\" are read)"
        ));
    }
    Ok(Directive::ProxySetHeader(UpstreamHeader {
        name,
        value: template(&value.text, "proxy_set_header")?,
    }))
}

/// `Upgrade $http_upgrade`, `Connection $connection_upgrade` or
/// `Connection upgrade`: what Gatehouse sends an endpoint for an upgrade
/// already (and for any other request, nginx's default).
fn is_upgrade_idiom(name: &HeaderName, value: &str) -> bool {
    match name.as_str() {
        "upgrade" => value == "$http_upgrade",
        "connection" => value == "$connection_upgrade" || value.eq_ignore_ascii_case("upgrade"),
        _ => false,
    }
}

/// `return CODE [TEXT | URL]` or `return URL` (302).
fn answer(args: &[Word]) -> Result<Answer, String> {
    let texts = texts(args);
    let (code, with) = match texts.as_slice() {
        [url] if is_url(url) => (302, Some(*url)),
        [code] => (parse_code(code)?, None),
        [code, with] => (parse_code(code)?, Some(*with)),
        _ => return Err(arity("return", "a status and optionally a text or URL")),
    };
    let status =
        StatusCode::from_u16(code).map_err(|_| format!("return {code} is not a status"))?;
    if is_redirect(status) && with.is_some_and(|w| !is_url(w) && !w.starts_with('/')) {
        return Err(format!("return {code} takes a URL"));
    }
    let with = with.map(|w| template(w, "return")).transpose()?;
    Ok(Answer {
        when: None,
        path: None,
        status,
        with,
        keep_query: false,
    })
}

/// `rewrite REGEX REPLACEMENT [last|break|redirect|permanent]`, as
/// nginx's rewrite module reads it. A replacement that is a URL, or
/// `redirect` / `permanent`: a redirect (302, 301 with `permanent`) of the
/// paths that match, to the replacement with `$1`…`$9` filled in. A path
/// with `break`, `last` or no flag: the request's URI changed
/// (`UriRewrite`). Either way the query is kept unless the replacement
/// ends with `?`.
fn rewrite(args: &[Word]) -> Result<Directive, String> {
    let (pattern, replacement, flag) = match texts(args).as_slice() {
        [pattern, replacement] => (*pattern, *replacement, None),
        [pattern, replacement, flag] => (*pattern, *replacement, Some(*flag)),
        _ => {
            return Err(arity(
                "rewrite",
                "a regular expression, a replacement and optionally a flag",
            ))
        }
    };
    let regex = regex::RegexBuilder::new(pattern)
        .size_limit(64 * 1024)
        .build()
        .map_err(|_| format!("rewrite: {pattern:?} is not a regular expression Gatehouse reads"))?;
    let (replacement, keep_query) = match replacement.strip_suffix('?') {
        Some(without) => (without, false),
        None => (replacement, true),
    };
    let with = Template::parse(replacement, Vars::Captures)
        .map_err(|why| format!("rewrite: {replacement:?} {why}"))?;
    let status = match flag {
        Some("permanent") => StatusCode::MOVED_PERMANENTLY,
        Some("redirect") => StatusCode::FOUND,
        // nginx redirects to a URL whatever the flag.
        _ if is_url(replacement) => StatusCode::FOUND,
        Some(other) if !matches!(other, "break" | "last") => {
            return Err(format!(
                "rewrite flag {other:?} is none of last, break, redirect, permanent"
            ))
        }
        // A path, or a group of the expression (`^/prefix(/.*)$ $1`).
        _ if !(replacement.starts_with('/') || starts_with_group(replacement)) => {
            return Err("rewrite: the replacement must be a path or a URL".into())
        }
        _ => {
            let flag = match flag {
                Some("break") => Flag::Break,
                Some(_) => Flag::Last,
                None => Flag::Next,
            };
            return Ok(Directive::Rewrite(UriRewrite {
                when: None,
                path: PathRegex(regex),
                to: with,
                keep_query,
                flag,
            }));
        }
    };
    Ok(Directive::Return(Answer {
        when: None,
        path: Some(PathRegex(regex)),
        status,
        with: Some(with),
        keep_query,
    }))
}

fn starts_with_group(text: &str) -> bool {
    matches!(text.as_bytes(), [b'$', b'1'..=b'9', ..])
}

fn is_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://") || text.starts_with("$scheme")
}

/// Statuses an answer may have; nginx's 444 (close the connection) and
/// codes outside HTTP's are refused.
fn parse_code(code: &str) -> Result<u16, String> {
    code.parse::<u16>()
        .ok()
        .filter(|c| (200..600).contains(c) && *c != 444)
        .ok_or_else(|| format!("return {code:?} is not a status Gatehouse answers with"))
}

fn access(args: &[Word], allow: bool) -> Result<Directive, String> {
    let name = if allow { "allow" } else { "deny" };
    let [address] = args else {
        return Err(arity(name, "an address, a CIDR or all"));
    };
    let address = address.text.as_str();
    if address == "all" {
        return Ok(Directive::Access(allow, None));
    }
    let net = address
        .parse::<IpNet>()
        .or_else(|_| address.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{name} {address:?} is not an address, a CIDR or all"))?;
    Ok(Directive::Access(allow, Some(net)))
}

fn timeout(args: &[Word], which: Timeout) -> Result<Directive, String> {
    let [value] = args else {
        return Err("a proxy timeout takes one time".into());
    };
    parse_time(&value.text)
        .map(|t| Directive::Timeout(which, t))
        .ok_or_else(|| format!("{:?} is not a time like 60s or 2m", value.text))
}

fn grpc_timeout(args: &[Word], which: Timeout) -> Result<Directive, String> {
    match timeout(args, which)? {
        Directive::Timeout(which, time) => Ok(Directive::GrpcTimeout(which, time)),
        other => Ok(other),
    }
}

/// nginx times: a number with `ms`, `s` (the default), `m`, `h` or `d`;
/// a timeout of zero is refused (it would never wait).
fn parse_time(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let millis = match unit {
        "ms" => n,
        "" | "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    (millis > 0).then(|| Duration::from_millis(millis))
}

fn header_name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| format!("{text:?} is not a header name"))
}

/// Headers that say where a message ends; only the proxy sets them.
fn frames_the_message(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-length" | "transfer-encoding" | "connection" | "upgrade" | "te" | "trailer"
    )
}

fn template(text: &str, directive: &str) -> Result<Template, String> {
    Template::parse(text, Vars::Request).map_err(|why| format!("{directive}: {text:?} {why}"))
}

#[cfg(test)]
mod tests {
    use super::super::syntax::parse;
    use super::*;

    fn one(text: &str) -> Result<Directive, String> {
        read(&parse(text).unwrap()[0])
    }

    #[test]
    fn headers_more_reads_options_lists_and_clearing_specs() {
        let Ok(Directive::Output(edit)) =
            one("more_set_headers -s '404 500' -t text/html 'X-A: b' 'X-Gone:' X-Also-Gone;")
        else {
            panic!("not read");
        };
        assert_eq!(edit.statuses, [404, 500]);
        assert_eq!(edit.types, ["text/html"]);
        assert!(edit.changes[0].value.is_some());
        assert!(edit.changes[1].value.is_none() && edit.changes[2].value.is_none());
        let Ok(Directive::Output(clear)) = one("more_clear_headers 'X-Powered-*' Server;") else {
            panic!("not read");
        };
        assert_eq!(
            clear.changes[0].name,
            NamePattern::Prefix("x-powered-".into())
        );
        assert!(one("more_set_headers -a 'X: y';")
            .unwrap_err()
            .contains("-a"));
        assert!(one("more_set_headers 'Content-Length: 0';").is_err());
        assert!(one("more_set_headers 'X: $upstream_addr';")
            .unwrap_err()
            .contains("$upstream_addr"));
    }

    #[test]
    fn returns_take_a_status_with_a_text_or_a_url() {
        let read = |t: &str| match one(t) {
            Ok(Directive::Return(a)) => {
                Ok((a.status.as_u16(), a.with.map(|w| w.as_str().to_owned())))
            }
            other => Err(format!("{other:?}")),
        };
        assert_eq!(read("return 403;"), Ok((403, None)));
        assert_eq!(read("return 200 'ok';"), Ok((200, Some("ok".into()))));
        assert_eq!(
            read("return https://x.test$request_uri;"),
            Ok((302, Some("https://x.test$request_uri".into())))
        );
        assert_eq!(read("return 301 /new;"), Ok((301, Some("/new".into()))));
        assert!(read("return 444;").is_err());
        assert!(read("return 301 nowhere;").is_err());
    }

    #[test]
    fn rewrites_that_redirect_are_answers_and_those_to_a_path_change_the_uri() {
        let Ok(Directive::Return(moved)) =
            one("rewrite ^/old/(.*)$ https://$host/new/$1 permanent;")
        else {
            panic!("not read");
        };
        assert_eq!(moved.status, StatusCode::MOVED_PERMANENTLY);
        assert!(moved.keep_query && moved.path.is_some());
        let Ok(Directive::Return(found)) = one("rewrite ^ https://example.test/?;") else {
            panic!("not read");
        };
        assert_eq!(found.status, StatusCode::FOUND);
        assert!(!found.keep_query);
        for (text, flag) in [
            ("rewrite ^/api/(.*)$ /v2/$1 break;", Flag::Break),
            ("rewrite ^/api/(.*)$ /v2/$1 last;", Flag::Last),
            ("rewrite ^/api/(.*)$ /v2/$1;", Flag::Next),
        ] {
            let Ok(Directive::Rewrite(rewrite)) = one(text) else {
                panic!("{text} not read");
            };
            assert!(rewrite.keep_query && rewrite.flag == flag, "{text}");
        }
        assert!(one("rewrite ^/a b break;").is_err());
        assert!(one("rewrite ^/a b;").is_err());
        assert!(one("rewrite ^/a /b stop;").unwrap_err().contains("stop"));
    }

    #[test]
    fn limits_access_and_buffering_read_as_nginx_values() {
        assert_eq!(
            one("proxy_read_timeout 2m;"),
            Ok(Directive::Timeout(Timeout::Read, Duration::from_secs(120)))
        );
        assert_eq!(
            one("proxy_send_timeout 300;"),
            Ok(Directive::Timeout(Timeout::Send, Duration::from_secs(300)))
        );
        assert!(one("proxy_connect_timeout 0;").is_err());
        assert_eq!(
            one("client_max_body_size 8m;"),
            Ok(Directive::BodySize(8 << 20))
        );
        assert_eq!(one("deny all;"), Ok(Directive::Access(false, None)));
        assert_eq!(
            one("allow 10.0.0.0/8;"),
            Ok(Directive::Access(true, Some("10.0.0.0/8".parse().unwrap())))
        );
        assert!(one("allow unix:;").is_err());
        assert_eq!(one("proxy_buffering off;"), Ok(Directive::Buffering));
    }

    #[test]
    fn the_websocket_lines_are_understood_and_other_framing_values_refused() {
        for text in [
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Connection $connection_upgrade;",
            "proxy_set_header Connection \"upgrade\";",
            "proxy_set_header connection Upgrade;",
            "proxy_http_version 1.1;",
        ] {
            assert_eq!(one(text), Ok(Directive::Upgrade), "{text}");
        }
        for text in [
            "proxy_set_header Upgrade websocket;",
            "proxy_set_header Connection close;",
            "proxy_set_header Connection $http_connection;",
            "proxy_set_header Transfer-Encoding chunked;",
            "proxy_http_version 1.0;",
            "proxy_http_version 2;",
        ] {
            assert!(one(text).is_err(), "{text}");
        }
    }

    #[test]
    fn grpc_timeouts_are_read_apart_from_the_proxy_ones() {
        assert_eq!(
            one("grpc_read_timeout 3600s;"),
            Ok(Directive::GrpcTimeout(
                Timeout::Read,
                Duration::from_secs(3600)
            ))
        );
        assert_eq!(
            one("grpc_connect_timeout 5;"),
            Ok(Directive::GrpcTimeout(
                Timeout::Connect,
                Duration::from_secs(5)
            ))
        );
        assert!(one("grpc_send_timeout never;").is_err());
        assert_eq!(
            one("client_body_timeout 2m;"),
            Ok(Directive::ClientBodyTimeout(Duration::from_secs(120)))
        );
        assert!(one("client_body_timeout 0;").is_err());
    }

    #[test]
    fn what_loads_or_runs_code_is_refused_by_name() {
        for text in [
            "ssl_engine /tmp/evil.so;",
            "load_module /tmp/evil.so;",
            "content_by_lua_file /tmp/evil.lua;",
            "access_by_lua 'os.execute(\"id\")';",
            "include /etc/passwd;",
        ] {
            let parsed = parse(text).unwrap();
            let why = read(&parsed[0]).unwrap_err();
            assert!(why.starts_with("unsupported"), "{text}: {why}");
        }
        assert!(read(&parse("ssl_engine x;").unwrap()[0])
            .unwrap_err()
            .contains("runs code"));
    }
}
