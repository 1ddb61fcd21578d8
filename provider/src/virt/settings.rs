//! How DefineSystem's and ModifySystemSettings' embedded VSSD and RASDs become a VM's
//! definition: the ResourceTypes, the VSSD's boot, startup and text properties, and the
//! sizes of processor and memory RASDs.

use cim_schema::{Instance, Value};
use std::path::PathBuf;
use uuid::Uuid;

use super::console;
use super::devices::{add_device, pair_drives_with_images};
use super::properties::{allocation_unit_bytes, invalid, string_property, unsigned_property};
use super::startup::apply_startup;
use crate::vm::definition::{LinuxBoot, VmDefinition, CPU_WEIGHTS, DEFAULT_CPU_WEIGHT};
use cimom::error::{CimError, CimResult, StatusCode};

/// RASD ResourceType for processors (DSP1041).
pub const RESOURCE_PROCESSOR: u16 = 3;
/// RASD ResourceType for memory.
pub const RESOURCE_MEMORY: u16 = 4;
/// RASD ResourceType of a network interface as libvirt-cim writes it (Ethernet Adapter).
pub const RESOURCE_ETHERNET_ADAPTER: u16 = 10;
/// RASD ResourceType of a disk as libvirt-cim writes it (Disk Drive).
pub const RESOURCE_DISK: u16 = 17;
/// RASD ResourceType of a disk as DSP1047's storage allocation writes it (Logical Disk).
pub const RESOURCE_LOGICAL_DISK: u16 = 31;
/// RASD ResourceType of a network interface as DSP1050 writes it (Ethernet Connection).
pub const RESOURCE_ETHERNET_CONNECTION: u16 = 33;
/// Builds a definition from DefineSystem's SystemSettings (a VSSD) and ResourceSettings
/// (RASDs). `uuid` is used when the VSSD names none.
pub fn from_settings(
    system: &Instance,
    resources: &[Instance],
    uuid: Uuid,
) -> CimResult<VmDefinition> {
    super::vssd_properties::check(system)?;
    let identifier = string_property(system, "VirtualSystemIdentifier");
    let element_name = string_property(system, "ElementName");
    let name = identifier.or(element_name.clone()).ok_or_else(|| {
        invalid("SystemSettings names no VirtualSystemIdentifier or ElementName".into())
    })?;
    let uuid = match string_property(system, "UUID") {
        Some(given) => parse_uuid(&given).ok_or_else(|| {
            invalid(format!(
                "UUID {given:?} is not a UUID (8-4-4-4-12 hexadecimal digits)"
            ))
        })?,
        None => uuid,
    };
    let mut definition = VmDefinition {
        linux: linux_boot(system)?,
        ..VmDefinition::new(name, uuid)
    };
    if let Some(element_name) = element_name {
        definition.set_element_name(element_name)?;
    }
    apply_startup(&mut definition.startup, system)?;
    apply_texts(&mut definition, system);
    let consoles = resources
        .iter()
        .filter(|r| matches!(resource_kind(r), Ok(ResourceKind::Console)))
        .count();
    if consoles > 1 {
        return Err(invalid(format!(
            "{consoles} console RASDs: a VM has one serial console"
        )));
    }
    for rasd in &pair_drives_with_images(resources)? {
        apply_rasd(&mut definition, rasd)?;
    }
    Ok(definition)
}

