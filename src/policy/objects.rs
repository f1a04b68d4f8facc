//! The Secrets and ConfigMaps an Ingress's annotations name: how a
//! reference reads (`name` or `namespace/name`), which namespaces it may
//! reach, and which objects a source must keep for them.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::Ingress;

use super::protection::AccessOptions;
use super::Annotations;
use crate::cluster::{KeyedMap, ObjectKey};

/// The Secrets and ConfigMaps an Ingress's annotations may name: its own
/// namespace's, others' only with `--allow-cross-namespace-secrets`.
pub struct ObjectLookup<'a> {
    pub namespace: &'a str,
    pub secrets: &'a KeyedMap<Arc<Secret>>,
    pub config_maps: &'a KeyedMap<Arc<ConfigMap>>,
}

impl ObjectLookup<'_> {
    /// The Secret `reference` (`name` or `namespace/name`) names.
    pub fn secret(
        &self,
        reference: &str,
        options: &AccessOptions,
    ) -> Result<(ObjectKey, &Secret), String> {
        let key = self.key("Secret", reference, options)?;
        match self.secrets.get(&key) {
            Some(secret) => Ok((key, secret)),
            None => Err(format!("Secret {key} not found")),
        }
    }

    /// The ConfigMap `reference` (`name` or `namespace/name`) names.
    pub fn config_map(
        &self,
        reference: &str,
        options: &AccessOptions,
    ) -> Result<(ObjectKey, &ConfigMap), String> {
        let key = self.key("ConfigMap", reference, options)?;
        match self.config_maps.get(&key) {
            Some(map) => Ok((key, map)),
            None => Err(format!("ConfigMap {key} not found")),
        }
    }

    fn key(
        &self,
        kind: &str,
        reference: &str,
        options: &AccessOptions,
    ) -> Result<ObjectKey, String> {
        let key = object_reference(self.namespace, reference)?;
        if key.namespace != self.namespace && !options.cross_namespace_secrets {
            return Err(format!(
                "names {kind} {key} of another namespace, which needs --allow-cross-namespace-secrets"
            ));
        }
        Ok(key)
    }
}

/// The Secrets an Ingress's access annotations name, valid or not, so that
/// a source keeps their data.
pub fn annotation_secret_keys(ingress: &Ingress, our_prefix: &str) -> Vec<ObjectKey> {
    let namespace = ObjectKey::of(&ingress.metadata, true).namespace;
    let annotations = Annotations::new(ingress.metadata.annotations.as_ref(), our_prefix);
    ["auth-secret", "auth-tls-secret"]
        .iter()
        .filter_map(|name| annotations.get(name))
        .filter_map(|(_, reference)| object_reference(&namespace, reference).ok())
        .collect()
}

/// The ConfigMaps an Ingress's access annotations name.
pub fn annotation_config_map_keys(ingress: &Ingress, our_prefix: &str) -> Vec<ObjectKey> {
    let namespace = ObjectKey::of(&ingress.metadata, true).namespace;
    let annotations = Annotations::new(ingress.metadata.annotations.as_ref(), our_prefix);
    annotations
        .get("auth-proxy-set-headers")
        .and_then(|(_, reference)| object_reference(&namespace, reference).ok())
        .into_iter()
        .collect()
}

/// `name` (in `namespace`) or `namespace/name`.
pub fn object_reference(namespace: &str, reference: &str) -> Result<ObjectKey, String> {
    let dns = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    let key = match reference.split_once('/') {
        None => ObjectKey::new(namespace, reference),
        Some((ns, name)) => ObjectKey::new(ns, name),
    };
    if !dns(&key.namespace) || !dns(&key.name) {
        return Err(format!(
            "{reference:?} is not a Secret name or namespace/name"
        ));
    }
    Ok(key)
}
