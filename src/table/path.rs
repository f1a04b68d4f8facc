//! Path matching for one host, on a matchit radix tree.
//!
//! Kubernetes rules: `Exact` matches the whole path, case-sensitively.
//! `Prefix` matches element-wise on `/`-split elements: `/foo` matches
//! `/foo`, `/foo/` and `/foo/bar`, not `/foobar`; a trailing slash in the
//! rule is ignored. The longest match wins; at equal length `Exact` wins.
//!
//! A Prefix rule `P` becomes three tree entries: `P`, `P/` and the
//! catch-all `P/{*rest}` (matchit's catch-all never matches an empty rest).
//! The tree prefers the longest static match and falls back to the deepest
//! catch-all, which is exactly element-wise longest-prefix matching, found
//! in one walk rather than a scan over the rules.

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum PathType {
    Exact,
    Prefix,
    ImplementationSpecific,
}

impl PathType {
    pub fn parse(value: &str) -> Option<PathType> {
        match value {
            "Exact" => Some(PathType::Exact),
            "Prefix" => Some(PathType::Prefix),
            "ImplementationSpecific" => Some(PathType::ImplementationSpecific),
            _ => None,
        }
    }
}

/// What may sit at one tree entry: the Exact rule for exactly this path,
/// and the Prefix rule covering it.
#[derive(Debug)]
pub struct Slot<T> {
    exact: Option<T>,
    prefix: Option<T>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            exact: None,
            prefix: None,
        }
    }
}

/// An immutable path → value table.
#[derive(Debug, Default)]
pub enum PathTable<T> {
    #[default]
    Empty,
    /// Only a Prefix `/` rule: it matches every path. The most common host
    /// by far; it needs no tree.
    Root(T),
    Tree {
        router: matchit::Router<usize>,
        slots: Vec<Slot<T>>,
    },
}

impl<T> PathTable<T> {
    /// The value of the longest rule matching `path`.
    pub fn lookup(&self, path: &str) -> Option<&T> {
        match self {
            PathTable::Empty => None,
            PathTable::Root(value) => path.starts_with('/').then_some(value),
            PathTable::Tree { router, slots } => {
                let matched = router.at(path).ok()?;
                let slot = &slots[*matched.value];
                slot.exact.as_ref().or(slot.prefix.as_ref())
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, PathTable::Empty)
    }
}

/// Collects rules, detects duplicates, then builds the tree once.
#[derive(Debug)]
pub struct PathTableBuilder<T> {
    slots: BTreeMap<String, Slot<T>>,
}

impl<T> Default for PathTableBuilder<T> {
    fn default() -> Self {
        PathTableBuilder {
            slots: BTreeMap::new(),
        }
    }
}

impl<T: Clone> PathTableBuilder<T> {
    /// Adds a rule. `path` must start with `/`. When an equal rule (same
    /// type, same path after normalisation) is already present, nothing is
    /// added and the present value is returned.
    pub fn add(&mut self, path: &str, path_type: PathType, value: T) -> Result<(), &T> {
        let path = escape(path);
        if path_type == PathType::Exact {
            if self.slots.get(&path).is_some_and(|s| s.exact.is_some()) {
                return Err(self.slots[&path].exact.as_ref().expect("checked above"));
            }
            self.slots.entry(path).or_default().exact = Some(value);
            return Ok(());
        }
        let base = path.trim_end_matches('/');
        let key = if base.is_empty() { "/" } else { base };
        if self.slots.get(key).is_some_and(|s| s.prefix.is_some()) {
            return Err(self.slots[key].prefix.as_ref().expect("checked above"));
        }
        for key in prefix_keys(base) {
            self.slots.entry(key).or_default().prefix = Some(value.clone());
        }
        Ok(())
    }

