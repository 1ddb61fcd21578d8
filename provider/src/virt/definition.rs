//! A VM's definition as cimvirt keeps it, and how DefineSystem's embedded VSSD and RASDs
//! become one.

use cim_schema::{Instance, Value};
use hypervisor_shim::vmm::config::{Boot, VmConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::error::{CimError, CimResult, StatusCode};

/// RASD ResourceType for processors (DSP1041).
pub const RESOURCE_PROCESSOR: u16 = 3;
/// RASD ResourceType for memory.
pub const RESOURCE_MEMORY: u16 = 4;
/// vCPUs when DefineSystem gives no processor RASD.
pub const DEFAULT_VCPUS: u32 = 1;
/// Memory when DefineSystem gives no memory RASD.
pub const DEFAULT_MEMORY_MIB: u64 = 64;

/// A defined VM, stored in the database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmDefinition {
    /// The name (KVM_ComputerSystem.Name, VSSD VirtualSystemIdentifier).
    pub name: String,
    /// The UUID, 8-4-4-4-12 hexadecimal.
    pub uuid: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// The last RequestedState a client asked for (5 "Not Applicable" until then).
    pub requested_state: u16,
    /// Where the VM's saved state is, while it is saved to disk.
    #[serde(default)]
    pub saved: Option<PathBuf>,
    /// Snapshots taken, oldest first.
    #[serde(default)]
    pub snapshots: Vec<Snapshot>,
    /// The snapshot last applied, by id.
    #[serde(default)]
    pub last_applied: Option<String>,
    /// A Linux kernel to boot directly (the VSSD's Kernel, Ramdisk and CommandLine); the
    /// built-in test guest when there is none.
    #[serde(default)]
    pub linux: Option<LinuxBoot>,
}

/// A Linux kernel booted directly, as the VSSD names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxBoot {
    /// The kernel image on the host (bzImage, or ELF vmlinux booted through PVH).
    pub kernel: PathBuf,
    /// The initial RAM disk on the host.
    pub ramdisk: Option<PathBuf>,
    /// Command-line arguments after the VMM's own.
    pub cmdline: String,
}

/// A snapshot of a VM: its complete state (memory, vCPUs, devices) in a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Unique among the VM's snapshots ("1", "2", ...).
    pub id: String,
    /// Seconds since the Unix epoch when it was taken.
    pub created: u64,
    /// The snapshot directory.
    pub dir: PathBuf,
    /// vCPUs and memory at the time (the snapshot restores them).
    pub vcpus: u32,
    /// Guest RAM in MiB at the time.
    pub memory_mib: u64,
}

impl VmDefinition {
    /// The VM process configuration: its Linux kernel, or the built-in test guest.
    pub fn vm_config(&self, console_log: PathBuf) -> VmConfig {
        let mut config = VmConfig::test_guest(&self.name, self.vcpus, self.memory_mib);
        if let Some(linux) = &self.linux {
            config.boot = Boot::Linux {
                kernel: linux.kernel.clone(),
                initramfs: linux.ramdisk.clone(),
                cmdline: linux.cmdline.clone(),
            };
        }
        config.console_log = Some(console_log);
        config
    }
}

fn invalid(message: String) -> CimError {
    CimError::new(StatusCode::InvalidParameter, message)
}

