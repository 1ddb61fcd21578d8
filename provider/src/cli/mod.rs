//! Command-line interface: one subcommand per job.

mod bridge;
mod host;
mod mof;
mod serve;
mod storage;
mod user;
mod vm_demo;
mod vmm;

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
    /// Print what this host offers VMs: CPUs, memory, load, KVM (JSON).
    Host(host::HostCommand),
    /// Compile and inspect MOF (DSP0221) schemas.
    #[command(subcommand)]
    Mof(mof::MofCommand),
    /// Run the WBEM server (CIM-XML and WS-Management over HTTP and HTTPS).
    Serve(serve::ServeArgs),
    /// Create, grow, list, import and delete the disk images of a storage pool.
    Storage(storage::StorageCommand),
    /// Manage the users of a data directory (while the server is stopped).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Boot the built-in test guest in a VM, show its console and heartbeats, shut it down.
    VmDemo(vm_demo::VmDemoCommand),
    /// Run one VM (started by the server; not for people).
    #[command(hide = true)]
    Vmm(vmm::VmmCommand),
}

/// Runs the chosen subcommand.
pub fn run(args: Args) -> ExitCode {
    match args.command {
        Command::Mof(cmd) => mof::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::User(cmd) => user::run(cmd),
        Command::Host(cmd) => host::run(cmd),
        Command::Bridge(cmd) => bridge::run(cmd),
        Command::Storage(cmd) => storage::run(cmd),
        Command::Vmm(cmd) => vmm::run(cmd),
        Command::VmDemo(cmd) => vm_demo::run(cmd),
    }
}
