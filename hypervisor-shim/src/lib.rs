//! cimvirt's KVM virtual machine monitor, its supervisor, and host inventory.
//!
//! - [`hypervisor`]: the `Hypervisor`/`Vm`/`Vcpu` traits and their KVM implementation.
//! - [`arch`]: x86-64 boot setup (GDT, page tables, registers, CPUID, MSRs, LAPIC pins).
//! - [`memory`]: guest RAM on a memfd, saved sparsely, restored copy-on-write.
//! - [`devices`]: COM1, i8042, CMOS, the sleep control register, and virtio-mmio devices
//!   (block on raw images, network on taps).
//! - [`netif`]: network interfaces and Linux bridges; [`storage`]: pools of disk images.
//! - [`guest`]: the built-in test guest.
//! - [`vmm`]: one VM process: its machine, vCPU threads, control loop and snapshots.
//! - [`protocol`] and [`lifecycle`]: the control socket's messages and the VM state machine.
//! - [`supervisor`]: starts, controls and re-adopts VM processes from the server.
//! - [`sandbox`]: what a VM process gives up once its machine is built (namespaces,
//!   capabilities, a seccomp filter per thread kind).
//! - [`inventory`]: what the host has (CPU, memory, KVM). [`rlimits`]: the process's own
//!   resource limits.

pub mod arch;
pub mod cgroup;
pub mod devices;
pub mod guest;
pub mod hypervisor;
pub mod image;
pub mod inventory;
pub mod lifecycle;
pub mod memory;
pub mod netif;
pub mod protocol;
pub mod rlimits;
pub mod sandbox;
pub mod storage;
pub mod supervisor;
pub mod vmm;

use lifecycle::State;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Locks a mutex, going on with the data if a panicking thread poisoned it: what these
/// mutexes guard (device registers, handles, sockets) stays consistent between uses.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Everything that can go wrong in the VMM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// /dev/kvm cannot be used.
    #[error("KVM is not available: {0}")]
    KvmUnavailable(String),
    /// A KVM call failed.
    #[error(transparent)]
    Hypervisor(#[from] hypervisor::HypervisorError),
    /// The VM definition is not valid.
    #[error("invalid VM configuration: {0}")]
    Config(String),
    /// Guest memory could not be set up.
    #[error("guest memory: {0}")]
    Memory(std::io::Error),
    /// Guest memory could not be read or written.
    #[error("guest memory access: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
    /// The ACPI tables could not be written.
    #[error("ACPI tables: {0}")]
    Acpi(#[from] arch::acpi::AcpiError),
    /// A Linux kernel or initramfs could not be loaded.
    #[error(transparent)]
    LinuxBoot(#[from] arch::linux::LinuxBootError),
    /// A snapshot could not be written or read.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// A vCPU thread failed to answer.
    #[error("vCPU: {0}")]
    Vcpu(String),
    /// The VM process could not confine itself.
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    /// Another I/O failure.
    #[error("{0}")]
    Io(std::io::Error),
}

impl Error {
    /// Explains why the KVM device could not be opened, with what to do about it.
    pub fn kvm_unavailable(device: &Path, e: std::io::Error) -> Error {
        let device = device.display();
        let hint = match e.raw_os_error() {
            Some(libc::ENOENT) => format!(
                "{device} does not exist: load the kvm module (kvm_intel or kvm_amd), or run on a \
                 host with virtualization enabled"
            ),
            Some(libc::EACCES) | Some(libc::EPERM) => format!(
                "permission denied on {device}: run as root or add the user to the kvm group"
            ),
            _ => format!("opening {device} failed"),
        };
        Error::KvmUnavailable(format!("{hint} ({e})"))
    }
}

/// What a VM process leaves behind when it ends, beside its socket, for a supervisor that
/// is not its parent (after a server restart) to learn why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Off, saved or crashed.
    pub state: State,
    /// Why, for a person.
    pub reason: String,
}

impl ExitRecord {
    /// Writes the record into `file`, which the process opened (empty) when it started: it
    /// names no file once confined (best effort: the process is ending; the reader takes a
    /// file that is empty or cut short for no record).
    pub fn write_to(&self, file: &std::fs::File) {
        use std::os::unix::fs::FileExt as _;
        if let Ok(json) = serde_json::to_vec(self) {
            let _ = file.set_len(0).and_then(|()| file.write_all_at(&json, 0));
        }
    }

    /// Reads a record, if the process left one.
    pub fn read(path: &Path) -> Option<ExitRecord> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}
