//! What becomes of each property of a VSSD a client sends (DefineSystem,
//! ModifySystemSettings): kept, checked against what cimvirt's VMs are, or refused. No
//! property is accepted and then dropped: a console believes what it set.

use cim_schema::{Instance, Value};

use cimom::error::{CimError, CimResult, StatusCode};

/// Properties cimvirt keeps, or names the VM by (read where the definition is built).
const KEPT: &[&str] = &[
    "InstanceID",
    "VirtualSystemIdentifier",
    "ElementName",
    "UUID",
    "Description",
    "Notes",
    "Kernel",
    "Ramdisk",
    "CommandLine",
    "AutomaticStartupAction",
    "AutomaticStartupActionDelay",
    "AutomaticStartupActionSequenceNumber",
    "AutoStart",
    "AutomaticShutdownAction",
    "AutomaticRecoveryAction",
    // A label clients set as they like (the captured wsmancli and Hyper-V-style requests say
    // `DMTF:testvm`), which the compatibility promise makes acceptable: every VM here is a
    // KVM machine and its VSSD says `KVM`, whatever the request said.
    "VirtualSystemType",
];

/// Properties every cimvirt VM has one value of, in their text form (booleans in lower
/// case): a VSSD may state them (as one read back from the server does), not change them.
const FIXED: &[(&str, &str)] = &[
    ("Arch", "x86_64"),
    ("Emulator", "cimvirtd"),
    // The guest's clock starts in UTC (0); there is no local-time RTC (1).
    ("ClockOffset", "0"),
    // Every VM has ACPI tables, local and I/O APICs, and runs in long mode (PAE on).
    ("EnableACPI", "true"),
    ("EnableAPIC", "true"),
    ("EnablePAE", "true"),
];

fn text_of(value: &Value) -> Option<String> {
    Some(match value {
        Value::String(s) => s.trim().to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::UInt8(v) => v.to_string(),
        Value::UInt16(v) => v.to_string(),
        Value::UInt32(v) => v.to_string(),
        Value::UInt64(v) => v.to_string(),
        Value::SInt8(v) => v.to_string(),
        Value::SInt16(v) => v.to_string(),
        Value::SInt32(v) => v.to_string(),
        Value::SInt64(v) => v.to_string(),
        _ => return None,
    })
}

/// Refuses a VSSD that asks for what cimvirt does not keep or do: a fixed property with
/// another value, or any other property given a value (boot devices, data directories,
/// a machine type ...). NULL and empty properties ask for nothing.
pub fn check(vssd: &Instance) -> CimResult<()> {
    for property in vssd.properties.values() {
        let name = property.name.as_str();
        let Some(value) = &property.value else {
            continue;
        };
        if matches!(value, Value::String(s) if s.trim().is_empty())
            || matches!(value, Value::Array(items) if items.iter().all(Option::is_none))
        {
            continue;
        }
        if KEPT.iter().any(|k| k.eq_ignore_ascii_case(name)) {
            continue;
        }
        let refusal = match FIXED.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            Some((_, fixed)) => match text_of(value) {
                Some(given) if given.eq_ignore_ascii_case(fixed) => continue,
                given => format!(
                    "{name} {} is not supported: every VM here has {fixed}",
                    given.unwrap_or_else(|| format!("{value:?}"))
                ),
            },
            None => {
                format!("{name} is not a setting cimvirt keeps or acts on; leave it out (or NULL)")
            }
        };
        return Err(CimError::new(
            StatusCode::NotSupported,
            format!("{}: {refusal}", vssd.class_name),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virt::properties::instance;

    fn vssd(props: &[(&str, Value)]) -> Instance {
        instance("KVM_VirtualSystemSettingData", props)
    }

    #[test]
    fn kept_and_fixed_properties_pass_and_the_rest_is_refused() {
        check(&vssd(&[
            ("VirtualSystemIdentifier", "vm".into()),
            ("Notes", Value::array(["a note".into()])),
            ("VirtualSystemType", "DMTF:testvm".into()),
            ("EnableACPI", Value::Boolean(true)),
            ("ClockOffset", Value::UInt16(0)),
            ("Arch", "".into()),
        ]))
        .unwrap();
        for (props, why) in [
            (
                vec![("ClockOffset", Value::UInt16(1))],
                "every VM here has 0",
            ),
            (
                vec![("EnablePAE", "FALSE".into())],
                "every VM here has true",
            ),
            (
                vec![("BootDevices", Value::array(["hd".into()]))],
                "BootDevices is not a setting",
            ),
            (
                vec![("LogDataRoot", "/etc".into())],
                "LogDataRoot is not a setting",
            ),
            (
                vec![("Machine", "pc-q35".into())],
                "Machine is not a setting",
            ),
        ] {
            let e = check(&vssd(&props)).unwrap_err();
            assert_eq!(e.code, StatusCode::NotSupported);
            assert!(e.description.contains(why), "{}", e.description);
        }
    }
}
