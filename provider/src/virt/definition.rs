//! A VM's definition as cimvirt keeps it, and how DefineSystem's embedded VSSD and RASDs
//! become one.

use cim_schema::{Instance, Value};
use hypervisor_shim::devices::virtio::block::DiskConfig;
use hypervisor_shim::devices::virtio::layout::MAX_DEVICES;
use hypervisor_shim::devices::virtio::net::{MacAddress, NetConfig};
use hypervisor_shim::vmm::config::{Boot, VmConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::error::{CimError, CimResult, StatusCode};

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
    /// The virtio disks, by guest device name.
    #[serde(default)]
    pub disks: Vec<DiskDefinition>,
    /// The virtio network ports.
    #[serde(default)]
    pub nics: Vec<NicDefinition>,
}

/// A disk: a raw image on the host, seen by the guest as a virtio disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskDefinition {
    /// The guest device name ("vda", "vdb" ...): the RASD's VirtualDevice, and with the VM's
    /// name its InstanceID. The guest finds the disks in the order of these names.
    pub device: String,
    /// The image file or block device (the RASD's Address).
    pub path: PathBuf,
    /// Whether the guest may only read it.
    pub read_only: bool,
}

/// A network port: a virtio network device on a tap attached to a bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicDefinition {
    /// Its MAC address (the RASD's Address), lower-case `xx:xx:xx:xx:xx:xx`.
    pub mac: String,
    /// The Linux bridge it is connected to (NetworkName, or DSP1050's Connection).
    pub bridge: Option<String>,
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
        let mut disks: Vec<&DiskDefinition> = self.disks.iter().collect();
        disks.sort_by(|a, b| device_order(&a.device).cmp(&device_order(&b.device)));
        config.disks = disks
            .into_iter()
            .map(|d| DiskConfig {
                path: d.path.clone(),
                read_only: d.read_only,
                id: None,
            })
            .collect();
        config.nics = self
            .nics
            .iter()
            .map(|n| NetConfig {
                bridge: n.bridge.clone(),
                tap: None,
                mac: Some(n.mac.clone()),
            })
            .collect();
        config.console_log = Some(console_log);
        config
    }

    /// The disk with guest device name `device`.
    pub fn disk(&self, device: &str) -> Option<&DiskDefinition> {
        self.disks.iter().find(|d| d.device == device)
    }

    /// The network port with MAC address `mac`.
    pub fn nic(&self, mac: &str) -> Option<&NicDefinition> {
        self.nics.iter().find(|n| n.mac.eq_ignore_ascii_case(mac))
    }
}

/// Sorts "vdb" before "vdaa" (as Linux names them: by length, then alphabetically).
fn device_order(device: &str) -> (usize, &str) {
    (device.len(), device)
}

