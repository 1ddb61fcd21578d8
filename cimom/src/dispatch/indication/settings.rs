//! How indications are retried and what becomes of a subscription whose listener stays
//! unreachable: CIM_IndicationService's DeliveryRetryAttempts, DeliveryRetryInterval,
//! SubscriptionRemovalAction and SubscriptionRemovalTimeInterval (DSP1054), which an
//! administrator changes with ModifyInstance on the service. Kept in the store.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cim_schema::{Instance, Name, Value};
use serde::{Deserialize, Serialize};

use crate::error::{CimError, CimResult};
use crate::store::{Store, StoreError};

/// The store key of the settings.
const STORE_KEY: &str = "indication_service";

/// What happens to the subscriptions of a destination that has failed for longer than
/// SubscriptionRemovalTimeInterval (CIM_IndicationService.SubscriptionRemovalAction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemovalAction {
    /// 2: they are deleted.
    Remove,
    /// 3: their SubscriptionState becomes Disabled (4) until a client enables them.
    Disable,
    /// 4: nothing; delivery goes on being tried.
    Ignore,
}

impl RemovalAction {
    /// The ValueMap value.
    pub fn code(self) -> u16 {
        match self {
            RemovalAction::Remove => 2,
            RemovalAction::Disable => 3,
            RemovalAction::Ignore => 4,
        }
    }

    fn from_code(code: u16) -> Option<Self> {
        match code {
            2 => Some(RemovalAction::Remove),
            3 => Some(RemovalAction::Disable),
            4 => Some(RemovalAction::Ignore),
            _ => None,
        }
    }
}

/// The delivery settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverySettings {
    /// Tries after the first (DeliveryRetryAttempts).
    pub retry_attempts: u16,
    /// The least time between two tries to one destination, in seconds
    /// (DeliveryRetryInterval).
    pub retry_interval_secs: u32,
    /// SubscriptionRemovalAction.
    pub removal_action: RemovalAction,
    /// SubscriptionRemovalTimeInterval, in seconds.
    pub removal_interval_secs: u32,
}

impl Default for DeliverySettings {
    /// A listener that is down for five minutes (a restart, a network blip) loses
    /// nothing; one that is gone for a day has its subscriptions disabled.
    fn default() -> Self {
        DeliverySettings {
            retry_attempts: 30,
            retry_interval_secs: 10,
            removal_action: RemovalAction::Disable,
            removal_interval_secs: 86_400,
        }
    }
}

impl DeliverySettings {
    /// The least time between two tries.
    pub fn retry_interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.retry_interval_secs))
    }

    /// How long an indication is tried before it is given up: every retry, an interval
    /// apart, after the first try.
    pub fn retry_window(&self) -> Duration {
        self.retry_interval() * u32::from(self.retry_attempts)
    }

    /// How long a sequence identifier stays meaningful to a listener: ten retry windows
    /// (DSP1054 7.10, as OpenPegasus computes it).
    pub fn sequence_lifetime(&self) -> Duration {
        self.retry_window() * 10
    }

    /// How long a destination may fail, with no success between, before the removal
    /// action applies.
    pub fn removal_interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.removal_interval_secs))
    }

    /// The service's properties that show these settings.
    pub fn properties(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("DeliveryRetryAttempts", Value::UInt16(self.retry_attempts)),
            (
                "DeliveryRetryInterval",
                Value::UInt32(self.retry_interval_secs),
            ),
            (
                "SubscriptionRemovalAction",
                Value::UInt16(self.removal_action.code()),
            ),
            (
                "SubscriptionRemovalTimeInterval",
                Value::UInt32(self.removal_interval_secs),
            ),
        ]
    }

    /// These settings with the properties of `instance` that `property_list` names (all
    /// when `None`) applied. A NULL, a value out of range, or a change to any other
    /// property is refused: nothing else of the service can be set.
    pub fn modified(
        &self,
        current: &Instance,
        instance: &Instance,
        property_list: Option<&[Name]>,
    ) -> CimResult<DeliverySettings> {
        let mut next = *self;
        let named = |name: &str| property_list.is_none_or(|l| l.iter().any(|n| n == name));
        for (name, property) in &instance.properties {
            if !named(name.as_str()) {
                continue;
            }
            let value = property.value.as_ref();
            let invalid = || {
                CimError::invalid_parameter(format!(
                    "{name}: {value:?} is not a value the indication service accepts"
                ))
            };
            match (name.as_str(), value) {
                (n, Some(Value::UInt16(v))) if n.eq_ignore_ascii_case("DeliveryRetryAttempts") => {
                    next.retry_attempts = *v
                }
                (n, Some(Value::UInt32(v))) if n.eq_ignore_ascii_case("DeliveryRetryInterval") => {
                    if *v == 0 {
                        return Err(invalid());
                    }
                    next.retry_interval_secs = *v
                }
                (n, Some(Value::UInt16(v)))
                    if n.eq_ignore_ascii_case("SubscriptionRemovalAction") =>
                {
                    next.removal_action = RemovalAction::from_code(*v).ok_or_else(invalid)?
                }
                (n, Some(Value::UInt32(v)))
                    if n.eq_ignore_ascii_case("SubscriptionRemovalTimeInterval") =>
                {
                    next.removal_interval_secs = *v
                }
                (n, _)
                    if [
                        "DeliveryRetryAttempts",
                        "DeliveryRetryInterval",
                        "SubscriptionRemovalAction",
                        "SubscriptionRemovalTimeInterval",
                    ]
                    .iter()
                    .any(|s| n.eq_ignore_ascii_case(s)) =>
                {
                    return Err(invalid())
                }
                // Everything else must stay as it is.
                (_, value) if current.get(name.as_str()) == value => {}
                _ => {
                    return Err(CimError::not_supported(format!(
                        "{name} of the indication service cannot be changed"
                    )))
                }
            }
        }
        Ok(next)
    }
}

