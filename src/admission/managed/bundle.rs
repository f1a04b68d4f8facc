//! The `caBundle` of every webhook of the ValidatingWebhookConfiguration
//! (`--validating-webhook-configuration`), kept the managed CA's by the
//! elected replica, so that the API server trusts what the replicas serve.
//!
//! One merge patch sets them all, carrying the `resourceVersion` read:
//! the API server refuses it (409) if the configuration changed since,
//! and the next round reads it again. The configuration is read and
//! patched as untyped JSON, so that fields this build does not know (a
//! newer API server's) go back as they came. Only the `caBundle` of each
//! webhook changes. A configuration that does not exist (not applied
//! yet) is waited for, with a warning.

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};

/// What became of the configuration.
#[derive(Debug, PartialEq, Eq)]
pub enum Kept {
    /// Every webhook's `caBundle` was the CA's already.
    Current,
    /// This many webhooks' `caBundle` were set to the CA's.
    Patched(usize),
    /// There is no such configuration (yet).
    Absent,
}

/// The configuration, by name.
pub struct CaBundle {
    api: Api<DynamicObject>,
    pub name: String,
}

impl CaBundle {
    pub fn new(client: Client, name: String) -> Self {
        let resource = ApiResource::erase::<ValidatingWebhookConfiguration>(&());
        CaBundle {
            api: Api::all_with(client, &resource),
            name,
        }
    }

    /// Sets the `caBundle` of every webhook that differs to `ca` (PEM).
    pub async fn keep(&self, ca: &[u8]) -> Result<Kept, kube::Error> {
        let Some(config) = self.api.get_opt(&self.name).await? else {
            return Ok(Kept::Absent);
        };
        let webhooks = config.data.get("webhooks").cloned().unwrap_or(Value::Null);
        let Some((webhooks, patched)) = with_ca_bundle(&webhooks, ca) else {
            return Ok(Kept::Current);
        };
        let patch = json!({
            "metadata": {"resourceVersion": config.metadata.resource_version},
            "webhooks": webhooks,
        });
        let params = PatchParams::default();
        self.api
            .patch(&self.name, &params, &Patch::Merge(patch))
            .await?;
        Ok(Kept::Patched(patched))
    }
}

impl CaBundle {
    /// What the API server trusts now: the first `caBundle` the
    /// configuration holds, decoded; `None` when it holds none (or does
    /// not exist).
    pub async fn trusted(&self) -> Result<Option<Vec<u8>>, kube::Error> {
        let config = self.api.get_opt(&self.name).await?;
        Ok(config.and_then(|c| trusted_of(c.data.get("webhooks")?)))
    }
}

/// The first `clientConfig.caBundle` of `webhooks`, decoded.
pub fn trusted_of(webhooks: &Value) -> Option<Vec<u8>> {
    let engine = base64::engine::general_purpose::STANDARD;
    webhooks
        .as_array()?
        .iter()
        .filter_map(|w| w.pointer("/clientConfig/caBundle")?.as_str())
        .find_map(|b| engine.decode(b).ok().filter(|b| !b.is_empty()))
}

/// `webhooks` (a configuration's list) with every `clientConfig.caBundle`
/// set to `ca`, and how many changed; `None` when none differs.
pub fn with_ca_bundle(webhooks: &Value, ca: &[u8]) -> Option<(Value, usize)> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut webhooks = webhooks.as_array()?.clone();
    let mut changed = 0;
    for webhook in &mut webhooks {
        let Some(client_config) = webhook
            .get_mut("clientConfig")
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let held = client_config.get("caBundle").and_then(Value::as_str);
        if held.and_then(|b| engine.decode(b).ok()).as_deref() == Some(ca) {
            continue;
        }
        client_config.insert("caBundle".into(), engine.encode(ca).into());
        changed += 1;
    }
    (changed > 0).then_some((Value::Array(webhooks), changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_differing_ca_bundle_changes_and_every_other_field_stays() {
        let engine = base64::engine::general_purpose::STANDARD;
        let webhooks = json!([
            {"name": "a", "clientConfig": {"service": {"name": "s"}, "caBundle": engine.encode("old")},
             "futureField": {"kept": true}},
            {"name": "b", "clientConfig": {"service": {"name": "s"}, "caBundle": engine.encode("new")}},
            {"name": "c", "clientConfig": {"url": "https://x"}},
        ]);
        let (patched, changed) = with_ca_bundle(&webhooks, b"new").expect("a change");
        assert_eq!(changed, 2);
        for webhook in patched.as_array().unwrap() {
            assert_eq!(webhook["clientConfig"]["caBundle"], engine.encode("new"));
        }
        assert_eq!(patched[0]["futureField"], json!({"kept": true}));
        assert_eq!(patched[0]["clientConfig"]["service"], json!({"name": "s"}));
        assert_eq!(patched[2]["clientConfig"]["url"], "https://x");
        assert_eq!(with_ca_bundle(&patched, b"new"), None);
        assert_eq!(with_ca_bundle(&Value::Null, b"new"), None);
        assert_eq!(trusted_of(&webhooks), Some(b"old".to_vec()));
        assert_eq!(trusted_of(&json!([{"clientConfig": {}}])), None);
    }
}
