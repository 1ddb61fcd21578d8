//! The credentials listeners expect: the `username` and write-only (`Read(false)`)
//! `password` of a `CIM_ListenerDestination`, given by a CIM-XML client creating it or by
//! a WS-Eventing subscriber in `wst:IssuedTokens` (DSP0226 10.2.2). Each indication to that
//! destination carries them (HTTP Basic). The password is kept in the store by destination
//! name, beside the destination instance but never in it: anyone who may read the interop
//! namespace sees the destination.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cim_schema::{Instance, Value};
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

/// Sink credentials by destination name (`CIM_ListenerDestination.Name`), in memory and
/// in the store.
pub struct SinkCredentialTable {
    store: Arc<Store>,
    by_destination: RwLock<HashMap<String, SinkCredentials>>,
}

impl SinkCredentialTable {
    /// Loads what the store holds; unreadable records are skipped with a warning.
    pub fn load(store: Arc<Store>) -> Result<Self, StoreError> {
        let mut by_destination = HashMap::new();
        for (name, record) in store.sink_credentials()? {
            match serde_json::from_slice(&record) {
                Ok(credentials) => {
                    by_destination.insert(name, credentials);
                }
                Err(e) => warn!(destination = name, "unreadable event sink credentials: {e}"),
            }
        }
        Ok(SinkCredentialTable {
            store,
            by_destination: RwLock::new(by_destination),
        })
    }

    /// The credentials of the sink of destination `name`, if it has any.
    pub fn get(&self, name: &str) -> Option<SinkCredentials> {
        self.by_destination
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Stores `credentials` for destination `name`, committed before it returns.
    pub fn set(&self, name: &str, credentials: SinkCredentials) -> Result<(), StoreError> {
        let record = serde_json::to_vec(&credentials).expect("credentials serialize");
        self.store.put_sink_credentials(name, &record)?;
        self.by_destination
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), credentials);
        Ok(())
    }

    /// Forgets the credentials of destination `name` (nothing if it has none).
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        let known = self
            .by_destination
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .is_some();
        if known {
            self.store.delete_sink_credentials(name)?;
        }
        Ok(())
    }
}