/// The settings in force, shared by the interop provider that shows and changes them and
/// the dispatcher that follows them.
pub struct IndicationSettings {
    store: Arc<Store>,
    current: RwLock<DeliverySettings>,
}

impl IndicationSettings {
    /// The stored settings, or the defaults.
    pub fn load(store: Arc<Store>) -> Result<Self, StoreError> {
        let current = match store.setting(STORE_KEY)? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("unreadable indication service settings, defaults used: {e}");
                DeliverySettings::default()
            }),
            None => DeliverySettings::default(),
        };
        Ok(IndicationSettings {
            store,
            current: RwLock::new(current),
        })
    }

    /// The settings now.
    pub fn get(&self) -> DeliverySettings {
        *self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `settings` (committed before it returns) and puts them in force.
    pub fn set(&self, settings: DeliverySettings) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(&settings).expect("settings serialize");
        self.store.put_setting(STORE_KEY, &bytes)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = settings;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(values: &[(&str, Value)]) -> Instance {
        let mut i = Instance::new("CIM_IndicationService");
        for (name, value) in values {
            i.set(*name, value.clone());
        }
        i
    }

    #[test]
    fn the_defaults_keep_five_minutes_of_outage() {
        let d = DeliverySettings::default();
        assert_eq!(d.retry_window(), Duration::from_secs(300));
        assert_eq!(d.sequence_lifetime(), Duration::from_secs(3000));
    }

    #[test]
    fn an_administrator_changes_the_four_settings_and_nothing_else() {
        let d = DeliverySettings::default();
        let current = service(&[("ElementName", Value::from("x"))]);
        let change = service(&[
            ("DeliveryRetryAttempts", Value::UInt16(5)),
            ("DeliveryRetryInterval", Value::UInt32(2)),
            ("SubscriptionRemovalAction", Value::UInt16(2)),
            ("SubscriptionRemovalTimeInterval", Value::UInt32(60)),
            ("ElementName", Value::from("x")),
        ]);
        let next = d.modified(&current, &change, None).unwrap();
        assert_eq!(
            (
                next.retry_attempts,
                next.retry_interval_secs,
                next.removal_action,
                next.removal_interval_secs
            ),
            (5, 2, RemovalAction::Remove, 60)
        );
        let renamed = service(&[("ElementName", Value::from("y"))]);
        assert!(d.modified(&current, &renamed, None).is_err());
        let zero = service(&[("DeliveryRetryInterval", Value::UInt32(0))]);
        assert!(d.modified(&current, &zero, None).is_err());
        let other = service(&[("SubscriptionRemovalAction", Value::UInt16(1))]);
        assert!(d.modified(&current, &other, None).is_err());
        let only = [Name::from("DeliveryRetryAttempts")];
        let next = d.modified(&current, &change, Some(&only)).unwrap();
        assert_eq!((next.retry_attempts, next.retry_interval_secs), (5, 10));
    }
}