/// The guest device name of the `index`th disk: vda ... vdz, vdaa ...
fn device_name(index: usize) -> String {
    let mut suffix = Vec::new();
    let mut n = index + 1;
    while n > 0 {
        n -= 1;
        suffix.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    suffix.reverse();
    format!("vd{}", String::from_utf8_lossy(&suffix))
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

/// `instance`'s `property` in bytes: the value times its AllocationUnits (`default_units`
/// when it names none).
pub fn byte_quantity(
    instance: &Instance,
    property: &str,
    default_units: &str,
) -> CimResult<Option<u64>> {
    let Some(amount) = unsigned_property(instance, property)? else {
        return Ok(None);
    };
    let units =
        string_property(instance, "AllocationUnits").unwrap_or_else(|| default_units.into());
    let unit = allocation_unit_bytes(&units)
        .ok_or_else(|| invalid(format!("AllocationUnits {units:?} is not a unit of bytes")))?;
    amount
        .checked_mul(unit)
        .map(Some)
        .ok_or_else(|| invalid(format!("{property} {amount} {units} is too large")))
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
        disks: Vec::new(),
        nics: Vec::new(),
    };
    for rasd in &pair_drives_with_images(resources)? {
        apply_rasd(&mut definition, rasd)?;
    }
    Ok(definition)
}

/// DSP1047's two levels, as Hyper-V-style clients send them: a drive RASD (ResourceType 17)
/// without an image, and a storage allocation (31) whose HostResource is the image. Each
/// imageless drive takes the next such allocation, in order, as one disk: the drive's
/// VirtualDevice with the allocation's image and Access. Other RASDs pass unchanged.
fn pair_drives_with_images(resources: &[Instance]) -> CimResult<Vec<Instance>> {
    let has_image = |r: &Instance| {
        string_property(r, "Address").is_some() || first_of_array(r, "HostResource").is_some()
    };
    let kind = |r: &Instance| unsigned_property(r, "ResourceType").ok().flatten();
    let mut images: std::collections::VecDeque<&Instance> = resources
        .iter()
        .filter(|r| kind(r) == Some(u64::from(RESOURCE_LOGICAL_DISK)) && has_image(r))
        .collect();
    let drives = resources
        .iter()
        .filter(|r| kind(r) == Some(u64::from(RESOURCE_DISK)) && !has_image(r))
        .count();
    // Without storage allocations an imageless drive is refused for its missing image.
    if drives == 0 || images.is_empty() {
        return Ok(resources.to_vec());
    }
    if drives != images.len() {
        return Err(invalid(format!(
            "{drives} disk drives without an image and {} storage allocations with one: each \
             drive needs its own",
            images.len()
        )));
    }
    let mut out = Vec::with_capacity(resources.len());
    for rasd in resources {
        match kind(rasd) {
            Some(k) if k == u64::from(RESOURCE_DISK) && !has_image(rasd) => {
                let image = images.pop_front().unwrap_or(rasd);
                let mut disk = image.clone();
                if let Some(device) = rasd.get("VirtualDevice") {
                    disk.set("VirtualDevice", device.clone());
                }
                out.push(disk);
            }
            Some(k) if k == u64::from(RESOURCE_LOGICAL_DISK) && has_image(rasd) => {}
            _ => out.push(rasd.clone()),
        }
    }
    Ok(out)
}

/// Applies ModifySystemSettings' VSSD to `definition`. Kernel, Ramdisk and CommandLine
/// change to what the VSSD gives; a property given as NULL or empty is removed (without a
/// Kernel the VM boots the built-in test guest), one left out stays. The name and the UUID
/// are the VM's identity and cannot change.
pub fn modify_system(definition: &mut VmDefinition, vssd: &Instance) -> CimResult<()> {
    for (property, current) in [
        ("VirtualSystemIdentifier", definition.name.as_str()),
        ("ElementName", definition.name.as_str()),
        ("UUID", definition.uuid.as_str()),
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
    Ok(())
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
        other => {
            return Err(CimError::new(
                StatusCode::NotSupported,
                format!(
                    "{}: ResourceType {other} is not supported (processors 3, memory 4, disks \
                     17 or 31, network ports 10 or 33 are)",
                    rasd.class_name
                ),
            ))
        }
    })
}

fn boolean_property(instance: &Instance, name: &str) -> CimResult<Option<bool>> {
    match instance.get(name) {
        None => Ok(None),
        Some(Value::Boolean(b)) => Ok(Some(*b)),
        Some(other) => Err(invalid(format!(
            "{}.{name} must be a boolean, not {other:?}",
            instance.class_name
        ))),
    }
}

/// The first string of an array property (DSP1047's HostResource, DSP1050's Connection).
fn first_of_array(instance: &Instance, name: &str) -> Option<String> {
    match instance.get(name) {
        Some(Value::Array(items)) => items.iter().flatten().find_map(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            _ => None,
        }),
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// An image a disk may use: an absolute path to a file or block device the server can open
/// now.
fn disk_image(path: String) -> CimResult<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(invalid(format!(
            "disk image {}: give an absolute path on the host",
            path.display()
        )));
    }
    match std::fs::File::open(&path).and_then(|f| f.metadata()) {
        Ok(meta) if meta.is_file() || meta.file_type().is_block_device() => Ok(path),
        Ok(_) => Err(invalid(format!(
            "disk image {}: not a file or block device",
            path.display()
        ))),
        Err(e) => Err(invalid(format!("disk image {}: {e}", path.display()))),
    }
}

