//! What counts as a protection (an annotation that restricts who may reach
//! a route), what to do when one cannot be enforced
//! (`--unsupported-protection`), and the problems that close an Ingress's
//! routes. Every protective family compiles against these.

use std::fmt;

/// What to do with a protective annotation Gatehouse cannot enforce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtectionMode {
    /// Close the Ingress's routes (503).
    #[default]
    Deny,
    /// Serve them without that protection, with a warning.
    Warn,
}

/// The controller-wide settings access compilation depends on.
#[derive(Clone, Debug, Default)]
pub struct AccessOptions {
    pub unsupported_protection: ProtectionMode,
    /// `--allow-cross-namespace-secrets`: annotations may name Secrets of
    /// other namespaces (`namespace/name`).
    pub cross_namespace_secrets: bool,
    /// The controller ConfigMap's `whitelist-source-range`, for Ingresses
    /// without an allowlist of their own.
    pub default_allow: Option<Vec<ipnet::IpNet>>,
    /// Its `denylist-source-range`, likewise.
    pub default_deny: Vec<ipnet::IpNet>,
    /// What the controller ConfigMap asks to protect every route with and
    /// cannot be enforced: those routes are closed.
    pub closed: Vec<GlobalClosure>,
    /// `--allow-snippet-annotations`, or the ConfigMap key of that name.
    pub allow_snippets: bool,
    /// The ConfigMap's `annotations-risk-level`, when it sets one.
    pub risk_level: Option<RiskLevel>,
}

impl AccessOptions {
    /// Whether snippet annotations are read. ingress-nginx rates them
    /// Critical: an `annotations-risk-level` below that refuses them even
    /// when they are allowed.
    pub fn snippets_allowed(&self) -> bool {
        self.allow_snippets
            && self
                .risk_level
                .is_none_or(|level| level == RiskLevel::Critical)
    }
}

/// ingress-nginx's `annotations-risk-level`: annotations rated above it
/// are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskLevel {
    pub fn parse(value: &str) -> Result<RiskLevel, String> {
        match value {
            "Low" => Ok(RiskLevel::Low),
            "Medium" => Ok(RiskLevel::Medium),
            "High" => Ok(RiskLevel::High),
            "Critical" => Ok(RiskLevel::Critical),
            _ => Err("is not Low, Medium, High or Critical".into()),
        }
    }
}

/// A controller-wide protection that cannot be enforced.
#[derive(Clone, Debug)]
pub struct GlobalClosure {
    pub reason: String,
    /// `global-auth-url`: an Ingress opts out with `enable-global-auth: "false"`.
    pub global_auth: bool,
    /// Annotations that replace the setting: an Ingress with one of its
    /// own is not closed by it.
    pub replaced_by: &'static [&'static str],
}

/// Protective annotations besides every `auth-*`.
const PROTECTIVE: &[&str] = &[
    "whitelist-source-range",
    "allowlist-source-range",
    "denylist-source-range",
    "satisfy",
    "enable-modsecurity",
    "enable-owasp-core-rules",
    "modsecurity-transaction-id",
];

/// Protective annotations that Gatehouse enforces, or accepts because they
/// change nothing here (`auth-keepalive*` tunes connections to an external
/// auth service).
const ENFORCED: &[&str] = &[
    "whitelist-source-range",
    "allowlist-source-range",
    "denylist-source-range",
    "satisfy",
    "auth-type",
    "auth-secret",
    "auth-secret-type",
    "auth-realm",
    "auth-url",
    "auth-method",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-response-headers",
    "auth-request-redirect",
    "auth-cache-key",
    "auth-cache-duration",
    "auth-always-set-cookie",
    "auth-proxy-set-headers",
    "auth-tls-secret",
    "auth-tls-verify-client",
    "auth-tls-verify-depth",
    "auth-tls-error-page",
    "auth-tls-pass-certificate-to-upstream",
    "auth-tls-match-cn",
];

/// Whether an annotation (name without prefix) restricts who may reach a
/// route.
pub fn is_protective(name: &str) -> bool {
    name.starts_with("auth-") || PROTECTIVE.contains(&name)
}

pub(super) fn is_enforced(name: &str) -> bool {
    ENFORCED.contains(&name) || name.starts_with("auth-keepalive")
}

/// One reason an Ingress's protection cannot be enforced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The annotation, with its prefix.
    pub annotation: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.annotation, self.reason)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn add(&mut self, annotation: &str, reason: String) {
        self.0.push(Problem {
            annotation: annotation.to_owned(),
            reason,
        });
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }
}