    pub fn build(mut self) -> PathTable<T> {
        let root_only = self.slots.len() == 2
            && self
                .slots
                .get("/")
                .is_some_and(|s| s.exact.is_none() && s.prefix.is_some())
            && self.slots.contains_key("/{*rest}");
        if root_only {
            if let Some(value) = self.slots.remove("/").and_then(|s| s.prefix) {
                return PathTable::Root(value);
            }
        }
        if self.slots.is_empty() {
            return PathTable::Empty;
        }
        let mut router = matchit::Router::new();
        let mut slots = Vec::with_capacity(self.slots.len());
        for (key, slot) in self.slots {
            // Keys are escaped and end in at most one catch-all, so matchit
            // accepts every one of them; a refusal would be a bug here.
            if let Err(e) = router.insert(key, slots.len()) {
                tracing::error!("path table refused an entry: {e}");
                continue;
            }
            slots.push(slot);
        }
        PathTable::Tree { router, slots }
    }
}

/// The tree entries of a Prefix rule whose path, without trailing slashes,
/// is `base` (empty for `/`).
fn prefix_keys(base: &str) -> Vec<String> {
    if base.is_empty() {
        vec!["/".to_owned(), "/{*rest}".to_owned()]
    } else {
        vec![
            base.to_owned(),
            format!("{base}/"),
            format!("{base}/{{*rest}}"),
        ]
    }
}

/// matchit reads `{` and `}` as parameter syntax; a path is plain text.
fn escape(path: &str) -> String {
    path.replace('{', "{{").replace('}', "}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rules: &[(&'static str, PathType)]) -> PathTable<&'static str> {
        let mut b = PathTableBuilder::default();
        for (path, t) in rules {
            b.add(path, *t, *path).expect("no duplicates in test rules");
        }
        b.build()
    }

    use PathType::{Exact, Prefix};

    #[test]
    fn prefix_matches_whole_path_elements_only() {
        let t = table(&[("/foo", Prefix)]);
        for hit in ["/foo", "/foo/", "/foo/bar", "/foo/bar/baz"] {
            assert_eq!(t.lookup(hit), Some(&"/foo"), "{hit}");
        }
        for miss in ["/foobar", "/fo", "/", "/bar/foo"] {
            assert_eq!(t.lookup(miss), None, "{miss}");
        }
    }

    #[test]
    fn trailing_slash_in_prefix_rule_is_ignored() {
        let t = table(&[("/foo/", Prefix)]);
        assert_eq!(t.lookup("/foo"), Some(&"/foo/"));
        assert_eq!(t.lookup("/foo/x"), Some(&"/foo/"));
    }

    #[test]
    fn exact_matches_only_the_whole_path_case_sensitively() {
        let t = table(&[("/foo", Exact)]);
        assert_eq!(t.lookup("/foo"), Some(&"/foo"));
        for miss in ["/foo/", "/foo/bar", "/FOO", "/foobar"] {
            assert_eq!(t.lookup(miss), None, "{miss}");
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let t = table(&[("/", Prefix), ("/foo", Prefix), ("/foo/bar", Prefix)]);
        assert_eq!(t.lookup("/foo/bar/baz"), Some(&"/foo/bar"));
        assert_eq!(t.lookup("/foo/barbaz"), Some(&"/foo"));
        assert_eq!(t.lookup("/foox"), Some(&"/"));
        assert_eq!(t.lookup("/"), Some(&"/"));
    }

    #[test]
    fn exact_beats_prefix_of_equal_length() {
        let mut b = PathTableBuilder::default();
        b.add("/foo", Prefix, "prefix").unwrap();
        b.add("/foo", Exact, "exact").unwrap();
        let t = b.build();
        assert_eq!(t.lookup("/foo"), Some(&"exact"));
        assert_eq!(t.lookup("/foo/"), Some(&"prefix"));
    }

    #[test]
    fn exact_with_trailing_slash_is_longer_than_prefix_without() {
        let mut b = PathTableBuilder::default();
        b.add("/foo", Prefix, "prefix").unwrap();
        b.add("/foo/", Exact, "exact").unwrap();
        let t = b.build();
        assert_eq!(t.lookup("/foo/"), Some(&"exact"));
        assert_eq!(t.lookup("/foo"), Some(&"prefix"));
    }

    #[test]
    fn a_deeper_exact_rule_does_not_hide_a_shorter_prefix() {
        let t = table(&[("/foo", Prefix), ("/foo/bar/baz", Exact)]);
        assert_eq!(t.lookup("/foo/bar"), Some(&"/foo"));
        assert_eq!(t.lookup("/foo/bar/"), Some(&"/foo"));
        assert_eq!(t.lookup("/foo/bar/baz"), Some(&"/foo/bar/baz"));
        assert_eq!(t.lookup("/foo/bar/bazz"), Some(&"/foo"));
    }

    #[test]
    fn prefix_siblings_sharing_letters_do_not_capture_each_other() {
        let t = table(&[("/app", Prefix), ("/apple", Prefix), ("/", Prefix)]);
        assert_eq!(t.lookup("/app/x"), Some(&"/app"));
        assert_eq!(t.lookup("/apple/x"), Some(&"/apple"));
        assert_eq!(t.lookup("/applesauce"), Some(&"/"));
        assert_eq!(t.lookup("/ap"), Some(&"/"));
    }

    #[test]
    fn a_lone_root_prefix_matches_every_path() {
        let t = table(&[("/", Prefix)]);
        assert!(matches!(t, PathTable::Root(_)));
        for path in ["/", "/a", "/a/b/c", "//x"] {
            assert_eq!(t.lookup(path), Some(&"/"), "{path}");
        }
        let with_exact = table(&[("/", Prefix), ("/", Exact)]);
        assert!(matches!(with_exact, PathTable::Tree { .. }));
    }

    #[test]
    fn braces_in_paths_are_literal() {
        let t = table(&[("/{id}", Prefix)]);
        assert_eq!(t.lookup("/{id}/x"), Some(&"/{id}"));
        assert_eq!(t.lookup("/42"), None);
    }

    #[test]
    fn duplicate_rule_is_refused_with_the_present_value() {
        let mut b = PathTableBuilder::default();
        b.add("/foo", Prefix, "first").unwrap();
        assert_eq!(b.add("/foo/", Prefix, "second"), Err(&"first"));
        b.add("/", Prefix, "root").unwrap();
        assert_eq!(b.add("/", Prefix, "again"), Err(&"root"));
    }
}
