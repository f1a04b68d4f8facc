//! The orders in progress, recorded where every replica can read them, so
//! that a replica that starts leading mid-order resumes the order instead
//! of placing a second one.
//!
//! One Secret, `gatehouse-acme-orders` in the controller's namespace; the
//! data key `NAMESPACE.NAME` (of the certificate's Secret) holds JSON: the
//! issuer, the names, the order's URL and the certificate's private key
//! (made before the order is placed, so that an order already finalized
//! by the previous leader can still be completed). The record is written
//! before any challenge is answered and removed when the order ends.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use serde::{Deserialize, Serialize};

use super::store::{new_secret, SecretStore, StoreError};
use crate::cluster::ObjectKey;

/// The name of the Secret, in the controller's namespace.
pub const ORDERS_SECRET: &str = "gatehouse-acme-orders";

/// One order in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub issuer: String,
    pub hosts: Vec<String>,
    /// The order's URL at the CA.
    pub order: String,
    /// PEM of the certificate's private key.
    pub key: String,
}

impl Record {
    /// Whether the record is for this issuer and these names.
    pub fn is_for(&self, issuer: &str, hosts: &[String]) -> bool {
        self.issuer == issuer && self.hosts == hosts
    }
}

/// The records, read and written conditionally.
pub struct Orders {
    pub store: SecretStore,
    /// `ORDERS_SECRET` in the controller's namespace.
    pub secret: ObjectKey,
}

fn data_key(certificate: &ObjectKey) -> String {
    format!("{}.{}", certificate.namespace, certificate.name)
}

impl Orders {
    /// The record for the certificate of `certificate`, if any (one that
    /// does not parse counts as none: the order is placed again).
    pub async fn get(&self, certificate: &ObjectKey) -> Result<Option<Record>, StoreError> {
        let Some(secret) = self.store.get(&self.secret).await? else {
            return Ok(None);
        };
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&data_key(certificate)));
        Ok(value.and_then(|v| serde_json::from_slice(&v.0).ok()))
    }

    /// Records `record` for `certificate`.
    pub async fn put(&self, certificate: &ObjectKey, record: &Record) -> Result<(), StoreError> {
        let value = serde_json::to_vec(record)
            .map_err(|e| StoreError::Failed(format!("cannot encode the order record: {e}")))?;
        let key = data_key(certificate);
        self.edit(|data| {
            data.insert(key.clone(), ByteString(value.clone()));
        })
        .await
    }

    /// Removes the record for `certificate`.
    pub async fn remove(&self, certificate: &ObjectKey) -> Result<(), StoreError> {
        let key = data_key(certificate);
        self.edit(|data| {
            data.remove(&key);
        })
        .await
    }

    async fn edit(
        &self,
        change: impl Fn(&mut BTreeMap<String, ByteString>),
    ) -> Result<(), StoreError> {
        edit_secret(&self.store, &self.secret, change).await
    }
}

/// Applies `change` to the data of the Secret `key` (created when absent),
/// reading again when another writer came first; nothing is written when
/// the change changes nothing.
pub async fn edit_secret(
    store: &SecretStore,
    key: &ObjectKey,
    change: impl Fn(&mut BTreeMap<String, ByteString>),
) -> Result<(), StoreError> {
    for _ in 0..5 {
        let written = match store.get(key).await? {
            Some(mut secret) => {
                let data = secret.data.get_or_insert_with(Default::default);
                let before = data.clone();
                change(data);
                if *data == before {
                    return Ok(());
                }
                store.replace(&secret).await
            }
            None => {
                let mut data = BTreeMap::new();
                change(&mut data);
                if data.is_empty() {
                    return Ok(());
                }
                store.create(&new_secret(key, "Opaque", data)).await
            }
        };
        match written {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Failed(format!(
        "Secret {key} kept changing under five attempts"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_record_is_kept_per_certificate_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let orders = Orders {
            store: SecretStore::Directory(
                dir.path().to_owned(),
                tokio::sync::watch::channel(Default::default()).1,
            ),
            secret: ObjectKey::new("gatehouse", ORDERS_SECRET),
        };
        let shop = ObjectKey::new("shop", "shop-tls");
        let blog = ObjectKey::new("blog", "shop-tls");
        let record = Record {
            issuer: "le".into(),
            hosts: vec!["shop.test".into()],
            order: "https://ca.test/order/1".into(),
            key: "PEM".into(),
        };
        assert_eq!(orders.get(&shop).await.unwrap(), None);
        orders.put(&shop, &record).await.unwrap();
        assert_eq!(orders.get(&shop).await.unwrap(), Some(record.clone()));
        assert_eq!(orders.get(&blog).await.unwrap(), None);
        assert!(record.is_for("le", &["shop.test".to_owned()]));
        assert!(!record.is_for("le", &["www.shop.test".to_owned()]));
        orders.remove(&shop).await.unwrap();
        assert_eq!(orders.get(&shop).await.unwrap(), None);
    }
}
