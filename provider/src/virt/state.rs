//! How a VM's lifecycle state reads in CIM (DSP1057 and libvirt-cim's conventions).

use hypervisor_shim::lifecycle::State;

/// The state properties of a KVM_ComputerSystem.
pub struct CimState {
    /// EnabledState: 2 Enabled, 3 Disabled, 4 Shutting Down, 6 Enabled but Offline (saved),
    /// 9 Quiesce (paused), 10 Starting.
    pub enabled_state: u16,
    /// HealthState: 5 OK, 20 Major Failure.
    pub health_state: u16,
    /// OperationalStatus: 2 OK, 6 Error, 15 Dormant.
    pub operational_status: u16,
}

impl CimState {
    /// The CIM reading of a lifecycle state.
    pub fn of(state: State) -> CimState {
        let (enabled_state, health_state, operational_status) = match state {
            State::Running | State::Saving => (2, 5, 2),
            State::Paused => (9, 5, 2),
            State::ShuttingDown => (4, 5, 2),
            State::Starting | State::Restoring => (10, 5, 2),
            State::Saved => (6, 5, 15),
            State::Defined | State::Off => (3, 5, 15),
            State::Crashed => (3, 20, 6),
        };
        CimState {
            enabled_state,
            health_state,
            operational_status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_dsp1057_says() {
        assert_eq!(CimState::of(State::Running).enabled_state, 2);
        assert_eq!(CimState::of(State::Paused).enabled_state, 9);
        assert_eq!(CimState::of(State::Saved).enabled_state, 6);
        let crashed = CimState::of(State::Crashed);
        assert_eq!(
            (
                crashed.enabled_state,
                crashed.health_state,
                crashed.operational_status
            ),
            (3, 20, 6)
        );
    }
}
