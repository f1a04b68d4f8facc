//! Regular-expression paths of one host (`use-regex`, `rewrite-target` with
//! capture groups), matched in ingress-nginx's order: longest pattern first,
//! first match wins. One `RegexSet` pass finds every match at once; the
//! `regex` crate runs in linear time, so no pattern can stall a request.

use std::sync::Arc;

use regex::{Regex, RegexSet};

use super::Route;

#[derive(Debug, Default)]
pub struct RegexPaths {
    set: Option<RegexSet>,
    each: Vec<(Regex, Arc<Route>)>,
}

impl RegexPaths {
    /// The first route, in order, whose pattern matches `path`.
    pub fn first_match(&self, path: &str) -> Option<(&Arc<Route>, &Regex)> {
        let index = match &self.set {
            Some(set) => set.matches(path).into_iter().next()?,
            // No set (their combined size passed its limit): one by one.
            None => self
                .each
                .iter()
                .position(|(regex, _)| regex.is_match(path))?,
        };
        let (regex, route) = &self.each[index];
        Some((route, regex))
    }
}

#[derive(Debug, Default)]
pub struct RegexPathsBuilder {
    each: Vec<(Regex, Arc<Route>)>,
}

impl RegexPathsBuilder {
    /// Adds a pattern unless the same path (as written) is already present.
    pub fn add(&mut self, regex: Regex, route: Arc<Route>) -> Result<(), Arc<Route>> {
        if let Some((_, present)) = self.each.iter().find(|(_, r)| r.path == route.path) {
            return Err(present.clone());
        }
        self.each.push((regex, route));
        Ok(())
    }

    pub fn build(mut self) -> RegexPaths {
        if self.each.is_empty() {
            return RegexPaths::default();
        }
        // Stable: equal lengths keep the order translate added them in.
        self.each
            .sort_by_key(|(_, route)| std::cmp::Reverse(route.path.len()));
        let set = RegexSet::new(self.each.iter().map(|(regex, _)| regex.as_str()));
        match set {
            Ok(set) => RegexPaths {
                set: Some(set),
                each: self.each,
            },
            Err(e) => {
                // Each pattern compiled alone; only the combined size limit
                // can refuse the set. The paths stay, matched one by one.
                tracing::debug!("regular-expression paths of a host matched one by one: {e}");
                RegexPaths {
                    set: None,
                    each: self.each,
                }
            }
        }
    }
}
