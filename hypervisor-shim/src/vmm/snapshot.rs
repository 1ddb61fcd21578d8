//! Snapshots on disk: a directory with `state.json` (the configuration and every vCPU, VM and
//! device register, versioned) and `memory` (guest RAM, sparse). Both are written to temporary
//! names and renamed into place, so a snapshot is either complete or absent, and a VM that
//! maps an older `memory` copy-on-write keeps its own (unlinked) file.

use super::config::VmConfig;
use super::machine::PowerOnState;
use crate::devices::virtio::mmio::TransportSnapshot;
use crate::devices::DevicesState;
use crate::hypervisor::{VcpuState, VmState};
use crate::memory::Memory;
use crate::Error;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;

/// Names the file format, so a stray JSON file is not mistaken for a snapshot.
pub const FORMAT: &str = "cimvirt-vm-snapshot";
/// The state format this build writes and reads.
pub const VERSION: u32 = 1;
/// The state file's name.
pub const STATE_FILE: &str = "state.json";
/// The memory file's name.
pub const MEMORY_FILE: &str = "memory";

/// All register and device state of a stopped machine.
#[derive(Clone, Serialize, Deserialize)]
pub struct MachineState {
    /// Every vCPU.
    pub vcpus: Vec<VcpuState>,
    /// The in-kernel devices.
    pub vm: VmState,
    /// The VMM's devices.
    pub devices: DevicesState,
    /// What a reset goes back to.
    pub power_on: PowerOnState,
    /// The virtio devices' transports and queues.
    #[serde(default)]
    pub virtio: Vec<TransportSnapshot>,
}

/// The contents of `state.json`.
#[derive(Serialize, Deserialize)]
pub struct SnapshotFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version.
    pub version: u32,
    /// The VM's definition.
    pub config: VmConfig,
    /// Guest RAM in bytes (the memory file's size).
    pub memory_bytes: u64,
    /// Whether the VM was paused when the snapshot was taken: a restore then comes back
    /// paused.
    #[serde(default)]
    pub paused: bool,
    /// The machine state.
    pub state: MachineState,
}

/// What writing a snapshot did.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// Bytes of guest memory that held data.
    pub memory_data_bytes: u64,
}

/// Writes a snapshot into `dir` (created if missing). The vCPUs must be stopped.
pub fn write(
    dir: &Path,
    config: &VmConfig,
    state: MachineState,
    memory: &Memory,
    paused: bool,
) -> Result<Written, Error> {
    let io = |what: &str| {
        let what = format!("{what} in {}", dir.display());
        move |e: std::io::Error| Error::Snapshot(format!("{what}: {e}"))
    };
    fs::create_dir_all(dir).map_err(io("creating the directory"))?;
    let memory_tmp = dir.join(".memory.tmp");
    let memory_data_bytes = memory
        .save(&memory_tmp)
        .map_err(io("writing guest memory"))?;
    fs::rename(&memory_tmp, dir.join(MEMORY_FILE)).map_err(io("renaming the memory file"))?;
    write_state(dir, config, state, memory.size(), paused)?;
    Ok(Written { memory_data_bytes })
}

/// Writes `dir/state.json` alone (created if missing), to a temporary name first; the memory
/// file of `memory_bytes` comes from elsewhere (a pre-copy migration sends it).
pub fn write_state(
    dir: &Path,
    config: &VmConfig,
    state: MachineState,
    memory_bytes: u64,
    paused: bool,
) -> Result<(), Error> {
    let io = |what: &str| {
        let what = format!("{what} in {}", dir.display());
        move |e: std::io::Error| Error::Snapshot(format!("{what}: {e}"))
    };
    fs::create_dir_all(dir).map_err(io("creating the directory"))?;
    let file = SnapshotFile {
        format: FORMAT.to_owned(),
        version: VERSION,
        config: config.clone(),
        memory_bytes,
        paused,
        state,
    };
    let state_tmp = dir.join(".state.json.tmp");
    let json = serde_json::to_vec(&file).map_err(|e| Error::Snapshot(e.to_string()))?;
    fs::write(&state_tmp, json).map_err(io("writing the state"))?;
    fs::File::open(&state_tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing the state"))?;
    fs::rename(&state_tmp, dir.join(STATE_FILE)).map_err(io("renaming the state file"))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing the directory"))
}

/// Reads `dir/state.json`, checking its format and version.
pub fn read(dir: &Path) -> Result<SnapshotFile, Error> {
    let path = dir.join(STATE_FILE);
    let bytes =
        fs::read(&path).map_err(|e| Error::Snapshot(format!("reading {}: {e}", path.display())))?;
    let head: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Snapshot(format!("{} is not JSON: {e}", path.display())))?;
    if head.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(Error::Snapshot(format!(
            "{} is not a cimvirt snapshot",
            path.display()
        )));
    }
    match head.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(VERSION) => {}
        other => {
            return Err(Error::Snapshot(format!(
                "{} has format version {other:?}; this build reads version {VERSION}",
                path.display()
            )))
        }
    }
    serde_json::from_value(head).map_err(|e| Error::Snapshot(format!("{}: {e}", path.display())))
}

/// Gives the snapshot in `dir` the configuration `config` of the host it will run on (its
/// console log, its kernel's place), as a migration's destination does. The machine must stay
/// the same: the name, vCPUs, memory and the number of disks and network ports are checked.
pub fn retarget(dir: &Path, config: &VmConfig) -> Result<(), Error> {
    let mut file = read(dir)?;
    let old = &file.config;
    let shape = |c: &VmConfig| {
        (
            c.name.clone(),
            c.vcpus,
            c.memory_mib,
            c.disks.len(),
            c.nics.len(),
        )
    };
    if shape(old) != shape(config) {
        return Err(Error::Snapshot(format!(
            "the snapshot in {} is of a different machine (name, vCPUs, MiB, disks, ports: {:?}, \
             not {:?})",
            dir.display(),
            shape(old),
            shape(config)
        )));
    }
    file.config = config.clone();
    let tmp = dir.join(".state.json.tmp");
    let json = serde_json::to_vec(&file).map_err(|e| Error::Snapshot(e.to_string()))?;
    let io = |e: std::io::Error| Error::Snapshot(format!("rewriting {}: {e}", tmp.display()));
    fs::write(&tmp, json).map_err(io)?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    fs::rename(&tmp, dir.join(STATE_FILE)).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_and_future_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let Err(err) = read(dir.path()) else {
            panic!("no state file")
        };
        assert!(err.to_string().contains("state.json"), "{err}");
        fs::write(dir.path().join(STATE_FILE), r#"{"format":"other"}"#).unwrap();
        let Err(err) = read(dir.path()) else {
            panic!("foreign")
        };
        assert!(err.to_string().contains("not a cimvirt snapshot"), "{err}");
        fs::write(
            dir.path().join(STATE_FILE),
            format!(r#"{{"format":"{FORMAT}","version":99}}"#),
        )
        .unwrap();
        let Err(err) = read(dir.path()) else {
            panic!("future")
        };
        assert!(err.to_string().contains("version Some(99)"), "{err}");
    }
}
