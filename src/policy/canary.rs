//! Canary releases: `canary: "true"` on a second Ingress for the same host
//! and path sends part of the main route's traffic to its backend, as
//! Argo Rollouts and Flagger drive ingress-nginx.
//!
//! The choice, per request, with ingress-nginx's precedence:
//! 1. `canary-by-header`: with `canary-by-header-value`, that exact value
//!    means canary; with `canary-by-header-pattern`, a match of that regular
//!    expression (linear time); otherwise `always` means canary and `never`
//!    means main. Any other value falls through.
//! 2. `canary-by-cookie`: `always` or `never`; other values fall through.
//! 3. `canary-weight` out of `canary-weight-total` (default 100), at random.

use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::parse_bool;
use super::template::cookie;
use super::Annotations;
use crate::cluster::ObjectKey;
use crate::upstream::{Action, Backend, LoadBalance};

/// The annotations this family reads.
pub const ANNOTATIONS: &[&str] = &[
    "canary",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "canary-weight",
    "canary-weight-total",
];

/// Whether a canary Ingress honours an annotation; ingress-nginx ignores
/// the rest there (the main Ingress's apply), and so does Gatehouse, with
/// a warning.
pub fn honoured(name: &str) -> bool {
    ANNOTATIONS.contains(&name)
        || name == "load-balance"
        || super::affinity::ANNOTATIONS.contains(&name)
}

/// When a request goes to the canary.
#[derive(Debug)]
pub struct CanaryRule {
    header: Option<HeaderRule>,
    cookie: Option<String>,
    weight: u32,
    total: u32,
}

#[derive(Debug)]
struct HeaderRule {
    name: HeaderName,
    matching: HeaderMatch,
}

#[derive(Debug)]
enum HeaderMatch {
    /// `always` / `never`.
    Switch,
    Value(HeaderValue),
    Pattern(regex::Regex),
}

/// A route's canary: where its share of the traffic goes.
#[derive(Debug)]
pub struct Canary {
    pub rule: Arc<CanaryRule>,
    pub action: Action,
    /// The canary Ingress.
    pub ingress: ObjectKey,
    pub load_balance: LoadBalance,
}

impl CanaryRule {
    /// Whether an Ingress is a canary (`canary: "true"`).
    pub fn is_canary(annotations: &Annotations<'_>) -> bool {
        annotations
            .get("canary")
            .is_some_and(|(_, v)| parse_bool(v) == Some(true))
    }

    /// The rule of a canary Ingress. A value that does not parse leaves that
    /// part of the rule out, with a note; a canary is never made to take
    /// traffic it was not given.
    pub fn compile(annotations: &Annotations<'_>, notes: &mut Vec<String>) -> CanaryRule {
        let mut note = |key: &str, value: &str, why: &str| {
            notes.push(format!("annotation {key}: {value:?} {why}; ignored"));
        };
        let header = annotations.get("canary-by-header").and_then(|(key, name)| {
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                note(&key, name, "is not a header name");
                return None;
            };
            let matching = if let Some((key, value)) = annotations.get("canary-by-header-value") {
                match HeaderValue::from_str(value) {
                    Ok(v) if !value.is_empty() => HeaderMatch::Value(v),
                    _ => {
                        note(&key, value, "is not a header value");
                        return None;
                    }
                }
            } else if let Some((key, pattern)) = annotations.get("canary-by-header-pattern") {
                match regex::RegexBuilder::new(pattern)
                    .size_limit(1 << 20)
                    .build()
                {
                    Ok(re) if !pattern.is_empty() => HeaderMatch::Pattern(re),
                    _ => {
                        note(&key, pattern, "is not a regular expression");
                        return None;
                    }
                }
            } else {
                HeaderMatch::Switch
            };
            Some(HeaderRule { name, matching })
        });
        let cookie = annotations
            .get("canary-by-cookie")
            .map(|(_, name)| name.to_owned())
            .filter(|name| !name.is_empty());
        let mut number = |name: &str| {
            let (key, value) = annotations.get(name)?;
            match value.parse::<u32>() {
                Ok(n) => Some(n),
                Err(_) => {
                    notes.push(format!(
                        "annotation {key}: {value:?} is not a whole number; ignored"
                    ));
                    None
                }
            }
        };
        // ingress-nginx: a total below 100 counts as 100.
        let total = number("canary-weight-total").unwrap_or(100).max(100);
        let weight = number("canary-weight").unwrap_or(0).min(total);
        CanaryRule {
            header,
            cookie,
            weight,
            total,
        }
    }

    /// The choice phase: whether this request goes to the canary.
    pub fn wants_canary(&self, headers: &HeaderMap) -> bool {
        if let Some(rule) = &self.header {
            if let Some(value) = headers.get(&rule.name) {
                match &rule.matching {
                    HeaderMatch::Value(want) if value == want => return true,
                    HeaderMatch::Pattern(re) if value.to_str().is_ok_and(|v| re.is_match(v)) => {
                        return true
                    }
                    HeaderMatch::Switch if value == "always" => return true,
                    HeaderMatch::Switch if value == "never" => return false,
                    _ => {}
                }
            }
        }
        if let Some(name) = &self.cookie {
            match cookie(headers, name) {
                Some("always") => return true,
                Some("never") => return false,
                _ => {}
            }
        }
        self.weight > 0 && fastrand::u32(1..=self.total) <= self.weight
    }

    /// For `gatehouse routes`: `weight 20/100, header X-Canary, cookie c`.
    pub fn describe(&self) -> String {
        let mut parts = vec![format!("weight {}/{}", self.weight, self.total)];
        if let Some(rule) = &self.header {
            parts.push(match &rule.matching {
                HeaderMatch::Switch => format!("header {}", rule.name),
                HeaderMatch::Value(v) => {
                    format!("header {}={}", rule.name, v.to_str().unwrap_or("?"))
                }
                HeaderMatch::Pattern(re) => format!("header {}~{}", rule.name, re.as_str()),
            });
        }
        if let Some(name) = &self.cookie {
            parts.push(format!("cookie {name}"));
        }
        parts.join(", ")
    }

    pub fn weight(&self) -> (u32, u32) {
        (self.weight, self.total)
    }
}

