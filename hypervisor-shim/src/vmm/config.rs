//! What a VM is made of.

use crate::devices::virtio::{self, block::DiskConfig, net::NetConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A VM's definition, as the VM process receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// The VM's name (also names its socket and console log).
    pub name: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// What to boot.
    #[serde(default)]
    pub boot: Boot,
    /// The virtio block devices, in the order the guest finds them.
    #[serde(default)]
    pub disks: Vec<DiskConfig>,
    /// The virtio network ports, after the disks.
    #[serde(default)]
    pub nics: Vec<NetConfig>,
    /// Where COM1's output goes, if anywhere.
    #[serde(default)]
    pub console_log: Option<PathBuf>,
    /// The console log's size cap (it rotates once past it).
    #[serde(default = "default_console_log_max")]
    pub console_log_max_bytes: u64,
    /// The VM process's relative CPU weight (cgroup v2 `cpu.weight`, 1 to 10000).
    #[serde(default)]
    pub cpu_weight: Option<u32>,
    /// The most CPU the VM process may use, in percent of one host CPU (cgroup v2 `cpu.max`).
    #[serde(default)]
    pub cpu_limit_percent: Option<u32>,
}

fn default_console_log_max() -> u64 {
    1 << 20
}

/// What a VM boots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Boot {
    /// The built-in test guest.
    #[default]
    TestGuest,
    /// A Linux kernel: a bzImage, or an ELF vmlinux (entered through PVH where it has the
    /// note), with an optional initramfs and the VM's own command-line arguments.
    Linux {
        /// The kernel image.
        kernel: PathBuf,
        /// The initial RAM file system (cpio, compressed or not).
        #[serde(default)]
        initramfs: Option<PathBuf>,
        /// Arguments added after the VMM's own (console, reset and panic handling).
        #[serde(default)]
        cmdline: String,
    },
}

impl VmConfig {
    /// A VM booting the Linux `kernel` (and `initramfs`) with the given size, extra
    /// command-line arguments and no console log.
    pub fn linux(
        name: &str,
        vcpus: u32,
        memory_mib: u64,
        kernel: PathBuf,
        initramfs: Option<PathBuf>,
        cmdline: &str,
    ) -> VmConfig {
        VmConfig {
            boot: Boot::Linux {
                kernel,
                initramfs,
                cmdline: cmdline.to_owned(),
            },
            ..VmConfig::test_guest(name, vcpus, memory_mib)
        }
    }

    /// A test-guest VM with the given size and no console log.
    pub fn test_guest(name: &str, vcpus: u32, memory_mib: u64) -> VmConfig {
        VmConfig {
            name: name.to_owned(),
            vcpus,
            memory_mib,
            boot: Boot::TestGuest,
            disks: Vec::new(),
            nics: Vec::new(),
            console_log: None,
            console_log_max_bytes: default_console_log_max(),
            cpu_weight: None,
            cpu_limit_percent: None,
        }
    }

    /// Guest RAM in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mib << 20
    }

    /// Checks the sizes against the host's and the boot image's limits.
    pub fn validate(&self, max_vcpus: u32) -> Result<(), String> {
        use crate::guest::test_guest::layout;
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || self.name.starts_with('.')
        {
            return Err(format!(
                "VM name {:?}: use letters, digits, '-', '_' and '.', not starting with '.'",
                self.name
            ));
        }
        // The MP table (and the test guest) address APIC IDs below 255.
        let limit = max_vcpus.min(layout::MAX_VCPUS);
        if self.vcpus == 0 || self.vcpus > limit {
            return Err(format!(
                "{} vCPUs: this host and boot image allow 1 to {limit}",
                self.vcpus
            ));
        }
        let min_mib = layout::MIN_MEMORY >> 20;
        if self.memory_mib < min_mib || self.memory_mib > (1 << 22) {
            return Err(format!(
                "{} MiB of memory: allowed are {min_mib} MiB to 4 TiB",
                self.memory_mib
            ));
        }
        if matches!(self.cpu_weight, Some(w) if !(1..=10_000).contains(&w)) {
            return Err("CPU weight: allowed are 1 to 10000".into());
        }
        if self.cpu_limit_percent == Some(0) {
            return Err("CPU limit: 0% would never run".into());
        }
        self.validate_devices()
    }

    fn validate_devices(&self) -> Result<(), String> {
        if self.disks.len() + self.nics.len() > virtio::layout::MAX_DEVICES {
            return Err(format!(
                "{} disks and {} network ports: a VM has at most {} virtio devices",
                self.disks.len(),
                self.nics.len(),
                virtio::layout::MAX_DEVICES
            ));
        }
        for (index, nic) in self.nics.iter().enumerate() {
            nic.validate(&self.name, index)?;
        }
        for (i, disk) in self.disks.iter().enumerate() {
            disk.validate()?;
            if self.disks[..i].iter().any(|d| d.path == disk.path) {
                return Err(format!(
                    "disk {}: the same image twice",
                    disk.path.display()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_names_are_checked() {
        assert!(VmConfig::test_guest("vm-1", 2, 64).validate(288).is_ok());
        assert!(VmConfig::test_guest("vm-1", 0, 64)
            .validate(288)
            .unwrap_err()
            .contains("0 vCPUs"));
        assert!(VmConfig::test_guest("vm-1", 300, 64)
            .validate(288)
            .unwrap_err()
            .contains("1 to 254"));
        assert!(VmConfig::test_guest("vm-1", 1, 4)
            .validate(288)
            .unwrap_err()
            .contains("8 MiB"));
        assert!(VmConfig::test_guest("../x", 1, 64).validate(288).is_err());
        let linux = VmConfig::linux("l", 1, 64, "/boot/vmlinuz".into(), None, "quiet");
        let json = serde_json::to_string(&linux).unwrap();
        assert!(json.contains(r#""kind":"linux""#), "{json}");
        assert_eq!(serde_json::from_str::<VmConfig>(&json).unwrap(), linux);
        let mut with_devices = VmConfig::test_guest("vm-1", 1, 16);
        let disk = |path: &str| DiskConfig {
            path: path.into(),
            read_only: false,
            id: None,
        };
        with_devices.disks = vec![disk("/images/a.img"), disk("/images/b.img")];
        with_devices.nics = vec![NetConfig::default()];
        assert!(with_devices.validate(288).is_ok());
        let json = serde_json::to_string(&with_devices).unwrap();
        assert_eq!(
            serde_json::from_str::<VmConfig>(&json).unwrap(),
            with_devices
        );
        with_devices.disks.push(disk("/images/a.img"));
        assert!(with_devices
            .validate(288)
            .unwrap_err()
            .contains("same image twice"));
        with_devices.disks = (0..13).map(|i| disk(&format!("/images/{i}.img"))).collect();
        assert!(with_devices
            .validate(288)
            .unwrap_err()
            .contains("at most 13"));
        let multicast =
            r#"{"name":"a","vcpus":1,"memory_mib":16,"nics":[{"mac":"01:00:00:00:00:01"}]}"#;
        let err = serde_json::from_str::<VmConfig>(multicast).unwrap_err();
        assert!(err.to_string().contains("multicast"), "{err}");
        let json = r#"{"name":"a","vcpus":1,"memory_mib":16,"disk":"x"}"#;
        assert!(
            serde_json::from_str::<VmConfig>(json).is_err(),
            "unknown fields are refused"
        );
    }
}
