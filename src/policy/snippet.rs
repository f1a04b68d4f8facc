//! Snippet annotations (`configuration-snippet`, `server-snippet`) hold
//! raw nginx directives. Gatehouse renders no configuration and runs none
//! of them; but a snippet that restricts who may reach a route must not be
//! served open for being refused. This finds the access directives in a
//! snippet (`allow`, `deny`, `auth_*`, `satisfy`, `limit_*`, and `return`
//! of 401 or 403, inside an `if` block too), so that the access policy can
//! close the Ingress's routes, as ingress-nginx with snippets disabled
//! refuses such an Ingress.

/// The snippet annotations whose directives are looked at.
pub const SNIPPETS: &[&str] = &["configuration-snippet", "server-snippet"];

/// The access directives a snippet holds, in order, by name (`deny`,
/// `auth_basic`; `return 403` with its code); empty when it holds none.
/// Their arguments are left out: a warning that names them must not
/// repeat what a snippet may hold (an address list, a realm, a header).
pub fn access_directives(snippet: &str) -> Vec<String> {
    statements(snippet)
        .filter(|words| is_access(words))
        .map(|words| match words[0].eq_ignore_ascii_case("return") {
            true => format!("return {}", words[1].trim_matches(['"', '\''])),
            false => words[0].to_owned(),
        })
        .collect()
}

/// Each statement's words: the text without comments, split at `;`, `{`
/// and `}` (so an `if (…) { return 403; }` yields its condition and its
/// `return` apart). Quotes are kept with their word; a statement is only
/// ever compared by its first words.
fn statements(snippet: &str) -> impl Iterator<Item = Vec<&str>> {
    snippet
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(|line| line.split([';', '{', '}']))
        .map(|statement| statement.split_whitespace().collect::<Vec<_>>())
        .filter(|words| !words.is_empty())
}

fn is_access(words: &[&str]) -> bool {
    let directive = words[0].to_ascii_lowercase();
    match directive.as_str() {
        "allow" | "deny" | "satisfy" => true,
        "return" => words
            .get(1)
            .is_some_and(|code| matches!(code.trim_matches(['"', '\'']), "401" | "403")),
        name => name.starts_with("auth_") || name.starts_with("limit_"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
