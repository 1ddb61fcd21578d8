//! The credentials listeners expect: the `username` and write-only (`Read(false)`)
//! `password` of a `CIM_ListenerDestination`, given by a CIM-XML client creating it or by
//! a WS-Eventing subscriber in `wst:IssuedTokens` (DSP0226 10.2.2). Each indication to that
//! destination carries them (HTTP Basic). The password is kept in the store by the
//! destination's path, beside the destination instance but never in it: anyone who may
//! read the interop namespace sees the destination.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cim_schema::{Instance, ObjectPath, Value};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::store::{Store, StoreError};

/// A user name and password for an event sink.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkCredentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for SinkCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl SinkCredentials {
    /// Takes the password out of a destination instance about to be stored: the
    /// credentials when it has one (with its `username`, or an empty one).
    pub fn take_from(destination: &mut Instance) -> Option<SinkCredentials> {
        let password = destination.properties.get_mut("password")?.value.take()?;
        let Value::String(password) = password else {
            return None;
        };
        let username = match destination.get("username") {
            Some(Value::String(u)) => u.to_string(),
            _ => String::new(),
        };
        Some(SinkCredentials {
            username,
            password: password.to_string(),
        })
    }
}

/// Sink credentials by destination path (its WBEM URI without host and namespace: the
/// destinations live in the interop namespace), in memory and in the store.
pub struct SinkCredentialTable {
    store: Arc<Store>,
    by_destination: RwLock<HashMap<String, SinkCredentials>>,
}

impl SinkCredentialTable {
    /// Loads what the store holds; unreadable records are skipped with a warning.
    pub fn load(store: Arc<Store>) -> Result<Self, StoreError> {
        let mut by_destination = HashMap::new();
        for (key, record) in store.sink_credentials()? {
            match serde_json::from_slice(&record) {
                Ok(credentials) => {
                    by_destination.insert(key, credentials);
                }
                Err(e) => warn!(destination = key, "unreadable event sink credentials: {e}"),
            }
        }
        Ok(SinkCredentialTable {
            store,
            by_destination: RwLock::new(by_destination),
        })
    }

    /// The credentials of the listener of the destination at `path`, if it has any.
    pub fn get(&self, path: &ObjectPath) -> Option<SinkCredentials> {
        self.by_destination
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key(path))
            .cloned()
    }

    /// Stores `credentials` for the destination at `path`, committed before it returns.
    pub fn set(&self, path: &ObjectPath, credentials: SinkCredentials) -> Result<(), StoreError> {
        let key = key(path);
        let record = serde_json::to_vec(&credentials).expect("credentials serialize");
        self.store.put_sink_credentials(&key, &record)?;
        self.by_destination
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, credentials);
        Ok(())
    }

    /// Forgets the credentials of the destination at `path` (nothing if it has none).
    pub fn remove(&self, path: &ObjectPath) -> Result<(), StoreError> {
        let key = key(path);
        let known = self
            .by_destination
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key)
            .is_some();
        if known {
            self.store.delete_sink_credentials(&key)?;
        }
        Ok(())
    }
}

/// The table key of a destination's path.
fn key(path: &ObjectPath) -> String {
    path.local().to_uri()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_survive_reopening_and_go_with_their_destination() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let destination =
            ObjectPath::class(None, "CIM_ListenerDestinationCIMXML").with_key("Name", "d1");
        let other =
            ObjectPath::class(None, "CIM_ListenerDestinationWSManagement").with_key("Name", "d1");
        let credentials = SinkCredentials {
            username: "u".into(),
            password: "p".into(),
        };
        {
            let table = SinkCredentialTable::load(Arc::new(Store::open(&path).unwrap())).unwrap();
            table.set(&destination, credentials.clone()).unwrap();
            assert_eq!(
                table.get(&other),
                None,
                "another class's destination of that name"
            );
        }
        {
            let table = SinkCredentialTable::load(Arc::new(Store::open(&path).unwrap())).unwrap();
            assert_eq!(table.get(&destination), Some(credentials));
            table.remove(&destination).unwrap();
        }
        let table = SinkCredentialTable::load(Arc::new(Store::open(&path).unwrap())).unwrap();
        assert_eq!(table.get(&destination), None);
    }

    #[test]
    fn the_password_is_taken_out_of_the_instance() {
        let mut destination = Instance::new("CIM_ListenerDestinationCIMXML");
        destination.set("username", Value::from("u"));
        destination.set("password", Value::from("p"));
        let taken = SinkCredentials::take_from(&mut destination).unwrap();
        assert_eq!(
            (taken.username.as_str(), taken.password.as_str()),
            ("u", "p")
        );
        assert_eq!(destination.get("password"), None);
        assert_eq!(destination.get("username"), Some(&Value::from("u")));
        assert!(
            !format!("{taken:?}").contains("\"p\""),
            "the password is not logged"
        );
    }
}
