//! `cimvirtd`'s VM side from outside: `cimvirtd host`, VM processes run as `cimvirt-vmm`,
//! and a server that re-adopts the VMs a previous server left running.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cimvirt_tests::{cimvirt_vmm, cimvirtd, kvm_present, run_cimvirtd};
use hypervisor_shim::protocol::Request;
use hypervisor_shim::supervisor::{Supervisor, SupervisorConfig};
use hypervisor_shim::vmm::config::VmConfig;

#[test]
fn host_reports_the_kvm_kind_and_the_hardware() {
    let out = run_cimvirtd(["host"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let host: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(host["logical_cpus"].as_u64().unwrap() >= 1);
    assert!(host["memory_total_bytes"].as_u64().unwrap() > 0);
    // What the cgroup hierarchy cannot enforce, said as the supervisor finds it.
    let cgroups = Path::new(hypervisor_shim::cgroup::DEFAULT_ROOT);
    assert_eq!(
        host["kvm"]["cgroup_cpu_unsupported"].as_str(),
        hypervisor_shim::cgroup::cpu_unsupported(cgroups).as_deref()
    );
    assert_eq!(
        host["kvm"]["cgroup_memory_unsupported"].as_str(),
        hypervisor_shim::cgroup::memory_unsupported(cgroups).as_deref()
    );
    if kvm_present() {
        assert_eq!(host["kvm"]["api_version"], 12);
        let pvm = Path::new("/sys/module/kvm_pvm").exists();
        assert_eq!(host["kvm"]["kind"], if pvm { "pvm" } else { "hardware" });
    }
    let out = run_cimvirtd(["host", "--kvm-device", "/nonexistent/kvm"]);
    let host: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let why = host["kvm"]["unavailable"].as_str().unwrap();
    assert!(why.contains("/nonexistent/kvm does not exist"), "{why}");
}

#[test]
fn a_new_server_re_adopts_the_vms_a_previous_one_left_running() {
    if !kvm_present() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let run_dir = data.path().join("run");
    // A supervisor as the first server had it: VMs are `cimvirt-vmm` processes.
    let first = Supervisor::new(SupervisorConfig::new(
        run_dir.clone(),
        cimvirt_vmm(),
        Vec::new(),
    ))
    .unwrap();
    let vm = first
        .start(&VmConfig::test_guest("survivor", 1, 16))
        .unwrap();
    let before = vm.status().unwrap().heartbeats[0];

    let mut server = Command::new(cimvirtd())
        .args(["serve", "--no-http", "--https", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(server.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("cimvirtd ready") || Instant::now() > deadline {
            break;
        }
    }
    assert!(
        log.contains("re-adopted running VMs") && log.contains("survivor"),
        "{log}"
    );
    assert!(log.contains("KVM ready"), "{log}");
    server.kill().unwrap();
    server.wait().unwrap();

    // The killed server took nothing with it.
    let status = vm.status().unwrap();
    assert!(status.heartbeats[0] > before, "still running: {status:?}");
    vm.call(&Request::Stop).unwrap();
    assert!(vm.wait_exit(Duration::from_secs(10)).is_some());
}

#[test]
fn vm_demo_boots_the_test_guest_and_shuts_it_down() {
    if !kvm_present() {
        return;
    }
    let out = run_cimvirtd([
        "vm-demo",
        "--vcpus",
        "2",
        "--memory-mib",
        "32",
        "--seconds",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("cimvirt test guest: 2 vCPUs, 32 MiB\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[vm-demo] heartbeats per vCPU (100 Hz): ["),
        "{stdout}"
    );
    assert!(
        stdout.contains("[vm-demo] ended: off (the guest powered off)"),
        "{stdout}"
    );

    let out = run_cimvirtd(["vm-demo", "--kvm-device", "/nonexistent/kvm"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "VM demo did not start: KVM is not available: /nonexistent/kvm does not exist"
        ),
        "{stderr}"
    );
}
