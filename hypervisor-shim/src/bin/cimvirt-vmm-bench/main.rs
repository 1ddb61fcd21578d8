//! The VMM benchmark: starts, pauses, snapshots and restores test-guest VMs through the
//! supervisor, as the server does, and prints median and p99 of each measurement in a
//! Markdown table beside Firecracker's documented figures.
//!
//! Usage: `cimvirt-vmm-bench [--vmm PATH] [--runs N] [--dir DIR]` (the VM program defaults
//! to `cimvirt-vmm` beside this binary; snapshots go to DIR, default a temporary directory).
//! `cimvirt-vmm-bench --host-kvm` prints the host's KVM kind and CPU.
//! `cimvirt-vmm-bench --linux GUEST_DIR [--runs N] [--qemu PATH]` times Linux boots instead
//! (see `linux.rs`).
//! `cimvirt-vmm-bench --disk [--runs N]` measures virtio-blk against the host (see `disk.rs`).

mod disk;
mod linux;

use hypervisor_shim::protocol::{Event, Request};
use hypervisor_shim::supervisor::{Supervisor, SupervisorConfig, VmHandle};
use hypervisor_shim::vmm::config::VmConfig;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

type Banners = Arc<Mutex<HashMap<String, Instant>>>;

struct Bench {
    supervisor: Supervisor,
    banners: Banners,
    dir: PathBuf,
    counter: usize,
}

/// One row: a measurement's samples, its unit and the anchor it compares with.
struct Row {
    name: String,
    samples: Vec<f64>,
    unit: &'static str,
    anchor: &'static str,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    percentile(&sorted, 0.5)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// CPU time of every thread of `pid` so far, from schedstat (nanosecond resolution).
fn process_cpu_ms(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e6
}

/// Resident memory of `pid`, in KiB: (total, guest memory in shared pages, the rest).
fn rss_kib(pid: u32) -> (f64, f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (total, shmem) = (field("VmRSS:"), field("RssShmem:"));
    (total, shmem, total - shmem)
}

/// The supervisor's own CPU time so far.
fn self_cpu_ms() -> f64 {
    process_cpu_ms(std::process::id())
}

impl Bench {
    fn config(&mut self, vcpus: u32, memory_mib: u64) -> VmConfig {
        self.counter += 1;
        VmConfig::test_guest(&format!("bench{}", self.counter), vcpus, memory_mib)
    }

    fn wait_banner(&self, name: &str) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(at) = self.banners.lock().unwrap().get(name) {
                return *at;
            }
            assert!(Instant::now() < deadline, "no banner from {name}");
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    fn stop(&self, vm: &VmHandle) {
        vm.call(&Request::Stop).expect("stop");
        vm.wait_exit(Duration::from_secs(10)).expect("exit");
    }

