//! `cimvirtd`: the cimvirt WBEM server for KVM hosts, and its tools.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc: the server allocates and frees many small buffers per
/// request on every worker thread, and glibc's arenas spent about a seventh of the server's
/// CPU there, partly waiting on each other's locks (measured with `perf`, README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    cli::run(args)
}
