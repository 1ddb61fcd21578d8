//! Per-VM resource control through cgroup v2: each VM process goes into
//! `<root>/cimvirt/<name>`, with `memory.max` (guest memory plus a bounded overhead) where
//! the memory controller is offered, and the CPU weight and limit its definition asks for
//! where the cpu controller is. Hosts without cgroup v2 (or with a controller bound to v1)
//! report why; a CPU weight or limit is then refused, never accepted and ignored.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where cgroup v2 is normally mounted.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";
/// The period `cpu.max` quotas are expressed in.
const PERIOD_US: u64 = 100_000;
/// What a VM process may use beside guest memory: the VMM itself (about 4 MiB), device
/// buffers, and the page cache of a snapshot being written, which the kernel reclaims
/// before it would refuse the VM memory.
const MEMORY_OVERHEAD_BYTES: u64 = 64 << 20;
/// And in proportion to guest memory: KVM's page tables and dirty bitmaps, charged to the
/// VM's cgroup, take well under one 64th.
const MEMORY_OVERHEAD_DIVISOR: u64 = 64;

/// The cgroup v2 hierarchy, with the controllers it offers VM processes.
#[derive(Debug, Clone)]
pub struct Cgroups {
    root: PathBuf,
    cpu: bool,
    memory: bool,
}

/// What one VM's cgroup enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VmLimits {
    /// `cpu.weight` (1-10000), if the VM has one.
    pub cpu_weight: Option<u32>,
    /// The CPU limit in percent of one CPU (`cpu.max`), if the VM has one.
    pub cpu_limit_percent: Option<u32>,
    /// `memory.max` in bytes.
    pub memory_max_bytes: Option<u64>,
}

impl VmLimits {
    /// Whether the cgroup would enforce anything.
    pub fn is_empty(&self) -> bool {
        *self == VmLimits::default()
    }
}

/// The `memory.max` of a VM with `guest_bytes` of RAM.
pub fn memory_max_for(guest_bytes: u64) -> u64 {
    guest_bytes + MEMORY_OVERHEAD_BYTES + guest_bytes / MEMORY_OVERHEAD_DIVISOR
}

/// Reads which controllers the cgroup v2 hierarchy at `root` offers; the error says that
/// there is none.
pub fn probe(root: &Path) -> Result<Cgroups, String> {
    let controllers = fs::read_to_string(root.join("cgroup.controllers"))
        .map_err(|e| format!("cgroup v2 is not mounted at {} ({e})", root.display()))?;
    let offers = |name: &str| controllers.split_whitespace().any(|c| c == name);
    Ok(Cgroups {
        root: root.to_path_buf(),
        cpu: offers("cpu"),
        memory: offers("memory"),
    })
}

/// Why per-VM CPU weight and limits cannot be enforced on the hierarchy at `root`, if they
/// cannot.
pub fn cpu_unsupported(root: &Path) -> Option<String> {
    cpu_unsupported_by(&probe(root))
}

/// Why per-VM CPU weight and limits cannot be enforced, from what [`probe`] found.
pub fn cpu_unsupported_by(probed: &Result<Cgroups, String>) -> Option<String> {
    match probed {
        Err(why) => Some(format!("{why}; CPU weight and limit are unsupported")),
        Ok(cgroups) if !cgroups.cpu => Some(format!(
            "the cgroup v2 hierarchy at {} has no cpu controller (it may be bound to cgroup \
             v1); CPU weight and limit are unsupported",
            cgroups.root.display()
        )),
        Ok(_) => None,
    }
}

/// Why per-VM memory limits cannot be enforced on the hierarchy at `root`, if they cannot.
pub fn memory_unsupported(root: &Path) -> Option<String> {
    match probe(root) {
        Err(why) => Some(format!("{why}; VM processes run without a memory limit")),
        Ok(cgroups) if !cgroups.memory => Some(format!(
            "the cgroup v2 hierarchy at {} has no memory controller (it may be bound to cgroup \
             v1); VM processes run without a memory limit",
            root.display()
        )),
        Ok(_) => None,
    }
}

impl Cgroups {
    /// The limits this hierarchy can enforce for a VM of `guest_bytes` with the given CPU
    /// settings: memory where the memory controller is offered, CPU as asked (the caller
    /// refuses CPU settings where [`cpu_unsupported_by`] says why).
    pub fn limits(
        &self,
        guest_bytes: u64,
        cpu_weight: Option<u32>,
        cpu_limit_percent: Option<u32>,
    ) -> VmLimits {
        VmLimits {
            cpu_weight: cpu_weight.filter(|_| self.cpu),
            cpu_limit_percent: cpu_limit_percent.filter(|_| self.cpu),
            memory_max_bytes: self.memory.then(|| memory_max_for(guest_bytes)),
        }
    }