    fn wait_console(&self, vm: &VmHandle, text: &str) {
        let log = self.dir.join(format!("{}.console", vm.name()));
        // Filling 1 GiB takes minutes under a software KVM (kvm_pvm).
        let deadline = Instant::now() + Duration::from_secs(300);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(text)
        {
            assert!(
                Instant::now() < deadline,
                "{text:?} never appeared on {}",
                vm.name()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn main() {
    let mut vmm = std::env::current_exe()
        .expect("own path")
        .with_file_name("cimvirt-vmm");
    let mut runs = 20usize;
    let mut dir: Option<PathBuf> = None;
    let mut linux_guest: Option<PathBuf> = None;
    let mut qemu: Option<PathBuf> = None;
    let mut disk = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--vmm" => vmm = args.next().expect("--vmm PATH").into(),
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).expect("--runs N"),
            "--dir" => dir = Some(args.next().expect("--dir DIR").into()),
            "--linux" => linux_guest = Some(args.next().expect("--linux GUEST_DIR").into()),
            "--qemu" => qemu = Some(args.next().expect("--qemu PATH").into()),
            "--disk" => disk = true,
            "--host-kvm" => {
                let host = hypervisor_shim::inventory::collect(
                    Path::new("/dev/kvm"),
                    Path::new(hypervisor_shim::cgroup::DEFAULT_ROOT),
                );
                let kind = host.kvm.kind.map_or("none".to_owned(), |k| format!("{k:?}"));
                println!("{kind} on {} ({} CPUs)", host.cpu_model, host.logical_cpus);
                return;
            }
            other => panic!("unknown argument {other:?}; usage: cimvirt-vmm-bench [--vmm PATH] [--runs N] [--dir DIR] [--linux GUEST_DIR [--qemu PATH]] [--disk]"),
        }
    }
    let temp = tempfile::tempdir().expect("temporary directory");
    let dir = dir.unwrap_or_else(|| temp.path().to_path_buf());
    if let Some(guest) = linux_guest {
        linux::run(&guest, vmm, qemu, runs, &dir);
        return;
    }
    if disk {
        disk::run(vmm, runs, &dir);
        return;
    }
    let mut bench = Bench::new(&vmm, &dir, "run", true);
    let mut rows = Vec::new();
    boot_rows(&mut bench, runs, &mut rows);
    pause_rows(&mut bench, runs, &mut rows);
    for (memory_mib, filled) in [(64, false), (64, true), (1024, false), (1024, true)] {
        // Writing 1 GiB is slow under a software KVM (a shadow-page fault per page).
        let reps = if memory_mib >= 1024 && filled {
            runs.clamp(1, 3)
        } else {
            runs.clamp(1, 10)
        };
        snapshot_rows(&mut bench, memory_mib, filled, reps, &mut rows);
    }
    density_rows(&mut bench, runs.max(10), &mut rows);
    print_table(&rows);
    println!();
    sandbox_table(&vmm, &dir, runs);
}

/// What the sandbox costs: start, restore and memory with VM processes confined and not,
/// measured in the same run.
fn sandbox_table(vmm: &Path, dir: &Path, runs: usize) {
    let mut measured = Vec::new();
    for (sandbox, run_dir) in [(true, "run-confined"), (false, "run-unconfined")] {
        let mut bench = Bench::new(vmm, dir, run_dir, sandbox);
        let mut rows = Vec::new();
        boot_rows(&mut bench, runs, &mut rows);
        snapshot_rows(&mut bench, 64, false, runs.clamp(1, 10), &mut rows);
        density_rows(&mut bench, 10, &mut rows);
        measured.push(rows);
    }
    let (on, off) = (&measured[0], &measured[1]);
    println!("| Measurement (sandbox on vs off) | Unit | On: median / p99 | Off: median / p99 | On - off, medians |");
    println!("|---|---|---:|---:|---:|");
    for (a, b) in on.iter().zip(off) {
        if a.unit == "VMs/s" {
            continue;
        }
        let (mut sa, mut sb) = (a.samples.clone(), b.samples.clone());
        sa.sort_by(|x, y| x.total_cmp(y));
        sb.sort_by(|x, y| x.total_cmp(y));
        let (ma, mb) = (percentile(&sa, 0.5), percentile(&sb, 0.5));
        println!(
            "| {} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {:+.2} |",
            a.name,
            a.unit,
            ma,
            percentile(&sa, 0.99),
            mb,
            percentile(&sb, 0.99),
            ma - mb
        );
    }
}

impl Bench {
    /// A supervisor of VM processes in `dir/run_dir`, confined or not, that notes when each
    /// VM's banner appears.
    fn new(vmm: &Path, dir: &Path, run_dir: &str, sandbox: bool) -> Bench {
        let mut config = SupervisorConfig::new(dir.join(run_dir), vmm.to_path_buf(), Vec::new());
        config.sandbox = sandbox;
        let supervisor = Supervisor::new(config).expect("supervisor");
        let banners: Banners = Arc::default();
        let sink = banners.clone();
        supervisor.listen(Arc::new(move |name, event| {
            if let Event::Console { bytes } = event {
                if bytes.ends_with(b" MiB\n") {
                    sink.lock()
                        .unwrap()
                        .entry(name.to_owned())
                        .or_insert_with(Instant::now);
                }
            }
        }));
        Bench {
            supervisor,
            banners,
            dir: dir.to_path_buf(),
            counter: 0,
        }
    }
}

fn boot_rows(bench: &mut Bench, runs: usize, rows: &mut Vec<Row>) {
    let (mut first_insn, mut banner, mut cpu, mut build) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let mut config = bench.config(1, 64);
        config.console_log = Some(bench.dir.join(format!("{}.console", config.name)));
        let spawned = SystemTime::now();
        let asked = Instant::now();
        let vm = bench.supervisor.start(&config).expect("start");
        let banner_at = bench.wait_banner(vm.name());
        let status = vm.status().expect("status");
        let first = status.first_instruction_ns.expect("the guest ran") as f64;
        let spawned_ns = spawned
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as f64;
        first_insn.push((first - spawned_ns) / 1e6);
        build.push((status.machine_ready_ns - status.process_start_ns) as f64 / 1e6);
        banner.push(ms(banner_at - asked));
        cpu.push(process_cpu_ms(vm.pid()));
        bench.stop(&vm);
    }
    rows.push(Row {
        name: "spawn to first guest instruction".into(),
        samples: first_insn,
        unit: "ms",
        anchor: "",
    });
    rows.push(Row {
        name: "VMM main() to machine built (KVM VM, memory, devices, vCPUs)".into(),
        samples: build,
        unit: "ms",
        anchor: "",
    });
    rows.push(Row {
        name: "start request to banner on the console".into(),
        samples: banner,
        unit: "ms",
        anchor: "",
    });
    rows.push(Row {
        name: "VM process CPU time, start to banner".into(),
        samples: cpu,
        unit: "CPU ms",
        anchor: "<= 8 CPU ms VMM start",
    });
}

fn pause_rows(bench: &mut Bench, runs: usize, rows: &mut Vec<Row>) {
    let config = bench.config(2, 64);
    let vm = bench.supervisor.start(&config).expect("start");
    let (mut pause, mut resume) = (vec![], vec![]);
    for _ in 0..runs * 3 {
        std::thread::sleep(Duration::from_millis(2));
        let t = Instant::now();
        vm.call(&Request::Pause).expect("pause");
        pause.push(ms(t.elapsed()));
        let t = Instant::now();
        vm.call(&Request::Resume).expect("resume");
        resume.push(ms(t.elapsed()));
    }
    bench.stop(&vm);
    rows.push(Row {
        name: "pause (2 vCPUs), request to reply".into(),
        samples: pause,
        unit: "ms",
        anchor: "",
    });
    rows.push(Row {
        name: "resume (2 vCPUs), request to reply".into(),
        samples: resume,
        unit: "ms",
        anchor: "",
    });
}

fn snapshot_rows(
    bench: &mut Bench,
    memory_mib: u64,
    filled: bool,
    reps: usize,
    rows: &mut Vec<Row>,
) {
    let (mut snap, mut restore, mut sizes) = (vec![], vec![], vec![]);
    for rep in 0..reps {
        let mut config = bench.config(1, memory_mib);
        config.console_log = Some(bench.dir.join(format!("{}.console", config.name)));
        let vm = bench.supervisor.start(&config).expect("start");
        bench.wait_console(&vm, "online");
        if filled {
            vm.call(&Request::SendConsole {
                bytes: b"f".to_vec(),
            })
            .expect("fill");
            bench.wait_console(&vm, "filled");
        }
        let snapshot = bench.dir.join(format!("snap-{memory_mib}-{filled}-{rep}"));
        let t = Instant::now();
        vm.call(&Request::Snapshot {
            dir: snapshot.clone(),
        })
        .expect("snapshot");
        snap.push(ms(t.elapsed()));
        sizes.push(disk_kib(&snapshot.join("memory")));
        bench.stop(&vm);
        let t = Instant::now();
        let restored = bench
            .supervisor
            .restore(vm.name(), &snapshot)
            .expect("restore");
        restore.push(ms(t.elapsed()));
        bench.stop(&restored);
        let _ = std::fs::remove_dir_all(&snapshot);
    }
    let what = if filled {
        "all memory written"
    } else {
        "idle guest"
    };
    let kib = sizes.iter().sum::<f64>() / sizes.len() as f64;
    rows.push(Row {
        name: format!(
            "snapshot, {memory_mib} MiB, {what} ({:.0} MiB on disk)",
            kib / 1024.0
        ),
        samples: snap,
        unit: "ms",
        anchor: "",
    });
    rows.push(Row {
        name: format!("restore into a new process, {memory_mib} MiB, {what}"),
        samples: restore,
        unit: "ms",
        anchor: "3 ms snapshot restore (bare metal)",
    });
}

fn disk_kib(path: &Path) -> f64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0.0, |m| m.blocks() as f64 / 2.0)
}

