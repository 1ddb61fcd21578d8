//! Command-line interface: one subcommand per job.

mod bridge;
mod console;
mod host;
mod mof;
mod serve;
mod storage;
mod user;
mod vm_demo;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cimvirtd: a WBEM server (CIM-XML and WS-Management) for Linux KVM hosts, with its own
/// integrated KVM hypervisor.
#[derive(Debug, Parser)]
#[command(name = "cimvirtd", version, about, long_about = None)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list and delete the Linux bridges VM network ports attach to.
    #[command(subcommand)]
    Bridge(bridge::BridgeCommand),
    /// Open a VM's serial console in this terminal (over the server's WebSocket).
    Console(console::ConsoleCommand),
    /// Print what this host offers VMs: CPUs, memory, load, KVM (JSON).
    Host(host::HostCommand),
    /// Compile and inspect MOF (DSP0221) schemas.
    #[command(subcommand)]
    Mof(mof::MofCommand),
    /// Run the WBEM server (CIM-XML and WS-Management over HTTP and HTTPS, and the VMs'
    /// consoles as WebSockets).
    Serve(serve::ServeArgs),
    /// Create, grow, list, import and delete the disk images of a storage pool.
    Storage(storage::StorageCommand),
    /// Manage the users of a data directory (while the server is stopped).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Boot the built-in test guest in a VM, show its console and heartbeats, shut it down.
    VmDemo(vm_demo::VmDemoCommand),
}

/// Runs the chosen subcommand.
pub fn run(args: Args) -> ExitCode {
    match args.command {
        Command::Mof(cmd) => mof::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::User(cmd) => user::run(cmd),
        Command::Host(cmd) => host::run(cmd),
        Command::Bridge(cmd) => bridge::run(cmd),
        Command::Console(cmd) => console::run(cmd),
        Command::Storage(cmd) => storage::run(cmd),
        Command::VmDemo(cmd) => vm_demo::run(cmd),
    }
}

/// The name of the program each VM runs in, built beside cimvirtd.
const VM_PROGRAM: &str = "cimvirt-vmm";

/// The VM program: `configured` (`[vmm] program`), else `cimvirt-vmm` beside this executable;
/// an error says why it cannot be run.
fn vm_program(configured: Option<&Path>) -> Result<PathBuf, String> {
    let path = match configured {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find cimvirtd's own path: {e}"))?
            .with_file_name(VM_PROGRAM),
    };
    let metadata = std::fs::metadata(&path).map_err(|e| {
        format!(
            "the VM program {} cannot be used: {e} (cargo build --release builds it beside \
             cimvirtd; [vmm] program names another)",
            path.display()
        )
    })?;
    if !metadata.is_file() || metadata.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "the VM program {} is not an executable file",
            path.display()
        ));
    }
    Ok(path)
}
