//! The enumerated arguments of the extrinsic methods, each decoded once into its type: the
//! RequestedState of a VM, a console or a job, CreateSnapshot's SnapshotType and
//! SetPowerState's PowerState. A value of the wrong CIM type is an invalid parameter; a
//! value the method defines but this host does not offer decodes as such, for the method's
//! Not Supported return code.

use std::time::Duration;

use cim_schema::{DateTime, Name, Value};

use crate::vm::definition::RequestedState;
use crate::vm::manager::Change;
use cimom::error::{CimError, CimResult};

/// How long RequestStateChange(4) waits for the guest when the client gives no timeout.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// The value of argument `name` (in any case), if given and not NULL.
pub(super) fn argument<'a>(
    arguments: &'a [(Name, Option<Value>)],
    name: &str,
) -> Option<&'a Value> {
    arguments
        .iter()
        .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_ref())
}

/// A uint16 argument, which must be given.
fn required_uint16(arguments: &[(Name, Option<Value>)], name: &str) -> CimResult<u16> {
    match argument(arguments, name) {
        Some(Value::UInt16(v)) => Ok(*v),
        other => Err(CimError::invalid_parameter(format!(
            "{name} (uint16) is required, not {other:?}"
        ))),
    }
}

/// RequestStateChange of a VM (DSP1057): the state asked for, and the change that makes
/// it, or `None` for a state DSP1057 defines that this host does not offer (Test,
/// Deferred, Not Applicable, and numbers it does not define).
pub(super) fn vm_state_change(
    arguments: &[(Name, Option<Value>)],
) -> CimResult<Option<(RequestedState, Change)>> {
    let number = required_uint16(arguments, "RequestedState")?;
    let timeout = match argument(arguments, "TimeoutPeriod") {
        Some(Value::DateTime(DateTime::Interval(i))) => Some(i.to_duration()),
        _ => None,
    };
    let Ok(requested) = RequestedState::try_from(number) else {
        return Ok(None);
    };
    let change = match requested {
        RequestedState::Enabled => Change::Enable,
        RequestedState::Disabled => Change::Disable,
        RequestedState::ShutDown => Change::ShutDown(timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT)),
        RequestedState::Offline => Change::Offline,
        RequestedState::Quiesce => Change::Quiesce,
        RequestedState::Reboot => Change::Reboot,
        RequestedState::Reset => Change::Reset,
        RequestedState::Unknown
        | RequestedState::NoChange
        | RequestedState::Test
        | RequestedState::Deferred
        | RequestedState::NotApplicable => return Ok(None),
    };
    Ok(Some((requested, change)))
}

/// RequestStateChange of a VM's console (its KVM_TextRedirectionSAP): whether it is to
/// be enabled (2) or disabled (3); `None` for any other state.
pub(super) fn console_state_change(arguments: &[(Name, Option<Value>)]) -> CimResult<Option<bool>> {
    let number = required_uint16(arguments, "RequestedState")?;
    Ok(match RequestedState::try_from(number) {
        Ok(RequestedState::Enabled) => Some(true),
        Ok(RequestedState::Disabled) => Some(false),
        _ => None,
    })
}

/// What RequestStateChange asks of a job (CIM_ConcreteJob, DSP1103).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JobRequest {
    /// 4 Terminate or 5 Kill: the job is cancelled.
    Cancel,
    /// 2 Start, 3 Suspend, 6 Service and anything else: not offered.
    Other(u16),
}

/// RequestStateChange of a job.
pub(super) fn job_state_change(arguments: &[(Name, Option<Value>)]) -> CimResult<JobRequest> {
    Ok(match required_uint16(arguments, "RequestedState")? {
        4 | 5 => JobRequest::Cancel,
        other => JobRequest::Other(other),
    })
}

/// CreateSnapshot's SnapshotType: whether the VM is powered off after a full snapshot
/// (libvirt-cim's 32769), or `None` for a type not offered (3, a disk snapshot: VMs' disks
/// are not snapshotted).
pub(super) fn snapshot_then_stop(arguments: &[(Name, Option<Value>)]) -> Option<bool> {
    match argument(arguments, "SnapshotType") {
        // 2 Full Snapshot (DMTF) and libvirt-cim's 32768, the same.
        None | Some(Value::UInt16(2 | 32768)) => Some(false),
        Some(Value::UInt16(32769)) => Some(true),
        Some(_) => None,
    }
}

