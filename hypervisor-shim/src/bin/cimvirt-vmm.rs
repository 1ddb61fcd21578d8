//! A VM process on its own, for hypervisor-shim's tests and benchmarks (`cimvirtd vmm` is
//! the same entry point in the product).
//!
//! `cimvirt-vmm --socket PATH (--config FILE | --restore DIR) [--paused-at-start]
//! [--kvm-device PATH]` runs one VM.
//!
//! `cimvirt-vmm --supervise RUN_DIR --start-test-guests N` plays the server: it starts N
//! test-guest VMs through the supervisor, prints `started NAME PID` for each, and waits to be
//! killed. The tests use it to kill a "server" whose VMs must keep running.

use hypervisor_shim::supervisor::{Supervisor, SupervisorConfig};
use hypervisor_shim::vmm::config::VmConfig;
use hypervisor_shim::vmm::{self, VmmArgs};
use std::path::PathBuf;

const USAGE: &str = "usage: cimvirt-vmm --socket PATH (--config FILE | --restore DIR) \
                     [--paused-at-start] [--kvm-device PATH]\n       \
                     cimvirt-vmm --supervise RUN_DIR --start-test-guests N";

fn fail(message: &str) -> ! {
    eprintln!("cimvirt-vmm: {message}\n{USAGE}");
    std::process::exit(64);
}

fn main() {
    let mut args = VmmArgs {
        socket: PathBuf::new(),
        config: None,
        restore: None,
        paused_at_start: false,
        kvm_device: PathBuf::from(hypervisor_shim::hypervisor::kvm::DEFAULT_DEVICE),
    };
    let mut supervise: Option<PathBuf> = None;
    let mut test_guests = 0u32;
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        let mut value = || {
            argv.next()
                .unwrap_or_else(|| fail(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--socket" => args.socket = value().into(),
            "--config" => args.config = Some(value().into()),
            "--restore" => args.restore = Some(value().into()),
            "--paused-at-start" => args.paused_at_start = true,
            "--kvm-device" => args.kvm_device = value().into(),
            "--supervise" => supervise = Some(value().into()),
            "--start-test-guests" => {
                test_guests = value()
                    .parse()
                    .unwrap_or_else(|_| fail("--start-test-guests takes a number"))
            }
            other => fail(&format!("unknown argument {other:?}")),
        }
    }
    if let Some(run_dir) = supervise {
        std::process::exit(play_server(run_dir, test_guests));
    }
    if args.socket.as_os_str().is_empty() {
        fail("--socket is required");
    }
    std::process::exit(vmm::run(args));
}

fn play_server(run_dir: PathBuf, count: u32) -> i32 {
    let program = std::env::current_exe().unwrap_or_else(|e| fail(&format!("own path: {e}")));
    let supervisor = match Supervisor::new(SupervisorConfig::new(run_dir, program, Vec::new())) {
        Ok(s) => s,
        Err(e) => fail(&e.to_string()),
    };
    for i in 0..count {
        let config = VmConfig::test_guest(&format!("guest{i}"), 1, 16);
        match supervisor.start(&config) {
            Ok(vm) => println!("started {} {}", vm.name(), vm.pid()),
            Err(e) => {
                eprintln!("cimvirt-vmm: {e}");
                return 1;
            }
        }
    }
    println!("ready");
    loop {
        std::thread::park();
    }
}
