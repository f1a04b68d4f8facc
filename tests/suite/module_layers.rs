//! The top-level modules of `src/` form layers: none imports a module that
//! imports it back, directly or around a longer cycle (the map is in
//! docs/architecture.md).
//!
//! An edge is a `crate::<module>` path, in a `use` line or in code (and a
//! `super::` path that climbs to the crate root), in a file of another
//! top-level module. Comments, string and character literals, and
//! `#[cfg(test)]` modules do not count: a test may reach across the layers
//! to build its fixtures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Who imports whom: importer → imported → the files that make the edge.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_rust_files(&src, &src, &mut files);
    assert!(files.len() > 20, "found only {} files in src/", files.len());
    let graph = graph(
        files
            .iter()
            .map(|(path, text)| (path.as_str(), text.as_str())),
    );
    if let Some(report) = cycles(&graph) {
        panic!("{report}");
    }
}

#[test]
fn a_cycle_is_named_with_the_files_that_make_it() {
    let files = [
        ("a/mod.rs", "use crate::b::Thing;\n"),
        ("a/other.rs", "pub fn f() -> crate::b::Thing { todo!() }\n"),
        ("b/x.rs", "fn f() { crate::c::g() }\n"),
        ("c.rs", "use crate::{a::One, tls};\n"),
        ("tls.rs", "pub fn g() {}\n"),
    ];
    let report = cycles(&graph(files)).expect("a cycle");
    assert!(report.contains("a → b → c → a"), "{report}");
    assert!(
        report.contains("a → b: src/a/mod.rs, src/a/other.rs"),
        "{report}"
    );
    assert!(report.contains("b → c: src/b/x.rs"), "{report}");
    assert!(report.contains("c → a: src/c.rs"), "{report}");
    assert!(!report.contains("tls"), "{report}");
}

#[test]
fn comments_literals_and_test_modules_make_no_edges() {
    let a = r##"
// use crate::b::X;
/* crate::b::X /* nested */ crate::b::Y */
/// Links to `crate::b::Z`.
const S: &str = "crate::b::X";
const R: &str = r#"crate::b::"X""#;
const Q: char = '"';
fn f<'a>(s: &'a str) -> &'a str { s }
#[cfg(test)]
#[allow(unused)]
mod tests {
    use crate::b::X;
    fn g() { let _ = '{'; }
}
pub struct Kept;
"##;
    let files = [("a.rs", a), ("b.rs", "use crate::a::Kept;\n")];
    let graph = graph(files);
    assert!(cycles(&graph).is_none(), "{graph:?}");
    assert_eq!(graph.get("a"), None, "{graph:?}");
    assert!(graph["b"].contains_key("a"), "{graph:?}");
}

#[test]
fn super_paths_that_climb_to_the_crate_root_are_edges() {
    let files = [
        ("a/x.rs", "use super::super::b::Y;\nuse super::z::W;\n"),
        ("a/z.rs", "pub struct W;\n"),
        ("b.rs", "pub struct Y;\n"),
    ];
    let graph = graph(files);
    assert_eq!(graph["a"].keys().collect::<Vec<_>>(), ["b"], "{graph:?}");
}

/// Every `.rs` file under `dir`, as (path relative to `src/`, text).
fn read_rust_files(src: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            read_rust_files(src, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(src).expect("under src/");
            let relative = relative.to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&path).expect("readable source");
            out.push((relative, text));
        }
    }
}

