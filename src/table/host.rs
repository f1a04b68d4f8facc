//! Host matching: exact names first, then `*.` wildcards covering exactly
//! one extra DNS label (Ingress), then the Gateway API's `*.` suffixes
//! covering one or more, the longest suffix first. Shared by the routes and
//! the certificates.

use std::sync::Arc;

/// How an Ingress names a host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostPattern {
    /// A rule without `host`: every host.
    Any,
    Exact(String),
    /// `*.example.com`, stored without the `*.`.
    Wildcard(String),
    /// A Gateway API `*.example.com`: any number of labels before the
    /// suffix (stored without the `*.`).
    Suffix(String),
}

impl HostPattern {
    /// Reads a host as written in an Ingress (`host` or `tls.hosts`).
    pub fn parse(host: Option<&str>) -> HostPattern {
        match host.map(str::trim).filter(|h| !h.is_empty()) {
            None => HostPattern::Any,
            Some(host) => {
                let host = host.trim_end_matches('.').to_ascii_lowercase();
                match host.strip_prefix("*.") {
                    Some(suffix) => HostPattern::Wildcard(suffix.to_owned()),
                    None => HostPattern::Exact(host),
                }
            }
        }
    }

    /// Reads a Gateway API hostname: its `*.` covers any depth.
    pub fn parse_gateway(host: Option<&str>) -> HostPattern {
        match HostPattern::parse(host) {
            HostPattern::Wildcard(suffix) => HostPattern::Suffix(suffix),
            other => other,
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Any => f.write_str("*"),
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
            HostPattern::Suffix(s) => write!(f, "*.{s} (any depth)"),
        }
    }
}

/// One kind of key of a `HostMap`: persistent, so that a table that
/// differs from the previous one in a few hosts shares the rest with it
/// (a clone is O(1), an insert O(log n)).
type Keyed<T> = imbl::GenericHashMap<
    Arc<str>,
    T,
    foldhash::fast::RandomState,
    imbl::shared_ptr::DefaultSharedPtr,
>;

/// Values keyed by exact host and by wildcard suffix.
#[derive(Debug, Clone)]
pub struct HostMap<T: Clone> {
    exact: Keyed<T>,
    wildcard: Keyed<T>,
    suffix: Keyed<T>,
}

impl<T: Clone> Default for HostMap<T> {
    fn default() -> Self {
        HostMap {
            exact: Keyed::default(),
            wildcard: Keyed::default(),
            suffix: Keyed::default(),
        }
    }
}

impl<T: Clone> HostMap<T> {
    /// The map a pattern's kind is kept in, and its key there.
    fn map_of<'m, 'p>(&'m self, pattern: &'p HostPattern) -> Option<(&'m Keyed<T>, &'p str)> {
        match pattern {
            HostPattern::Exact(h) => Some((&self.exact, h)),
            HostPattern::Wildcard(h) => Some((&self.wildcard, h)),
            HostPattern::Suffix(h) => Some((&self.suffix, h)),
            HostPattern::Any => None,
        }
    }

