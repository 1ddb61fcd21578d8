//! The console RASD (libvirt-cim's KVM_ConsoleResourceAllocationSettingData, ResourceType
//! 32769): every VM has exactly one serial console, COM1, whose output is its console log
//! and which clients reach as a WebSocket. A console RASD a client gives must describe that
//! console; anything it asks that this host does not do is refused, never ignored.

use cim_schema::Instance;
use cimom::error::{CimError, CimResult, StatusCode};

use crate::virt::properties::{string_property, unsigned_property};

/// libvirt-cim's vendor ResourceType for a console.
pub const RESOURCE_CONSOLE: u16 = 32769;

/// SourceType "PTY": an interactive terminal, what libvirt-cim's clients ask for; here the
/// WebSocket console gives it.
pub const SOURCE_PTY: u16 = 2;
/// SourceType "File": the console log.
pub const SOURCE_FILE: u16 = 4;

/// The guest side of the console.
pub const TARGET_SERIAL: &str = "serial";

/// Checks that `rasd` describes the console VM `vm` has.
pub fn check(vm: &str, rasd: &Instance) -> CimResult<()> {
    let refuse = |what: String| {
        Err(CimError::new(
            StatusCode::NotSupported,
            format!(
                "{}: {what}: VM {vm} has one serial console (COM1, TargetType serial), logged \
                 to a file of the server's and reached as a WebSocket (SourceType 2 PTY or 4 \
                 File)",
                rasd.class_name
            ),
        ))
    };
    match unsigned_property(rasd, "SourceType")? {
        None => {}
        Some(t) if t == u64::from(SOURCE_PTY) || t == u64::from(SOURCE_FILE) => {}
        Some(other) => return refuse(format!("SourceType {other} is not supported")),
    }
    if let Some(target) = string_property(rasd, "TargetType") {
        if !target.eq_ignore_ascii_case(TARGET_SERIAL) {
            return refuse(format!("TargetType {target:?} is not supported"));
        }
    }
    for network in ["SourcePath", "ConnectURL", "BindURL"] {
        if let Some(url) = string_property(rasd, network) {
            return refuse(format!("{network} {url:?} cannot be chosen"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virt::properties::instance;
    use cim_schema::Value;

    fn rasd(values: &[(&str, Value)]) -> Instance {
        let mut i = instance(
            "KVM_ConsoleResourceAllocationSettingData",
            &[("ResourceType", Value::UInt16(RESOURCE_CONSOLE))],
        );
        for (name, value) in values {
            i.set(*name, value.clone());
        }
        i
    }

    #[test]
    fn a_rasd_that_describes_the_serial_console_is_accepted_and_any_other_refused() {
        assert!(check("vm", &rasd(&[])).is_ok());
        assert!(check(
            "vm",
            &rasd(&[
                ("SourceType", Value::UInt16(SOURCE_PTY)),
                ("TargetType", Value::from("Serial"))
            ])
        )
        .is_ok());
        for bad in [
            ("SourceType", Value::UInt16(8)),
            ("TargetType", Value::from("virtio")),
            ("SourcePath", Value::from("/tmp/elsewhere")),
            ("BindURL", Value::from("tcp://0.0.0.0:4555")),
        ] {
            let e = check("vm", &rasd(std::slice::from_ref(&bad))).unwrap_err();
            assert_eq!(e.code, StatusCode::NotSupported, "{bad:?}");
            assert!(e.description.contains("COM1"), "{}", e.description);
        }
    }
}