impl Canary {
    /// The choice phase: the canary's backend and balancing for this
    /// request, or `None` for the main route's.
    pub fn choose(&self, headers: &HeaderMap) -> Option<(&Arc<Backend>, LoadBalance)> {
        let Action::Forward(backend) = &self.action else {
            return None;
        };
        self.rule
            .wants_canary(headers)
            .then_some((backend, self.load_balance))
    }

    pub fn new(
        rule: Arc<CanaryRule>,
        action: Action,
        ingress: ObjectKey,
        load_balance: LoadBalance,
    ) -> Arc<Self> {
        Arc::new(Canary {
            rule,
            action,
            ingress,
            load_balance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::annotations::nginx_annotations;

    fn rule(pairs: &[(&str, &str)]) -> (CanaryRule, Vec<String>) {
        let map = nginx_annotations(pairs);
        let mut notes = Vec::new();
        let rule = CanaryRule::compile(&Annotations::new(Some(&map), "gatehouse.dev"), &mut notes);
        (rule, notes)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn header_always_and_never_beat_cookie_and_weight() {
        let (r, _) = rule(&[
            ("canary-by-header", "X-Canary"),
            ("canary-by-cookie", "canary"),
            ("canary-weight", "100"),
        ]);
        assert!(!r.wants_canary(&headers(&[("x-canary", "never")])));
        assert!(!r.wants_canary(&headers(&[
            ("x-canary", "never"),
            ("cookie", "canary=always")
        ])));
        assert!(
            r.wants_canary(&headers(&[("x-canary", "other")])),
            "falls through to weight 100"
        );
        let (r, _) = rule(&[
            ("canary-by-header", "X-Canary"),
            ("canary-by-cookie", "canary"),
        ]);
        assert!(r.wants_canary(&headers(&[("x-canary", "always")])));
        assert!(r.wants_canary(&headers(&[("cookie", "a=b; canary=always")])));
        assert!(!r.wants_canary(&headers(&[("cookie", "canary=never")])));
        assert!(!r.wants_canary(&headers(&[])), "weight 0");
    }

    #[test]
    fn header_value_and_pattern_replace_always_and_fall_through_otherwise() {
        let (r, _) = rule(&[
            ("canary-by-header", "X-Region"),
            ("canary-by-header-value", "eu"),
        ]);
        assert!(r.wants_canary(&headers(&[("x-region", "eu")])));
        assert!(!r.wants_canary(&headers(&[("x-region", "always")])));
        let (r, _) = rule(&[
            ("canary-by-header", "X-Region"),
            ("canary-by-header-pattern", "^(eu|us)-"),
            ("canary-by-cookie", "c"),
        ]);
        assert!(r.wants_canary(&headers(&[("x-region", "eu-west")])));
        assert!(!r.wants_canary(&headers(&[("x-region", "ap-south")])));
        assert!(r.wants_canary(&headers(&[
            ("x-region", "ap-south"),
            ("cookie", "c=always")
        ])));
    }

    #[test]
    fn weights_split_within_bounds_and_totals_below_100_count_as_100() {
        let (r, _) = rule(&[("canary-weight", "30")]);
        let n = 20_000;
        let hits = (0..n).filter(|_| r.wants_canary(&HeaderMap::new())).count();
        let share = hits as f64 / n as f64;
        assert!((share - 0.30).abs() < 0.02, "{share}");
        let (r, _) = rule(&[("canary-weight", "5"), ("canary-weight-total", "10")]);
        assert_eq!(r.weight(), (5, 100));
        let (r, _) = rule(&[("canary-weight", "500"), ("canary-weight-total", "1000")]);
        assert_eq!(r.weight(), (500, 1000));
    }

    #[test]
    fn bad_values_leave_the_part_out() {
        let (r, notes) = rule(&[("canary-by-header", "X Bad"), ("canary-weight", "lots")]);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(!r.wants_canary(&headers(&[])));
        assert_eq!(r.describe(), "weight 0/100");
    }
}
