//! Where the ACME manager (and the keeper of the admission webhook's own
//! certificate) reads and writes Secrets: the API server, or a
//! `--manifests` directory. Every write is conditional, as the API server
//! makes it: `create` fails when the object exists, `replace` when its
//! `resourceVersion` is not the one read. A writer that lost a race (a
//! stale leader, a second replica) therefore never overwrites what another
//! wrote; it reads again and decides again.
//!
//! In a directory, each object the manager writes is a file of its own,
//! `acme.NAMESPACE.NAME.yaml`, written whole to a temporary name and
//! renamed, so the directory's watcher never reads half a file. Its
//! `resourceVersion` is a counter in the file. Objects the operator wrote
//! in other files are never rewritten here; where one defines the same
//! Secret, the source takes the one written here (and says so).

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};

use crate::cluster::ObjectKey;
use crate::source::files::WRITTEN_PREFIX;
use crate::source::StateReceiver;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else wrote first: read again.
    #[error("changed by another writer since it was read")]
    Conflict,
    #[error("{0}")]
    Failed(String),
}

/// The Secrets the manager reads and writes, wherever they live.
#[derive(Clone)]
pub enum SecretStore {
    Kube(kube::Client),
    /// The directory, and the state the source reads from it: a Secret
    /// the manager has not written yet (an EAB key, a certificate the
    /// operator put there) is read from the state, at version `0`.
    Directory(PathBuf, StateReceiver),
}

/// The version of a Secret the directory holds only in an operator's file:
/// replacing it writes the manager's own file.
const NOT_WRITTEN: &str = "0";

impl SecretStore {
    /// The Secret, with its `resourceVersion`, or `None` when absent.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Secret>, StoreError> {
        match self {
            SecretStore::Kube(client) => api(client, key)
                .get_opt(&key.name)
                .await
                .map_err(kube_error),
            SecretStore::Directory(dir, states) => {
                let path = dir.join(file_name(key));
                let text = match tokio::fs::read_to_string(&path).await {
                    Ok(text) => text,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let state = states.borrow().clone();
                        let mut secret = state.secrets.get(key).map(|s| Secret::clone(s));
                        if let Some(secret) = &mut secret {
                            secret.metadata.resource_version = Some(NOT_WRITTEN.to_owned());
                        }
                        return Ok(secret);
                    }
                    Err(e) => return Err(StoreError::Failed(format!("{}: {e}", path.display()))),
                };
                serde_yaml_ng::from_str(&text)
                    .map(Some)
                    .map_err(|e| StoreError::Failed(format!("{}: {e}", path.display())))
            }
        }
    }

    /// Creates `secret` (its namespace and name set), failing with
    /// `Conflict` when it exists.
    pub async fn create(&self, secret: &Secret) -> Result<Secret, StoreError> {
        let key = key_of(secret)?;
        match self {
            SecretStore::Kube(client) => api(client, &key)
                .create(&PostParams::default(), secret)
                .await
                .map_err(kube_error),
            SecretStore::Directory(dir, _) => {
                let path = dir.join(file_name(&key));
                if tokio::fs::try_exists(&path).await.unwrap_or(true) {
                    return Err(StoreError::Conflict);
                }
                write_file(dir, &key, secret, 1).await
            }
        }
    }

    /// Replaces the Secret whose `resourceVersion` `secret` carries,
    /// failing with `Conflict` when it has changed since.
    pub async fn replace(&self, secret: &Secret) -> Result<Secret, StoreError> {
        let key = key_of(secret)?;
        let Some(version) = secret.metadata.resource_version.as_deref() else {
            return Err(StoreError::Failed(format!(
                "Secret {key}: a replace needs the resourceVersion it was read at"
            )));
        };
        match self {
            SecretStore::Kube(client) => api(client, &key)
                .replace(&key.name, &PostParams::default(), secret)
                .await
                .map_err(kube_error),
            SecretStore::Directory(dir, _) => {
                let current = self.get(&key).await?.ok_or(StoreError::Conflict)?;
                if current.metadata.resource_version.as_deref() != Some(version) {
                    return Err(StoreError::Conflict);
                }
                let next = version.parse::<u64>().unwrap_or(0) + 1;
                write_file(dir, &key, secret, next).await
            }
        }
    }
}

