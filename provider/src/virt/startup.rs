//! The VSSD's view of a VM's automatic start: DSP1057's AutomaticStartupAction with its
//! delay and sequence number, and libvirt-cim's AutoStart; and the VSSD properties of host
//! events this host cannot act on, which are refused unless they ask for what happens
//! anyway.

use std::time::Duration;

use cim_schema::{DateTime, Instance, Interval, Value};

use super::properties::{invalid, unsigned_property};
use crate::vm::startup::{StartupAction, StartupPolicy};
use cimom::error::{CimError, CimResult, StatusCode};

/// AutomaticStartupAction's value of `action`.
pub fn action_code(action: StartupAction) -> u16 {
    match action {
        StartupAction::None => 2,
        StartupAction::RestartIfActive => 3,
        StartupAction::Always => 4,
    }
}

/// The action of an AutomaticStartupAction value.
fn action_of_code(code: u64) -> Option<StartupAction> {
    [
        StartupAction::None,
        StartupAction::RestartIfActive,
        StartupAction::Always,
    ]
    .into_iter()
    .find(|action| u64::from(action_code(*action)) == code)
}

/// What happens to a VM when the host shuts down (AutomaticShutdownAction 2, Turn Off: the
/// VM process ends with the host; cimvirtd does not save or shut guests down).
pub const SHUTDOWN_ACTION_TURN_OFF: u16 = 2;
/// What happens when a guest crashes (AutomaticRecoveryAction 2, None: it stays crashed).
pub const RECOVERY_ACTION_NONE: u16 = 2;

/// The delay of `policy` as a DSP0004 interval (AutomaticStartupActionDelay).
pub fn delay_interval(policy: &StartupPolicy) -> Interval {
    Interval::from_duration(policy.delay())
}

/// Applies the startup properties a VSSD gives to `policy` (those it leaves out stay), and
/// refuses host-event actions this host does not take.
pub fn apply_startup(policy: &mut StartupPolicy, vssd: &Instance) -> CimResult<()> {
    let action = match unsigned_property(vssd, "AutomaticStartupAction")? {
        Some(code) => Some(action_of_code(code).ok_or_else(|| {
            invalid(format!(
                "AutomaticStartupAction {code}: 2 (None), 3 (Restart if previously active) \
                 or 4 (Always startup)"
            ))
        })?),
        None => None,
    };
    // libvirt-cim's AutoStart: 1 starts the VM with the host, 0 does not.
    let auto_start = match unsigned_property(vssd, "AutoStart")? {
        Some(0) => Some(false),
        Some(1) => Some(true),
        Some(other) => return Err(invalid(format!("AutoStart {other}: 0 or 1"))),
        None => None,
    };
    match (action, auto_start) {
        (Some(a), Some(on)) if (a == StartupAction::Always) != on => {
            return Err(invalid(format!(
                "AutoStart {} contradicts AutomaticStartupAction {}",
                u8::from(on),
                action_code(a)
            )))
        }
        (Some(a), _) => policy.action = a,
        (None, Some(true)) => policy.action = StartupAction::Always,
        (None, Some(false)) => policy.action = StartupAction::None,
        (None, None) => {}
    }
    if let Some(delay) = interval_property(vssd, "AutomaticStartupActionDelay")? {
        policy.delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    }
    if let Some(n) = unsigned_property(vssd, "AutomaticStartupActionSequenceNumber")? {
        policy.sequence = u16::try_from(n)
            .map_err(|_| invalid(format!("AutomaticStartupActionSequenceNumber {n}")))?;
    }
    for (property, only, meaning) in [
        (
            "AutomaticShutdownAction",
            SHUTDOWN_ACTION_TURN_OFF,
            "VMs are turned off with the host (2)",
        ),
        (
            "AutomaticRecoveryAction",
            RECOVERY_ACTION_NONE,
            "a crashed VM stays crashed (2)",
        ),
    ] {
        if let Some(v) = unsigned_property(vssd, property)? {
            if v != u64::from(only) {
                return Err(CimError::new(
                    StatusCode::NotSupported,
                    format!("{property} {v} is not supported: {meaning}"),
                ));
            }
        }
    }
    Ok(())
}

/// A datetime interval property, given as a datetime or as its string form.
fn interval_property(instance: &Instance, name: &str) -> CimResult<Option<Duration>> {
    let interval = match instance.get(name) {
        None => return Ok(None),
        Some(Value::DateTime(DateTime::Interval(i))) => *i,
        Some(Value::String(s)) => match DateTime::parse(s.trim()) {
            Ok(DateTime::Interval(i)) => i,
            _ => return Err(invalid(format!("{name} {s:?} is not a datetime interval"))),
        },
        Some(other) => {
            return Err(invalid(format!(
                "{name} must be a datetime interval, not {other:?}"
            )))
        }
    };
    Ok(Some(interval.to_duration()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virt::properties::instance;
    use crate::vm::definition::RequestedState;

    fn vssd(props: &[(&str, Value)]) -> Instance {
        instance("KVM_VirtualSystemSettingData", props)
    }

    #[test]
    fn startup_actions_delays_and_autostart_are_read() {
        let mut p = StartupPolicy::default();
        apply_startup(
            &mut p,
            &vssd(&[
                ("AutomaticStartupAction", Value::UInt16(3)),
                (
                    "AutomaticStartupActionDelay",
                    "00000000000130.500000:000".into(),
                ),
                ("AutomaticStartupActionSequenceNumber", Value::UInt16(7)),
            ]),
        )
        .unwrap();
        assert_eq!(
            p,
            StartupPolicy {
                action: StartupAction::RestartIfActive,
                delay_ms: 90_500,
                sequence: 7
            }
        );
        assert_eq!(
            DateTime::Interval(delay_interval(&p)).to_string(),
            "00000000000130.500000:000"
        );
        assert!(p.starts(RequestedState::Enabled) && !p.starts(RequestedState::Disabled));
        apply_startup(&mut p, &vssd(&[("AutoStart", Value::UInt16(1))])).unwrap();
        assert_eq!(p.action, StartupAction::Always);
        assert!(p.starts(RequestedState::Disabled));
        apply_startup(&mut p, &vssd(&[("AutoStart", Value::UInt16(0))])).unwrap();
        assert_eq!(p.action, StartupAction::None);
        assert_eq!(p.delay_ms, 90_500, "what a VSSD leaves out stays");
    }

    #[test]
    fn what_cannot_be_honoured_is_refused() {
        let mut p = StartupPolicy::default();
        for props in [
            vec![("AutomaticStartupAction", Value::UInt16(5))],
            vec![
                ("AutomaticStartupAction", Value::UInt16(2)),
                ("AutoStart", Value::UInt16(1)),
            ],
            vec![("AutomaticShutdownAction", Value::UInt16(3))],
            vec![("AutomaticRecoveryAction", Value::UInt16(3))],
            vec![(
                "AutomaticStartupActionDelay",
                "20200101000000.000000+000".into(),
            )],
        ] {
            assert!(apply_startup(&mut p, &vssd(&props)).is_err(), "{props:?}");
        }
        apply_startup(
            &mut p,
            &vssd(&[
                ("AutomaticShutdownAction", Value::UInt16(2)),
                ("AutomaticRecoveryAction", Value::UInt16(2)),
            ]),
        )
        .unwrap();
    }
}
