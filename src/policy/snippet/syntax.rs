//! nginx's configuration syntax, read the way nginx's own lexer
//! (`ngx_conf_read_token`) reads it: words split by white space, single
//! and double quotes with backslash escapes, `#` comments to the end of
//! the line, `;` ending a statement and `{ … }` blocks. A snippet is text
//! that ingress-nginx pasted inside a block of its own, so a `}` that
//! closes a block the snippet did not open, an unterminated quote or a
//! block nested deeper than `if` needs is refused here, before any
//! directive is looked at.

use std::fmt;

/// How deep blocks may nest: a snippet's own blocks are `if` bodies, and
/// nginx does not nest `if`.
const MAX_DEPTH: usize = 1;

/// One word as nginx hands it to a directive: quotes removed, escapes
/// resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    /// Written in quotes.
    pub quoted: bool,
}

/// A directive with its words (the name first) and its block, if it has
/// one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub words: Vec<Word>,
    pub block: Option<Vec<Statement>>,
}

impl Statement {
    /// The directive's name, as written.
    pub fn name(&self) -> &str {
        &self.words[0].text
    }

    pub fn args(&self) -> &[Word] {
        &self.words[1..]
    }
}

/// Why a snippet is not nginx configuration a block can hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyntaxError {
    UnterminatedQuote,
    /// A quoted word followed by something other than white space, `;`,
    /// `{` or `)`.
    AfterQuote(char),
    /// A `}` with no block of the snippet's own open: it would close the
    /// block the snippet is pasted in.
    LeavesBlock,
    /// `{` with no directive before it, or `;` with nothing before it.
    Unexpected(char),
    /// The text ends inside a block or a statement.
    Unfinished,
    TooDeep,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyntaxError::UnterminatedQuote => write!(f, "has a quote that is never closed"),
            SyntaxError::AfterQuote(c) => write!(f, "has {c:?} right after a closing quote"),
            SyntaxError::LeavesBlock => write!(
                f,
                "has a '}}' that closes a block it did not open (it would leave its own block)"
            ),
            SyntaxError::Unexpected(c) => write!(f, "has an unexpected {c:?}"),
            SyntaxError::Unfinished => {
                write!(f, "ends inside a statement or block ('; or '}}' missing)")
            }
            SyntaxError::TooDeep => write!(f, "nests blocks deeper than an if body"),
        }
    }
}

/// The statements of a snippet, in order.
pub fn parse(text: &str) -> Result<Vec<Statement>, SyntaxError> {
    let mut lexer = Lexer {
        chars: text.chars().peekable(),
    };
    // Open blocks, innermost last; the snippet's top level first.
    let mut open: Vec<(Vec<Word>, Vec<Statement>)> = vec![(Vec::new(), Vec::new())];
    let mut words: Vec<Word> = Vec::new();
    while let Some(token) = lexer.next_token()? {
        match token {
            Token::Word(word) => words.push(word),
            Token::End if words.is_empty() => return Err(SyntaxError::Unexpected(';')),
            Token::End => {
                let statement = Statement {
                    words: std::mem::take(&mut words),
                    block: None,
                };
                innermost(&mut open).push(statement);
            }
            Token::Open if words.is_empty() => return Err(SyntaxError::Unexpected('{')),
            Token::Open => {
                if open.len() > MAX_DEPTH {
                    return Err(SyntaxError::TooDeep);
                }
                open.push((std::mem::take(&mut words), Vec::new()));
            }
            Token::Close if !words.is_empty() => return Err(SyntaxError::Unexpected('}')),
            Token::Close => {
                if open.len() == 1 {
                    return Err(SyntaxError::LeavesBlock);
                }
                let (words, block) = open.pop().unwrap_or_default();
                innermost(&mut open).push(Statement {
                    words,
                    block: Some(block),
                });
            }
        }
    }
    if !words.is_empty() || open.len() != 1 {
        return Err(SyntaxError::Unfinished);
    }
    Ok(open.pop().map(|(_, top)| top).unwrap_or_default())
}

fn innermost(open: &mut [(Vec<Word>, Vec<Statement>)]) -> &mut Vec<Statement> {
    // `open` always holds the top level: `parse` never pops it.
    match open.last_mut() {
        Some((_, statements)) => statements,
        None => unreachable!("the top level is never closed"),
    }
}

enum Token {
    Word(Word),
    /// `;`
    End,
    /// `{`
    Open,
    /// `}`
    Close,
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl Lexer<'_> {
    fn next_token(&mut self) -> Result<Option<Token>, SyntaxError> {
        loop {
            let Some(c) = self.chars.next() else {
                return Ok(None);
            };
            return Ok(Some(match c {
                c if c.is_whitespace() => continue,
                '#' => {
                    self.skip_comment();
                    continue;
                }
                ';' => Token::End,
                '{' => Token::Open,
                '}' => Token::Close,
                '"' | '\'' => Token::Word(self.quoted(c)?),
                c => Token::Word(self.bare(c)),
            }));
        }
    }