fn density_rows(bench: &mut Bench, count: usize, rows: &mut Vec<Row>) {
    let mut vms = Vec::new();
    let mut per_vm_cpu = Vec::new();
    let started = Instant::now();
    for _ in 0..count {
        let config = bench.config(1, 16);
        let before = self_cpu_ms();
        let vm = bench.supervisor.start(&config).expect("start");
        let supervisor_cpu = self_cpu_ms() - before;
        per_vm_cpu.push(process_cpu_ms(vm.pid()) + supervisor_cpu);
        vms.push(vm);
    }
    let wall = started.elapsed();
    let per_core: Vec<f64> = per_vm_cpu.iter().map(|cpu| 1000.0 / cpu).collect();
    let (mut total, mut overhead) = (vec![], vec![]);
    for vm in &vms {
        let (rss, _, rest) = rss_kib(vm.pid());
        total.push(rss / 1024.0);
        overhead.push(rest / 1024.0);
    }
    for vm in &vms {
        bench.stop(vm);
    }
    rows.push(Row {
        name: format!(
            "VMs started per second, {count} in a row ({:.1} s wall)",
            wall.as_secs_f64()
        ),
        samples: vec![count as f64 / wall.as_secs_f64()],
        unit: "VMs/s",
        anchor: "",
    });
    rows.push(Row {
        name: "VM starts per CPU-second (VM process + supervisor CPU)".into(),
        samples: per_core,
        unit: "VMs/core/s",
        anchor: "5 microVMs per core per second",
    });
    rows.push(Row {
        name: "VM process RSS, 16 MiB idle test guest".into(),
        samples: total,
        unit: "MiB",
        anchor: "",
    });
    rows.push(Row {
        name: "VM process RSS beside guest memory (RSS - shmem)".into(),
        samples: overhead,
        unit: "MiB",
        anchor: "<= 5 MiB VMM overhead",
    });
}

fn print_table(rows: &[Row]) {
    println!("| Measurement | Runs | Median | p99 | Unit | Firecracker's figure |");
    println!("|---|---:|---:|---:|---|---|");
    for row in rows {
        let mut sorted = row.samples.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        println!(
            "| {} | {} | {:.2} | {:.2} | {} | {} |",
            row.name,
            sorted.len(),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
            row.unit,
            row.anchor
        );
    }
}