    fn vm_dir(&self, vm: &str) -> PathBuf {
        self.root.join("cimvirt").join(vm)
    }

    /// Moves `pid` into the VM's cgroup, with `limits` written first.
    pub fn place(&self, vm: &str, pid: u32, limits: &VmLimits) -> io::Result<PathBuf> {
        let parent = self.root.join("cimvirt");
        fs::create_dir_all(&parent)?;
        let mut controllers = Vec::new();
        if limits.cpu_weight.is_some() || limits.cpu_limit_percent.is_some() {
            controllers.push("cpu");
        }
        if limits.memory_max_bytes.is_some() {
            controllers.push("memory");
        }
        for controller in &controllers {
            enable(&self.root, controller)?;
            enable(&parent, controller)?;
        }
        let dir = self.vm_dir(vm);
        fs::create_dir_all(&dir)?;
        if controllers.contains(&"cpu") {
            let weight = limits
                .cpu_weight
                .map_or_else(|| "100".to_owned(), |w| w.to_string());
            fs::write(dir.join("cpu.weight"), weight)?;
            let max = match limits.cpu_limit_percent {
                Some(percent) => format!("{} {PERIOD_US}", u64::from(percent) * PERIOD_US / 100),
                None => format!("max {PERIOD_US}"),
            };
            fs::write(dir.join("cpu.max"), max)?;
        }
        if let Some(bytes) = limits.memory_max_bytes {
            fs::write(dir.join("memory.max"), bytes.to_string())?;
        }
        fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        Ok(dir)
    }

    /// Removes the VM's cgroup once its process is gone (a cgroup with processes stays).
    pub fn remove(&self, vm: &str) {
        let _ = fs::remove_dir(self.vm_dir(vm));
    }
}

fn enable(dir: &Path, controller: &str) -> io::Result<()> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&control).unwrap_or_default();
    if enabled.split_whitespace().any(|c| c == controller) {
        return Ok(());
    }
    fs::write(&control, format!("+{controller}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_without_v2_or_its_controllers_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = cpu_unsupported(dir.path()).unwrap();
        assert!(err.contains("cgroup v2 is not mounted"), "{err}");
        let err = memory_unsupported(dir.path()).unwrap();
        assert!(err.contains("without a memory limit"), "{err}");
        fs::write(dir.path().join("cgroup.controllers"), "memory pids\n").unwrap();
        let err = cpu_unsupported(dir.path()).unwrap();
        assert!(err.contains("no cpu controller"), "{err}");
        assert_eq!(memory_unsupported(dir.path()), None);
        fs::write(dir.path().join("cgroup.controllers"), "cpu pids\n").unwrap();
        assert!(memory_unsupported(dir.path())
            .unwrap()
            .contains("no memory controller"));
    }

    #[test]
    fn limits_are_written_as_cgroup_v2_reads_them() {
        // A directory laid out like cgroupfs: the files the kernel would provide. (A real
        // subtree_control adds what is written; this one keeps the last write.)
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        let cgroups = probe(dir.path()).unwrap();
        let limits = cgroups.limits(256 << 20, Some(300), Some(50));
        assert_eq!(
            limits.memory_max_bytes,
            Some((256 << 20) + (64 << 20) + (4 << 20))
        );
        let vm = cgroups.place("vm1", 4242, &limits).unwrap();
        assert_eq!(fs::read_to_string(vm.join("cpu.weight")).unwrap(), "300");
        assert_eq!(
            fs::read_to_string(vm.join("cpu.max")).unwrap(),
            "50000 100000"
        );
        assert_eq!(
            fs::read_to_string(vm.join("memory.max")).unwrap(),
            ((256u64 << 20) + (68 << 20)).to_string()
        );
        assert_eq!(fs::read_to_string(vm.join("cgroup.procs")).unwrap(), "4242");
        assert_eq!(
            fs::read_to_string(dir.path().join("cgroup.subtree_control")).unwrap(),
            "+memory"
        );
    }

    #[test]
    fn a_vm_without_cpu_settings_gets_its_memory_limit_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        let cgroups = probe(dir.path()).unwrap();
        let limits = cgroups.limits(16 << 20, None, None);
        let vm = cgroups.place("vm2", 7, &limits).unwrap();
        assert!(vm.join("memory.max").exists());
        assert!(!vm.join("cpu.max").exists());
        let none = Cgroups {
            root: dir.path().to_path_buf(),
            cpu: false,
            memory: false,
        };
        assert!(none.limits(16 << 20, Some(5), None).is_empty());
    }
}