/// SetPowerState's PowerState, as the RequestStateChange it maps to: 1 Full Power starts
/// or resumes, 5 Power Cycle resets, 6 Power Off turns off; `None` for the other states
/// and for a scheduled Time.
pub(super) fn power_state(
    arguments: &[(Name, Option<Value>)],
) -> CimResult<Option<(RequestedState, Change)>> {
    // CIM_ComputerSystem declares it uint32, CIM_LogicalDevice uint16.
    let state = match argument(arguments, "PowerState") {
        Some(Value::UInt16(v)) => u32::from(*v),
        Some(Value::UInt32(v)) => *v,
        other => {
            return Err(CimError::invalid_parameter(format!(
                "PowerState is required, not {other:?}"
            )))
        }
    };
    if argument(arguments, "Time").is_some() {
        return Ok(None);
    }
    Ok(match state {
        1 => Some((RequestedState::Enabled, Change::Enable)),
        5 => Some((RequestedState::Reset, Change::Reset)),
        6 => Some((RequestedState::Disabled, Change::Disable)),
        _ => None,
    })
}

/// KillJob's DeleteOnKill.
pub(super) fn delete_on_kill(arguments: &[(Name, Option<Value>)]) -> bool {
    matches!(
        argument(arguments, "DeleteOnKill"),
        Some(Value::Boolean(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cim_schema::Interval;

    fn args(values: &[(&str, Value)]) -> Vec<(Name, Option<Value>)> {
        values
            .iter()
            .map(|(n, v)| (Name::new(n), Some(v.clone())))
            .collect()
    }

    #[test]
    fn a_vm_state_change_is_a_typed_request_and_its_change() {
        let decoded = vm_state_change(&args(&[("requestedstate", Value::UInt16(9))])).unwrap();
        assert_eq!(decoded, Some((RequestedState::Quiesce, Change::Quiesce)));
        let shutdown = vm_state_change(&args(&[
            ("RequestedState", Value::UInt16(4)),
            (
                "TimeoutPeriod",
                Value::DateTime(DateTime::Interval(Interval::from_duration(
                    Duration::from_secs(5),
                ))),
            ),
        ]))
        .unwrap();
        assert_eq!(
            shutdown,
            Some((
                RequestedState::ShutDown,
                Change::ShutDown(Duration::from_secs(5))
            ))
        );
        for offered_nowhere in [1, 7, 8, 12, 32768] {
            let decoded =
                vm_state_change(&args(&[("RequestedState", Value::UInt16(offered_nowhere))]));
            assert_eq!(decoded.unwrap(), None, "{offered_nowhere}");
        }
        assert!(vm_state_change(&args(&[("RequestedState", Value::UInt32(2))])).is_err());
        assert!(vm_state_change(&[]).is_err());
    }

    #[test]
    fn consoles_jobs_snapshots_and_power_states_decode_to_what_they_ask() {
        let state = |n| args(&[("RequestedState", Value::UInt16(n))]);
        assert_eq!(console_state_change(&state(3)).unwrap(), Some(false));
        assert_eq!(console_state_change(&state(9)).unwrap(), None);
        assert_eq!(job_state_change(&state(5)).unwrap(), JobRequest::Cancel);
        assert_eq!(job_state_change(&state(2)).unwrap(), JobRequest::Other(2));
        assert_eq!(snapshot_then_stop(&[]), Some(false));
        assert_eq!(
            snapshot_then_stop(&args(&[("SnapshotType", Value::UInt16(32769))])),
            Some(true)
        );
        assert_eq!(
            snapshot_then_stop(&args(&[("SnapshotType", Value::UInt16(3))])),
            None
        );
        assert_eq!(
            power_state(&args(&[("PowerState", Value::UInt32(6))])).unwrap(),
            Some((RequestedState::Disabled, Change::Disable))
        );
        assert_eq!(
            power_state(&args(&[("PowerState", Value::UInt16(2))])).unwrap(),
            None
        );
        assert!(power_state(&[]).is_err());
        assert!(delete_on_kill(&args(&[(
            "DeleteOnKill",
            Value::Boolean(true)
        )])));
    }
}
