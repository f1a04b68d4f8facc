//! The condition of an `if` block: a variable of the request alone
//! (true when not empty and not "0"), compared with `=` / `!=` to a
//! literal, or matched with `~` / `~*` (case-insensitive) / `!~` / `!~*`
//! against a regular expression, as nginx's rewrite module does. The
//! variables are the request's place and headers: `$host`,
//! `$request_uri`, `$uri`, `$scheme`, `$request_method`, `$http_<name>`.

use regex::{Regex, RegexBuilder};

use super::syntax::Word;
use crate::policy::template::Facts;

/// The compiled size a condition's regular expression may reach.
const REGEX_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub struct Condition {
    variable: Variable,
    test: Test,
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.variable == other.variable && self.test == other.test
    }
}

impl Eq for Condition {}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Variable {
    Host,
    RequestUri,
    Uri,
    Scheme,
    RequestMethod,
    /// Lower case, dashes for underscores.
    Header(String),
}

#[derive(Clone, Debug)]
enum Test {
    NotEmpty,
    Equals(String, bool),
    Matches(Regex, bool),
}

impl PartialEq for Test {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Test::NotEmpty, Test::NotEmpty) => true,
            (Test::Equals(a, x), Test::Equals(b, y)) => a == b && x == y,
            (Test::Matches(a, x), Test::Matches(b, y)) => a.as_str() == b.as_str() && x == y,
            _ => false,
        }
    }
}

impl Eq for Test {}

impl Condition {
    /// The words between `if` and its block, parentheses included.
    pub fn parse(words: &[Word]) -> Result<Condition, String> {
        let inner = strip_parentheses(words).ok_or("if needs its condition in parentheses")?;
        let texts: Vec<&str> = inner.iter().map(String::as_str).collect();
        let (name, test) = match texts.as_slice() {
            [name] => (*name, Test::NotEmpty),
            [name, "=", value] => (*name, Test::Equals(literal(value)?, true)),
            [name, "!=", value] => (*name, Test::Equals(literal(value)?, false)),
            [name, op @ ("~" | "~*" | "!~" | "!~*"), pattern] => {
                let regex = RegexBuilder::new(pattern)
                    .case_insensitive(op.ends_with('*'))
                    .size_limit(REGEX_BYTES)
                    .build()
                    .map_err(|_| {
                        format!("if: {pattern:?} is not a regular expression Gatehouse reads")
                    })?;
                (*name, Test::Matches(regex, !op.starts_with('!')))
            }
            _ => {
                return Err(
                    "if takes $variable, or $variable with =, !=, ~, ~*, !~ or !~* and a value"
                        .into(),
                )
            }
        };
        Ok(Condition {
            variable: variable(name)?,
            test,
        })
    }

    /// Whether it holds for the request as the rewrites so far left it
    /// (`$uri`; `$request_uri` is as sent).
    pub fn holds(&self, facts: &Facts<'_>) -> bool {
        let value = self.variable.value(facts);
        match &self.test {
            Test::NotEmpty => !value.is_empty() && value != "0",
            Test::Equals(text, equal) => (value == *text) == *equal,
            Test::Matches(regex, matching) => regex.is_match(&value) == *matching,
        }
    }
}

impl Variable {
    fn value(&self, facts: &Facts<'_>) -> String {
        match self {
            Variable::Host => crate::connection::normalize_host(facts.host).into_owned(),
            Variable::RequestUri => facts
                .request_uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
            Variable::Uri => facts.uri.path().to_owned(),
            Variable::Scheme => if facts.tls { "https" } else { "http" }.to_owned(),
            Variable::RequestMethod => facts.method.as_str().to_owned(),
            Variable::Header(name) => {
                let values = facts.headers.get_all(name.as_str());
                let texts: Vec<&str> = values.iter().filter_map(|v| v.to_str().ok()).collect();
                texts.join(", ")
            }
        }
    }
}

/// The condition's words without the parentheses around them, which
/// nginx allows to stand alone or touch the first and last word.
fn strip_parentheses(words: &[Word]) -> Option<Vec<String>> {
    let mut texts: Vec<String> = words.iter().map(|w| w.text.clone()).collect();
    let first = words.first().filter(|w| !w.quoted)?;
    match first.text.strip_prefix('(') {
        Some("") => {
            texts.remove(0);
        }
        Some(rest) => texts[0] = rest.to_owned(),
        None => return None,
    }
    let last = texts.last_mut()?;
    match last.strip_suffix(')') {
        Some("") => {
            texts.pop();
        }
        Some(rest) => *last = rest.to_owned(),
        None => return None,
    }
    (!texts.is_empty()).then_some(texts)
}

fn literal(value: &str) -> Result<String, String> {
    if value.contains('$') {
        return Err(format!(
            "if compares with {value:?}; Gatehouse compares with literal text only"
        ));
    }
    Ok(value.to_owned())
}

fn variable(name: &str) -> Result<Variable, String> {
    let variable = match name {
        "$host" => Variable::Host,
        "$request_uri" => Variable::RequestUri,
        "$uri" => Variable::Uri,
        "$scheme" => Variable::Scheme,
        "$request_method" => Variable::RequestMethod,
        other => match other.strip_prefix("$http_").filter(|h| !h.is_empty()) {
            Some(header) => Variable::Header(header.replace('_', "-")),
            None => {
                return Err(format!(
                    "if tests {other}; Gatehouse tests $host, $request_uri, $uri, $scheme, $request_method and $http_<name>"
                ))
            }
        },
    };
    Ok(variable)
}

#[cfg(test)]
mod tests {
    use super::super::syntax::parse;
    use super::*;
    use http::{HeaderMap, Method, Uri};

    fn condition(text: &str) -> Result<Condition, String> {
        let parsed = parse(&format!("if {text} {{ return 403; }}")).unwrap();
        Condition::parse(parsed[0].args())
    }

    #[test]
    fn conditions_compare_and_match_as_nginx_does() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", "http".parse().unwrap());
        let uri = Uri::from_static("/admin/users?page=2");
        let facts = Facts {
            method: &Method::POST,
            host: "Old.Shop.test:8080",
            ..Facts::sample(&uri, &headers)
        };
        let holds = |text: &str| condition(text).unwrap().holds(&facts);
        assert!(holds("($host = old.shop.test)"));
        assert!(holds("( $host != 'new.shop.test' )"));
        assert!(holds("($http_x_forwarded_proto != \"https\")"));
        assert!(holds("($request_uri ~ ^/admin/.*page=2$)"));
        assert!(holds("($uri ~* ^/ADMIN)"));
        assert!(!holds("($uri ~ ^/ADMIN)"));
        assert!(holds("($uri !~ ^/public)"));
        assert!(holds("($request_method = POST)"));
        assert!(holds("($http_x_forwarded_proto)"));
        assert!(!holds("($http_x_absent)"));
        assert!(holds("($scheme = http)"));
        let rewritten = Uri::from_static("/public/users");
        let after = Facts {
            uri: &rewritten,
            ..facts
        };
        let holds = |text: &str| condition(text).unwrap().holds(&after);
        assert!(holds("($uri = /public/users)"), "$uri is the rewritten one");
        assert!(holds("($request_uri = /admin/users?page=2)"), "as sent");
    }

    #[test]
    fn other_conditions_are_refused() {
        for text in [
            "(-f $request_filename)",
            "($remote_addr = 10.0.0.1)",
            "($host = $http_x_host)",
            "$host = a",
            "($uri ~ (?<=a)b)",
            "()",
        ] {
            assert!(condition(text).is_err(), "{text}");
        }
    }
}
