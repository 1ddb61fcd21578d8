//! The source's side: checking that a VM can go, and moving it as a job.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hypervisor_shim::lifecycle::State;
use hypervisor_shim::protocol::{ErrorKind, Request};
use hypervisor_shim::supervisor::{SupervisorError, VmHandle};
use hypervisor_shim::vmm::snapshot::{MEMORY_FILE, STATE_FILE};
use tokio::runtime::Handle;
use tracing::info;

use super::{MigrationKind, MigrationSettings, Offer, Remote, RemoteError};
use crate::virt::console::Departure;
use crate::vm::jobs::Job;
use crate::vm::manager::VirtManager;
use crate::vm::ChangeError;

/// How long a Restart migration waits for the guest to shut down before powering it off.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// The most pre-copy rounds (the first copy included) before a Live migration pauses the
/// guest whatever it still writes.
const MAX_ROUNDS: usize = 8;
/// A round that copied this little ends the pre-copy: the rest is sent with the guest
/// paused.
const FINAL_BYTES: u64 = 2 << 20;

/// Why a migration cannot start, in DSP1081's return codes.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// 5: the VM's state does not allow this kind of migration.
    #[error("{0}")]
    InvalidState(String),
    /// 4: the destination or the settings are not usable.
    #[error("{0}")]
    InvalidParameter(String),
    /// 4096 is not possible: another state change of the VM is in progress (4099 as in
    /// RequestStateChange).
    #[error("another state change of the VM is in progress")]
    Busy,
    /// 2: anything else.
    #[error("{0}")]
    Failed(String),
}

impl From<RemoteError> for Refusal {
    fn from(e: RemoteError) -> Self {
        match e {
            RemoteError::NotConfigured(m) => Refusal::InvalidParameter(m),
            other => Refusal::Failed(other.to_string()),
        }
    }
}

impl VirtManager {
    /// What the destination is offered for VM `name`, once its state allows `kind`.
    fn offer(&self, name: &str, kind: MigrationKind) -> Result<Offer, Refusal> {
        let definition = self
            .definition(name)
            .ok_or_else(|| Refusal::InvalidParameter(format!("VM {name} is not defined")))?;
        if !definition.snapshots.is_empty() {
            return Err(Refusal::InvalidState(format!(
                "VM {name} has {} snapshot(s), which cannot move with it: destroy them first",
                definition.snapshots.len()
            )));
        }
        let state = self.state(&definition);
        let allowed = match kind {
            MigrationKind::Offline => matches!(state, State::Defined | State::Off | State::Crashed),
            MigrationKind::Live | MigrationKind::Resume => {
                matches!(state, State::Running | State::Paused)
            }
            MigrationKind::Restart => state == State::Running,
        };
        if !allowed {
            let wanted = match kind {
                MigrationKind::Offline => "off (MigrationType 1)",
                MigrationKind::Live => "running or paused (MigrationType 2)",
                MigrationKind::Resume => "running or paused (MigrationType 3)",
                MigrationKind::Restart => "running (MigrationType 4)",
            };
            return Err(Refusal::InvalidState(format!(
                "VM {name} is {state}; this migration needs it {wanted}"
            )));
        }
        Ok(Offer {
            running: state == State::Running,
            definition,
            kind,
        })
    }