fn string_property(instance: &Instance, name: &str) -> Option<String> {
    match instance.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

fn unsigned_property(instance: &Instance, name: &str) -> CimResult<Option<u64>> {
    Ok(match instance.get(name) {
        None => None,
        Some(Value::UInt8(v)) => Some(u64::from(*v)),
        Some(Value::UInt16(v)) => Some(u64::from(*v)),
        Some(Value::UInt32(v)) => Some(u64::from(*v)),
        Some(Value::UInt64(v)) => Some(*v),
        Some(other) => {
            return Err(invalid(format!(
                "{}.{name} must be an unsigned integer, not {other:?}",
                instance.class_name
            )))
        }
    })
}

/// The bytes one unit of a RASD's AllocationUnits stands for (DSP0004 programmatic units,
/// plus the "KiloBytes" and "MegaBytes" spellings libvirt-cim's clients send).
fn allocation_unit_bytes(units: &str) -> Option<u64> {
    let compact: String = units.chars().filter(|c| !c.is_whitespace()).collect();
    match compact.to_ascii_lowercase().as_str() {
        "byte" | "bytes" => Some(1),
        "kilobytes" | "kb" | "kib" | "byte*2^10" => Some(1 << 10),
        "megabytes" | "mb" | "mib" | "byte*2^20" => Some(1 << 20),
        "gigabytes" | "gb" | "gib" | "byte*2^30" => Some(1 << 30),
        _ => None,
    }
}

/// Builds a definition from DefineSystem's SystemSettings (a VSSD) and ResourceSettings
/// (RASDs). `uuid` is used when the VSSD names none.
pub fn from_settings(
    system: &Instance,
    resources: &[Instance],
    uuid: String,
) -> CimResult<VmDefinition> {
    let name = string_property(system, "VirtualSystemIdentifier")
        .or_else(|| string_property(system, "ElementName"))
        .ok_or_else(|| {
            invalid("SystemSettings names no VirtualSystemIdentifier or ElementName".into())
        })?;
    let uuid = string_property(system, "UUID").unwrap_or(uuid);
    let mut definition = VmDefinition {
        name,
        uuid,
        vcpus: DEFAULT_VCPUS,
        memory_mib: DEFAULT_MEMORY_MIB,
        requested_state: 5,
        saved: None,
        snapshots: Vec::new(),
        last_applied: None,
        linux: linux_boot(system)?,
    };
    for rasd in resources {
        apply_rasd(&mut definition, rasd)?;
    }
    Ok(definition)
}

/// The VSSD's Kernel, Ramdisk and CommandLine: each file must be an absolute path to a
/// readable file on the host now, so that a definition that could never boot is refused at
/// once rather than at start.
fn linux_boot(system: &Instance) -> CimResult<Option<LinuxBoot>> {
    let kernel = string_property(system, "Kernel");
    let ramdisk = string_property(system, "Ramdisk");
    let cmdline = string_property(system, "CommandLine").unwrap_or_default();
    let Some(kernel) = kernel else {
        if ramdisk.is_some() || !cmdline.is_empty() {
            return Err(invalid(
                "SystemSettings has a Ramdisk or CommandLine but no Kernel to boot".into(),
            ));
        }
        return Ok(None);
    };
    let host_file = |what: &str, path: String| -> CimResult<PathBuf> {
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(invalid(format!(
                "{what} {}: give an absolute path on the host",
                path.display()
            )));
        }
        match std::fs::File::open(&path).and_then(|f| f.metadata()) {
            Ok(meta) if meta.is_file() => Ok(path),
            Ok(_) => Err(invalid(format!("{what} {}: not a file", path.display()))),
            Err(e) => Err(invalid(format!("{what} {}: {e}", path.display()))),
        }
    };
    hypervisor_shim::arch::linux::command_line(&cmdline)
        .map_err(|e| invalid(format!("CommandLine: {e}")))?;
    Ok(Some(LinuxBoot {
        kernel: host_file("Kernel", kernel)?,
        ramdisk: ramdisk.map(|r| host_file("Ramdisk", r)).transpose()?,
        cmdline,
    }))
}

/// Applies one processor or memory RASD to `definition`: the properties it gives replace
/// the current ones (a partial RASD changes only what it names).
pub fn apply_rasd(definition: &mut VmDefinition, rasd: &Instance) -> CimResult<()> {
    let kind = unsigned_property(rasd, "ResourceType")?
        .ok_or_else(|| invalid(format!("{} has no ResourceType", rasd.class_name)))?;
    let quantity = unsigned_property(rasd, "VirtualQuantity")?;
    match kind as u16 {
        RESOURCE_PROCESSOR => {
            if let Some(vcpus) = quantity {
                definition.vcpus =
                    u32::try_from(vcpus).map_err(|_| invalid(format!("{vcpus} vCPUs")))?;
            }
        }
        RESOURCE_MEMORY => {
            if let Some(amount) = quantity {
                let units =
                    string_property(rasd, "AllocationUnits").unwrap_or_else(|| "KiloBytes".into());
                let unit = allocation_unit_bytes(&units).ok_or_else(|| {
                    invalid(format!(
                        "memory AllocationUnits {units:?} is not a unit of bytes"
                    ))
                })?;
                let bytes = amount
                    .checked_mul(unit)
                    .ok_or_else(|| invalid(format!("{amount} {units} of memory")))?;
                if bytes % (1 << 20) != 0 {
                    return Err(invalid(format!(
                        "memory must be whole MiB, not {amount} {units}"
                    )));
                }
                definition.memory_mib = bytes >> 20;
            }
        }
        other => {
            return Err(CimError::new(
                StatusCode::NotSupported,
                format!(
                    "{}: ResourceType {other} is not supported yet (processors and memory are; \
                     disks and network ports come with the virtio devices)",
                    rasd.class_name
                ),
            ))
        }
    }
    Ok(())
}

/// The VM and the resource a RASD InstanceID (`<vm>/proc`, `<vm>/mem`) names.
pub fn parse_rasd_id(instance_id: &str) -> Option<(&str, u16)> {
    let (vm, resource) = instance_id.rsplit_once('/')?;
    let kind = match resource {
        "proc" => RESOURCE_PROCESSOR,
        "mem" => RESOURCE_MEMORY,
        _ => return None,
    };
    Some((vm, kind))
}