/// A disk from a disk RASD: the image from Address (libvirt-cim) or HostResource (DSP1047),
/// read-only from `readonly` or Access 1 (Readable), the device from VirtualDevice or the
/// first free name. `current` is the disk being changed, if any.
fn disk_from_rasd(
    definition: &VmDefinition,
    rasd: &Instance,
    current: Option<&DiskDefinition>,
) -> CimResult<DiskDefinition> {
    let path =
        match string_property(rasd, "Address").or_else(|| first_of_array(rasd, "HostResource")) {
            Some(path) => disk_image(path)?,
            None => match current {
                Some(disk) => disk.path.clone(),
                None => {
                    return Err(invalid(format!(
                        "{}: a disk names its image in Address (or HostResource)",
                        rasd.class_name
                    )))
                }
            },
        };
    let read_only = match (
        boolean_property(rasd, "readonly")?,
        unsigned_property(rasd, "Access")?,
    ) {
        (Some(read_only), _) => read_only,
        (None, Some(access)) => access == 1,
        (None, None) => current.is_some_and(|d| d.read_only),
    };
    let device = match (current, string_property(rasd, "VirtualDevice")) {
        (Some(disk), Some(asked)) if asked != disk.device => {
            return Err(invalid(format!(
                "disk {}: the device name cannot change (remove the disk and add it again)",
                disk.device
            )))
        }
        (Some(disk), _) => disk.device.clone(),
        (None, Some(asked)) => asked,
        (None, None) => (0..)
            .map(device_name)
            .find(|name| definition.disk(name).is_none())
            .unwrap_or_default(),
    };
    let valid_name = device.len() > 2
        && device.starts_with("vd")
        && device[2..].bytes().all(|b| b.is_ascii_lowercase());
    if !valid_name {
        return Err(invalid(format!(
            "VirtualDevice {device:?}: disks are virtio disks named vda, vdb ..."
        )));
    }
    let others = definition
        .disks
        .iter()
        .filter(|d| Some(d.device.as_str()) != current.map(|c| c.device.as_str()));
    for other in others {
        if other.device == device {
            return Err(invalid(format!(
                "{}: a disk {device} exists already",
                definition.name
            )));
        }
        if other.path == path {
            return Err(invalid(format!(
                "{}: disk {} uses {} already",
                definition.name,
                other.device,
                path.display()
            )));
        }
    }
    Ok(DiskDefinition {
        device,
        path,
        read_only,
    })
}

/// A network port from a network RASD: the MAC from Address (or a new random one), the
/// bridge from NetworkName, DSP1050's Connection, or the PoolID `NetworkPool/<bridge>`.
fn nic_from_rasd(
    definition: &VmDefinition,
    rasd: &Instance,
    current: Option<&NicDefinition>,
) -> CimResult<NicDefinition> {
    let mac = match (current, string_property(rasd, "Address")) {
        (Some(nic), Some(asked)) if !asked.eq_ignore_ascii_case(&nic.mac) => {
            return Err(invalid(format!(
                "network port {}: the MAC address cannot change (remove the port and add it again)",
                nic.mac
            )))
        }
        (Some(nic), _) => nic.mac.clone(),
        (None, Some(asked)) => asked
            .parse::<MacAddress>()
            .map_err(|e| invalid(format!("network port Address: {e}")))?
            .to_string(),
        (None, None) => crate::ids::random_mac(),
    };
    let bridge = string_property(rasd, "NetworkName")
        .or_else(|| first_of_array(rasd, "Connection"))
        .or_else(|| {
            string_property(rasd, "PoolID")
                .and_then(|p| p.strip_prefix("NetworkPool/").map(str::to_owned))
        })
        .or_else(|| current.and_then(|n| n.bridge.clone()));
    let nic = NicDefinition { mac, bridge };
    NetConfig {
        bridge: nic.bridge.clone(),
        tap: None,
        mac: Some(nic.mac.clone()),
    }
    .validate(&definition.name, definition.nics.len())
    .map_err(invalid)?;
    if current.is_none() && definition.nic(&nic.mac).is_some() {
        return Err(invalid(format!(
            "{}: a network port with MAC address {} exists already",
            definition.name, nic.mac
        )));
    }
    Ok(nic)
}

/// Adds the disk or network port of `rasd` to `definition`.
pub fn add_device(definition: &mut VmDefinition, rasd: &Instance) -> CimResult<String> {
    let id = match resource_kind(rasd)? {
        ResourceKind::Disk => {
            let disk = disk_from_rasd(definition, rasd, None)?;
            let id = disk.device.clone();
            definition.disks.push(disk);
            id
        }
        ResourceKind::Nic => {
            let nic = nic_from_rasd(definition, rasd, None)?;
            let id = nic.mac.clone();
            definition.nics.push(nic);
            id
        }
        ResourceKind::Processor | ResourceKind::Memory => {
            return Err(invalid(format!(
                "{} already has its processors and memory: change them with ModifyResourceSettings",
                definition.name
            )))
        }
    };
    if definition.disks.len() + definition.nics.len() > MAX_DEVICES {
        return Err(invalid(format!(
            "{}: a VM has at most {MAX_DEVICES} disks and network ports together",
            definition.name
        )));
    }
    Ok(id)
}

