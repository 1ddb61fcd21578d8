//! `cimvirt-vmm`: the process each VM runs in. cimvirtd's supervisor starts one per VM,
//! and the VMM's tests and benchmarks start it directly. Nothing of the server is in it.
//!
//! `cimvirt-vmm --socket PATH (--config FILE | --restore DIR) [--paused-at-start]
//! [--kvm-device PATH] [--uid N --gid N | --no-sandbox]` runs one VM; its log (standard error) is the VM's log
//! file. Once the machine is built the process confines itself (see
//! `hypervisor_shim::sandbox`) unless `--no-sandbox` says otherwise.
//!
//! `cimvirt-vmm --supervise RUN_DIR --start-test-guests N` (hidden) plays the server: it
//! starts N test-guest VMs through the supervisor, prints `started NAME PID` for each, and
//! waits to be killed. The tests use it to kill a "server" whose VMs must keep running.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hypervisor_shim::supervisor::{Supervisor, SupervisorConfig};
use hypervisor_shim::vmm::config::VmConfig;
use hypervisor_shim::vmm::{self, VmmArgs};

/// Runs one virtual machine until it powers off, is saved, or crashes.
#[derive(Debug, Parser)]
#[command(name = "cimvirt-vmm", version)]
struct Cli {
    /// The control socket to create.
    #[arg(long, required_unless_present = "supervise")]
    socket: Option<PathBuf>,
    /// The VM definition (JSON) to boot.
    #[arg(long, conflicts_with = "restore")]
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
    /// Do not confine the process (namespaces, root, user, capabilities, seccomp): for
    /// debugging only.
    #[arg(long)]
    no_sandbox: bool,
    /// The unprivileged user id the confined process becomes (its supervisor gives each VM
    /// its own).
    #[arg(long, requires = "gid", conflicts_with = "no_sandbox")]
    uid: Option<u32>,
    /// The group id it becomes.
    #[arg(long, requires = "uid")]
    gid: Option<u32>,
    /// Plays the server for the tests: a supervisor with its run directory here.
    #[arg(
        long,
        hide = true,
        requires = "start_test_guests",
        conflicts_with = "socket"
    )]
    supervise: Option<PathBuf>,
    /// With --supervise: how many test guests to start.
    #[arg(long, hide = true)]
    start_test_guests: Option<u32>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CIMVIRT_VMM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    if let Some(run_dir) = cli.supervise {
        return play_server(run_dir, cli.start_test_guests.unwrap_or(0));
    }
    let (Some(socket), config, restore) = (cli.socket, cli.config, cli.restore) else {
        unreachable!("clap requires --socket without --supervise");
    };
    if config.is_none() && restore.is_none() {
        eprintln!("cimvirt-vmm: --config or --restore is required");
        return ExitCode::from(64);
    }
    let code = vmm::run(VmmArgs {
        socket,
        config,
        restore,
        paused_at_start: cli.paused_at_start,
        kvm_device: cli.kvm_device,
        sandbox: !cli.no_sandbox,
        user: cli
            .uid
            .zip(cli.gid)
            .map(|(uid, gid)| hypervisor_shim::sandbox::users::VmUser { uid, gid }),
    });
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn play_server(run_dir: PathBuf, count: u32) -> ExitCode {
    let started = std::env::current_exe().and_then(|program| {
        Supervisor::new(SupervisorConfig::new(run_dir, program, Vec::new()))
            .map_err(std::io::Error::other)
    });
    let supervisor = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cimvirt-vmm: {e}");
            return ExitCode::FAILURE;
        }
    };
    for i in 0..count {
        let config = VmConfig::test_guest(&format!("guest{i}"), 1, 16);
        match supervisor.start(&config) {
            Ok(vm) => println!("started {} {}", vm.name(), vm.pid()),
            Err(e) => {
                eprintln!("cimvirt-vmm: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("ready");
    loop {
        std::thread::park();
    }
}
