//! virtio-blk throughput and IOPS as the test guest measures them (its `b` command, queue
//! depth 1: sequential 1 MiB requests over the whole disk, then random 4 KiB ones), beside
//! the same requests made on the same image file by the host itself (pwrite/pread from one
//! thread, the syscalls the VMM's I/O thread makes), with the VM process's CPU per request.
//!
//! The guest prints a line as each phase ends; a phase's time runs from the previous line
//! (or from sending the command) to its own, read from the console file.

use super::{median, process_cpu_ms};
use hypervisor_shim::devices::virtio::block::DiskConfig;
use hypervisor_shim::guest::test_guest::{command, disk_bench as bench};
use hypervisor_shim::protocol::Request;
use hypervisor_shim::supervisor::{Supervisor, SupervisorConfig};
use hypervisor_shim::vmm::config::VmConfig;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The image's size.
const DISK_MIB: u64 = 256;

/// One phase of one run: seconds, requests, the VM process's CPU seconds and its I/O
/// thread's (the device's own work, without the vCPU polling for completions).
#[derive(Clone, Copy, Default)]
struct Phase {
    seconds: f64,
    requests: u64,
    cpu_seconds: f64,
    io_thread_cpu_seconds: f64,
}

/// CPU seconds of the thread named `name` in process `pid`.
fn thread_cpu(pid: u32, name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e9
}

fn requests(phase: usize) -> u64 {
    if phase < 2 {
        DISK_MIB
    } else {
        bench::RANDOM_IOS
    }
}

fn request_bytes(phase: usize) -> u64 {
    if phase < 2 {
        bench::SEQUENTIAL_BYTES
    } else {
        4096
    }
}

/// One guest run of the four phases.
fn guest_run(supervisor: &Supervisor, image: &Path, dir: &Path, run: usize) -> [Phase; 4] {
    let name = format!("disk-bench{run}");
    let console = dir.join(format!("{name}.console"));
    let mut config = VmConfig::test_guest(&name, 1, 16);
    config.console_log = Some(console.clone());
    config.disks = vec![DiskConfig {
        path: image.to_owned(),
        read_only: false,
        id: None,
    }];
    let vm = supervisor.start(&config).expect("start the VM");
    let pid = vm.status().expect("status").pid;
    wait_for(&console, "1 vCPUs online", Duration::from_secs(30));
    let mut phases = [Phase::default(); 4];
    // The device's I/O thread starts when the guest's driver sets it up: before the first
    // request, which the guest makes only after that.
    let mut started = Instant::now();
    let mut cpu = process_cpu_ms(pid) / 1e3;
    let mut io_cpu = 0.0;
    vm.call(&Request::SendConsole {
        bytes: vec![command::DISK_BENCH],
    })
    .expect("send the bench command");
    for (i, name) in bench::PHASES.iter().enumerate() {
        wait_for(
            &console,
            &format!("bench: {name} done"),
            Duration::from_secs(600),
        );
        let (now, now_cpu) = (Instant::now(), process_cpu_ms(pid) / 1e3);
        let now_io_cpu = thread_cpu(pid, "virtio-blk0");
        phases[i] = Phase {
            seconds: (now - started).as_secs_f64(),
            requests: requests(i),
            cpu_seconds: now_cpu - cpu,
            io_thread_cpu_seconds: now_io_cpu - io_cpu,
        };
        (started, cpu, io_cpu) = (now, now_cpu, now_io_cpu);
    }
    wait_for(&console, "failed requests", Duration::from_secs(10));
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    assert!(
        log.contains("bench: finished, 0 failed requests"),
        "the guest saw failed requests:\n{log}"
    );
    vm.call(&Request::Stop).expect("stop");
    vm.wait_exit(Duration::from_secs(10)).expect("exit");
    phases
}

/// The same requests, made by this process on the image.
fn host_run(image: &Path) -> [Phase; 4] {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .expect("open the image");
    let mut buffer = vec![0x5au8; bench::SEQUENTIAL_BYTES as usize];
    let sectors = DISK_MIB << 11;
    let mut phases = [Phase::default(); 4];
    for (i, phase) in phases.iter_mut().enumerate() {
        let started = Instant::now();
        let cpu = process_cpu_ms(std::process::id()) / 1e3;
        let len = request_bytes(i) as usize;
        // The guest's generator, so that both touch the same blocks.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for n in 0..requests(i) {
            let offset = if i < 2 {
                n * bench::SEQUENTIAL_BYTES
            } else {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 33) % (sectors / 8)) * 4096
            };
            let result = if i % 2 == 0 {
                file.write_all_at(&buffer[..len], offset)
            } else {
                file.read_exact_at(&mut buffer[..len], offset)
            };
            result.expect("host I/O on the image");
        }
        *phase = Phase {
            seconds: started.elapsed().as_secs_f64(),
            requests: requests(i),
            cpu_seconds: process_cpu_ms(std::process::id()) / 1e3 - cpu,
            io_thread_cpu_seconds: 0.0,
        };
    }
    phases
}

fn wait_for(console: &Path, text: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !std::fs::read_to_string(console)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(Instant::now() < deadline, "{text:?} never appeared");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Runs the guest and host measurements `runs` times each and prints the table.
pub fn run(vmm: PathBuf, runs: usize, dir: &Path) {
    std::fs::create_dir_all(dir).expect("create the directory");
    let image = dir.join("bench-disk.img");
    // Fully allocated, as a guest's written disk would be.
    std::fs::write(&image, vec![0u8; (DISK_MIB << 20) as usize]).expect("create the image");
    let supervisor = Supervisor::new(SupervisorConfig::new(dir.join("run"), vmm, Vec::new()))
        .expect("supervisor");
    let guest: Vec<[Phase; 4]> = (0..runs)
        .map(|run| guest_run(&supervisor, &image, dir, run))
        .collect();
    let host: Vec<[Phase; 4]> = (0..runs).map(|_| host_run(&image)).collect();
    println!(
        "| Workload (queue depth 1) | Requests | Test guest, MiB/s | IOPS | Host on the image, MiB/s | IOPS | Guest / host | I/O thread CPU per request, µs | VM process CPU per request, µs |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, name) in bench::PHASES.iter().enumerate() {
        let iops = |runs: &[[Phase; 4]]| {
            median(
                &runs
                    .iter()
                    .map(|r| r[i].requests as f64 / r[i].seconds)
                    .collect::<Vec<_>>(),
            )
        };
        let (guest_iops, host_iops) = (iops(&guest), iops(&host));
        let mib = |iops: f64| iops * request_bytes(i) as f64 / f64::from(1 << 20);
        let per_request_us = |cpu: fn(&Phase) -> f64| {
            median(
                &guest
                    .iter()
                    .map(|r| cpu(&r[i]) / r[i].requests as f64 * 1e6)
                    .collect::<Vec<_>>(),
            )
        };
        let io_us = per_request_us(|p| p.io_thread_cpu_seconds);
        let cpu_us = per_request_us(|p| p.cpu_seconds);
        let label = match *name {
            "seq-write" => "sequential write, 1 MiB",
            "seq-read" => "sequential read, 1 MiB",
            "rand-write" => "random write, 4 KiB",
            _ => "random read, 4 KiB",
        };
        println!(
            "| {label} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} |",
            requests(i),
            mib(guest_iops),
            guest_iops,
            mib(host_iops),
            host_iops,
            guest_iops / host_iops,
            io_us,
            cpu_us
        );
    }
}
