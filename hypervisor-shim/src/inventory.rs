//! What the host has: CPUs, memory and load (sysinfo), and what its KVM offers.

use crate::hypervisor::kvm::{detect_kind, KvmHypervisor};
use crate::hypervisor::{Hypervisor, KvmKind};
use serde::{Deserialize, Serialize};
use std::path::Path;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// The host's hardware and KVM, as the host profiles report them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostInventory {
    /// The host name.
    pub hostname: Option<String>,
    /// The operating system, e.g. "Linux 12 Debian GNU/Linux 12 (bookworm)".
    pub os: Option<String>,
    /// The kernel release.
    pub kernel: Option<String>,
    /// The CPU model string.
    pub cpu_model: String,
    /// Logical CPUs.
    pub logical_cpus: usize,
    /// Physical cores, where the kernel says.
    pub physical_cores: Option<usize>,
    /// RAM in bytes.
    pub memory_total_bytes: u64,
    /// RAM available for new allocations, in bytes.
    pub memory_available_bytes: u64,
    /// 1, 5 and 15 minute load averages.
    pub load_average: [f64; 3],
    /// What KVM offers.
    pub kvm: KvmFacts,
}

/// KVM on this host.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KvmFacts {
    /// The device that was probed.
    pub device: String,
    /// Why VMs cannot run, if they cannot.
    pub unavailable: Option<String>,
    /// The KVM API version.
    pub api_version: Option<i32>,
    /// The most vCPUs per VM.
    pub max_vcpus: Option<u32>,
    /// Hardware or software (PVM) KVM.
    pub kind: Option<KvmKind>,
    /// Whether the CPU advertises VT-x or AMD-V to this host.
    pub cpu_has_virtualization: bool,
    /// Why per-VM CPU weight and limits are unsupported, if they are.
    pub cgroup_cpu_unsupported: Option<String>,
    /// Why VM processes run without a memory limit (cgroup v2 `memory.max`), if they do.
    pub cgroup_memory_unsupported: Option<String>,
}

/// Reads the inventory; `kvm_device` is normally `/dev/kvm`, `cgroup_root` the cgroup v2
/// mount ([`crate::cgroup::DEFAULT_ROOT`]).
pub fn collect(kvm_device: &Path, cgroup_root: &Path) -> HostInventory {
    let sys = System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    );
    let load = System::load_average();
    HostInventory {
        hostname: System::host_name(),
        os: System::long_os_version(),
        kernel: System::kernel_version(),
        cpu_model: sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_owned())
            .unwrap_or_default(),
        logical_cpus: sys.cpus().len(),
        physical_cores: System::physical_core_count(),
        memory_total_bytes: sys.total_memory(),
        memory_available_bytes: sys.available_memory(),
        load_average: [load.one, load.five, load.fifteen],
        kvm: kvm_facts(kvm_device, cgroup_root),
    }
}

fn kvm_facts(device: &Path, cgroup_root: &Path) -> KvmFacts {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_has_virtualization = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    let cgroup_cpu_unsupported = crate::cgroup::cpu_unsupported(cgroup_root);
    let cgroup_memory_unsupported = crate::cgroup::memory_unsupported(cgroup_root);
    let mut facts = KvmFacts {
        device: device.display().to_string(),
        unavailable: None,
        api_version: None,
        max_vcpus: None,
        kind: None,
        cpu_has_virtualization,
        cgroup_cpu_unsupported,
        cgroup_memory_unsupported,
    };
    match KvmHypervisor::open(device) {
        Ok(kvm) => {
            facts.api_version = Some(kvm.api_version());
            facts.max_vcpus = Some(kvm.max_vcpus());
            facts.kind = Some(kvm.kind());
        }
        Err(e) => {
            facts.unavailable = Some(crate::Error::kvm_unavailable(device, e).to_string());
            facts.kind = Path::new("/sys/module/kvm_pvm").exists().then(detect_kind);
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inventory_reads_this_host() {
        let inv = collect(
            Path::new("/nonexistent/kvm"),
            Path::new(crate::cgroup::DEFAULT_ROOT),
        );
        assert!(inv.logical_cpus >= 1);
        assert!(inv.memory_total_bytes >= inv.memory_available_bytes && inv.memory_total_bytes > 0);
        let why = inv.kvm.unavailable.expect("no such device");
        assert!(why.contains("/nonexistent/kvm does not exist"), "{why}");
    }
}
