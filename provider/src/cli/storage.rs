//! `cimvirtd storage`: the volumes of a storage pool (a directory of raw images).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use hypervisor_shim::storage::{StorageError, StoragePool, SECTOR};

/// Arguments of `cimvirtd storage`.
#[derive(Debug, Args)]
pub struct StorageCommand {
    /// The pool's directory (created if missing).
    #[arg(long)]
    pool: PathBuf,
    #[command(subcommand)]
    action: StorageAction,
}

#[derive(Debug, Subcommand)]
enum StorageAction {
    /// List the volumes with their size and allocation, and the pool's space (JSON).
    List,
    /// Create a sparse raw volume.
    Create {
        /// The volume's file name.
        name: String,
        /// Its size: bytes, or with a K, M, G or T suffix (powers of 1024).
        size: String,
    },
    /// Grow a volume (new space reads as zeros).
    Resize {
        /// The volume's file name.
        name: String,
        /// Its new size: bytes, or with a K, M, G or T suffix.
        size: String,
    },
    /// Delete a volume no running VM uses.
    Delete {
        /// The volume's file name.
        name: String,
    },
    /// Make a raw image already in the pool's directory a volume (one copied there, or made
    /// before volumes were marked); other files there are never listed or deleted.
    Adopt {
        /// The image's file name.
        name: String,
    },
    /// Convert an image (qcow2, vmdk, vdi, raw ...) into a new raw volume with qemu-img.
    Import {
        /// The volume's file name.
        name: String,
        /// The image to convert.
        source: PathBuf,
    },
}

/// Parses `4096`, `64M`, `10G` ... into bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.char_indices().last() {
        Some((i, 'K' | 'k')) => (&text[..i], 10),
        Some((i, 'M' | 'm')) => (&text[..i], 20),
        Some((i, 'G' | 'g')) => (&text[..i], 30),
        Some((i, 'T' | 't')) => (&text[..i], 40),
        _ => (text, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| {
            format!("{text:?} is not a size (bytes, or a number with K, M, G or T; a multiple of {SECTOR})")
        })
}

fn act(pool: &StoragePool, action: StorageAction) -> Result<serde_json::Value, String> {
    let result = match action {
        StorageAction::List => {
            let volumes = pool.volumes().map_err(|e| e.to_string())?;
            let space = pool.space().map_err(|e| e.to_string())?;
            return Ok(serde_json::json!({
                "pool": pool.dir(),
                "capacity": space.capacity,
                "available": space.available,
                "volumes": volumes,
            }));
        }
        StorageAction::Create { name, size } => pool.create_volume(&name, parse_size(&size)?),
        StorageAction::Resize { name, size } => pool.resize_volume(&name, parse_size(&size)?),
        StorageAction::Delete { name } => {
            pool.delete_volume(&name).map_err(|e| e.to_string())?;
            return Ok(serde_json::json!({ "deleted": name }));
        }
        StorageAction::Import { name, source } => pool.import(&name, &source),
        StorageAction::Adopt { name } => pool.adopt(&name),
    };
    result
        .map_err(|e: StorageError| e.to_string())
        .and_then(|volume| serde_json::to_value(volume).map_err(|e| e.to_string()))
}

/// Carries out the action and prints its result as JSON.
pub fn run(cmd: StorageCommand) -> ExitCode {
    let outcome = StoragePool::open(&cmd.pool)
        .map_err(|e| e.to_string())
        .and_then(|pool| act(&pool, cmd.action));
    match outcome {
        Ok(value) => {
            println!("{value:#}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cimvirtd storage: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
