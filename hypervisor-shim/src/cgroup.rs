//! CPU weight and limit per VM process, through cgroup v2's cpu controller. Each VM gets
//! `<root>/cimvirt/<name>`; hosts without cgroup v2 (or with the cpu controller bound to v1)
//! report why the limits are unsupported.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where cgroup v2 is normally mounted.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";
/// The period `cpu.max` quotas are expressed in.
const PERIOD_US: u64 = 100_000;

/// The cgroup v2 cpu controller, ready to place VM processes.
#[derive(Debug, Clone)]
pub struct CpuControl {
    root: PathBuf,
}

/// Checks that `root` is a cgroup v2 hierarchy offering the cpu controller; the error says
/// what is missing.
pub fn probe(root: &Path) -> Result<CpuControl, String> {
    let controllers = fs::read_to_string(root.join("cgroup.controllers")).map_err(|e| {
        format!(
            "cgroup v2 is not mounted at {} ({e}); CPU weight and limit are unsupported",
            root.display()
        )
    })?;
    if !controllers.split_whitespace().any(|c| c == "cpu") {
        return Err(format!(
            "the cgroup v2 hierarchy at {} has no cpu controller (it may be bound to cgroup v1); \
             CPU weight and limit are unsupported",
            root.display()
        ));
    }
    Ok(CpuControl {
        root: root.to_path_buf(),
    })
}

impl CpuControl {
    fn vm_dir(&self, vm: &str) -> PathBuf {
        self.root.join("cimvirt").join(vm)
    }

    /// Moves `pid` into the VM's cgroup with the given `cpu.weight` (1-10000) and limit in
    /// percent of one CPU (`cpu.max`).
    pub fn place(
        &self,
        vm: &str,
        pid: u32,
        weight: Option<u32>,
        limit_percent: Option<u32>,
    ) -> io::Result<PathBuf> {
        let parent = self.root.join("cimvirt");
        fs::create_dir_all(&parent)?;
        enable_cpu(&self.root)?;
        enable_cpu(&parent)?;
        let dir = self.vm_dir(vm);
        fs::create_dir_all(&dir)?;
        let weight = weight.map_or_else(|| "100".to_owned(), |w| w.to_string());
        fs::write(dir.join("cpu.weight"), weight)?;
        let max = match limit_percent {
            Some(percent) => format!("{} {PERIOD_US}", u64::from(percent) * PERIOD_US / 100),
            None => format!("max {PERIOD_US}"),
        };
        fs::write(dir.join("cpu.max"), max)?;
        fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        Ok(dir)
    }

    /// Removes the VM's cgroup once its process is gone (a cgroup with processes stays).
    pub fn remove(&self, vm: &str) {
        let _ = fs::remove_dir(self.vm_dir(vm));
    }
}

fn enable_cpu(dir: &Path) -> io::Result<()> {
    let control = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&control).unwrap_or_default();
    if enabled.split_whitespace().any(|c| c == "cpu") {
        return Ok(());
    }
    fs::write(&control, "+cpu")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_without_v2_or_its_cpu_controller_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = probe(dir.path()).unwrap_err();
        assert!(err.contains("cgroup v2 is not mounted"), "{err}");
        fs::write(dir.path().join("cgroup.controllers"), "memory pids\n").unwrap();
        let err = probe(dir.path()).unwrap_err();
        assert!(err.contains("no cpu controller"), "{err}");
    }

    #[test]
    fn weight_and_limit_are_written_as_cgroup_v2_reads_them() {
        // A directory laid out like cgroupfs: the files the kernel would provide.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        let control = probe(dir.path()).unwrap();
        let vm = control.place("vm1", 4242, Some(300), Some(50)).unwrap();
        assert_eq!(fs::read_to_string(vm.join("cpu.weight")).unwrap(), "300");
        assert_eq!(
            fs::read_to_string(vm.join("cpu.max")).unwrap(),
            "50000 100000"
        );
        assert_eq!(fs::read_to_string(vm.join("cgroup.procs")).unwrap(), "4242");
        assert_eq!(
            fs::read_to_string(dir.path().join("cgroup.subtree_control")).unwrap(),
            "+cpu"
        );
    }
}
