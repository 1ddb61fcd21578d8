//! A VM's definition as cimvirt keeps it, and how DefineSystem's embedded VSSD and RASDs
//! become one.

use cim_schema::{Instance, Value};
use hypervisor_shim::devices::virtio::block::DiskConfig;
use hypervisor_shim::devices::virtio::net::{MacAddress, NetConfig};
use hypervisor_shim::vmm::config::{Boot, VmConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use uuid::Uuid;

use super::console;
use super::devices::{add_device, device_order, pair_drives_with_images};
use super::properties::{allocation_unit_bytes, invalid, string_property, unsigned_property};
use super::startup::StartupPolicy;
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
/// The longest VM name, in bytes. No file is named after a VM (they go by its UUID), so the
/// limit is only there to keep names usable in logs, paths and consoles.
pub const MAX_NAME_BYTES: usize = 255;

/// Refuses a name no VM may have: empty, longer than [`MAX_NAME_BYTES`], or holding a
/// control character, `/` (as libvirt refuses it) or `:`, which separates the name from the
/// rest in the InstanceIDs of its settings (`KVM:NAME`, `KVM:NAME:snapshot:N`). Any other
/// text is a name (DSP1057 sets no rule).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "a VM name has 1 to {MAX_NAME_BYTES} bytes; this one has {}",
            name.len()
        ));
    }
    if name.chars().any(|c| c.is_control() || c == '/' || c == ':') {
        return Err(format!(
            "VM name {name:?}: no control characters, '/' or ':'"
        ));
    }
    Ok(())
}
/// vCPUs when DefineSystem gives no processor RASD.
pub const DEFAULT_VCPUS: u32 = 1;
/// Memory when DefineSystem gives no memory RASD.
pub const DEFAULT_MEMORY_MIB: u64 = 64;

/// A state a client asks a VM to be in: CIM_EnabledLogicalElement.RequestedState as DSP1057
/// numbers it (stored as that number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "u16", try_from = "u16")]
#[repr(u16)]
pub enum RequestedState {
    /// 0: Unknown.
    Unknown = 0,
    /// 2: Enabled (running).
    Enabled = 2,
    /// 3: Disabled (off).
    Disabled = 3,
    /// 4: Shut Down (gracefully).
    ShutDown = 4,
    /// 5: No Change (what a VM shows before any request).
    NoChange = 5,
    /// 6: Offline (saved).
    Offline = 6,
    /// 7: Test.
    Test = 7,
    /// 8: Deferred.
    Deferred = 8,
    /// 9: Quiesce (paused).
    Quiesce = 9,
    /// 10: Reboot.
    Reboot = 10,
    /// 11: Reset.
    Reset = 11,
    /// 12: Not Applicable.
    NotApplicable = 12,
}

impl From<RequestedState> for u16 {
    fn from(state: RequestedState) -> u16 {
        state as u16
    }
}

impl TryFrom<u16> for RequestedState {
    type Error = String;
    fn try_from(number: u16) -> Result<Self, String> {
        use RequestedState as R;
        [
            R::Unknown,
            R::Enabled,
            R::Disabled,
            R::ShutDown,
            R::NoChange,
            R::Offline,
            R::Test,
            R::Deferred,
            R::Quiesce,
            R::Reboot,
            R::Reset,
            R::NotApplicable,
        ]
        .into_iter()
        .find(|state| u16::from(*state) == number)
        .ok_or_else(|| format!("{number} is not a RequestedState"))
    }
}

/// The number, as RequestStateChange and job titles show it.
impl std::fmt::Display for RequestedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", u16::from(*self))
    }
}

/// A defined VM, stored in the database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmDefinition {
    /// The name (KVM_ComputerSystem.Name, VSSD VirtualSystemIdentifier).
    pub name: String,
    /// The UUID (stored and shown as 8-4-4-4-12 lower-case hexadecimal).
    pub uuid: Uuid,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// The last RequestedState a client asked for (No Change until then).
    pub requested_state: RequestedState,
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
    /// Whether and when it starts with cimvirtd.
    #[serde(default)]
    pub startup: StartupPolicy,
    /// The VSSD's Description, as a client set it.
    #[serde(default)]
    pub description: Option<String>,
    /// The VSSD's Notes, as a client set them.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The ElementName a client gave that differs from the name (a display name, as
    /// Hyper-V's clients rename VMs); the name is the ElementName when there is none.
    #[serde(default)]
    pub element_name: Option<String>,
    /// The processor RASD's Weight and Limit.
    #[serde(default)]
    pub cpu_share: CpuShare,
    /// Whether clients may reach the serial console over the network.
    #[serde(default)]
    pub console: ConsoleSetting,
}

