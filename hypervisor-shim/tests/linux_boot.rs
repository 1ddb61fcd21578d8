//! Debian's own cloud kernel booted by the VMM, as a bzImage and as a PVH vmlinux, with a
//! busybox initramfs (both made by `scripts/setup-linux-guest`, which `scripts/test` runs).
//!
//! What a boot can show depends on the host's KVM, which the VMM reports
//! (`kvm::detect_kind`): on hardware KVM the kernel runs to the initramfs's /init, which
//! prints a marker with the CPUs it sees and waits for the ACPI power button; the test then
//! asks for a graceful shutdown and sees the guest power off through ACPI S5. On a software
//! `kvm_pvm` host (this project's build machines) early kernel code runs in KVM's
//! instruction emulator and user space cannot run, so the test checks the kernel's first
//! console lines: its banner, the command line the VMM built, the memory map it gave, the
//! initramfs where it put it, the ACPI tables, and both vCPUs found through the MADT. Each
//! test prints which it did.

mod common;

use common::kvm_present;
use hypervisor_shim::devices::virtio::block::DiskConfig;
use hypervisor_shim::hypervisor::kvm::detect_kind;
use hypervisor_shim::hypervisor::KvmKind;
use hypervisor_shim::protocol::{Event, Request};
use hypervisor_shim::supervisor::{Supervisor, SupervisorConfig, SupervisorError};
use hypervisor_shim::vmm::config::VmConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VMM: &str = env!("CARGO_BIN_EXE_cimvirt-vmm");
/// What /init prints once user space runs.
const INIT_MARKER: &str = "cimvirt-linux-guest: init reached";
/// On PVM the first console line of a bzImage comes after its decompressor ran in KVM's
/// emulator (about 90 s on the build machines); a PVH vmlinux skips it (about 15 s).
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// The Linux guest made by scripts/setup-linux-guest (or `$CIMVIRT_LINUX_GUEST`).
fn guest_dir() -> PathBuf {
    let dir = std::env::var_os("CIMVIRT_LINUX_GUEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/linux-guest"));
    assert!(
        dir.join("vmlinuz").is_file()
            && dir.join("vmlinux").is_file()
            && dir.join("initramfs.cpio.gz").is_file(),
        "no Linux guest in {}: run scripts/setup-linux-guest (scripts/test does)",
        dir.display()
    );
    dir
}

struct Boot {
    dir: tempfile::TempDir,
    supervisor: Supervisor,
    events: Arc<Mutex<Vec<Event>>>,
}

impl Boot {
    fn new() -> Boot {
        let dir = tempfile::tempdir().unwrap();
        let supervisor = Supervisor::new(SupervisorConfig::new(
            dir.path().join("run"),
            PathBuf::from(VMM),
            Vec::new(),
        ))
        .unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        supervisor.listen(Arc::new(move |_, event| {
            sink.lock().unwrap().push(event.clone());
        }));
        Boot {
            dir,
            supervisor,
            events,
        }
    }

    fn config(&self, kernel: &str, memory_mib: u64) -> VmConfig {
        let guest = guest_dir();
        let mut config = VmConfig::linux(
            "linux",
            2,
            memory_mib,
            guest.join(kernel),
            Some(guest.join("initramfs.cpio.gz")),
            "cimvirt.test=linux-boot",
        );
        config.console_log = Some(self.dir.path().join("console"));
        // A virtio disk the guest finds through the DSDT (LNRO0005) and reads.
        let image = self.dir.path().join("disk.img");
        std::fs::write(&image, b"cimvirt!".repeat(1 << 20)).unwrap();
        config.disks = vec![DiskConfig {
            path: image,
            read_only: false,
            id: Some("linux-disk".into()),
        }];
        config
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console")).unwrap_or_default()
    }

