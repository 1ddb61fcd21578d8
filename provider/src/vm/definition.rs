//! A VM's definition as cimvirt keeps it: its name and UUID, processors and memory, disks
//! and network ports, boot, snapshots, startup policy and console, stored in the database
//! as JSON.

use hypervisor_shim::devices::virtio::block::DiskConfig;
use hypervisor_shim::devices::virtio::net::{MacAddress, NetConfig};
use hypervisor_shim::vmm::config::{Boot, VmConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use uuid::Uuid;

use super::devices::device_order;
use super::error::VmError;
use super::startup::StartupPolicy;

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
    pub fn set_element_name(&mut self, element_name: String) -> Result<(), VmError> {
        if element_name == self.name {
            // The name has its own, stricter rules, checked with the definition.
            self.element_name = None;
            return Ok(());
        }
        check_element_name(&element_name).map_err(VmError::invalid)?;
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

    #[test]
    fn requested_states_are_stored_as_their_numbers() {
        let stored = serde_json::to_string(&RequestedState::Quiesce).unwrap();
        assert_eq!(stored, "9");
        let read: RequestedState = serde_json::from_str("5").unwrap();
        assert_eq!(read, RequestedState::NoChange);
        assert!(serde_json::from_str::<RequestedState>("1").is_err());
        assert_eq!(RequestedState::Reboot.to_string(), "10");
    }
}