    /// Whether VM `name` could move to `destination` now: its state allows `kind` and the
    /// destination would take it. `Err` when the question itself is wrong (no such VM, an
    /// unusable destination).
    pub fn check_migration(
        &self,
        name: &str,
        destination: &str,
        kind: MigrationKind,
        settings: &MigrationSettings,
        runtime: Handle,
    ) -> Result<bool, Refusal> {
        let mut remote = Remote::new(settings, destination, runtime)?;
        let offer = match self.offer(name, kind) {
            Ok(offer) => offer,
            Err(Refusal::InvalidState(why)) => {
                info!(vm = name, "not migratable: {why}");
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        match remote.offer(&offer, true) {
            Ok(_) => Ok(true),
            Err(e @ (RemoteError::Refused { .. } | RemoteError::Unreachable(_))) => {
                info!(vm = name, destination, "not migratable: {e}");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Starts moving VM `name` to `destination` as a job. What can be checked here is
    /// checked before the job starts.
    pub fn begin_migration(
        self: &Arc<Self>,
        name: &str,
        destination: &str,
        kind: MigrationKind,
        settings: &MigrationSettings,
        runtime: Handle,
    ) -> Result<Job, Refusal> {
        let mut remote = Remote::new(settings, destination, runtime)?;
        let claim = self.claim(name).map_err(|_| Refusal::Busy)?;
        let offer = self.offer(name, kind)?;
        let title = format!("Migration of {name} to {}", remote.host());
        let name = name.to_owned();
        self.spawn_job(claim, title, false, move |manager| {
            let started = Instant::now();
            let result = manager.migrate(&name, offer, &mut remote);
            match &result {
                Ok(()) => info!(
                    vm = name,
                    destination = remote.host(),
                    ms = started.elapsed().as_millis() as u64,
                    "migrated"
                ),
                Err(e) => info!(
                    vm = name,
                    destination = remote.host(),
                    "migration failed: {e:?}"
                ),
            }
            result
        })
        .map_err(|e| Refusal::Failed(e.describe()))
    }

    /// Moves the claimed VM. The destination holds the name from the offer on; until its
    /// commit succeeds, the VM stays here.
    fn migrate(&self, name: &str, offer: Offer, remote: &mut Remote) -> Result<(), ChangeError> {
        let failed = |e: RemoteError| ChangeError::Failed(e.to_string());
        let id = remote
            .offer(&offer, false)
            .map_err(failed)?
            .unwrap_or_default();
        let result = match offer.kind {
            MigrationKind::Offline => remote.commit(&id).map_err(failed),
            MigrationKind::Live if offer.running => self.move_live(name, &offer, &id, remote),
            // A paused guest writes nothing: moving it as it is loses no time.
            MigrationKind::Live | MigrationKind::Resume => {
                self.move_running(name, &offer, &id, remote)
            }
            MigrationKind::Restart => self.move_rebooted(&offer, &id, remote),
        };
        match result {
            Ok(()) => {
                let state = match offer.kind {
                    MigrationKind::Offline => State::Off,
                    _ => State::Running,
                };
                // It is defined on the destination now: only the record here is left.
                let why = Departure::Migrated {
                    destination: remote.host().to_owned(),
                };
                self.forget(&offer.definition, state, &why)
                    .map_err(ChangeError::from)
            }
            Err(e) => {
                remote.abort(&id);
                Err(e)
            }
        }
    }

    /// The process of the VM that leaves, and the directory (emptied) of what it sends.
    fn migrating(&self, offer: &Offer) -> Result<(Arc<VmHandle>, PathBuf), ChangeError> {
        let definition = &offer.definition;
        let vm = self.process(definition).ok_or_else(|| {
            ChangeError::InvalidTransition(format!("VM {} has stopped", definition.name))
        })?;
        let dir = self.vm_file(definition, "migration");
        let _ = std::fs::remove_dir_all(&dir);
        Ok((vm, dir))
    }

    /// Resume: pauses the VM, snapshots it, sends the snapshot, powers the VM off here and
    /// has the destination restore it. Any failure leaves the VM running here as it was.
    fn move_running(
        &self,
        name: &str,
        offer: &Offer,
        id: &str,
        remote: &mut Remote,
    ) -> Result<(), ChangeError> {
        let (vm, dir) = self.migrating(offer)?;
        let paused_at = Instant::now();
        if offer.running {
            vm.call(&Request::Pause)?;
        }
        let resume_here = || {
            if offer.running {
                let _ = vm.call(&Request::Resume);
            }
        };
        let sent = vm
            .call(&Request::Snapshot { dir: dir.clone() })
            .map_err(ChangeError::from)
            .and_then(|()| send_snapshot(remote, id, &dir));
        let sent = match sent {
            Ok(bytes) => bytes,
            Err(e) => {
                resume_here();
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        self.hand_over(name, offer, id, remote, &vm, &dir, sent, paused_at)
    }

    /// Live: copies the memory while the guest runs, then the pages it wrote meanwhile,
    /// round after round, into a local copy that follows the guest and to the destination,
    /// until a round has at most [`FINAL_BYTES`] or [`MAX_ROUNDS`] have gone by. Then the
    /// guest is paused for the last pages and its state, which also make the local copy a
    /// snapshot to go on from should the destination fail. Any failure before the hand-over
    /// leaves the VM running here.
    fn move_live(
        &self,
        name: &str,
        offer: &Offer,
        id: &str,
        remote: &mut Remote,
    ) -> Result<(), ChangeError> {
        let (vm, dir) = self.migrating(offer)?;
        let memory = dir.join(MEMORY_FILE);
        let failed = |e: RemoteError| ChangeError::Failed(e.to_string());
        let mut precopy = || -> Result<(u64, usize), ChangeError> {
            std::fs::create_dir_all(&dir)
                .map_err(|e| ChangeError::Failed(format!("{}: {e}", dir.display())))?;
            let ranges = vm.copy_memory(&memory, false)?;
            let mut sent = remote
                .send_ranges(id, &memory, MEMORY_FILE, &ranges)
                .map_err(failed)?;
            let mut rounds = 1;
            while rounds < MAX_ROUNDS {
                let ranges = vm.copy_memory(&memory, true)?;
                let bytes: u64 = ranges.iter().map(|(a, b)| b - a).sum();
                sent += remote
                    .send_ranges(id, &memory, MEMORY_FILE, &ranges)
                    .map_err(failed)?;
                rounds += 1;
                if bytes <= FINAL_BYTES {
                    break;
                }
            }
            Ok((sent, rounds))
        };
        let (mut sent, rounds) = match precopy() {
            Ok(done) => done,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let paused_at = Instant::now();
        let last = vm
            .call(&Request::Pause)
            .map_err(ChangeError::from)
            .and_then(|()| {
                let ranges = vm.copy_memory(&memory, true)?;
                let bytes = remote
                    .send_ranges(id, &memory, MEMORY_FILE, &ranges)
                    .map_err(failed)?;
                vm.call(&Request::SaveState { dir: dir.clone() })?;
                Ok(bytes + remote.send_file(id, &dir, STATE_FILE).map_err(failed)?)
            });
        match last {
            Ok(bytes) => sent += bytes,
            Err(e) => {
                let _ = vm.call(&Request::Resume);
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        }
        info!(vm = name, rounds, "pre-copy done");
        self.hand_over(name, offer, id, remote, &vm, &dir, sent, paused_at)
    }

    /// Powers the paused VM off here (the destination opens the disk images only once this
    /// process has let them go) and has the destination take it over; should that fail, the
    /// VM goes on here from the snapshot in `dir`, as it was.
    #[allow(clippy::too_many_arguments)]
    fn hand_over(
        &self,
        name: &str,
        offer: &Offer,
        id: &str,
        remote: &mut Remote,
        vm: &VmHandle,
        dir: &Path,
        sent: u64,
        paused_at: Instant,
    ) -> Result<(), ChangeError> {
        vm.call(&Request::Stop)?;
        vm.wait_exit(Duration::from_secs(30));
        let result = match remote.commit(id) {
            Ok(()) => {
                info!(
                    vm = name,
                    bytes = sent,
                    paused_ms = paused_at.elapsed().as_millis() as u64,
                    "moved to {}",
                    remote.host()
                );
                Ok(())
            }
            Err(e) => {
                if let Err(r) = self.restore_from(&offer.definition, dir, offer.running) {
                    tracing::error!(vm = name, "restoring the VM after a failed migration: {r}");
                }
                Err(ChangeError::Failed(e.to_string()))
            }
        };
        let _ = std::fs::remove_dir_all(dir);
        result
    }

    /// Restart: shuts the guest down (powering it off after [`SHUTDOWN_TIMEOUT`]) and has the
    /// destination boot it. Should the destination fail, the VM boots here again.
    fn move_rebooted(
        &self,
        offer: &Offer,
        id: &str,
        remote: &mut Remote,
    ) -> Result<(), ChangeError> {
        let name = &offer.definition.name;
        let vm = self
            .process(&offer.definition)
            .ok_or_else(|| ChangeError::InvalidTransition(format!("VM {name} has stopped")))?;
        match vm.call(&Request::Shutdown {
            timeout_ms: SHUTDOWN_TIMEOUT.as_millis() as u64,
        }) {
            Ok(())
            | Err(SupervisorError::Vm {
                kind: ErrorKind::Timeout,
                ..
            }) => {
                let _ = vm.call(&Request::Stop);
            }
            Err(e) => return Err(e.into()),
        }
        vm.wait_exit(Duration::from_secs(30));
        remote.commit(id).map_err(|e| {
            if let Some(definition) = self.definition(name) {
                if let Err(r) = self
                    .supervisor()
                    .start(&definition.vm_config(self.console_log(&definition)))
                {
                    tracing::error!(
                        vm = name,
                        "booting the VM again after a failed migration: {r}"
                    );
                }
            }
            ChangeError::Failed(e.to_string())
        })
    }
}

/// Sends a snapshot's files, the state last; returns the bytes sent.
fn send_snapshot(remote: &mut Remote, id: &str, dir: &Path) -> Result<u64, ChangeError> {
    let mut sent = 0;
    for file in [MEMORY_FILE, STATE_FILE] {
        sent += remote
            .send_file(id, dir, file)
            .map_err(|e| ChangeError::Failed(e.to_string()))?;
    }
    Ok(sent)
}