    fn skip_comment(&mut self) {
        for c in self.chars.by_ref() {
            if c == '\n' {
                break;
            }
        }
    }

    /// A quoted word, up to its closing quote, which must be followed by
    /// white space, `;`, `{` or `)` (nginx's `need_space`).
    fn quoted(&mut self, quote: char) -> Result<Word, SyntaxError> {
        let mut text = String::new();
        loop {
            match self.chars.next() {
                None => return Err(SyntaxError::UnterminatedQuote),
                Some('\\') => escape(self.chars.next(), &mut text),
                Some(c) if c == quote => break,
                Some(c) => text.push(c),
            }
        }
        match self.chars.peek() {
            None => {}
            Some(c) if c.is_whitespace() || matches!(c, ';' | '{' | ')') => {}
            Some(&c) => return Err(SyntaxError::AfterQuote(c)),
        }
        Ok(Word { text, quoted: true })
    }

    /// A word without quotes: up to white space, `;` or `{` (a `{` right
    /// after `$` opens a variable name instead). As in nginx, `}` and `#`
    /// inside a word are part of it.
    fn bare(&mut self, first: char) -> Word {
        let mut text = String::new();
        let mut c = first;
        loop {
            if c == '\\' {
                escape(self.chars.next(), &mut text);
            } else {
                text.push(c);
            }
            let variable = c == '$';
            match self.chars.peek() {
                None => break,
                Some(&next) if next.is_whitespace() || next == ';' => break,
                Some('{') if !variable => break,
                Some(_) => {}
            }
            c = self.chars.next().unwrap_or_default();
        }
        Word {
            text,
            quoted: false,
        }
    }
}

/// nginx's escapes: `\"`, `\'`, `\\`, `\t`, `\r`, `\n`; any other
/// backslash is kept with the character after it.
fn escape(next: Option<char>, text: &mut String) {
    match next {
        Some(c @ ('"' | '\'' | '\\')) => text.push(c),
        Some('t') => text.push('\t'),
        Some('r') => text.push('\r'),
        Some('n') => text.push('\n'),
        Some(c) => {
            text.push('\\');
            text.push(c);
        }
        None => text.push('\\'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &Statement) -> Vec<&str> {
        s.words.iter().map(|w| w.text.as_str()).collect()
    }

    #[test]
    fn words_quotes_escapes_and_comments_read_as_nginx_reads_them() {
        let parsed = parse(
            "more_set_headers \"X-A: b c\" 'X-Q: it\\'s';  # trailing comment\n\
             add_header X-B \"say \\\"hi\\\"\" always;\n\
             proxy_set_header X-Tag a#b;",
        )
        .unwrap();
        assert_eq!(
            words(&parsed[0]),
            ["more_set_headers", "X-A: b c", "X-Q: it's"]
        );
        assert_eq!(
            words(&parsed[1]),
            ["add_header", "X-B", "say \"hi\"", "always"]
        );
        assert_eq!(words(&parsed[2]), ["proxy_set_header", "X-Tag", "a#b"]);
        assert!(parsed[0].words[1].quoted && !parsed[2].words[2].quoted);
    }

    #[test]
    fn if_blocks_hold_their_statements_and_variables_keep_their_braces() {
        let parsed =
            parse("if ($host = \"a.test\") { return 301 https://b.test${request_uri}; }").unwrap();
        assert_eq!(words(&parsed[0]), ["if", "($host", "=", "a.test", ")"]);
        let block = parsed[0].block.as_ref().unwrap();
        assert_eq!(
            words(&block[0]),
            ["return", "301", "https://b.test${request_uri}"]
        );
    }

    #[test]
    fn a_snippet_cannot_leave_its_block_or_hide_the_end_of_a_quote() {
        let refused = [
            (
                "more_set_headers \"X: y\"; } server { listen 1;",
                SyntaxError::LeavesBlock,
            ),
            ("}", SyntaxError::LeavesBlock),
            (
                "add_header X \"unterminated;",
                SyntaxError::UnterminatedQuote,
            ),
            ("add_header X 'a'b;", SyntaxError::AfterQuote('b')),
            ("add_header X y", SyntaxError::Unfinished),
            ("if ($host) { return 403;", SyntaxError::Unfinished),
            ("if ($a) { if ($b) { return 403; } }", SyntaxError::TooDeep),
            ("; deny all;", SyntaxError::Unexpected(';')),
            ("{ deny all; }", SyntaxError::Unexpected('{')),
            ("deny all }", SyntaxError::Unexpected('}')),
        ];
        for (text, error) in refused {
            assert_eq!(parse(text), Err(error), "{text:?}");
        }
    }

    #[test]
    fn a_comment_hides_the_rest_of_its_line_only() {
        let parsed = parse("# } ssl_engine x;\nmore_clear_headers Server; # deny all;").unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(words(&parsed[0]), ["more_clear_headers", "Server"]);
    }
}
