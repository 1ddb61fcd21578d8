//! What happens to a VM when cimvirtd starts: left as it is, started if it was running when
//! it stopped unasked, or always started; after a delay, in a sequence.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::definition::RequestedState;

/// What happens to a VM when cimvirtd starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartupAction {
    /// The VM is left as it is.
    #[default]
    None,
    /// Started if it was running (last asked to be enabled) when it stopped unasked, as
    /// when the host went down.
    RestartIfActive,
    /// Started whenever it is not running.
    Always,
}

/// A VM's automatic start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartupPolicy {
    /// What happens when cimvirtd starts.
    pub action: StartupAction,
    /// How long after cimvirtd's start, in milliseconds.
    pub delay_ms: u64,
    /// Its place in the order of automatic starts (lower first; then by name).
    pub sequence: u16,
}

impl StartupPolicy {
    /// Whether a VM whose last accepted request was `requested_state` and that is not
    /// running now is started automatically.
    pub fn starts(&self, requested_state: RequestedState) -> bool {
        match self.action {
            StartupAction::None => false,
            StartupAction::RestartIfActive => requested_state == RequestedState::Enabled,
            StartupAction::Always => true,
        }
    }

    /// How long after cimvirtd's start.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_action_starts_the_vms_it_names() {
        let policy = |action| StartupPolicy {
            action,
            ..StartupPolicy::default()
        };
        assert!(!policy(StartupAction::None).starts(RequestedState::Enabled));
        let if_active = policy(StartupAction::RestartIfActive);
        assert!(if_active.starts(RequestedState::Enabled));
        assert!(!if_active.starts(RequestedState::Disabled));
        assert!(policy(StartupAction::Always).starts(RequestedState::Disabled));
    }
}
