//! Snippet annotations (`configuration-snippet`, `server-snippet`) hold
//! raw nginx directives. Gatehouse renders no configuration and runs none
//! of them. With `--allow-snippet-annotations` (or the ConfigMap key of
//! that name), a snippet is read as a fixed, typed subset of nginx's
//! directives (`directive`), each compiled into a policy Gatehouse
//! already has: header edits, answers and rewrites (one `script`, as
//! nginx's rewrite module runs them), access lists, timeouts and body
//! size; a server-snippet's `location` blocks that answer or refuse
//! their paths (`location`). Nothing of its text is passed on.
//!
//! A snippet is applied whole or not at all: one directive outside the
//! list, or text that is not nginx syntax, serves the Ingress without the
//! snippet, with a warning that names what was refused. A snippet that
//! restricts who may reach a route (`allow`, `deny`, `satisfy`, `auth_*`,
//! `limit_*`, `access_by_lua*`, a `return` of 401 or 403, an `if` around
//! one) and is not applied closes the Ingress's routes instead, as any protection that
//! cannot be enforced; so does every such snippet while snippets are not
//! allowed, as ingress-nginx with snippets disabled refuses the Ingress.

mod access;
mod answer;
mod condition;
#[cfg(test)]
mod corpus;
mod directive;
mod headers;
mod location;
mod path;
mod route;
mod script;
mod syntax;

use std::time::Duration;

use ipnet::IpNet;

pub use access::{access_directives, access_of, SnippetAccess};
pub use answer::{Answer, Answered, PathRegex};
pub use directive::Timeout;
pub use headers::HeaderEdits;
pub use location::{Location, LocationMatch};
pub use path::{TargetRewrite, UriRewrite};
pub use route::{RouteSnippet, ServerLocation, ServerSnippet, SnippetEdits};
pub use script::{Flag, Ran, Script, Step};

use super::access::Satisfy;
use directive::Directive;
use syntax::Statement;

/// The snippet annotations whose directives are read.
pub const SNIPPETS: &[&str] = &["configuration-snippet", "server-snippet"];

/// A snippet, read: what it asks for, and what of it was understood.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snippet {
    pub headers: HeaderEdits,
    /// The `return`s and `rewrite`s, alone or in an `if` block, in order.
    pub script: Script,
    /// `allow` (true) and `deny` rules in order; `None` is `all`.
    pub access: Vec<(bool, Option<IpNet>)>,
    pub satisfy: Option<Satisfy>,
    pub timeouts: Vec<(Timeout, Duration)>,
    /// `grpc_*_timeout`: the timeouts of routes to a GRPC or GRPCS
    /// backend.
    pub grpc_timeouts: Vec<(Timeout, Duration)>,
    /// `client_max_body_size`; `Some(0)` is unlimited.
    pub body_size: Option<u64>,
    pub client_body_timeout: Option<Duration>,
    /// Each directive as read, by name (a `return` with its status).
    pub understood: Vec<String>,
    /// Each directive refused, with why.
    pub refused: Vec<String>,
    /// It restricts who may reach a route (see the module's list).
    pub protective: bool,
    /// A server-snippet's `location` blocks, in order.
    pub locations: Vec<Location>,
    /// Read as a server-snippet, whose `location` blocks are read.
    server: bool,
}

impl Snippet {
    /// Reads a configuration-snippet; it is applied only when nothing
    /// was refused.
    pub fn read(text: &str) -> Snippet {
        Snippet::read_in(text, false)
    }

    /// Reads a snippet annotation (`name` without prefix): a
    /// server-snippet may hold `location` blocks.
    pub fn read_as(name: &str, text: &str) -> Snippet {
        Snippet::read_in(text, name == "server-snippet")
    }

    fn read_in(text: &str, server: bool) -> Snippet {
        match syntax::parse(text) {
            Ok(statements) => {
                let mut snippet = Snippet {
                    server,
                    ..Snippet::default()
                };
                for statement in &statements {
                    snippet.add(statement);
                }
                snippet
            }
            Err(why) => Snippet {
                refused: vec![format!("the snippet {why}")],
                // Unreadable text is judged by the words it holds.
                protective: !access_directives(text).is_empty(),
                ..Snippet::default()
            },
        }
    }

