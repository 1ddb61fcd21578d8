//! `cimvirtd`: the cimvirt WBEM server for KVM hosts, and its tools.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    cli::run(args)
}
