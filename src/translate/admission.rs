//! Admission: what translate says of one object, as a yes or no.
//!
//! The admission webhook and `gatehouse routes` both translate the object
//! with the state it would join and read the warnings about it through
//! `Verdict::of`: one rule, so that the lint and the webhook answer alike.
//! A warning refuses the object when the object would not be served as
//! written in a way its author cannot see from the outside: a route closed
//! (a protection that cannot be enforced), a snippet that is not applied,
//! an annotation value or path that does not parse, a host its namespace
//! may not use; conflicts too when asked. Everything else translate serves
//! with a warning, and so admission allows it with that warning.

use std::collections::BTreeSet;

use foldhash::HashSet;

use super::{build, is_ours, Reuse, TranslateOptions, Translation, Warning, WarningKind};
use crate::cluster::{ClusterState, Object, ObjectKey};

/// How strict admission is beyond what closes or drops a route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdmissionOptions {
    /// `--admission-reject-conflicts`: refuse an Ingress whose host+path
    /// (or default backend) another Ingress already serves. Off by
    /// default: a rename needs both Ingresses for a moment.
    pub reject_conflicts: bool,
}

/// Translate's answer about one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Why the object is refused, one reason per warning; empty: allowed.
    pub refusals: Vec<String>,
    /// What is served differently than written, allowed.
    pub warnings: Vec<String>,
}

impl Verdict {
    /// The verdict on `kind` `key` from the warnings of a translation that
    /// holds it.
    pub fn of(
        warnings: &[Warning],
        kind: &str,
        key: &ObjectKey,
        options: AdmissionOptions,
    ) -> Self {
        let mut verdict = Verdict::default();
        // A message once, however many hosts or paths raised it.
        let mut seen = BTreeSet::new();
        let about = warnings
            .iter()
            .filter(|w| w.object == kind && w.ingress == *key)
            .filter(|w| seen.insert((w.kind, &w.message)));
        for warning in about {
            match refuses(warning.kind, options) {
                true => verdict.refusals.push(warning.message.clone()),
                false => verdict.warnings.push(warning.message.clone()),
            }
        }
        verdict
    }

    pub fn allowed(&self) -> bool {
        self.refusals.is_empty()
    }

    /// The refusal as the API server shows it: the object, then each
    /// reason (which names the field or annotation).
    pub fn message(&self, kind: &str, key: &ObjectKey) -> String {
        format!(
            "Gatehouse refuses {kind} {key}: {}",
            self.refusals.join("; ")
        )
    }
}

/// The verdict on each Ingress of ours in a whole translation: what the
/// webhook would answer for each, had it arrived last.
pub fn verdicts(translation: &Translation, options: AdmissionOptions) -> Vec<(ObjectKey, Verdict)> {
    let keys = translation.summaries.keys();
    keys.map(|key| {
        let verdict = Verdict::of(&translation.warnings, "Ingress", key, options);
        (key.clone(), verdict)
    })
    .collect()
}

/// Whether a warning of this kind refuses the object.
fn refuses(kind: WarningKind, options: AdmissionOptions) -> bool {
    match kind {
        WarningKind::ProtectionDenied
        | WarningKind::SnippetRefused
        | WarningKind::InvalidAnnotation
        | WarningKind::InvalidPath
        | WarningKind::HostNotOwned => true,
        WarningKind::RouteConflict | WarningKind::DefaultBackendConflict => {
            options.reject_conflicts
        }
        _ => false,
    }
}

/// The verdict on `candidate` put into `state` (which already holds it,
/// as a watch would deliver it), translating only the Ingresses of
/// `scope` (all of them when `None`) and every Gateway API object. An
/// Ingress of another class is allowed untouched.
pub fn judge(
    state: &ClusterState,
    options: &TranslateOptions,
    admission: AdmissionOptions,
    candidate: &Object,
    scope: Option<&HashSet<ObjectKey>>,
) -> Verdict {
    if let Object::Ingress(ingress) = candidate {
        if !is_ours(ingress, &state.ingress_classes, options) {
            return Verdict::default();
        }
    }
    let translation = translate_scope(state, options, scope);
    Verdict::of(
        &translation.warnings,
        candidate.kind(),
        &candidate.key(),
        admission,
    )
}

/// A translation of the Ingresses of `scope` alone, with nothing reused.
fn translate_scope(
    state: &ClusterState,
    options: &TranslateOptions,
    scope: Option<&HashSet<ObjectKey>>,
) -> Translation {
    build::build(state, options, &Reuse::default(), scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warning(kind: WarningKind, message: &str) -> Warning {
        Warning {
            object: kind.object(),
            ingress: ObjectKey::new("shop", "web"),
            kind,
            message: message.into(),
        }
    }

    #[test]
    fn what_closes_drops_or_misreads_a_route_refuses_and_the_rest_warns() {
        let key = ObjectKey::new("shop", "web");
        let warnings = [
            warning(WarningKind::ProtectionDenied, "closed"),
            warning(WarningKind::SnippetRefused, "snippet"),
            warning(WarningKind::InvalidAnnotation, "bad value"),
            warning(WarningKind::InvalidPath, "bad regex"),
            warning(WarningKind::HostNotOwned, "not yours"),
            warning(WarningKind::RouteConflict, "taken"),
            warning(WarningKind::MissingService, "no service yet"),
            warning(WarningKind::UnsupportedAnnotation, "mirror-target"),
        ];
        let lenient = Verdict::of(&warnings, "Ingress", &key, AdmissionOptions::default());
        assert_eq!(
            lenient.refusals,
            ["closed", "snippet", "bad value", "bad regex", "not yours"]
        );
        assert_eq!(
            lenient.warnings,
            ["taken", "no service yet", "mirror-target"]
        );
        let strict = AdmissionOptions {
            reject_conflicts: true,
        };
        let strict = Verdict::of(&warnings, "Ingress", &key, strict);
        assert!(strict.refusals.contains(&"taken".to_owned()));
        assert!(!strict.allowed());
    }

    #[test]
    fn only_the_objects_own_warnings_count_once_each() {
        let key = ObjectKey::new("shop", "web");
        let mut other = warning(WarningKind::ProtectionDenied, "closed");
        other.ingress = ObjectKey::new("shop", "other");
        let twice = warning(WarningKind::MissingService, "no service");
        let verdict = Verdict::of(
            &[other, twice.clone(), twice],
            "Ingress",
            &key,
            AdmissionOptions::default(),
        );
        assert!(verdict.allowed());
        assert_eq!(verdict.warnings, ["no service"]);
    }
}
