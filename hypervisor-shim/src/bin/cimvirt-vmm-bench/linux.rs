//! Time to a Linux guest's first kernel line, for a PVH vmlinux and for a bzImage, on
//! cimvirt's VMM and, as the peer measured in the same run, on QEMU's `microvm` machine
//! (the closest QEMU has to a minimal VMM) with the same kernel, initramfs, memory, vCPUs
//! and command line.
//!
//! The clock runs from the request to start the VM (or QEMU's spawn) to the moment the
//! kernel's banner, "Linux version", is in the serial console's file; the CPU column is the
//! VM process's own CPU time until then.

use super::{median, percentile, process_cpu_ms};
use hypervisor_shim::arch::linux::command_line;
use hypervisor_shim::protocol::Request;
use hypervisor_shim::supervisor::{Supervisor, SupervisorConfig};
use hypervisor_shim::vmm::config::VmConfig;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BANNER: &str = "Linux version";
const VCPUS: u32 = 2;
const MEMORY_MIB: u64 = 256;
/// A bzImage's decompressor runs in the instruction emulator of a software KVM: minutes.
const TIMEOUT: Duration = Duration::from_secs(600);

/// One boot: wall time and VM-process CPU time to the banner, in seconds.
struct Sample {
    wall: f64,
    cpu: f64,
}

/// Waits for the banner in `console`; gives up (and returns None) after [`TIMEOUT`].
fn wait_banner(console: &Path, started: Instant, pid: u32) -> Option<Sample> {
    while started.elapsed() < TIMEOUT {
        if std::fs::read_to_string(console)
            .unwrap_or_default()
            .contains(BANNER)
        {
            return Some(Sample {
                wall: started.elapsed().as_secs_f64(),
                cpu: process_cpu_ms(pid) / 1e3,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn cimvirt_boot(supervisor: &Supervisor, guest: &Path, kernel: &str, dir: &Path) -> Sample {
    let mut config = VmConfig::linux(
        "linux-bench",
        VCPUS,
        MEMORY_MIB,
        guest.join(kernel),
        Some(guest.join("initramfs.cpio.gz")),
        "",
    );
    let console = dir.join("cimvirt.console");
    let _ = std::fs::remove_file(&console);
    config.console_log = Some(console.clone());
    let started = Instant::now();
    let vm = supervisor.start(&config).expect("start the Linux guest");
    let sample = wait_banner(&console, started, vm.pid());
    vm.call(&Request::Stop).expect("stop");
    vm.wait_exit(Duration::from_secs(10)).expect("exit");
    sample.unwrap_or_else(|| panic!("no kernel banner from {kernel} within {TIMEOUT:?}"))
}

fn qemu_boot(qemu: &Path, guest: &Path, kernel: &str, dir: &Path) -> Sample {
    let console = dir.join("qemu.console");
    let _ = std::fs::remove_file(&console);
    let cmdline = command_line("")
        .expect("the VMM's command line")
        .as_cstring()
        .expect("a command line without NUL")
        .into_string()
        .expect("an ASCII command line");
    let started = Instant::now();
    let mut child = Command::new(qemu)
        .args([
            "-enable-kvm",
            "-M",
            "microvm",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-m", &MEMORY_MIB.to_string()])
        .args(["-smp", &VCPUS.to_string()])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(guest.join(kernel))
        .arg("-initrd")
        .arg(guest.join("initramfs.cpio.gz"))
        .args(["-append", &cmdline])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start QEMU");
    let sample = wait_banner(&console, started, child.id());
    let _ = child.kill();
    let _ = child.wait();
    sample.unwrap_or_else(|| panic!("no kernel banner from {kernel} on QEMU within {TIMEOUT:?}"))
}

/// Boots each image `runs` times on cimvirt (the VM program `vmm`) and on `qemu` (or the
/// `qemu-system-x86_64` on PATH, if any), then prints the table.
pub fn run(guest: &Path, vmm: PathBuf, qemu: Option<PathBuf>, runs: usize, dir: &Path) {
    let qemu = qemu.or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("qemu-system-x86_64"))
                .find(|p| p.is_file())
        })
    });
    let supervisor = Supervisor::new(SupervisorConfig::new(dir.join("run"), vmm, Vec::new()))
        .expect("supervisor");
    println!(
        "| Kernel image | Boot | VMM | Runs | Time to first kernel line, median s | p99 s | VM process CPU to it, median s | cimvirt / QEMU (time) |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for (kernel, boot) in [
        ("vmlinux", "PVH (no decompressor)"),
        ("vmlinuz", "bzImage, 64-bit entry"),
    ] {
        let ours: Vec<Sample> = (0..runs)
            .map(|_| cimvirt_boot(&supervisor, guest, kernel, dir))
            .collect();
        let peer: Vec<Sample> = match &qemu {
            Some(qemu) => (0..runs)
                .map(|_| qemu_boot(qemu, guest, kernel, dir))
                .collect(),
            None => Vec::new(),
        };
        let ours_wall: Vec<f64> = ours.iter().map(|s| s.wall).collect();
        let peer_wall: Vec<f64> = peer.iter().map(|s| s.wall).collect();
        let ratio = if peer.is_empty() {
            "no QEMU here".to_owned()
        } else {
            format!("{:.2}", median(&ours_wall) / median(&peer_wall))
        };
        for (vmm, samples, ratio) in [
            ("cimvirt", &ours, ratio.as_str()),
            ("QEMU microvm", &peer, ""),
        ] {
            if samples.is_empty() {
                continue;
            }
            let wall: Vec<f64> = samples.iter().map(|s| s.wall).collect();
            let cpu: Vec<f64> = samples.iter().map(|s| s.cpu).collect();
            let mut sorted = wall.clone();
            sorted.sort_by(|a, b| a.total_cmp(b));
            println!(
                "| {kernel} | {boot} | {vmm} | {} | {:.2} | {:.2} | {:.2} | {ratio} |",
                samples.len(),
                median(&wall),
                percentile(&sorted, 0.99),
                median(&cpu),
            );
        }
    }
}
