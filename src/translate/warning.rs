//! Warnings: what translate could not use, and why, naming the object.

use std::fmt;

use crate::cluster::ObjectKey;

/// What kind of problem a warning reports; stable, for metrics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    MissingService,
    MissingServicePort,
    UnsupportedBackend,
    MissingSecret,
    InvalidSecret,
    InvalidPath,
    RouteConflict,
    TlsConflict,
    InvalidAnnotation,
    UnsupportedAnnotation,
    SnippetRefused,
    DefaultBackendConflict,
    /// A protective annotation cannot be enforced: the routes answer 503.
    ProtectionDenied,
    /// A protective annotation cannot be enforced and
    /// `--unsupported-protection warn` serves the routes without it.
    ProtectionNotEnforced,
    /// A canary Ingress's host+path has no main route.
    CanaryUnmatched,
    /// A key of the controller ConfigMap is unknown, not implemented or
    /// has a bad value (the warning names the ConfigMap, not an Ingress).
    ConfigMapKey,
    /// `--host-ownership namespace`: a rule or TLS entry for a host of
    /// another namespace was refused.
    HostNotOwned,
    /// A Gateway listener is not served, or its certificate cannot be used
    /// (the warning names the Gateway).
    GatewayListener,
    /// An HTTPRoute is not accepted by a Gateway it names.
    RouteNotAccepted,
    /// An HTTPRoute's backend or filter cannot be used: the share or rule
    /// answers 500.
    RouteRefs,
    /// An HTTPRoute serves a host that Ingress rules serve too.
    HostShared,
    /// An Ingress or a Gateway asks for an ACME certificate that cannot be
    /// requested (unknown issuer, wildcard or overlong host, no
    /// `secretName`, a listener without a hostname, left to cert-manager).
    AcmeRequest,
    /// An entry of the ACME challenge Secret is not an answer (the
    /// warning names the Secret).
    AcmeChallenges,
}

/// A problem with one Ingress. Other objects are unaffected by it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Warning {
    /// The kind of the object the warning concerns: `Ingress`, `ConfigMap`
    /// (`ConfigMapKey`), `Gateway`, `HTTPRoute` or `GRPCRoute`.
    pub object: &'static str,
    /// The object the warning concerns (an Ingress unless `object` says
    /// otherwise).
    pub ingress: ObjectKey,
    pub kind: WarningKind,
    pub message: String,
}

impl WarningKind {
    /// The kind of object a warning of this kind concerns, unless said
    /// otherwise (a GRPCRoute's route warnings).
    pub fn object(self) -> &'static str {
        match self {
            WarningKind::ConfigMapKey => "ConfigMap",
            WarningKind::AcmeChallenges => "Secret",
            WarningKind::GatewayListener => "Gateway",
            WarningKind::RouteNotAccepted | WarningKind::RouteRefs | WarningKind::HostShared => {
                "HTTPRoute"
            }
            _ => "Ingress",
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.object, self.ingress, self.message)
    }
}

impl serde::Serialize for ObjectKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