pub use crate::ids::random_uuid;

#[cfg(test)]
mod tests {
    use super::*;
    use cim_schema::Name;

    fn instance(class: &str, props: &[(&str, Value)]) -> Instance {
        let mut i = Instance::new(Name::new(class));
        for (n, v) in props {
            i.set(*n, v.clone());
        }
        i
    }

    #[test]
    fn processors_and_memory_in_any_byte_unit() {
        let vssd = instance(
            "KVM_VirtualSystemSettingData",
            &[("VirtualSystemIdentifier", "vm1".into())],
        );
        let proc = instance(
            "KVM_ProcResourceAllocationSettingData",
            &[
                ("ResourceType", Value::UInt16(3)),
                ("VirtualQuantity", Value::UInt64(2)),
            ],
        );
        let mem = instance(
            "KVM_MemResourceAllocationSettingData",
            &[
                ("ResourceType", Value::UInt16(4)),
                ("VirtualQuantity", Value::UInt64(65536)),
                ("AllocationUnits", "KiloBytes".into()),
            ],
        );
        let d = from_settings(&vssd, &[proc, mem], "u".into()).unwrap();
        assert_eq!(
            (d.name.as_str(), d.vcpus, d.memory_mib, d.uuid.as_str()),
            ("vm1", 2, 64, "u")
        );
        let mem = instance(
            "CIM_ResourceAllocationSettingData",
            &[
                ("ResourceType", Value::UInt16(4)),
                ("VirtualQuantity", Value::UInt64(1)),
                ("AllocationUnits", "byte * 2^30".into()),
            ],
        );
        assert_eq!(
            from_settings(&vssd, &[mem], "u".into()).unwrap().memory_mib,
            1024
        );
    }

    #[test]
    fn what_cannot_be_built_is_refused_with_the_reason() {
        let nameless = instance("KVM_VirtualSystemSettingData", &[]);
        assert!(from_settings(&nameless, &[], "u".into())
            .unwrap_err()
            .description
            .contains("VirtualSystemIdentifier"));
        let vssd = instance(
            "KVM_VirtualSystemSettingData",
            &[("ElementName", "vm2".into())],
        );
        let disk = instance(
            "KVM_DiskResourceAllocationSettingData",
            &[("ResourceType", Value::UInt16(17))],
        );
        let err = from_settings(&vssd, &[disk], "u".into()).unwrap_err();
        assert_eq!(err.code, StatusCode::NotSupported);
        let odd = instance(
            "KVM_MemResourceAllocationSettingData",
            &[
                ("ResourceType", Value::UInt16(4)),
                ("VirtualQuantity", Value::UInt64(1000)),
                ("AllocationUnits", "KiloBytes".into()),
            ],
        );
        assert!(from_settings(&vssd, &[odd], "u".into())
            .unwrap_err()
            .description
            .contains("whole MiB"));
    }

    #[test]
    fn random_uuids_are_version_4() {
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, random_uuid());
    }

    #[test]
    fn a_kernel_to_boot_must_be_an_absolute_path_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("vmlinux");
        std::fs::write(&kernel, b"not checked here").unwrap();
        let kernel_text = kernel.display().to_string();
        let text = |s: &str| Value::String(s.into());
        let vssd = |props: &[(&str, Value)]| {
            let mut all = vec![("VirtualSystemIdentifier", text("vm"))];
            all.extend(props.iter().cloned());
            instance("KVM_VirtualSystemSettingData", &all)
        };
        let d = from_settings(
            &vssd(&[
                ("Kernel", text(&kernel_text)),
                ("CommandLine", text("quiet")),
            ]),
            &[],
            "u".into(),
        )
        .unwrap();
        let config = d.vm_config("console".into());
        assert_eq!(
            config.boot,
            Boot::Linux {
                kernel: kernel.clone(),
                initramfs: None,
                cmdline: "quiet".into()
            }
        );
        let refused = |props: &[(&str, Value)]| {
            from_settings(&vssd(props), &[], "u".into())
                .unwrap_err()
                .to_string()
        };
        assert!(refused(&[("Kernel", text("vmlinux"))]).contains("absolute"));
        let missing = dir.path().join("gone").display().to_string();
        assert!(refused(&[("Kernel", text(&missing))]).contains(&missing));
        assert!(refused(&[
            ("Kernel", text(&kernel_text)),
            ("Ramdisk", text(&dir.path().display().to_string())),
        ])
        .contains("not a file"));
        assert!(refused(&[("Ramdisk", text(&kernel_text))]).contains("no Kernel"));
        assert_eq!(
            from_settings(&vssd(&[]), &[], "u".into())
                .unwrap()
                .vm_config("c".into())
                .boot,
            Boot::TestGuest
        );
    }
}