    fn map_of_mut<'a>(
        &'a mut self,
        pattern: &'a HostPattern,
    ) -> Option<(&'a mut Keyed<T>, &'a str)> {
        match pattern {
            HostPattern::Exact(h) => Some((&mut self.exact, h)),
            HostPattern::Wildcard(h) => Some((&mut self.wildcard, h)),
            HostPattern::Suffix(h) => Some((&mut self.suffix, h)),
            HostPattern::Any => None,
        }
    }

    /// Inserts unless the pattern is taken; `Any` is not a key here.
    /// Returns false when the pattern was already present (first wins).
    pub fn insert_first(&mut self, pattern: &HostPattern, value: T) -> bool {
        let Some((map, key)) = self.map_of_mut(pattern) else {
            return false;
        };
        if map.contains_key(key) {
            return false;
        }
        map.insert(key.into(), value);
        true
    }

    /// Makes this pattern's value (exactly this pattern, no wildcard
    /// matching) what it is in `from`, or absent.
    pub fn copy_pattern(&mut self, from: &HostMap<T>, pattern: &HostPattern) {
        let value = from
            .map_of(pattern)
            .and_then(|(map, key)| map.get(key).cloned());
        let Some((map, key)) = self.map_of_mut(pattern) else {
            return;
        };
        match value {
            Some(value) => drop(map.insert(key.into(), value)),
            None => drop(map.remove(key)),
        }
    }

    /// Looks up a normalised host (see `connection::normalize_host`): exact, then
    /// wildcard, then the longest Gateway API suffix.
    pub fn get(&self, host: &str) -> Option<&T> {
        if let Some(value) = self.exact.get(host) {
            return Some(value);
        }
        let (_, mut suffix) = host.split_once('.')?;
        if let Some(value) = self.wildcard.get(suffix) {
            return Some(value);
        }
        if self.suffix.is_empty() {
            return None;
        }
        loop {
            if let Some(value) = self.suffix.get(suffix) {
                return Some(value);
            }
            suffix = suffix.split_once('.')?.1;
        }
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len() + self.suffix.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The patterns whose values differ between this map and `newer`
    /// (`same` says when two values are the same), with the value of each
    /// side.
    pub fn diff<'a>(
        &'a self,
        newer: &'a HostMap<T>,
        same: impl Fn(&T, &T) -> bool,
    ) -> Vec<(HostPattern, Option<&'a T>, Option<&'a T>)> {
        let mut out = Vec::new();
        type Side<'m, T> = (&'m Keyed<T>, &'m Keyed<T>, fn(String) -> HostPattern);
        let pairs: [Side<'_, T>; 3] = [
            (&self.exact, &newer.exact, HostPattern::Exact),
            (&self.wildcard, &newer.wildcard, HostPattern::Wildcard),
            (&self.suffix, &newer.suffix, HostPattern::Suffix),
        ];
        for (old, new, pattern) in pairs {
            for (key, value) in new {
                match old.get(key) {
                    Some(before) if same(before, value) => {}
                    before => out.push((pattern(key.to_string()), before, Some(value))),
                }
            }
            for (key, before) in old {
                if !new.contains_key(key) {
                    out.push((pattern(key.to_string()), Some(before), None));
                }
            }
        }
        out
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        let exact = self.exact.values();
        exact
            .chain(self.wildcard.values())
            .chain(self.suffix.values())
    }

    /// Every entry with its pattern, for display.
    pub fn iter(&self) -> impl Iterator<Item = (HostPattern, &T)> {
        let exact = self
            .exact
            .iter()
            .map(|(h, v)| (HostPattern::Exact(h.to_string()), v));
        let wildcard = self
            .wildcard
            .iter()
            .map(|(h, v)| (HostPattern::Wildcard(h.to_string()), v));
        let suffix = self
            .suffix
            .iter()
            .map(|(h, v)| (HostPattern::Suffix(h.to_string()), v));
        exact.chain(wildcard).chain(suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(patterns: &[&str]) -> HostMap<String> {
        let mut m = HostMap::default();
        for p in patterns {
            m.insert_first(&HostPattern::parse(Some(p)), p.to_string());
        }
        m
    }

    #[test]
    fn wildcard_covers_exactly_one_label() {
        let m = map(&["*.example.com"]);
        assert_eq!(
            m.get("a.example.com").map(String::as_str),
            Some("*.example.com")
        );
        assert_eq!(m.get("a.b.example.com"), None);
        assert_eq!(m.get("example.com"), None);
    }

    #[test]
    fn exact_beats_wildcard() {
        let m = map(&["*.example.com", "a.example.com"]);
        assert_eq!(
            m.get("a.example.com").map(String::as_str),
            Some("a.example.com")
        );
        assert_eq!(
            m.get("b.example.com").map(String::as_str),
            Some("*.example.com")
        );
    }

    #[test]
    fn gateway_suffixes_cover_any_depth_longest_first() {
        let mut m = HostMap::default();
        m.insert_first(&HostPattern::parse_gateway(Some("*.example.com")), "outer");
        m.insert_first(
            &HostPattern::parse_gateway(Some("*.b.example.com")),
            "inner",
        );
        m.insert_first(&HostPattern::parse(Some("*.c.example.com")), "ingress");
        assert_eq!(m.get("a.example.com"), Some(&"outer"));
        assert_eq!(m.get("x.y.example.com"), Some(&"outer"));
        assert_eq!(m.get("a.b.example.com"), Some(&"inner"));
        assert_eq!(m.get("z.a.b.example.com"), Some(&"inner"));
        assert_eq!(m.get("a.c.example.com"), Some(&"ingress"));
        assert_eq!(m.get("a.a.c.example.com"), Some(&"outer"));
        assert_eq!(m.get("example.com"), None);
    }
}
