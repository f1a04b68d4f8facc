//! IngressClass selection: which Ingresses are ours.
//!
//! An Ingress is ours when `spec.ingressClassName` names an IngressClass
//! whose `spec.controller` is our controller, or equals our class name.
//! Without `ingressClassName`, the legacy `kubernetes.io/ingress.class`
//! annotation is read the same way. An Ingress with no class at all is ours
//! when one of our IngressClasses is marked
//! `ingressclass.kubernetes.io/is-default-class: "true"`, or when the
//! controller is told to watch Ingresses without a class.

use crate::cluster::OrderedMap;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};

use super::TranslateOptions;

const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

pub fn is_ours(
    ingress: &Ingress,
    classes: &OrderedMap<String, std::sync::Arc<IngressClass>>,
    options: &TranslateOptions,
) -> bool {
    let named = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ingress
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(LEGACY_CLASS_ANNOTATION))
                .map(String::as_str)
        });
    match named {
        Some(name) => {
            name == options.ingress_class || class_is_ours(classes.get(name).map(|c| &**c), options)
        }
        None => {
            options.watch_ingress_without_class
                || classes
                    .values()
                    .any(|c| class_is_ours(Some(c), options) && is_default_class(c))
        }
    }
}

fn class_is_ours(class: Option<&IngressClass>, options: &TranslateOptions) -> bool {
    class
        .and_then(|c| c.spec.as_ref())
        .and_then(|s| s.controller.as_deref())
        == Some(options.controller_class.as_str())
}

fn is_default_class(class: &IngressClass) -> bool {
    class
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}