/// A new Secret `key` of `type_` holding `data`.
pub fn new_secret(key: &ObjectKey, type_: &str, data: BTreeMap<String, ByteString>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            namespace: Some(key.namespace.clone()),
            name: Some(key.name.clone()),
            ..ObjectMeta::default()
        },
        type_: Some(type_.to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

fn api(client: &kube::Client, key: &ObjectKey) -> Api<Secret> {
    Api::namespaced(client.clone(), &key.namespace)
}

fn kube_error(error: kube::Error) -> StoreError {
    match error {
        kube::Error::Api(e) if e.code == 409 => StoreError::Conflict,
        other => StoreError::Failed(other.to_string()),
    }
}

fn key_of(secret: &Secret) -> Result<ObjectKey, StoreError> {
    match (&secret.metadata.namespace, &secret.metadata.name) {
        (Some(namespace), Some(name)) => Ok(ObjectKey::new(namespace, name)),
        _ => Err(StoreError::Failed(
            "a Secret to write needs a namespace and a name".to_owned(),
        )),
    }
}

/// The file a directory store keeps `key` in.
pub fn file_name(key: &ObjectKey) -> String {
    format!("{WRITTEN_PREFIX}{}.{}.yaml", key.namespace, key.name)
}

async fn write_file(
    dir: &std::path::Path,
    key: &ObjectKey,
    secret: &Secret,
    version: u64,
) -> Result<Secret, StoreError> {
    let mut secret = secret.clone();
    secret.metadata.resource_version = Some(version.to_string());
    // k8s-openapi writes `apiVersion` and `kind` itself.
    let mut text = serde_yaml_ng::to_string(&secret)
        .map_err(|e| StoreError::Failed(format!("Secret {key}: {e}")))?;
    text.insert_str(0, "# Written by Gatehouse; edits are overwritten.\n");
    // Not a manifest name: the watcher ignores it until the rename.
    let temporary = dir.join(format!(".{}.tmp", file_name(key)));
    let path = dir.join(file_name(key));
    let failed = |e: std::io::Error| StoreError::Failed(format!("{}: {e}", path.display()));
    tokio::fs::write(&temporary, text).await.map_err(failed)?;
    tokio::fs::rename(&temporary, &path).await.map_err(failed)?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::ByteString;

    fn secret(value: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                namespace: Some("shop".into()),
                name: Some("shop-tls".into()),
                ..ObjectMeta::default()
            },
            data: Some([("k".to_owned(), ByteString(value.as_bytes().to_vec()))].into()),
            ..Secret::default()
        }
    }

    #[tokio::test]
    async fn a_directory_store_refuses_a_second_create_and_a_stale_replace() {
        let dir = tempfile::tempdir().unwrap();
        let (_states, receiver) = tokio::sync::watch::channel(Default::default());
        let store = SecretStore::Directory(dir.path().to_owned(), receiver);
        let key = ObjectKey::new("shop", "shop-tls");
        assert!(store.get(&key).await.unwrap().is_none());

        let first = store.create(&secret("one")).await.unwrap();
        assert!(matches!(
            store.create(&secret("two")).await,
            Err(StoreError::Conflict)
        ));
        let read = store.get(&key).await.unwrap().unwrap();
        assert_eq!(
            read.metadata.resource_version,
            first.metadata.resource_version
        );
        assert_eq!(read.data, secret("one").data);

        // Two writers read the same version; the second one loses.
        let mut a = read.clone();
        a.data = secret("a").data;
        let mut b = read;
        b.data = secret("b").data;
        store.replace(&a).await.unwrap();
        assert!(matches!(store.replace(&b).await, Err(StoreError::Conflict)));
        assert_eq!(
            store.get(&key).await.unwrap().unwrap().data,
            secret("a").data
        );

        // The file is a manifest the directory source reads.
        let text = std::fs::read_to_string(dir.path().join(file_name(&key))).unwrap();
        let objects = crate::source::manifest::parse(&text).unwrap();
        assert_eq!(objects.len(), 1);
    }

    #[tokio::test]
    async fn a_directory_store_reads_an_operators_secret_and_replaces_it_with_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = crate::cluster::ClusterState::default();
        state.insert(crate::cluster::Object::Secret(std::sync::Arc::new(secret(
            "operator",
        ))));
        let (_states, receiver) = tokio::sync::watch::channel(std::sync::Arc::new(state));
        let store = SecretStore::Directory(dir.path().to_owned(), receiver);
        let key = ObjectKey::new("shop", "shop-tls");
        let read = store
            .get(&key)
            .await
            .unwrap()
            .expect("the operator's Secret");
        assert_eq!(read.data, secret("operator").data);
        assert_eq!(read.metadata.resource_version.as_deref(), Some(NOT_WRITTEN));
        let mut mine = read.clone();
        mine.data = secret("issued").data;
        store.replace(&mine).await.unwrap();
        // A second writer that read the operator's copy comes too late.
        assert!(matches!(
            store.replace(&read).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(
            store.get(&key).await.unwrap().unwrap().data,
            secret("issued").data
        );
    }
}
