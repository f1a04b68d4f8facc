//! What a snippet means for who may reach the routes: a
//! configuration-snippet's `allow`/`deny` and `satisfy` compiled, or the
//! problem that closes the routes. The word scan finds access directives
//! in any text, nginx syntax or not, for snippets that are not read.

use super::Snippet;
use crate::policy::access::Satisfy;
use crate::policy::source_range::SourceRanges;
use crate::policy::AccessOptions;

/// A configuration-snippet's access rules, compiled.
#[derive(Clone, Debug, Default)]
pub struct SnippetAccess {
    pub sources: Option<SourceRanges>,
    pub satisfy: Option<Satisfy>,
}

/// What a snippet annotation (`name` without prefix) means for who may
/// reach the routes: its rules, or the problem that closes them.
pub fn access_of(
    name: &str,
    text: &str,
    options: &AccessOptions,
) -> Result<Option<SnippetAccess>, String> {
    if !options.snippets_allowed() {
        let found = access_directives(text);
        if found.is_empty() {
            return Ok(None);
        }
        let found = found.join(", ");
        return Err(format!(
            "is a snippet that restricts access ({found}), and snippet annotations are not allowed (--allow-snippet-annotations, annotations-risk-level)"
        ));
    }
    let snippet = Snippet::read_as(name, text);
    if !snippet.applies() {
        if !snippet.protective {
            return Ok(None);
        }
        let refused = snippet.refused.join("; ");
        return Err(format!(
            "is a snippet that restricts access and is not applied: {refused}"
        ));
    }
    if snippet.access.is_empty() && snippet.satisfy.is_none() {
        return Ok(None);
    }
    if name == "server-snippet" {
        return Err("is a server-snippet with allow, deny or satisfy, which Gatehouse does not enforce for a whole host".into());
    }
    let sources = match snippet.access.is_empty() {
        true => None,
        false => Some(SourceRanges::from_rules(&snippet.access).ok_or(
            "has allow and deny rules in an order Gatehouse cannot enforce (denials, then allowances, then deny all)",
        )?),
    };
    Ok(Some(SnippetAccess {
        sources,
        satisfy: snippet.satisfy,
    }))
}

/// The access directives a snippet holds, in order, by name (`deny`,
/// `auth_basic`; `return 403` with its code); empty when it holds none.
/// Read word by word, so that it finds them in text that is not nginx
/// syntax too.
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
    match words[0].eq_ignore_ascii_case("return") {
        true => words
            .get(1)
            .is_some_and(|code| matches!(code.trim_matches(['"', '\'']), "401" | "403")),
        false => super::directive::is_protective(words[0]),
    }
}