/// A VM's serial console as clients reach it (its KVM_TextRedirectionSAP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSetting {
    /// Whether the WebSocket console accepts sessions (RequestStateChange on the SAP).
    pub enabled: bool,
}

impl Default for ConsoleSetting {
    fn default() -> Self {
        ConsoleSetting { enabled: true }
    }
}

/// A VM's share of the host's CPUs, as its processor RASD gives it: a Weight against other
/// VMs, in libvirt-cim's scale (cgroup v1 `cpu.shares`: 2-262144, 1024 by default), and a
/// Limit, a cap in whole processors. The VM's cgroup enforces both (cgroup v2 `cpu.weight`,
/// `cpu.max`); a host without one refuses them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuShare {
    /// The Weight, if not the default.
    pub weight: Option<u32>,
    /// The cap in processors, if below the VM's vCPUs.
    pub limit: Option<u32>,
}

/// The Weight every VM has unless it says otherwise (libvirt's and cgroup v1's default).
pub const DEFAULT_CPU_WEIGHT: u32 = 1024;
/// The Weights libvirt-cim takes (cgroup v1 `cpu.shares`).
pub const CPU_WEIGHTS: std::ops::RangeInclusive<u32> = 2..=262_144;

impl CpuShare {
    /// Whether it asks for anything: a Weight other than the default, or a cap.
    pub fn is_set(&self) -> bool {
        self.weight.is_some() || self.limit.is_some()
    }

    /// The cgroup v2 `cpu.weight` (1-10000, 100 by default) of the Weight, scaled as systemd
    /// scales `cpu.shares`.
    pub fn cgroup_weight(&self) -> Option<u32> {
        self.weight.map(|shares| {
            (u64::from(shares) * 100 / u64::from(DEFAULT_CPU_WEIGHT)).clamp(1, 10_000) as u32
        })
    }

    /// The cap in percent of one CPU (`cpu.max`).
    pub fn limit_percent(&self) -> Option<u32> {
        self.limit.map(|processors| processors.saturating_mul(100))
    }

    /// What it asks for, as a client wrote it ("Weight 512, Limit 1").
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(weight) = self.weight {
            parts.push(format!("Weight {weight}"));
        }
        if let Some(limit) = self.limit {
            parts.push(format!("Limit {limit}"));
        }
        parts.join(", ")
    }
}

impl VmDefinition {
    /// A VM named `name` with the defaults: one vCPU, 64 MiB, no devices, the test guest.
    pub fn new(name: String, uuid: Uuid) -> VmDefinition {
        VmDefinition {
            name,
            uuid,
            vcpus: DEFAULT_VCPUS,
            memory_mib: DEFAULT_MEMORY_MIB,
            requested_state: RequestedState::NoChange,
            saved: None,
            snapshots: Vec::new(),
            last_applied: None,
            linux: None,
            disks: Vec::new(),
            nics: Vec::new(),
            startup: StartupPolicy::default(),
            description: None,
            notes: Vec::new(),
            element_name: None,
            cpu_share: CpuShare::default(),
            console: ConsoleSetting::default(),
        }
    }

    /// KVM_ComputerSystem's and the VSSD's ElementName.
    pub fn element_name(&self) -> &str {
        self.element_name.as_deref().unwrap_or(&self.name)
    }

    /// Sets the ElementName: none when it is the name.
    fn set_element_name(&mut self, element_name: String) -> CimResult<()> {
        if element_name == self.name {
            // The name has its own, stricter rules, checked with the definition.
            self.element_name = None;
            return Ok(());
        }
        check_element_name(&element_name).map_err(invalid)?;
        self.element_name = Some(element_name);
        Ok(())
    }

