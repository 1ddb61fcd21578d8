//! `cimvirtd bridge`: the Linux bridges VM network ports attach to.

use std::process::ExitCode;

use clap::Subcommand;
use hypervisor_shim::netif;

/// What `cimvirtd bridge` does.
#[derive(Debug, Subcommand)]
pub enum BridgeCommand {
    /// List the bridges, up or down, with their ports (JSON).
    List,
    /// Create a bridge and set it up.
    Create {
        /// Its name (up to 15 bytes).
        name: String,
    },
    /// Delete a bridge.
    Delete {
        /// Its name.
        name: String,
    },
}

/// Carries out the command.
pub fn run(cmd: BridgeCommand) -> ExitCode {
    let outcome = match cmd {
        BridgeCommand::List => {
            netif::bridges().map(|bridges| println!("{:#}", serde_json::json!(bridges)))
        }
        BridgeCommand::Create { name } => netif::create_bridge(&name),
        BridgeCommand::Delete { name } => netif::delete_bridge(&name),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cimvirtd bridge: {e}");
            ExitCode::FAILURE
        }
    }
}