/// Applies ModifySystemSettings' VSSD to `definition`. Kernel, Ramdisk and CommandLine
/// change to what the VSSD gives; a property given as NULL or empty is removed (without a
/// Kernel the VM boots the built-in test guest), one left out stays. The name and the UUID
/// are the VM's identity and cannot change; its ElementName can.
pub fn modify_system(definition: &mut VmDefinition, vssd: &Instance) -> CimResult<()> {
    super::vssd_properties::check(vssd)?;
    let uuid = definition.uuid.to_string();
    for (property, current) in [
        ("VirtualSystemIdentifier", definition.name.as_str()),
        ("UUID", uuid.as_str()),
    ] {
        if let Some(given) = string_property(vssd, property) {
            if !given.eq_ignore_ascii_case(current) {
                return Err(invalid(format!(
                    "{property} {given:?}: VM {} keeps its {property} ({current})",
                    definition.name
                )));
            }
        }
    }
    let mut merged = Instance::new(vssd.class_name.clone());
    if let Some(linux) = &definition.linux {
        merged.set(
            "Kernel",
            Value::from(linux.kernel.display().to_string().as_str()),
        );
        if let Some(ramdisk) = &linux.ramdisk {
            merged.set(
                "Ramdisk",
                Value::from(ramdisk.display().to_string().as_str()),
            );
        }
        merged.set("CommandLine", Value::from(linux.cmdline.as_str()));
    }
    let given = |property: &str| vssd.properties.get(property).is_some();
    if given("Kernel") && string_property(vssd, "Kernel").is_none() {
        // No kernel: its initramfs and arguments go with it.
        merged.properties.remove("Ramdisk");
        merged.properties.remove("CommandLine");
    }
    for property in ["Kernel", "Ramdisk", "CommandLine"] {
        if given(property) {
            merged.properties.remove(property);
            if let Some(value) = string_property(vssd, property) {
                merged.set(property, Value::from(value.as_str()));
            }
        }
    }
    definition.linux = linux_boot(&merged)?;
    apply_startup(&mut definition.startup, vssd)?;
    apply_texts(definition, vssd);
    if vssd.properties.get("ElementName").is_some() {
        match string_property(vssd, "ElementName") {
            Some(element_name) => definition.set_element_name(element_name)?,
            // NULL (or empty): the name is the ElementName again.
            None => definition.element_name = None,
        }
    }
    Ok(())
}

/// The VSSD's Description and Notes, where it gives them (a NULL clears them).
fn apply_texts(definition: &mut VmDefinition, vssd: &Instance) {
    if vssd.properties.get("Description").is_some() {
        definition.description = string_property(vssd, "Description");
    }
    match vssd.properties.get("Notes").map(|p| &p.value) {
        Some(Some(Value::Array(items))) => {
            definition.notes = items
                .iter()
                .flatten()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect();
        }
        Some(Some(Value::String(s))) => definition.notes = vec![s.to_string()],
        Some(None) => definition.notes.clear(),
        _ => {}
    }
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

/// What a RASD allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    /// vCPUs.
    Processor,
    /// Memory.
    Memory,
    /// A disk.
    Disk,
    /// A network port.
    Nic,
    /// The serial console (every VM has it; see [`crate::virt::console::rasd`]).
    Console,
}

/// The kind of resource `rasd` allocates, from its ResourceType.
pub fn resource_kind(rasd: &Instance) -> CimResult<ResourceKind> {
    let kind = unsigned_property(rasd, "ResourceType")?
        .ok_or_else(|| invalid(format!("{} has no ResourceType", rasd.class_name)))?;
    Ok(match u16::try_from(kind).unwrap_or(0) {
        RESOURCE_PROCESSOR => ResourceKind::Processor,
        RESOURCE_MEMORY => ResourceKind::Memory,
        RESOURCE_DISK | RESOURCE_LOGICAL_DISK => ResourceKind::Disk,
        RESOURCE_ETHERNET_ADAPTER | RESOURCE_ETHERNET_CONNECTION => ResourceKind::Nic,
        console::rasd::RESOURCE_CONSOLE => ResourceKind::Console,
        other => {
            return Err(CimError::new(
                StatusCode::NotSupported,
                format!(
                    "{}: ResourceType {other} is not supported (processors 3, memory 4, disks \
                     17 or 31, network ports 10 or 33, the console 32769 are)",
                    rasd.class_name
                ),
            ))
        }
    })
}

/// Applies one RASD of DefineSystem to `definition`: processors and memory replace the
/// defaults (a partial RASD changes only what it names); disks and network ports are added.
pub fn apply_rasd(definition: &mut VmDefinition, rasd: &Instance) -> CimResult<()> {
    match resource_kind(rasd)? {
        ResourceKind::Processor | ResourceKind::Memory => set_size(definition, rasd),
        ResourceKind::Disk | ResourceKind::Nic => add_device(definition, rasd).map(|_| ()),
        ResourceKind::Console => console::rasd::check(&definition.name, rasd),
    }
}