    /// Whether the snippet is applied: everything in it was understood.
    pub fn applies(&self) -> bool {
        self.refused.is_empty()
    }

    fn add(&mut self, statement: &Statement) {
        let name = statement.name();
        self.protective |= is_protective_statement(statement);
        if name == "location" {
            if !self.server {
                let why = "location: a location here nests inside the path's own, which Gatehouse does not read (a server-snippet's is read)";
                self.refused.push(why.into());
                return;
            }
            match location::read(statement) {
                Ok(location) => {
                    let args: Vec<&str> =
                        statement.args().iter().map(|w| w.text.as_str()).collect();
                    let label = format!("location {}", args.join(" "));
                    self.understood.push(label);
                    self.locations.push(location);
                }
                Err(why) => self.refused.push(format!("location: {why}")),
            }
            return;
        }
        if name == "if" {
            match if_block(statement) {
                Ok(step) => {
                    self.understood
                        .push(format!("if {}", label(&statement_of(statement))));
                    self.script.push(step);
                }
                Err(why) => self.refused.push(why),
            }
            return;
        }
        match directive::read(statement) {
            Ok(directive) => {
                self.understood.push(label(statement));
                if let Err(why) = self.fold(directive) {
                    self.refused.push(format!("{name}: {why}"));
                }
            }
            Err(why) => self.refused.push(why),
        }
    }

    /// Adds one directive; a second of one nginx allows once is refused,
    /// as nginx refuses the configuration.
    fn fold(&mut self, directive: Directive) -> Result<(), String> {
        let headers = &mut self.headers;
        match directive {
            Directive::Output(edit) => headers.output.push(edit),
            Directive::Input(edit) => headers.input.push(edit),
            Directive::AddHeader(add) => headers.add.push(add),
            Directive::ProxySetHeader(set) => headers.upstream.push(set),
            Directive::ProxyHideHeader(name) => headers.hide.push(name),
            Directive::Return(answer) => self.script.push(Step::Answer(answer)),
            Directive::Rewrite(rewrite) => self.script.push(Step::Rewrite(rewrite)),
            Directive::Access(allow, net) => self.access.push((allow, net)),
            Directive::Satisfy(satisfy) => once(&mut self.satisfy, satisfy)?,
            Directive::Timeout(which, time) => once_each(&mut self.timeouts, which, time)?,
            Directive::GrpcTimeout(which, time) => once_each(&mut self.grpc_timeouts, which, time)?,
            Directive::BodySize(size) => once(&mut self.body_size, size)?,
            Directive::ClientBodyTimeout(time) => once(&mut self.client_body_timeout, time)?,
            Directive::Buffering | Directive::Upgrade => {}
        }
        Ok(())
    }
}

/// An `if` block whose body is one `return` or `rewrite`, as that
/// directive under the block's condition.
fn if_block(statement: &Statement) -> Result<Step, String> {
    let when = condition::Condition::parse(statement.args())?;
    let body = statement.block.as_deref().unwrap_or_default();
    let [only] = body else {
        return Err(
            "if: Gatehouse reads an if block that holds one return or rewrite and nothing else"
                .into(),
        );
    };
    match directive::read(only) {
        Ok(Directive::Return(answer)) => Ok(Step::Answer(Answer {
            when: Some(when),
            ..answer
        })),
        Ok(Directive::Rewrite(rewrite)) => Ok(Step::Rewrite(UriRewrite {
            when: Some(when),
            ..rewrite
        })),
        Ok(_) => Err(format!(
            "if: {} inside an if block is not supported",
            only.name()
        )),
        Err(why) => Err(format!("if: {why}")),
    }
}

/// The statement an `if` block holds, for its label.
fn statement_of(statement: &Statement) -> Statement {
    let body = statement.block.as_deref().unwrap_or_default();
    body.first().cloned().unwrap_or_else(|| statement.clone())
}

const DUPLICATE: &str = "is duplicate (nginx refuses the configuration)";

fn once<T>(slot: &mut Option<T>, value: T) -> Result<(), String> {
    match slot {
        Some(_) => Err(DUPLICATE.into()),
        None => {
            *slot = Some(value);
            Ok(())
        }
    }
}