    /// Whether `other` differs from this definition only in what may change while the VM
    /// runs: its ElementName, Description, Notes and startup policy.
    pub fn differs_only_in_metadata(&self, other: &VmDefinition) -> bool {
        let mask = |d: &VmDefinition| VmDefinition {
            element_name: None,
            description: None,
            notes: Vec::new(),
            startup: StartupPolicy::default(),
            ..d.clone()
        };
        mask(self) == mask(other)
    }

    /// Whether `other` has other settings (what the VSSD and RASDs show): not merely
    /// another requested state, saved state or snapshot list.
    pub fn settings_differ(&self, other: &VmDefinition) -> bool {
        let mask = |d: &VmDefinition| VmDefinition {
            requested_state: RequestedState::Unknown,
            saved: None,
            snapshots: Vec::new(),
            last_applied: None,
            ..d.clone()
        };
        mask(self) != mask(other)
    }
}

/// Refuses an ElementName no VM may have: empty, longer than [`MAX_NAME_BYTES`], or holding
/// a control character.
fn check_element_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "an ElementName has 1 to {MAX_NAME_BYTES} bytes; this one has {}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("ElementName {name:?}: no control characters"));
    }
    Ok(())
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
    /// Its MAC address (the RASD's Address; stored and shown as lower-case
    /// `xx:xx:xx:xx:xx:xx`).
    pub mac: MacAddress,
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
    /// The disks and network ports at the time (`None` in snapshots taken before they were
    /// recorded).
    #[serde(default)]
    pub devices: Option<(Vec<DiskDefinition>, Vec<NicDefinition>)>,
}

impl VmDefinition {
    /// What the VM's processes and files go by: its UUID in lower case, short and fixed,
    /// so that any name fits the paths built from it (the control socket's, above all).
    pub fn run_id(&self) -> String {
        self.uuid.to_string()
    }

    /// The VM process configuration: its Linux kernel, or the built-in test guest. The
    /// process is named by [`VmDefinition::run_id`].
    pub fn vm_config(&self, console_log: PathBuf) -> VmConfig {
        let mut config = VmConfig::test_guest(&self.run_id(), self.vcpus, self.memory_mib);
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
                mac: Some(n.mac),
            })
            .collect();
        config.console_log = Some(console_log);
        config.cpu_weight = self.cpu_share.cgroup_weight();
        config.cpu_limit_percent = self.cpu_share.limit_percent();
        config
    }

    /// The disk with guest device name `device`.
    pub fn disk(&self, device: &str) -> Option<&DiskDefinition> {
        self.disks.iter().find(|d| d.device == device)
    }

    /// The network port whose MAC address `mac` is (in any case).
    pub fn nic(&self, mac: &str) -> Option<&NicDefinition> {
        let mac: MacAddress = mac.parse().ok()?;
        self.nics.iter().find(|n| n.mac == mac)
    }
}

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
    definition.startup.apply(system)?;
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
    definition.startup.apply(vssd)?;
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

    #[test]
    fn a_cpu_weight_scales_as_systemd_scales_cpu_shares_and_a_limit_caps_whole_cpus() {
        let share = |weight, limit| CpuShare { weight, limit };
        assert_eq!(share(Some(2048), None).cgroup_weight(), Some(200));
        assert_eq!(share(Some(2), None).cgroup_weight(), Some(1));
        assert_eq!(share(Some(262_144), None).cgroup_weight(), Some(10_000));
        assert_eq!(share(None, Some(3)).limit_percent(), Some(300));
        assert_eq!(share(Some(512), Some(1)).describe(), "Weight 512, Limit 1");
        assert!(!CpuShare::default().is_set());
    }
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
    fn requested_states_are_stored_as_their_numbers() {
        let stored = serde_json::to_string(&RequestedState::Quiesce).unwrap();
        assert_eq!(stored, "9");
        let read: RequestedState = serde_json::from_str("5").unwrap();
        assert_eq!(read, RequestedState::NoChange);
        assert!(serde_json::from_str::<RequestedState>("1").is_err());
        assert_eq!(RequestedState::Reboot.to_string(), "10");
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