/// Applies a processor or memory RASD: the properties it gives replace the current ones.
/// A processor's Weight and Limit are kept (the default Weight, a Limit of 0 or of at least
/// the vCPUs, ask for nothing and clear them; whether the host can enforce them is the
/// caller's to check); a Reservation, and a memory Limit or Weight, are refused where they
/// ask for what this host does not do (see `check_unenforced`).
pub fn set_size(definition: &mut VmDefinition, rasd: &Instance) -> CimResult<()> {
    let kind = unsigned_property(rasd, "ResourceType")?
        .ok_or_else(|| invalid(format!("{} has no ResourceType", rasd.class_name)))?;
    let quantity = unsigned_property(rasd, "VirtualQuantity")?;
    match kind as u16 {
        RESOURCE_PROCESSOR => {
            if let Some(vcpus) = quantity {
                definition.vcpus =
                    u32::try_from(vcpus).map_err(|_| invalid(format!("{vcpus} vCPUs")))?;
            }
            set_cpu_share(definition, rasd)?;
            check_unenforced(rasd, "processor", u64::from(definition.vcpus), true)?;
        }
        RESOURCE_MEMORY => {
            let units =
                string_property(rasd, "AllocationUnits").unwrap_or_else(|| "KiloBytes".into());
            let unit = allocation_unit_bytes(&units).ok_or_else(|| {
                invalid(format!(
                    "memory AllocationUnits {units:?} is not a unit of bytes"
                ))
            })?;
            if let Some(amount) = quantity {
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
            let in_units = (definition.memory_mib << 20) / unit.max(1);
            check_unenforced(rasd, "memory", in_units, false)?;
        }
        other => {
            return Err(invalid(format!(
                "{}: ResourceType {other} has no size to set",
                rasd.class_name
            )))
        }
    }
    Ok(())
}

/// Takes a processor RASD's Weight and Limit into `definition.cpu_share`.
fn set_cpu_share(definition: &mut VmDefinition, rasd: &Instance) -> CimResult<()> {
    if let Some(weight) = unsigned_property(rasd, "Weight")? {
        let weight = u32::try_from(weight)
            .ok()
            .filter(|w| CPU_WEIGHTS.contains(w))
            .ok_or_else(|| {
                invalid(format!(
                    "{}: processor Weight {weight} is outside {}-{} (1024 is the default)",
                    rasd.class_name,
                    CPU_WEIGHTS.start(),
                    CPU_WEIGHTS.end()
                ))
            })?;
        definition.cpu_share.weight = (weight != DEFAULT_CPU_WEIGHT).then_some(weight);
    }
    if let Some(limit) = unsigned_property(rasd, "Limit")? {
        let cap = limit > 0 && limit < u64::from(definition.vcpus);
        definition.cpu_share.limit = cap.then_some(limit as u32);
    }
    Ok(())
}

/// Refuses a Reservation, or a memory Limit or Weight, that asks for something this host
/// does not do (reservations, ballooning). Accepted are the values that ask for nothing more
/// than the allocation itself: no memory Weight; a memory Limit of at least the quantity; a
/// Reservation of 0, or for memory of at most the quantity (guest memory is the VM's alone).
/// `quantity` is the VM's, in the RASD's units.
fn check_unenforced(rasd: &Instance, what: &str, quantity: u64, processor: bool) -> CimResult<()> {
    let refuse = |property: &str, value: u64, why: &str| {
        Err(CimError::new(
            StatusCode::NotSupported,
            format!(
                "{}: {what} {property} {value} is not supported: {why}",
                rasd.class_name
            ),
        ))
    };
    // A processor's Weight and Limit are the VM's cgroup's (see `set_cpu_share`).
    if let (false, Some(weight)) = (processor, unsigned_property(rasd, "Weight")?) {
        return refuse(
            "Weight",
            weight,
            "this host does not weigh VMs' memory against each other",
        );
    }
    if let (false, Some(limit)) = (processor, unsigned_property(rasd, "Limit")?) {
        if limit < quantity {
            return refuse(
                "Limit",
                limit,
                &format!("a cap below the VM's {quantity} is not enforced on this host"),
            );
        }
    }
    if let Some(reservation) = unsigned_property(rasd, "Reservation")? {
        let nothing_more = reservation == 0 || (!processor && reservation <= quantity);
        if !nothing_more {
            return refuse(
                "Reservation",
                reservation,
                "resources are not reserved for VMs on this host",
            );
        }
    }
    Ok(())
}

/// The VM and the resource a RASD InstanceID names: `<vm>/proc`, `<vm>/mem`, `<vm>/<disk
/// device>` or `<vm>/<MAC address>` (a MAC holds no '/', so the last '/' splits).
pub fn parse_rasd_id(instance_id: &str) -> Option<(&str, &str)> {
    let (vm, resource) = instance_id.rsplit_once('/')?;
    (!vm.is_empty() && !resource.is_empty()).then_some((vm, resource))
}

/// `text` as a UUID, if it is one in the 8-4-4-4-12 form DSP1057 shows (any case, spaces
/// around allowed); the other forms the uuid crate reads (braces, a URN, no hyphens) are
/// not a VSSD's UUID.
pub fn parse_uuid(text: &str) -> Option<Uuid> {
    let text = text.trim();
    (text.len() == 36).then(|| Uuid::try_parse(text).ok())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor_shim::vmm::config::Boot;

    use crate::virt::properties::instance;

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
        let d = from_settings(&vssd, &[proc, mem], Uuid::nil()).unwrap();
        assert_eq!(
            (d.name.as_str(), d.vcpus, d.memory_mib, d.uuid),
            ("vm1", 2, 64, Uuid::nil())
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
            from_settings(&vssd, &[mem], Uuid::nil())
                .unwrap()
                .memory_mib,
            1024
        );
    }

    #[test]
    fn what_cannot_be_built_is_refused_with_the_reason() {
        let nameless = instance("KVM_VirtualSystemSettingData", &[]);
        assert!(from_settings(&nameless, &[], Uuid::nil())
            .unwrap_err()
            .description
            .contains("VirtualSystemIdentifier"));
        let vssd = instance(
            "KVM_VirtualSystemSettingData",
            &[("ElementName", "vm2".into())],
        );
        let tape = instance(
            "CIM_ResourceAllocationSettingData",
            &[("ResourceType", Value::UInt16(18))],
        );
        let err = from_settings(&vssd, &[tape], Uuid::nil()).unwrap_err();
        assert_eq!(err.code, StatusCode::NotSupported);
        let imageless = instance(
            "KVM_DiskResourceAllocationSettingData",
            &[("ResourceType", Value::UInt16(17))],
        );
        let err = from_settings(&vssd, &[imageless], Uuid::nil()).unwrap_err();
        assert!(err.description.contains("names its image"), "{err:?}");
        let odd = instance(
            "KVM_MemResourceAllocationSettingData",
            &[
                ("ResourceType", Value::UInt16(4)),
                ("VirtualQuantity", Value::UInt64(1000)),
                ("AllocationUnits", "KiloBytes".into()),
            ],
        );
        assert!(from_settings(&vssd, &[odd], Uuid::nil())
            .unwrap_err()
            .description
            .contains("whole MiB"));
    }

    #[test]
    fn uuids_are_read_in_their_hyphenated_form_only() {
        assert_eq!(
            parse_uuid(" 6F9619FF-8B86-D011-B42D-00C04FC964FF ").map(|u| u.to_string()),
            Some("6f9619ff-8b86-d011-b42d-00c04fc964ff".to_owned())
        );
        for bad in [
            "",
            "../../etc",
            "6f9619ff8b86d011b42d00c04fc964ff",
            "{6f9619ff-8b86-d011-b42d-00c04fc964ff}",
            "6f9619ff-8b86-d011-b42d-00c04fc964fg",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad:?}");
        }
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
            Uuid::nil(),
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
            from_settings(&vssd(props), &[], Uuid::nil())
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
            from_settings(&vssd(&[]), &[], Uuid::nil())
                .unwrap()
                .vm_config("c".into())
                .boot,
            Boot::TestGuest
        );
    }
}
