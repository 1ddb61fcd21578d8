//! The VM lifecycle state machine. Every request is checked against it before anything is
//! done, so an invalid transition is refused with the state it was refused in.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a VM is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Configured, no process.
    Defined,
    /// The VM process is building the machine.
    Starting,
    /// vCPUs are running guest code.
    Running,
    /// vCPUs are stopped; memory and devices are kept.
    Paused,
    /// The guest has been asked to power off and has not yet.
    ShuttingDown,
    /// State is being written out; the process ends when it is done.
    Saving,
    /// Memory and device state are on disk; no process.
    Saved,
    /// A new process is loading a saved state or snapshot.
    Restoring,
    /// Powered off; no process.
    Off,
    /// The guest or its process failed; no process.
    Crashed,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = serde_json::to_value(self).ok();
        f.write_str(name.as_ref().and_then(|v| v.as_str()).unwrap_or("unknown"))
    }
}

/// What a client can ask of a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Start a new process with a fresh boot.
    Start,
    /// Stop the vCPUs.
    Pause,
    /// Run the vCPUs again.
    Resume,
    /// Ask the guest to power off.
    Shutdown,
    /// Power off now.
    Stop,
    /// Hardware reset, in the same process.
    Reset,
    /// Restart the guest, in the same process.
    Reboot,
    /// Write the state to disk and end the process.
    Save,
    /// Write the state to disk and go on.
    Snapshot,
    /// Start a new process from a saved state or snapshot.
    Restore,
}

/// An action the current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action:?} a VM that is {state}")]
pub struct InvalidTransition {
    /// The state the VM was in.
    pub state: State,
    /// What was asked.
    pub action: Action,
}

impl State {
    /// Whether a VM process exists in this state.
    pub fn has_process(self) -> bool {
        matches!(
            self,
            State::Starting
                | State::Running
                | State::Paused
                | State::ShuttingDown
                | State::Saving
                | State::Restoring
        )
    }

    /// The state `action` moves to (its transient state where it has one), or why not.
    pub fn apply(self, action: Action) -> Result<State, InvalidTransition> {
        use Action as A;
        use State as S;
        let next = match (self, action) {
            (S::Defined | S::Off | S::Crashed, A::Start) => S::Starting,
            (S::Running, A::Pause) => S::Paused,
            (S::Paused, A::Resume) => S::Running,
            (S::Running, A::Shutdown) => S::ShuttingDown,
            (S::Starting | S::Running | S::Paused | S::ShuttingDown, A::Stop) => S::Off,
            (S::Running | S::Paused | S::ShuttingDown, A::Reset | A::Reboot) => S::Running,
            (S::Running | S::Paused, A::Save) => S::Saving,
            (S::Running | S::Paused, A::Snapshot) => self,
            (S::Defined | S::Saved | S::Off | S::Crashed | S::Running | S::Paused, A::Restore) => {
                S::Restoring
            }
            (state, action) => return Err(InvalidTransition { state, action }),
        };
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_paths_are_allowed() {
        let s = State::Defined.apply(Action::Start).unwrap();
        assert_eq!(s, State::Starting);
        assert_eq!(State::Running.apply(Action::Pause), Ok(State::Paused));
        assert_eq!(State::Paused.apply(Action::Resume), Ok(State::Running));
        assert_eq!(State::Paused.apply(Action::Save), Ok(State::Saving));
        assert_eq!(State::Saved.apply(Action::Restore), Ok(State::Restoring));
        assert_eq!(
            State::Running.apply(Action::Shutdown),
            Ok(State::ShuttingDown)
        );
        assert_eq!(State::ShuttingDown.apply(Action::Stop), Ok(State::Off));
        assert_eq!(State::Paused.apply(Action::Snapshot), Ok(State::Paused));
        assert_eq!(State::Crashed.apply(Action::Start), Ok(State::Starting));
    }

    #[test]
    fn invalid_transitions_are_refused_with_their_state() {
        let err = State::Paused.apply(Action::Pause).unwrap_err();
        assert_eq!(err.to_string(), "cannot Pause a VM that is paused");
        assert!(State::Off.apply(Action::Resume).is_err());
        assert!(
            State::Saved.apply(Action::Start).is_err(),
            "a saved VM is restored, not booted"
        );
        assert!(
            State::Paused.apply(Action::Shutdown).is_err(),
            "a paused guest cannot answer"
        );
        assert!(State::Saving.apply(Action::Snapshot).is_err());
        assert!(State::Defined.apply(Action::Stop).is_err());
    }
}
