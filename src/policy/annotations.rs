//! The annotations of one Ingress, read under our prefix (`gatehouse.dev/`,
//! `--annotations-prefix`) and ingress-nginx's; ours wins when both are set.

use std::collections::BTreeMap;

pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io";

/// The longest annotation value read. Kubernetes allows 256 KiB for all of
/// an object's annotations together; no setting needs a fraction of that,
/// and a longer value is ignored (a protective one closes the Ingress), so
/// that one Ingress cannot make every table build slow or large.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct Annotations<'a> {
    all: Option<&'a BTreeMap<String, String>>,
    ours: &'a str,
}

impl<'a> Annotations<'a> {
    pub fn new(all: Option<&'a BTreeMap<String, String>>, ours: &'a str) -> Self {
        Annotations { all, ours }
    }

    /// The trimmed value of `name` and the key it was found under; none
    /// when it is longer than [`MAX_VALUE_BYTES`] (see `oversized`).
    pub fn get(&self, name: &str) -> Option<(String, &'a str)> {
        let all = self.all?;
        [self.ours, NGINX_PREFIX].iter().find_map(|prefix| {
            let key = format!("{prefix}/{name}");
            all.get(&key)
                .filter(|v| v.len() <= MAX_VALUE_BYTES)
                .map(|v| (key, v.trim()))
        })
    }

    /// The value of `name`, parsed; one that does not parse is ignored
    /// with a note that names the annotation, its value and why.
    pub fn parsed<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
        notes: &mut Vec<String>,
    ) -> Option<T> {
        let (key, value) = self.get(name)?;
        parse(value)
            .map_err(|why| notes.push(format!("annotation {key}: {value:?} {why}; ignored")))
            .ok()
    }

    /// The trimmed value under exactly `key` (with its prefix), within
    /// [`MAX_VALUE_BYTES`].
    pub fn value(&self, key: &str) -> Option<&'a str> {
        let value = self.all?.get(key)?;
        (value.len() <= MAX_VALUE_BYTES).then(|| value.trim())
    }

    /// Annotations under either prefix whose value is too long to be read,
    /// as (key, name without prefix, length).
    pub fn oversized(&self) -> impl Iterator<Item = (&'a str, &'a str, usize)> + '_ {
        let all = self.all;
        self.ours_and_nginx().filter_map(move |(key, name)| {
            let len = all?.get(key)?.len();
            (len > MAX_VALUE_BYTES).then_some((key, name, len))
        })
    }

    /// Every annotation under either prefix, as (key, name without prefix).
    pub fn ours_and_nginx(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        let prefixes = [self.ours, NGINX_PREFIX];
        self.all.into_iter().flatten().filter_map(move |(key, _)| {
            let name = prefixes
                .iter()
                .find_map(|p| key.strip_prefix(p).and_then(|k| k.strip_prefix('/')))?;
            Some((key.as_str(), name))
        })
    }
}

/// Annotations under ingress-nginx's prefix, for tests.
/// Go's `strconv.ParseBool`, which ingress-nginx uses.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
pub fn nginx_annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (format!("{NGINX_PREFIX}/{k}"), v.to_string()))
        .collect()
}