/// The module path of a file: `table/mod.rs` is `table`, `table/edge.rs`
/// is `table::edge`, `cluster.rs` is `cluster`. The crate roots have none.
fn module_path(file: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = file.trim_end_matches(".rs").split('/').collect();
    if parts.last() == Some(&"mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    parts
}

fn graph<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Graph {
    let files: Vec<(&str, &str)> = files.into_iter().collect();
    let modules: BTreeSet<&str> = files
        .iter()
        .filter_map(|(path, _)| module_path(path).first().copied())
        .collect();
    let mut graph = Graph::new();
    for (path, text) in files {
        let module = module_path(path);
        let Some(&top) = module.first() else { continue };
        for target in imported_tops(&code_only(text), module.len()) {
            if target != top && modules.contains(target.as_str()) {
                let edges = graph.entry(top.to_owned()).or_default();
                let files = edges.entry(target).or_default();
                files.insert(format!("src/{path}"));
            }
        }
    }
    graph
}

/// The text with comments, string and character literals, and
/// `#[cfg(test)]` modules blanked out (line breaks kept).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        let starts = |s: &str| s.chars().enumerate().all(|(k, c)| rest.get(k) == Some(&c));
        // Inside an identifier (`for'`, `br`), no literal starts.
        let in_ident = i > 0 && is_ident(chars[i - 1]);
        let prefix = usize::from(starts("b\"") || starts("b'") || starts("br"));
        let end = if starts("//") {
            rest.iter().position(|&c| c == '\n').unwrap_or(rest.len())
        } else if starts("/*") {
            block_comment_len(rest)
        } else if in_ident {
            0
        } else if rest[prefix] == 'r' {
            raw_string_len(&rest[prefix..]).map_or(0, |n| n + prefix)
        } else if rest[prefix] == '"' {
            string_len(&rest[prefix..]) + prefix
        } else if rest[prefix] == '\'' {
            char_literal_len(&rest[prefix..]).map_or(0, |n| n + prefix)
        } else {
            0
        };
        if end == 0 {
            out.push(chars[i]);
            i += 1;
        } else {
            rest[..end].iter().for_each(|&c| blank(&mut out, c));
            i += end;
        }
    }
    without_test_modules(out)
}

fn block_comment_len(rest: &[char]) -> usize {
    let (mut depth, mut k) = (0, 0);
    while k < rest.len() {
        match (rest[k], rest.get(k + 1)) {
            ('/', Some('*')) => (depth, k) = (depth + 1, k + 2),
            ('*', Some('/')) => {
                (depth, k) = (depth - 1, k + 2);
                if depth == 0 {
                    return k;
                }
            }
            _ => k += 1,
        }
    }
    rest.len()
}

/// `r"…"`, `r#"…"#`: `None` for anything else starting with `r` (an
/// identifier, a raw identifier `r#type`).
fn raw_string_len(rest: &[char]) -> Option<usize> {
    let hashes = rest[1..].iter().take_while(|&&c| c == '#').count();
    if rest.get(1 + hashes) != Some(&'"') {
        return None;
    }
    let closes = |k: usize| {
        rest[k + 1..]
            .iter()
            .take(hashes)
            .filter(|&&c| c == '#')
            .count()
            == hashes
    };
    let close = (2 + hashes..rest.len()).find(|&k| rest[k] == '"' && closes(k));
    Some(close.map_or(rest.len(), |k| k + 1 + hashes))
}

fn string_len(rest: &[char]) -> usize {
    let mut k = 1;
    while k < rest.len() {
        match rest[k] {
            '\\' => k += 2,
            '"' => return k + 1,
            _ => k += 1,
        }
    }
    rest.len()
}

