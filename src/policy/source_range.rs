//! Source ranges: `denylist-source-range`, and `allowlist-source-range`
//! (or its older spelling `whitelist-source-range`; the newer one wins).
//!
//! ingress-nginx writes them as nginx `deny` lines first, then `allow`
//! lines and a final `deny all` when there is an allowlist; the first line
//! that matches the client decides. With only a denylist, a client it does
//! not name matches nothing, which matters under `satisfy: any`.

use std::net::IpAddr;

use ipnet::IpNet;

use super::protection::Problems;
use super::Annotations;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceRanges {
    allow: Option<Vec<IpNet>>,
    deny: Vec<IpNet>,
}

/// What the source ranges say about a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No line matched (only a denylist, which does not name the client).
    NoMatch,
    Allowed,
    Refused,
}

impl SourceRanges {
    /// The ranges an Ingress sets, if any; a list that does not parse is a
    /// problem (the Ingress is closed), never an open route.
    /// Without an annotation, the controller ConfigMap's list (`options`)
    /// applies, as in ingress-nginx.
    pub fn compile(
        annotations: &Annotations<'_>,
        options: &super::AccessOptions,
        problems: &mut Problems,
    ) -> Option<Self> {
        let mut list = |name: &str| {
            let (key, value) = annotations.get(name)?;
            match parse_cidrs(value) {
                Ok(nets) => Some(nets),
                Err(why) => {
                    problems.add(&key, format!("{value:?} {why}"));
                    None
                }
            }
        };
        let allow = match (
            annotations.get("allowlist-source-range"),
            annotations.get("whitelist-source-range"),
        ) {
            (None, None) => options.default_allow.clone(),
            _ => list("allowlist-source-range").or_else(|| list("whitelist-source-range")),
        };
        let deny = match annotations.get("denylist-source-range") {
            None => options.default_deny.clone(),
            Some(_) => list("denylist-source-range").unwrap_or_default(),
        };
        (allow.is_some() || !deny.is_empty()).then_some(SourceRanges { allow, deny })
    }

    /// nginx `allow` (true) and `deny` rules, in order (`None` is
    /// `all`), when they have the shape these ranges hold: denials, then
    /// allowances, then `deny all` (or `allow all`, or nothing after the
    /// denials). Any other order is `None`: the first rule that matches
    /// decides in nginx, and these ranges could not say the same.
    pub fn from_rules(rules: &[(bool, Option<IpNet>)]) -> Option<Self> {
        let split = rules
            .iter()
            .position(|(allow, _)| *allow)
            .unwrap_or(rules.len());
        let (denials, rest) = rules.split_at(split);
        let mut deny = Vec::new();
        for (_, net) in denials {
            match net {
                Some(net) => deny.push(*net),
                // `deny all` ends the list: nothing after it is reached.
                None => {
                    return Some(SourceRanges {
                        allow: Some(Vec::new()),
                        deny,
                    })
                }
            }
        }
        let mut allow = Vec::new();
        for (i, (allowed, net)) in rest.iter().enumerate() {
            let last = i + 1 == rest.len();
            match (allowed, net) {
                (true, Some(net)) => allow.push(*net),
                (true, None) => {
                    let everyone = ["0.0.0.0/0", "::/0"].map(|n| n.parse::<IpNet>().ok());
                    allow.extend(everyone.into_iter().flatten());
                    return Some(SourceRanges {
                        allow: Some(allow),
                        deny,
                    });
                }
                (false, None) if last => {
                    return Some(SourceRanges {
                        allow: Some(allow),
                        deny,
                    })
                }
                (false, _) => return None,
            }
        }
        // Allowances with nothing after them leave the others unmatched,
        // which these ranges cannot say.
        (rest.is_empty() && !deny.is_empty()).then_some(SourceRanges { allow: None, deny })
    }

    pub fn verdict(&self, client: IpAddr) -> Verdict {
        let client = crate::connection::canonical_ip(client);
        if self.deny.iter().any(|net| net.contains(&client)) {
            return Verdict::Refused;
        }
        match &self.allow {
            Some(nets) if nets.iter().any(|net| net.contains(&client)) => Verdict::Allowed,
            Some(_) => Verdict::Refused,
            None => Verdict::NoMatch,
        }
    }

    /// Short names for the access column: `allowlist`, `denylist`.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        if self.allow.is_some() {
            kinds.push("allowlist");
        }
        if !self.deny.is_empty() {
            kinds.push("denylist");
        }
        kinds
    }

    pub fn allowed(&self) -> Option<&[IpNet]> {
        self.allow.as_deref()
    }

    pub fn denied(&self) -> &[IpNet] {
        &self.deny
    }
}

