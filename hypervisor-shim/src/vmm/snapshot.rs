//! Snapshots on disk: a directory with `state.json` (the configuration and every vCPU, VM and
//! device register, versioned) and `memory` (guest RAM, sparse). The side that asks for a
//! snapshot creates both under temporary names ([`Pending`]), the VM process writes them
//! through the descriptors it is handed, and the asking side renames them into place, so a
//! snapshot is either complete or absent, and a VM that maps an older `memory` copy-on-write
//! keeps its own (unlinked) file.

use super::config::VmConfig;
use super::machine::PowerOnState;
use crate::devices::virtio::mmio::TransportSnapshot;
use crate::devices::DevicesState;
use crate::hypervisor::{VcpuState, VmState};
use crate::memory::Memory;
use crate::Error;
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

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

/// Writes a snapshot into `memory` and `state`, the empty files that come with the request
/// (see [`Pending`]). The vCPUs must be stopped.
pub fn write(
    memory_file: &fs::File,
    state_file: &fs::File,
    config: &VmConfig,
    state: MachineState,
    memory: &Memory,
    paused: bool,
) -> Result<Written, Error> {
    let memory_data_bytes = memory
        .save_to(memory_file)
        .map_err(|e| Error::Snapshot(format!("writing guest memory: {e}")))?;
    write_state(state_file, config, state, memory.size(), paused)?;
    Ok(Written { memory_data_bytes })
}

/// Writes the state alone into `file` (the snapshot's `state.json` to be); the memory file of
/// `memory_bytes` comes from elsewhere (a pre-copy migration sends it).
pub fn write_state(
    file: &fs::File,
    config: &VmConfig,
    state: MachineState,
    memory_bytes: u64,
    paused: bool,
) -> Result<(), Error> {
    let contents = SnapshotFile {
        format: FORMAT.to_owned(),
        version: VERSION,
        config: config.clone(),
        memory_bytes,
        paused,
        state,
    };
    let json = serde_json::to_vec(&contents).map_err(|e| Error::Snapshot(e.to_string()))?;
    file.set_len(0)
        .and_then(|()| file.write_all_at(&json, 0))
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::Snapshot(format!("writing the state: {e}")))
}

/// A snapshot on its way into a directory, on the side that asks for it: the files the VM
/// writes, created empty under temporary names, and put in place by [`Pending::place`] once
/// the VM has written them. Until then a reader of the directory sees the previous snapshot
/// or none; a pending snapshot dropped unplaced leaves nothing behind.
#[derive(Debug)]
pub struct Pending {
    dir: PathBuf,
    memory: Option<fs::File>,
    state: fs::File,
    placed: bool,
}

const MEMORY_TMP: &str = ".memory.tmp";
const STATE_TMP: &str = ".state.json.tmp";

impl Pending {
    /// Creates `dir` (if missing) and the empty files: the state's, and the memory's unless
    /// `state_only` (a pre-copy migration has sent the memory).
    pub fn create(dir: &Path, state_only: bool) -> Result<Pending, Error> {
        let io = |what: &str| {
            let what = format!("{what} in {}", dir.display());
            move |e: std::io::Error| Error::Snapshot(format!("{what}: {e}"))
        };
        fs::create_dir_all(dir).map_err(io("creating the directory"))?;
        let create = |name: &str| {
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(dir.join(name))
        };
        let memory = if state_only {
            None
        } else {
            Some(create(MEMORY_TMP).map_err(io("creating the memory file"))?)
        };
        let state = create(STATE_TMP).map_err(io("creating the state file"))?;
        Ok(Pending {
            dir: dir.to_path_buf(),
            memory,
            state,
            placed: false,
        })
    }

    /// The files for the VM, in the order its request names them.
    pub fn files(&self) -> Vec<&fs::File> {
        self.memory.iter().chain([&self.state]).collect()
    }

    /// Gives the written files their names (the memory first: the state names a complete
    /// snapshot) and makes the names durable.
    pub fn place(mut self) -> Result<(), Error> {
        let io = |what: &str| {
            let what = format!("{what} in {}", self.dir.display());
            move |e: std::io::Error| Error::Snapshot(format!("{what}: {e}"))
        };
        if self.memory.is_some() {
            fs::rename(self.dir.join(MEMORY_TMP), self.dir.join(MEMORY_FILE))
                .map_err(io("renaming the memory file"))?;
        }
        fs::rename(self.dir.join(STATE_TMP), self.dir.join(STATE_FILE))
            .map_err(io("renaming the state file"))?;
        self.placed = true;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing the directory"))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.placed {
            let _ = fs::remove_file(self.dir.join(MEMORY_TMP));
            let _ = fs::remove_file(self.dir.join(STATE_TMP));
        }
    }
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
    use std::io::Write as _;

    #[test]
    fn a_pending_snapshot_is_placed_whole_or_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("snap");
        let pending = Pending::create(&target, false).unwrap();
        let mut files = pending.files();
        assert_eq!(files.len(), 2);
        files[0].write_all(b"memory").unwrap();
        files[1].write_all(b"{}").unwrap();
        // Nothing carries the final names until the snapshot is placed.
        assert!(!target.join(MEMORY_FILE).exists() && !target.join(STATE_FILE).exists());
        pending.place().unwrap();
        assert_eq!(fs::read(target.join(MEMORY_FILE)).unwrap(), b"memory");
        assert_eq!(fs::read(target.join(STATE_FILE)).unwrap(), b"{}");

        // A later one that fails (dropped unplaced) leaves the first as it was.
        let state_only = Pending::create(&target, true).unwrap();
        assert_eq!(state_only.files().len(), 1);
        drop(state_only);
        let mut names: Vec<_> = fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [MEMORY_FILE, STATE_FILE]);
        assert_eq!(fs::read(target.join(STATE_FILE)).unwrap(), b"{}");
    }

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