/// `'x'` or `'\n'`: `None` for a lifetime or label (`'a`).
fn char_literal_len(rest: &[char]) -> Option<usize> {
    match (rest.get(1), rest.get(2)) {
        (Some('\\'), _) => rest[2..].iter().position(|&c| c == '\'').map(|p| p + 3),
        (Some(_), Some('\'')) => Some(3),
        _ => None,
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Blanks every `#[cfg(test)]` module with a body (`mod tests { … }`).
fn without_test_modules(code: String) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + marker.len() <= chars.len() {
        if chars[i..i + marker.len()] != marker[..] {
            i += 1;
            continue;
        }
        let mut k = i + marker.len();
        // Further attributes, visibility, then `mod name {`.
        loop {
            while k < chars.len() && chars[k].is_whitespace() {
                k += 1;
            }
            if chars.get(k) == Some(&'#') {
                k += chars[k..]
                    .iter()
                    .position(|&c| c == ']')
                    .map_or(0, |p| p + 1);
            } else {
                break;
            }
        }
        let head: String = chars[k..].iter().take(200).collect();
        let head = head
            .trim_start_matches("pub ")
            .trim_start_matches("pub(crate) ");
        let body = head
            .strip_prefix("mod ")
            .and_then(|h| h.find(['{', ';']).filter(|&p| h.as_bytes()[p] == b'{'));
        let Some(_) = body else {
            i += marker.len();
            continue;
        };
        let open = k + chars[k..].iter().position(|&c| c == '{').expect("a body");
        let mut depth = 0;
        let mut end = chars.len();
        for (j, &c) in chars.iter().enumerate().skip(open) {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        for c in &mut chars[i..end] {
            if *c != '\n' {
                *c = ' ';
            }
        }
        i = end;
    }
    chars.into_iter().collect()
}

/// The top-level modules named by `crate::` paths, and by `super::` paths
/// that climb `depth` levels to the crate root.
fn imported_tops(code: &str, depth: usize) -> Vec<String> {
    let mut tops = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let boundary = i == 0 || !is_ident(bytes[i - 1] as char);
        let rest = &code[i..];
        let after = if !boundary {
            None
        } else if let Some(after) = rest.strip_prefix("crate::") {
            Some(after)
        } else {
            let mut after = rest;
            let mut supers = 0;
            while let Some(next) = after.strip_prefix("super::") {
                after = next;
                supers += 1;
            }
            (supers > 0 && supers == depth).then_some(after)
        };
        match after {
            Some(after) => {
                tops.extend(first_segments(after.trim_start()));
                i = code.len() - after.len();
            }
            None => i += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    tops
}

/// `table::Route` → `table`; `{table::Route, proxy}` → `table`, `proxy`.
fn first_segments(path: &str) -> Vec<String> {
    let ident = |s: &str| {
        s.trim_start()
            .chars()
            .take_while(|&c| is_ident(c))
            .collect()
    };
    let Some(group) = path.strip_prefix('{') else {
        return vec![ident(path)];
    };
    let (mut depth, mut items, mut start) = (0, Vec::new(), 0);
    for (k, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(ident(&group[start..k]));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(ident(&group[start..k]));
                start = k + 1;
            }
            _ => {}
        }
    }
    items.retain(|s: &String| !s.is_empty() && s != "self");
    items
}

/// A report naming one cycle of each group of modules that import each
/// other, with the files that make each edge; `None` without cycles.
fn cycles(graph: &Graph) -> Option<String> {
    let mut report = String::new();
    for group in strongly_connected(graph) {
        let cycle = cycle_through(graph, &group);
        report.push_str(&format!(
            "top-level modules import each other in a cycle: {}\n",
            cycle.join(" → ")
        ));
        for pair in cycle.windows(2) {
            let files = &graph[&pair[0]][&pair[1]];
            let files: Vec<&str> = files.iter().map(String::as_str).collect();
            report.push_str(&format!(
                "  {} → {}: {}\n",
                pair[0],
                pair[1],
                files.join(", ")
            ));
        }
        if group.len() + 1 > cycle.len() {
            let all: Vec<&str> = group.iter().map(String::as_str).collect();
            report.push_str(&format!("  (all caught in it: {})\n", all.join(", ")));
        }
    }
    (!report.is_empty()).then_some(report)
}

/// The groups of two or more modules that reach each other (Tarjan).
fn strongly_connected(graph: &Graph) -> Vec<BTreeSet<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        groups: Vec<BTreeSet<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        for w in s.graph.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.stack.contains(&w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                group.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                s.groups.push(group);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        groups: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.groups
}

/// A shortest cycle from the group's first module back to it, inside the
/// group: `[a, b, a]`.
fn cycle_through(graph: &Graph, group: &BTreeSet<String>) -> Vec<String> {
    let start = group.first().expect("a non-empty group").clone();
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    while let Some(v) = queue.pop_front() {
        for w in graph.get(&v).into_iter().flat_map(|e| e.keys()) {
            if !group.contains(w) {
                continue;
            }
            if *w == start {
                let mut cycle = vec![v.clone()];
                while let Some(prev) = came_from.get(cycle.last().expect("non-empty")) {
                    cycle.push(prev.clone());
                }
                cycle.reverse();
                cycle.push(start);
                return cycle;
            }
            if !came_from.contains_key(w) && *w != start {
                came_from.insert(w.clone(), v.clone());
                queue.push_back(w.clone());
            }
        }
    }
    unreachable!("a strongly connected group has a cycle through each member")
}