/// Changes the disk `device` or the network port `mac` (one of them: the RASD's InstanceID
/// resource) as `rasd` says.
pub fn modify_device(
    definition: &mut VmDefinition,
    resource: &str,
    rasd: &Instance,
) -> CimResult<()> {
    if let Some(index) = definition.disks.iter().position(|d| d.device == resource) {
        let disk = disk_from_rasd(definition, rasd, Some(&definition.disks[index]))?;
        definition.disks[index] = disk;
        return Ok(());
    }
    if let Some(index) = definition
        .nics
        .iter()
        .position(|n| n.mac.eq_ignore_ascii_case(resource))
    {
        let nic = nic_from_rasd(definition, rasd, Some(&definition.nics[index]))?;
        definition.nics[index] = nic;
        return Ok(());
    }
    Err(CimError::not_found(format!(
        "{} has no disk or network port {resource}",
        definition.name
    )))
}

/// Removes the disk `device` or the network port `mac`.
pub fn remove_device(definition: &mut VmDefinition, resource: &str) -> CimResult<()> {
    let before = definition.disks.len() + definition.nics.len();
    definition.disks.retain(|d| d.device != resource);
    definition
        .nics
        .retain(|n| !n.mac.eq_ignore_ascii_case(resource));
    if definition.disks.len() + definition.nics.len() == before {
        return Err(CimError::not_found(format!(
            "{} has no disk or network port {resource}",
            definition.name
        )));
    }
    Ok(())
}

/// Applies one RASD of DefineSystem to `definition`: processors and memory replace the
/// defaults (a partial RASD changes only what it names); disks and network ports are added.
pub fn apply_rasd(definition: &mut VmDefinition, rasd: &Instance) -> CimResult<()> {
    match resource_kind(rasd)? {
        ResourceKind::Processor | ResourceKind::Memory => set_size(definition, rasd),
        ResourceKind::Disk | ResourceKind::Nic => add_device(definition, rasd).map(|_| ()),
    }
}