fn once_each(
    timeouts: &mut Vec<(Timeout, Duration)>,
    which: Timeout,
    time: Duration,
) -> Result<(), String> {
    if timeouts.iter().any(|(w, _)| *w == which) {
        return Err(DUPLICATE.into());
    }
    timeouts.push((which, time));
    Ok(())
}

/// A directive's name for reports: a `return` with its status.
fn label(statement: &Statement) -> String {
    match (statement.name(), statement.args().first()) {
        ("return", Some(code)) => format!("return {}", code.text),
        (name, _) => name.to_owned(),
    }
}

/// `allow`, `deny`, `satisfy`, `auth_*`, `limit_*`, `access_by_lua*`, a `return` of 401 or
/// 403, or a block holding one.
fn is_protective_statement(statement: &Statement) -> bool {
    let name = statement.name();
    let refuses = name.eq_ignore_ascii_case("return")
        && statement
            .args()
            .first()
            .is_some_and(|code| matches!(code.text.as_str(), "401" | "403"));
    let inside = statement
        .block
        .iter()
        .flatten()
        .any(is_protective_statement);
    refuses || inside || directive::is_protective(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::AccessOptions;
    use proptest::prelude::*;

    /// Snippets as people wrote them, with where they were published.
    const REAL: &[(&str, &str, bool)] = &[
        (
            "kubernetes/ingress-nginx#12945",
            "more_clear_input_headers \"WL-Proxy-Client-IP\" \"WL-Proxy-SSL\";\n\
             more_set_input_headers \"X-Forwarded-Proto: https\";\n\
             more_set_input_headers \"WL-Proxy-SSL: true\";\n",
            true,
        ),
        (
            "kubernetes/ingress-nginx#5698",
            "more_set_headers \"X-Forwarded-Context-Only: gis\";\n",
            true,
        ),
        (
            "kubernetes/ingress-nginx#5950",
            "proxy_set_header X-Forwarded-PATH $request_uri;\n",
            true,
        ),
        (
            "kubernetes/ingress-nginx#8610",
            "proxy_set_header X-User-Id $cookie__id;",
            true,
        ),
        // $req_id: the request's X-Request-ID, as Gatehouse sets it.
        (
            "kubernetes/ingress-nginx docs/examples/customization/configuration-snippets",
            "more_set_headers \"Request-Id: $req_id\";\n",
            true,
        ),
        // $sent_http_set_cookie is a response variable.
        (
            "kubernetes/ingress-nginx#8027",
            "more_set_input_headers \"X-Frame-Options: SAMEORIGIN\";\n\
             more_set_input_headers \"X-Content-Type-Options: nosniff\";\n\
             more_set_input_headers \"Referrer-Policy: no-referrer\";\n\
             more_set_input_headers \"Set-Cookie: $sent_http_set_cookie; HttpOnly; Secure\";\n",
            false,
        ),
        // `expires` is not in the list.
        (
            "corezoid/account templates/_helpers.tpl",
            "more_set_headers \"Cache-Control: no-store\";\n    expires 0;\n",
            false,
        ),
    ];

    /// The statuses of the script's answers, and the flags of its
    /// rewrites, in order.
    fn steps(snippet: &Snippet) -> Vec<String> {
        let step = |s: &Step| match s {
            Step::Answer(answer) => answer.status.as_u16().to_string(),
            Step::Rewrite(rewrite) => format!("{:?}", rewrite.flag),
        };
        snippet.script.steps().iter().map(step).collect()
    }

    #[test]
    fn returns_and_rewrites_of_every_flag_are_one_script_in_order() {
        for text in [
            "return 403 'no'; rewrite ^/a/(.*)$ /b/$1 break;",
            "rewrite ^/a /b break; return 403;",
            "rewrite ^/a /b last; if ($http_x = y) { return 403; }",
            "rewrite ^/a /b; rewrite ^/c https://x.test/ redirect; if ($uri = /b) { rewrite ^ /d break; }",
        ] {
            let snippet = Snippet::read(text);
            assert!(snippet.applies(), "{text}: {:?}", snippet.refused);
        }
        let snippet = Snippet::read(
            "rewrite ^/a /b; rewrite ^/c https://x.test/ redirect; if ($uri = /b) { rewrite ^ /d break; }",
        );
        assert_eq!(steps(&snippet), ["Next", "302", "Break"]);
        assert_eq!(
            snippet.understood,
            ["rewrite", "rewrite", "if rewrite"],
            "{:?}",
            snippet.understood
        );
    }

    #[test]
    fn real_snippets_are_applied_or_refused_whole() {
        for (source, text, applies) in REAL {
            let snippet = Snippet::read(text);
            assert_eq!(
                snippet.applies(),
                *applies,
                "{source}: {:?}",
                snippet.refused
            );
            assert!(!snippet.protective, "{source}");
            assert!(!snippet.understood.is_empty() || !applies, "{source}");
        }
    }

    /// IngressNightmare (CVE-2025-1974 and its siblings) and the snippet
    /// CVEs before it: configuration that loads code, reads files or
    /// leaves its block.
    const HOSTILE: &[&str] = &[
        "ssl_engine /proc/self/fd/42;",
        "load_module /tmp/pwn.so;",
        "content_by_lua_block { os.execute('id') }",
        "access_by_lua 'ngx.exit(200)';",
        "include /var/run/secrets/kubernetes.io/serviceaccount/token;",
        "more_set_headers \"X: y\"; } location /pwn { alias /; ",
        "} server { listen 1; } server {",
        "add_header X 'unterminated;\n}",
        "more_set_headers \"X: $upstream_http_secret\";",
        "#\n} location ~ / { root /; }",
        "proxy_pass http://169.254.169.254/;",
    ];

    #[test]
    fn hostile_snippets_are_refused_with_a_reason() {
        for text in HOSTILE {
            let snippet = Snippet::read(text);
            assert!(!snippet.applies(), "{text}");
            assert!(
                snippet.headers.is_empty() && snippet.script.is_empty(),
                "{text}"
            );
            let reasons = snippet.refused.join("; ");
            assert!(
                reasons.contains("unsupported")
                    || reasons.contains("the snippet")
                    || reasons.contains('$'),
                "{text}: {reasons}"
            );
        }
    }

    #[test]
    fn an_escaped_quote_keeps_what_follows_inside_the_value() {
        let snippet = Snippet::read("add_header X \"a\\\"; ssl_engine x; #\";");
        assert!(snippet.applies(), "{:?}", snippet.refused);
        assert_eq!(snippet.understood, ["add_header"]);
        assert_eq!(
            snippet.headers.add[0].value.as_str(),
            "a\"; ssl_engine x; #"
        );
    }

    #[test]
    fn protection_is_found_however_it_is_written() {
        for text in [
            "deny all;",
            "allow 10.0.0.0/8; deny all;",
            "if ($http_x_block) { return 403; }",
            "auth_basic \"staff\";",
            "limit_req zone=one burst=5;",
            "satisfy any;",
            "return 401;",
            "deny all; } # unbalanced",
        ] {
            assert!(Snippet::read(text).protective, "{text}");
        }
        assert!(!Snippet::read("return 200 'ok'; add_header X-Deny no;").protective);
    }

    #[test]
    fn if_blocks_holding_one_return_answer_when_their_condition_holds() {
        let snippet = Snippet::read(
            "if ($http_x_forwarded_proto != 'https') { return 301 https://$host$request_uri; }\n\
             if ($request_uri ~* ^/admin) { return 403; }\n\
             return 200 'rest';\n\
             if ($host = never.test) { return 404; }",
        );
        assert!(snippet.applies(), "{:?}", snippet.refused);
        assert_eq!(
            snippet.understood,
            [
                "if return 301",
                "if return 403",
                "return 200",
                "if return 404"
            ]
        );
        assert_eq!(
            steps(&snippet),
            ["301", "403", "200"],
            "nothing after a return alone is reached"
        );
        for refused in [
            "if ($host = a.test) { more_set_headers 'X: y'; }",
            "if ($host = a.test) { return 301 https://b.test; return 302 https://c.test; }",
            "if (-f $request_filename) { return 403; }",
            "if ($request_uri ~ ^/old/(.*)) { return 301 /new/$1; }",
        ] {
            assert!(!Snippet::read(refused).applies(), "{refused}");
        }
    }

    #[test]
    fn one_return_answers_and_directives_allowed_once_are_refused_twice() {
        let snippet = Snippet::read("return 200 'first'; return 404;");
        assert_eq!(steps(&snippet), ["200"]);
        let twice = Snippet::read("proxy_read_timeout 5s; proxy_read_timeout 6s;");
        assert!(!twice.applies());
        assert!(
            twice.refused[0].contains("duplicate"),
            "{:?}",
            twice.refused
        );
    }

    /// Any text is applied, refused with a reason, or a closure: read as
    /// either snippet, merged into a route, and judged for access.
    fn judged(text: &str) -> Result<(), TestCaseError> {
        let snippet = Snippet::read(text);
        prop_assert!(snippet.applies() || !snippet.refused.is_empty());
        let allowed = AccessOptions {
            allow_snippets: true,
            ..AccessOptions::default()
        };
        for name in SNIPPETS {
            let access = access_of(name, text, &allowed);
            let snippet = Snippet::read_as(name, text);
            if snippet.protective && !snippet.applies() {
                prop_assert!(access.is_err(), "{name}: protective and not applied");
            }
            if access_of(name, text, &AccessOptions::default()).is_err() {
                prop_assert!(!access_directives(text).is_empty());
            }
        }
        if snippet.applies() {
            let merged = RouteSnippet::merge(Some(&snippet), Some(&snippet));
            prop_assert_eq!(
                merged.is_some(),
                !snippet.script.is_empty() || !snippet.headers.is_empty()
            );
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_text_is_read_without_panicking(text in "\\PC{0,200}") {
            judged(&text)?;
        }

        #[test]
        fn any_mix_of_nginx_tokens_is_read_without_panicking(
            tokens in proptest::collection::vec(
                prop_oneof![
                    Just("more_set_headers"), Just("add_header"), Just("return"), Just("if"),
                    Just("deny"), Just("allow"), Just("all"), Just("\"X: y\""), Just("'a b'"),
                    Just("{"), Just("}"), Just(";"), Just("#"), Just("\n"), Just("\\"),
                    Just("($host"), Just("="), Just(")"), Just("403"), Just("$request_uri"),
                    Just("${host}"), Just("\""), Just("'"), Just("-s"), Just("always"),
                    Just("rewrite"), Just("^/(.*)$"), Just("https://x.test/$1"), Just("permanent"),
                    Just("satisfy"), Just("any"), Just("auth_basic"), Just("proxy_set_header"),
                    Just("X-A"), Just("10.0.0.0/8"), Just("~*"), Just("!="), Just("(\"a\")"),
                    Just("location"), Just("^~"), Just("/x"), Just("access_log off;"),
                ],
                0..40,
            )
        ) {
            judged(&tokens.join(" "))?;
        }
    }

    #[test]
    fn every_access_directive_is_found_wherever_it_stands() {
        let found = |s: &str| access_directives(s);
        assert_eq!(found("deny all;"), ["deny"]);
        assert_eq!(found("allow 10.0.0.0/8;\ndeny all;"), ["allow", "deny"]);
        assert_eq!(found("if ($http_x_block) { return 403; }"), ["return 403"]);
        assert_eq!(
            found("auth_basic \"staff\";\nauth_basic_user_file /etc/htpasswd;"),
            ["auth_basic", "auth_basic_user_file"]
        );
        assert_eq!(found("satisfy any;"), ["satisfy"]);
        assert_eq!(found("limit_req zone=one burst=5;"), ["limit_req"]);
        assert_eq!(
            found("access_by_lua_block {\n  if ngx.var.cookie_x ~= 'y' then ngx.exit(403) end\n}"),
            ["access_by_lua_block"]
        );
        assert_eq!(found("RETURN '401';"), ["return 401"]);
        assert_eq!(found("location /x { deny all; }"), ["deny"]);
    }

    #[test]
    fn snippets_that_protect_nothing_are_not_access_snippets() {
        let none = [
            "more_set_headers \"X-Frame-Options: DENY\";",
            "return 200 'ok';",
            "return 301 https://example.com;",
            "# deny all;\nproxy_set_header X-Allow yes;",
            "add_header X-Deny-Reason none;",
            "",
        ];
        for snippet in none {
            assert!(access_directives(snippet).is_empty(), "{snippet:?}");
        }
    }
}