    /// Waits until every one of `lines` is on the console; returns how long that took.
    fn wait_console(&self, lines: &[&str], started: Instant) -> Duration {
        loop {
            let console = self.console();
            if lines.iter().all(|l| console.contains(l)) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < BOOT_TIMEOUT,
                "timed out after {:?} waiting for {lines:?}; the console has:\n{console}\n\
                 the VM process's log:\n{}",
                BOOT_TIMEOUT,
                std::fs::read_to_string(self.dir.path().join("run/linux.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Boot {
    fn drop(&mut self) {
        if let Some(vm) = self.supervisor.get("linux") {
            let _ = vm.call(&Request::Stop);
        }
    }
}

/// Boots `kernel` and checks what this host's KVM allows, saying which it did.
fn boot(kernel: &str) {
    let boot = Boot::new();
    let started = Instant::now();
    let vm = boot.supervisor.start(&boot.config(kernel, 256)).unwrap();
    let first_line = boot.wait_console(&["Linux version 6."], started);
    boot.wait_console(
        &[
            // The command line the VMM built: its own arguments, then the VM's.
            "Command line: console=ttyS0 earlyprintk=ttyS0 reboot=k panic=1",
            "cimvirt.test=linux-boot",
            // The memory map.
            "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
            "BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable",
            // The initramfs, where the VMM put it: the top of the guest's RAM.
            "RAMDISK: [mem 0x0f",
            // The ACPI tables, from the RSDP the boot protocol passed, and the vCPUs in the
            // MADT.
            "ACPI: RSDP 0x00000000000E0000",
            "ACPI: FACP 0x",
            "ACPI: DSDT 0x",
            "ACPI: APIC 0x",
            "ACPI: Using ACPI (MADT) for SMP configuration information",
            "smpboot: Allowing 2 CPUs",
        ],
        started,
    );
    if kernel == "vmlinux" {
        // A reboot reloads the kernel and initramfs from the files the VM process opened when
        // it started: confined to an empty root, it can open none.
        let before = boot.console().matches("Linux version 6.").count();
        vm.call(&Request::Reboot).expect("the VM reboots");
        let rebooted = Instant::now();
        while boot.console().matches("Linux version 6.").count() <= before {
            assert!(
                rebooted.elapsed() < BOOT_TIMEOUT,
                "no second boot after the reboot; the VM process's log:\n{}",
                std::fs::read_to_string(boot.dir.path().join("run/linux.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "{kernel}: rebooted, first kernel line again after {:?}",
            rebooted.elapsed()
        );
    }
    match detect_kind() {
        KvmKind::Hardware => {
            let init = boot.wait_console(
                &[
                    INIT_MARKER,
                    "cimvirt-linux-guest: cpus: 2",
                    "cimvirt-linux-guest: disk vda: 16384 sectors, serial linux-disk, first bytes cimvirt!",
                    "cimvirt-linux-guest: waiting for the power button",
                ],
                started,
            );
            // A graceful shutdown presses the ACPI power button; /init powers off, and the
            // kernel's S5 write reaches the VMM.
            vm.call(&Request::Shutdown { timeout_ms: 30_000 })
                .expect("the guest powers off when the power button is pressed");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !boot
                .events
                .lock()
                .unwrap()
                .iter()
                .any(|e| matches!(e, Event::GuestPowerOff))
            {
                assert!(Instant::now() < deadline, "the guest powered off itself");
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "{kernel} on hardware KVM: first kernel line after {first_line:?}, /init after \
                 {init:?} (it read its virtio disk), then powered off through the ACPI power \
                 button"
            );
        }
        KvmKind::Pvm => {
            assert!(vm.status().is_ok(), "the VM process answers while it boots");
            eprintln!(
                "{kernel} on kvm_pvm (software KVM): first kernel line after {first_line:?}; \
                 the banner, command line, memory map, initramfs, ACPI tables and MADT were \
                 checked; user space cannot run on this host, so /init, the virtio disk and \
                 the power button were not awaited"
            );
        }
    }
}

#[test]
fn a_pvh_vmlinux_boots_without_its_decompressor() {
    if kvm_present("a Linux boot") {
        boot("vmlinux");
    }
}

#[test]
fn a_bzimage_boots_through_its_64_bit_entry() {
    if kvm_present("a Linux boot") {
        boot("vmlinuz");
    }
}

#[test]
fn a_vm_too_small_for_the_kernel_or_a_missing_kernel_is_refused_with_the_reason() {
    if !kvm_present("a Linux boot") {
        return;
    }
    let boot = Boot::new();
    let Err(error) = boot.supervisor.start(&boot.config("vmlinuz", 32)) else {
        panic!("32 MiB is too small for Debian's kernel, yet it started");
    };
    assert!(
        error
            .to_string()
            .contains("MiB of guest memory to decompress"),
        "{error}"
    );
    let mut missing = boot.config("vmlinuz", 256);
    missing.name = "missing".into();
    missing.boot = hypervisor_shim::vmm::config::Boot::Linux {
        kernel: boot.dir.path().join("no-such-kernel"),
        initramfs: None,
        cmdline: String::new(),
    };
    let Err(error) = boot.supervisor.start(&missing) else {
        panic!("a VM whose kernel is missing started");
    };
    assert!(
        matches!(error, SupervisorError::StartFailed { .. })
            && error.to_string().contains("no-such-kernel"),
        "{error:?}"
    );
}