/// Applies a processor or memory RASD: the properties it gives replace the current ones.
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
            return Err(invalid(format!(
                "{}: ResourceType {other} has no size to set",
                rasd.class_name
            )))
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
        let tape = instance(
            "CIM_ResourceAllocationSettingData",
            &[("ResourceType", Value::UInt16(18))],
        );
        let err = from_settings(&vssd, &[tape], "u".into()).unwrap_err();
        assert_eq!(err.code, StatusCode::NotSupported);
        let imageless = instance(
            "KVM_DiskResourceAllocationSettingData",
            &[("ResourceType", Value::UInt16(17))],
        );
        let err = from_settings(&vssd, &[imageless], "u".into()).unwrap_err();
        assert!(err.description.contains("names its image"), "{err:?}");
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
    fn disks_and_network_ports_are_added_named_changed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let image = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, [0u8; 4096]).unwrap();
            Value::from(path.display().to_string().as_str())
        };
        let (a, b) = (image("a.img"), image("b.img"));
        let vssd = instance(
            "KVM_VirtualSystemSettingData",
            &[("VirtualSystemIdentifier", "vm".into())],
        );
        let disk = |props: &[(&str, Value)]| {
            let mut all = vec![("ResourceType", Value::UInt16(17))];
            all.extend(props.iter().cloned());
            instance("KVM_DiskResourceAllocationSettingData", &all)
        };
        let nic = |props: &[(&str, Value)]| {
            let mut all = vec![("ResourceType", Value::UInt16(10))];
            all.extend(props.iter().cloned());
            instance("KVM_NetResourceAllocationSettingData", &all)
        };
        let mut d = from_settings(
            &vssd,
            &[
                disk(&[("Address", a.clone())]),
                // DSP1047's spelling: a logical disk with its image in HostResource.
                instance(
                    "CIM_StorageAllocationSettingData",
                    &[
                        ("ResourceType", Value::UInt16(31)),
                        ("HostResource", Value::Array(vec![Some(b.clone())])),
                        ("Access", Value::UInt16(1)),
                    ],
                ),
                nic(&[("NetworkName", "br0".into())]),
                nic(&[
                    ("Address", "52:54:00:AA:BB:CC".into()),
                    ("Connection", Value::Array(vec![Some("br1".into())])),
                ]),
            ],
            "u".into(),
        )
        .unwrap();
        assert_eq!(
            d.disks
                .iter()
                .map(|x| (x.device.as_str(), x.read_only))
                .collect::<Vec<_>>(),
            [("vda", false), ("vdb", true)]
        );
        assert_eq!(d.nics[0].bridge.as_deref(), Some("br0"));
        let first_octet = u8::from_str_radix(&d.nics[0].mac[..2], 16).unwrap();
        assert_eq!(first_octet & 0x3, 2, "locally administered, unicast");
        assert_eq!(d.nics[1].mac, "52:54:00:aa:bb:cc");
        assert_eq!(d.nics[1].bridge.as_deref(), Some("br1"));
        let config = d.vm_config("c".into());
        assert_eq!(config.disks.len(), 2);
        assert_eq!(config.nics[1].mac.as_deref(), Some("52:54:00:aa:bb:cc"));

        // The same image, the same device, a bad device name, a missing image.
        for (props, why) in [
            (vec![("Address", a.clone())], "uses"),
            (
                vec![("Address", image("c.img")), ("VirtualDevice", "vda".into())],
                "exists already",
            ),
            (
                vec![("Address", image("d.img")), ("VirtualDevice", "sda".into())],
                "vda, vdb",
            ),
            (
                vec![("Address", "/nonexistent.img".into())],
                "/nonexistent.img",
            ),
            (vec![("Address", "relative.img".into())], "absolute"),
        ] {
            let err = add_device(&mut d, &disk(&props)).unwrap_err();
            assert!(err.description.contains(why), "{why}: {err:?}");
        }
        let err = add_device(&mut d, &nic(&[("Address", "01:00:5e:00:00:01".into())])).unwrap_err();
        assert!(err.description.contains("multicast"), "{err:?}");
        let err = add_device(&mut d, &nic(&[("Address", "52:54:00:aa:bb:cc".into())])).unwrap_err();
        assert!(err.description.contains("exists already"), "{err:?}");

        assert_eq!(
            add_device(&mut d, &disk(&[("Address", image("e.img"))])).unwrap(),
            "vdc"
        );
        modify_device(&mut d, "vdc", &disk(&[("readonly", Value::Boolean(true))])).unwrap();
        assert!(d.disk("vdc").unwrap().read_only);
        let err =
            modify_device(&mut d, "vdc", &disk(&[("VirtualDevice", "vdz".into())])).unwrap_err();
        assert!(err.description.contains("cannot change"), "{err:?}");
        modify_device(
            &mut d,
            "52:54:00:aa:bb:cc",
            &nic(&[("NetworkName", "br2".into())]),
        )
        .unwrap();
        assert_eq!(
            d.nic("52:54:00:AA:BB:CC").unwrap().bridge.as_deref(),
            Some("br2")
        );
        remove_device(&mut d, "vda").unwrap();
        remove_device(&mut d, "52:54:00:aa:bb:cc").unwrap();
        assert_eq!(
            remove_device(&mut d, "vda").unwrap_err().code,
            StatusCode::NotFound
        );
        assert_eq!((d.disks.len(), d.nics.len()), (2, 1));
        assert_eq!(
            parse_rasd_id("vm/52:54:00:aa:bb:cc"),
            Some(("vm", "52:54:00:aa:bb:cc"))
        );
        assert_eq!(device_name(0), "vda");
        assert_eq!(device_name(25), "vdz");
        assert_eq!(device_name(26), "vdaa");
    }

    #[test]
    fn dsp1047_drives_take_their_images_from_storage_allocations() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("a.img");
        std::fs::write(&image, [0u8; 4096]).unwrap();
        let path = Value::from(image.display().to_string().as_str());
        let vssd = instance(
            "KVM_VirtualSystemSettingData",
            &[("VirtualSystemIdentifier", "hv".into())],
        );
        let drive = instance(
            "CIM_ResourceAllocationSettingData",
            &[
                ("ResourceType", Value::UInt16(17)),
                ("VirtualDevice", "vdb".into()),
            ],
        );
        let sasd = instance(
            "CIM_StorageAllocationSettingData",
            &[
                ("ResourceType", Value::UInt16(31)),
                ("HostResource", Value::Array(vec![Some(path)])),
                ("Access", Value::UInt16(1)),
            ],
        );
        let d = from_settings(&vssd, &[sasd.clone(), drive.clone()], "u".into()).unwrap();
        assert_eq!(d.disks.len(), 1);
        assert_eq!(
            (
                d.disks[0].device.as_str(),
                d.disks[0].read_only,
                &d.disks[0].path
            ),
            ("vdb", true, &image)
        );
        let err = from_settings(&vssd, &[drive.clone(), drive, sasd], "u".into()).unwrap_err();
        assert!(
            err.description.contains("each drive needs its own"),
            "{err:?}"
        );
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