/// A comma-separated list of CIDRs or bare addresses.
pub fn parse_cidrs(value: &str) -> Result<Vec<IpNet>, String> {
    let nets = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("has {s:?}, which is not an IP address or CIDR"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if nets.is_empty() {
        return Err("lists no network".into());
    }
    Ok(nets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::annotations::nginx_annotations;

    fn compile(pairs: &[(&str, &str)]) -> (Option<SourceRanges>, Problems) {
        let map = nginx_annotations(pairs);
        let mut problems = Problems::default();
        let ranges = SourceRanges::compile(
            &Annotations::new(Some(&map), "gatehouse.dev"),
            &crate::policy::AccessOptions::default(),
            &mut problems,
        );
        (ranges, problems)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nginx_rules_in_the_order_ranges_hold_them_are_read_and_others_not() {
        let net = |s: &str| Some(s.parse::<IpNet>().unwrap());
        let rules = [
            (false, net("10.1.0.0/16")),
            (true, net("10.0.0.0/8")),
            (false, None),
        ];
        let ranges = SourceRanges::from_rules(&rules).unwrap();
        assert_eq!(ranges.verdict(ip("10.2.0.1")), Verdict::Allowed);
        assert_eq!(ranges.verdict(ip("10.1.0.1")), Verdict::Refused);
        assert_eq!(ranges.verdict(ip("192.0.2.1")), Verdict::Refused);
        let deny_only = SourceRanges::from_rules(&[(false, net("192.0.2.0/24"))]).unwrap();
        assert_eq!(deny_only.verdict(ip("198.51.100.1")), Verdict::NoMatch);
        let everyone = SourceRanges::from_rules(&[(false, net("192.0.2.0/24")), (true, None)]);
        assert_eq!(
            everyone.unwrap().verdict(ip("2001:db8::1")),
            Verdict::Allowed
        );
        let nobody = SourceRanges::from_rules(&[(false, None), (true, net("10.0.0.0/8"))]);
        assert_eq!(nobody.unwrap().verdict(ip("10.0.0.1")), Verdict::Refused);
        // An allowance before a denial, or allowances alone, decide
        // differently in nginx: not read.
        assert!(SourceRanges::from_rules(&[
            (true, net("10.0.0.0/8")),
            (false, net("10.1.0.0/16"))
        ])
        .is_none());
        assert!(SourceRanges::from_rules(&[(true, net("10.0.0.0/8"))]).is_none());
    }

    #[test]
    fn the_denylist_is_checked_before_the_allowlist() {
        let (ranges, _) = compile(&[
            ("allowlist-source-range", "10.0.0.0/8"),
            ("denylist-source-range", "10.1.0.0/16"),
        ]);
        let ranges = ranges.unwrap();
        assert_eq!(ranges.verdict(ip("10.2.3.4")), Verdict::Allowed);
        assert_eq!(ranges.verdict(ip("10.1.3.4")), Verdict::Refused);
        assert_eq!(ranges.verdict(ip("192.0.2.1")), Verdict::Refused);
    }

    #[test]
    fn a_denylist_alone_matches_only_the_clients_it_names() {
        let (ranges, _) = compile(&[("denylist-source-range", "192.0.2.0/24")]);
        let ranges = ranges.unwrap();
        assert_eq!(ranges.verdict(ip("192.0.2.9")), Verdict::Refused);
        assert_eq!(ranges.verdict(ip("198.51.100.1")), Verdict::NoMatch);
    }

    #[test]
    fn ipv4_clients_on_dual_stack_sockets_match_ipv4_ranges() {
        let (ranges, _) = compile(&[("whitelist-source-range", "192.0.2.0/24")]);
        let ranges = ranges.unwrap();
        assert_eq!(ranges.verdict(ip("::ffff:192.0.2.7")), Verdict::Allowed);
    }

    #[test]
    fn allowlist_wins_over_whitelist() {
        let (ranges, _) = compile(&[
            ("whitelist-source-range", "10.0.0.0/8"),
            ("allowlist-source-range", "2001:db8::/32"),
        ]);
        let ranges = ranges.unwrap();
        assert_eq!(ranges.verdict(ip("10.0.0.1")), Verdict::Refused);
        assert_eq!(ranges.verdict(ip("2001:db8::1")), Verdict::Allowed);
    }

    #[test]
    fn a_list_that_does_not_parse_is_a_problem_not_an_open_route() {
        let (ranges, problems) = compile(&[("whitelist-source-range", "10.0.0.0/8, banana")]);
        assert!(ranges.is_none());
        assert_eq!(problems.len(), 1);
        assert!(problems.iter().next().unwrap().reason.contains("banana"));
    }
}
