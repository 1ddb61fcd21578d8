//! `cimvirtd host`: what this host offers VMs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

/// Arguments of `cimvirtd host`.
#[derive(Debug, Args)]
pub struct HostCommand {
    /// The KVM device to probe.
    #[arg(long, default_value = hypervisor_shim::hypervisor::kvm::DEFAULT_DEVICE)]
    kvm_device: PathBuf,
    /// Where cgroup v2 is mounted (`[vmm] cgroup_root`).
    #[arg(long, default_value = hypervisor_shim::cgroup::DEFAULT_ROOT)]
    cgroup_root: PathBuf,
}

/// Prints the host inventory as JSON.
pub fn run(cmd: HostCommand) -> ExitCode {
    let inventory = hypervisor_shim::inventory::collect(&cmd.kvm_device, &cmd.cgroup_root);
    match serde_json::to_string_pretty(&inventory) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cimvirtd: {e}");
            ExitCode::FAILURE
        }
    }
}
