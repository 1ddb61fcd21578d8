//! `cimvirtd vm-demo`: boots the built-in test guest in a VM process, as the server would,
//! shows its console and heartbeats, and shuts it down. Nothing to download or configure.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use hypervisor_shim::lifecycle::State;
use hypervisor_shim::protocol::{Event, Request};
use hypervisor_shim::supervisor::{Supervisor, SupervisorConfig};
use hypervisor_shim::vmm::config::VmConfig;

/// Arguments of `cimvirtd vm-demo`.
#[derive(Debug, Args)]
pub struct VmDemoCommand {
    /// Virtual CPUs.
    #[arg(long, default_value_t = 2)]
    vcpus: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mib: u64,
    /// How long to let it run before the graceful shutdown.
    #[arg(long, default_value_t = 2)]
    seconds: u64,
    /// The KVM device.
    #[arg(long, default_value = hypervisor_shim::hypervisor::kvm::DEFAULT_DEVICE)]
    kvm_device: std::path::PathBuf,
}

/// Runs the demo; fails with the reason when VMs cannot run here.
pub fn run(cmd: VmDemoCommand) -> ExitCode {
    match demo(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cimvirtd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(cmd: VmDemoCommand) -> Result<(), String> {
    let run_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let program = super::vm_program(None)?;
    let mut config = SupervisorConfig::new(run_dir.path().to_path_buf(), program, Vec::new());
    config.kvm_device = cmd.kvm_device;
    let supervisor = Supervisor::new(config).map_err(|e| e.to_string())?;
    supervisor.listen(Arc::new(|_, event| match event {
        Event::Console { bytes } => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(bytes);
            let _ = out.flush();
        }
        Event::State { state } => println!("[vm-demo] state: {state}"),
        Event::Crashed { reason } => println!("[vm-demo] crashed: {reason}"),
        _ => {}
    }));
    let vm = supervisor
        .start(&VmConfig::test_guest("demo", cmd.vcpus, cmd.memory_mib))
        .map_err(|e| e.to_string())?;
    println!(
        "[vm-demo] VM process {} runs the built-in test guest",
        vm.pid()
    );
    for _ in 0..cmd.seconds {
        std::thread::sleep(Duration::from_secs(1));
        let status = vm.status().map_err(|e| e.to_string())?;
        println!(
            "[vm-demo] heartbeats per vCPU (100 Hz): {:?}",
            status.heartbeats
        );
    }
    println!("[vm-demo] asking the guest to shut down (Ctrl-Alt-Del)");
    vm.call(&Request::Shutdown { timeout_ms: 10_000 })
        .map_err(|e| e.to_string())?;
    let exit = vm
        .wait_exit(Duration::from_secs(10))
        .ok_or("the VM process did not end")?;
    println!("[vm-demo] ended: {} ({})", exit.state, exit.reason);
    if exit.state == State::Off {
        Ok(())
    } else {
        Err(format!("the VM ended {}", exit.state))
    }
}
