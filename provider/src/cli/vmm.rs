//! `cimvirtd vmm` (hidden): one VM process, started by the server's supervisor.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use hypervisor_shim::vmm::{self, VmmArgs};

/// Arguments of a VM process.
#[derive(Debug, Args)]
pub struct VmmCommand {
    /// The control socket to create.
    #[arg(long)]
    socket: PathBuf,
    /// The VM definition (JSON) to boot.
    #[arg(long, conflicts_with = "restore", required_unless_present = "restore")]
    config: Option<PathBuf>,
    /// A saved state or snapshot directory to restore.
    #[arg(long)]
    restore: Option<PathBuf>,
    /// Build the machine but wait for a start request.
    #[arg(long)]
    paused_at_start: bool,
    /// The KVM device.
    #[arg(long, default_value = hypervisor_shim::hypervisor::kvm::DEFAULT_DEVICE)]
    kvm_device: PathBuf,
}

/// Runs the VM until it powers off, is saved, or crashes.
pub fn run(cmd: VmmCommand) -> ExitCode {
    // Its standard error is the VM's log file in the run directory.
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CIMVIRT_VMM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let code = vmm::run(VmmArgs {
        socket: cmd.socket,
        config: cmd.config,
        restore: cmd.restore,
        paused_at_start: cmd.paused_at_start,
        kvm_device: cmd.kvm_device,
    });
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
