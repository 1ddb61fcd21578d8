//! The VMs a host has: their definitions (durable, in the database) and what the
//! hypervisor's supervisor says of their processes. Every operation here blocks; async
//! callers run it on a blocking thread.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypervisor_shim::inventory::HostInventory;
use hypervisor_shim::lifecycle::{Action, InvalidTransition, State};
use hypervisor_shim::netif;
use hypervisor_shim::protocol::{ErrorKind, Event, Request};
use hypervisor_shim::storage::{StoragePool, Volume};
use hypervisor_shim::supervisor::{Supervisor, SupervisorError, VmHandle};
use hypervisor_shim::vmm::snapshot::STATE_FILE as SNAPSHOT_STATE_FILE;

use super::console::{ConsoleLimits, Consoles, Departure};
use super::definition::{self, RequestedState, Snapshot, VmDefinition};
use super::error::{ChangeError, VmError};
use super::events::{EventSender, VmChange, VmEvent};
use super::jobs::{Job, JobState, Jobs};
use super::pools::{PoolSettings, StoragePools};
use cimom::lock;
use cimom::store::{ProviderTable, Store};

/// VM definitions (JSON), by VM name.
const DEFINITIONS_TABLE: ProviderTable = ProviderTable::new("vms");

/// A VM claimed for one state change; released when dropped.
pub struct Claim {
    busy: Arc<Mutex<BTreeSet<String>>>,
    name: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.busy).remove(&self.name);
    }
}

/// A state change a client can request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// 2: start, resume, or restore a saved VM.
    Enable,
    /// 3: power off at once (and forget a saved state).
    Disable,
    /// 4: ask the guest to power off; power it off when it has not within the timeout.
    ShutDown(Duration),
    /// 6: save to disk; the process ends.
    Offline,
    /// 9: pause.
    Quiesce,
    /// 10: reboot.
    Reboot,
    /// 11: reset.
    Reset,
}

/// Queues a modification event for each lifecycle state a VM process reports, with the
/// state it had before (off, for a process's first report) and the VM's definition then.
fn report_state_changes(
    supervisor: &Supervisor,
    events: EventSender,
    definitions: Definitions,
    departed: Definitions,
    last: ReportedStates,
) {
    supervisor.listen(Arc::new(move |name, event| {
        let Event::State { state } = event else {
            return;
        };
        let previous = lock(&last)
            .insert(name.to_owned(), *state)
            .unwrap_or(State::Off);
        if previous == *state {
            return;
        }
        // The process's name is the VM's run id. A VM destroyed while its process's last
        // report was on its way is still reported (after its Deleted), not lost.
        let found =
            by_run_id(&lock(&definitions), name).or_else(|| by_run_id(&lock(&departed), name));
        let Some(definition) = found else {
            tracing::debug!(vm = name, ?state, "a state change of an unknown VM");
            return;
        };
        let _ = events.send(VmEvent::now(
            VmChange::Modified { previous },
            definition,
            *state,
        ));
    }));
}

/// The definitions by VM name, shared with the listener of VM processes.
type Definitions = Arc<Mutex<BTreeMap<String, VmDefinition>>>;

/// The state each VM's last state change was reported with, by run id.
type ReportedStates = Arc<Mutex<BTreeMap<String, State>>>;

/// How many destroyed VMs' definitions are kept for late reports of their processes.
const DEPARTED_KEPT: usize = 64;

/// The indication markers that hold the state a VM was last reported in, by VM name.
const REPORTED_STATE_MARKER: &str = "vm-state/";

/// The marker key of VM `name`'s reported state: written with the indication that reports
/// it, in the same transaction, so a restarted server knows exactly what it had reported.
pub fn reported_state_marker(name: &str) -> String {
    format!("{REPORTED_STATE_MARKER}{name}")
}

/// The definition of the VM whose processes are named `run_id` (or, for those started
/// before run ids, the VM of that name).
fn by_run_id(definitions: &BTreeMap<String, VmDefinition>, run_id: &str) -> Option<VmDefinition> {
    definitions
        .values()
        .find(|d| d.run_id() == run_id)
        .or_else(|| definitions.get(run_id))
        .cloned()
}

/// How long a cancel waits for a just-started shutdown job to reach its VM.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

/// The host's VMs.
pub struct VirtManager {
    supervisor: Supervisor,
    store: Arc<Store>,
    definitions: Definitions,
    /// One lock per VM held through a state change, so that a second one gets 4099.
    busy: Arc<Mutex<BTreeSet<String>>>,
    /// Background state changes.
    jobs: Jobs,
    /// Saved states and console logs live here.
    vm_dir: PathBuf,
    host: HostInventory,
    /// The storage pools disks come from, by name.
    storage_pools: StoragePools,
    /// Where definitions and destructions are reported, for indications.
    events: Option<EventSender>,
    /// The state each VM was last reported in, by run id (seeded from the store).
    reported: ReportedStates,
    /// The last destroyed VMs, by name, for their processes' late reports.
    departed: Definitions,
    /// The VMs' serial consoles as clients share them.
    consoles: Arc<Consoles>,
}

/// A storage pool with its space now.
#[derive(Clone, Debug)]
pub struct DiskPoolInfo {
    /// Its name (`DiskPool/NAME`).
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The file system's size, in bytes.
    pub capacity: u64,
    /// The bytes still free.
    pub available: u64,
    /// Its volumes (listed only for the requests that show them).
    pub volumes: Vec<Volume>,
}

impl VirtManager {
    /// Loads the definitions from `store`; `vm_dir` holds per-VM files.
    pub fn new(
        supervisor: Supervisor,
        store: Arc<Store>,
        vm_dir: PathBuf,
        host: HostInventory,
        storage_pools: PoolSettings,
        events: Option<EventSender>,
        console_limits: ConsoleLimits,
    ) -> Result<Self, VmError> {
        let storage_pools = StoragePools::load(storage_pools, store.clone())?;
        let mut definitions = BTreeMap::new();
        for (name, bytes) in store
            .records(DEFINITIONS_TABLE)
            .map_err(|e| VmError::failed(e.to_string()))?
        {
            let definition: VmDefinition = serde_json::from_slice(&bytes)
                .map_err(|e| VmError::failed(format!("the stored definition of VM {name}: {e}")))?;
            definitions.insert(name, definition);
        }
        let mut reported = BTreeMap::new();
        for (key, bytes) in store
            .indication_markers()
            .map_err(|e| VmError::failed(e.to_string()))?
        {
            let Some(name) = key.strip_prefix(REPORTED_STATE_MARKER) else {
                continue;
            };
            let (Some(d), Ok(state)) = (definitions.get(name), serde_json::from_slice(&bytes))
            else {
                continue;
            };
            reported.insert(VmDefinition::run_id(d), state);
        }
        let definitions = Arc::new(Mutex::new(definitions));
        let reported = Arc::new(Mutex::new(reported));
        let departed = Definitions::default();
        if let Some(events) = &events {
            report_state_changes(
                &supervisor,
                events.clone(),
                definitions.clone(),
                departed.clone(),
                reported.clone(),
            );
        }
        let consoles = Consoles::new(console_limits);
        let console_output = consoles.clone();
        supervisor.listen(Arc::new(move |run_id, event| {
            if let Event::Console { bytes } = event {
                console_output.record(run_id, bytes);
            }
        }));
        let jobs = Jobs::load(store.clone())?;
        std::fs::create_dir_all(&vm_dir)
            .map_err(|e| VmError::failed(format!("{}: {e}", vm_dir.display())))?;
        Ok(VirtManager {
            supervisor,
            store,
            definitions,
            busy: Arc::default(),
            jobs,
            vm_dir,
            host,
            storage_pools,
            events,
            reported,
            departed,
            consoles,
        })
    }

    /// The VMs' consoles.
    pub fn consoles(&self) -> &Arc<Consoles> {
        &self.consoles
    }

    /// Where VM `d`'s console log is.
    pub fn console_log(&self, d: &VmDefinition) -> PathBuf {
        self.vm_file(d, "console.log")
    }

    /// Types `bytes` into VM `d`'s serial port.
    pub fn type_into_console(&self, d: &VmDefinition, bytes: &[u8]) -> Result<(), String> {
        let vm = self.process(d).ok_or_else(|| {
            format!(
                "VM {} is {}: nothing reads its console now",
                d.name,
                self.state(d)
            )
        })?;
        vm.call(&Request::SendConsole {
            bytes: bytes.to_vec(),
        })
        .map_err(|e| e.to_string())
    }

    /// Enables or disables VM `name`'s console; disabling it closes its sessions.
    pub fn set_console_enabled(&self, name: &str, enabled: bool) -> Result<(), VmError> {
        let mut definition = self
            .definition(name)
            .ok_or_else(|| VmError::not_defined(name))?;
        if definition.console.enabled == enabled {
            return Ok(());
        }
        definition.console.enabled = enabled;
        self.persist(&definition)?;
        if !enabled {
            self.consoles
                .depart(&definition.run_id(), &Departure::Disabled);
        }
        Ok(())
    }

    /// Reports the VMs whose state is not the one last reported: they changed while the
    /// server was not running, or the server was killed before their change was queued.
    /// Called once at start, after the VMs still running were re-adopted.
    pub fn report_changes_while_away(&self) {
        for definition in self.definitions() {
            let run_id = definition.run_id();
            let Some(previous) = lock(&self.reported).get(&run_id).copied() else {
                continue;
            };
            let now = self.state(&definition);
            if now != previous {
                lock(&self.reported).insert(run_id, now);
                self.report(VmChange::Modified { previous }, &definition, now);
            }
        }
    }

    /// Forgets the reported state of a destroyed VM.
    pub fn forget_reported_state(&self, name: &str) {
        let key = reported_state_marker(name);
        if let Err(e) = self.store.delete_indication_marker(&key) {
            tracing::warn!(vm = name, "forgetting the reported state: {e}");
        }
    }

    fn report(&self, change: VmChange, definition: &VmDefinition, state: State) {
        if let Some(events) = &self.events {
            let _ = events.send(VmEvent::now(change, definition.clone(), state));
        }
    }

    /// The storage pools with their space now (a pool whose file system cannot be read
    /// shows none), and their volumes if `with_volumes` (an empty list otherwise).
    pub fn disk_pools(&self, with_volumes: bool) -> Vec<DiskPoolInfo> {
        self.storage_pools
            .list()
            .into_iter()
            .map(|(name, pool)| {
                let space = pool.space().ok();
                DiskPoolInfo {
                    name,
                    dir: pool.dir().to_owned(),
                    capacity: space.map_or(0, |s| s.capacity),
                    available: space.map_or(0, |s| s.available),
                    volumes: if with_volumes {
                        pool.volumes().unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect()
    }

    /// Storage pool `name`.
    pub fn storage_pool(&self, name: &str) -> Result<StoragePool, VmError> {
        self.storage_pools.get(name)
    }

    /// The storage pool new disks go to when a client names none: `default`, or the first
    /// configured.
    pub fn default_storage_pool(&self) -> Result<StoragePool, VmError> {
        let pools = self.storage_pools.list();
        pools
            .iter()
            .find(|(name, _)| name == "default")
            .or(pools.first())
            .map(|(_, pool)| pool.clone())
            .ok_or_else(|| VmError::failed("this host has no storage pool"))
    }

    /// Creates storage pool `name` over `dir` (CreateChildResourcePool).
    pub fn create_storage_pool(&self, name: &str, dir: &Path) -> Result<(), VmError> {
        self.storage_pools.create(name, dir)
    }

    /// Forgets storage pool `name` (DeleteResourcePool), unless a defined VM has a disk in
    /// it; its images stay.
    pub fn delete_storage_pool(&self, name: &str) -> Result<(), VmError> {
        let pool = self.storage_pools.get(name)?;
        let in_pool = |d: &VmDefinition| {
            d.disks
                .iter()
                .any(|disk| disk.path.parent() == Some(pool.dir()))
        };
        if let Some(vm) = self.definitions().into_iter().find(in_pool) {
            return Err(VmError::failed(format!(
                "VM {} has a disk in storage pool DiskPool/{name}",
                vm.name
            )));
        }
        self.storage_pools.delete(name)
    }

    /// Creates the Linux bridge `name` as a network pool (CreateChildResourcePool).
    pub fn create_network_pool(&self, name: &str) -> Result<(), VmError> {
        let exists = netif::bridges()
            .unwrap_or_default()
            .iter()
            .any(|b| b.name == name);
        if exists {
            return Err(VmError::exists(format!(
                "network pool NetworkPool/{name} exists"
            )));
        }
        netif::create_bridge(name).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => VmError::invalid(e.to_string()),
            _ => VmError::failed(e.to_string()),
        })
    }

    /// Deletes the Linux bridge `name` (DeleteResourcePool), unless a defined VM has a port
    /// on it or it has ports cimvirt did not make.
    pub fn delete_network_pool(&self, name: &str) -> Result<(), VmError> {
        let bridge = netif::bridges()
            .unwrap_or_default()
            .into_iter()
            .find(|b| b.name == name)
            .ok_or_else(|| VmError::not_found(format!("no network pool NetworkPool/{name}")))?;
        let on_bridge = |d: &VmDefinition| d.nics.iter().any(|n| n.bridge.as_deref() == Some(name));
        if let Some(vm) = self.definitions().into_iter().find(on_bridge) {
            return Err(VmError::failed(format!(
                "VM {} has a port on network pool NetworkPool/{name}",
                vm.name
            )));
        }
        if !bridge.ports.is_empty() {
            return Err(VmError::failed(format!(
                "bridge {name} has ports cimvirt did not make: {}",
                bridge.ports.join(", ")
            )));
        }
        netif::delete_bridge(name).map_err(|e| VmError::failed(e.to_string()))
    }

    /// Creates volume `volume` of `bytes` in storage pool `pool` (CreateResourceInPool).
    pub fn create_volume(&self, pool: &str, volume: &str, bytes: u64) -> Result<(), VmError> {
        self.storage_pools.get(pool)?.create_volume(volume, bytes)?;
        Ok(())
    }

    /// Deletes volume `volume` of storage pool `pool`, unless a running VM uses it
    /// (DeleteResourceInPool).
    pub fn delete_volume(&self, pool: &str, volume: &str) -> Result<(), VmError> {
        self.storage_pools.get(pool)?.delete_volume(volume)?;
        Ok(())
    }

    /// The host inventory taken at start.
    pub fn host(&self) -> &HostInventory {
        &self.host
    }

    /// Every definition, by name.
    pub fn definitions(&self) -> Vec<VmDefinition> {
        lock(&self.definitions).values().cloned().collect()
    }

    /// The definitions of the VMs whose names `keep` accepts, by name.
    pub fn definitions_where(&self, keep: impl Fn(&str) -> bool) -> Vec<VmDefinition> {
        lock(&self.definitions)
            .values()
            .filter(|d| keep(&d.name))
            .cloned()
            .collect()
    }

    /// The definition of VM `name`.
    pub fn definition(&self, name: &str) -> Option<VmDefinition> {
        lock(&self.definitions).get(name).cloned()
    }

    fn store_definition(&self, definition: &VmDefinition) -> Result<(), VmError> {
        let bytes = serde_json::to_vec(definition).map_err(|e| VmError::failed(e.to_string()))?;
        self.store
            .put_record(DEFINITIONS_TABLE, &definition.name, &bytes)
            .map_err(|e| VmError::failed(format!("storing VM {}: {e}", definition.name)))
    }

    /// Stores a changed definition; a change of its settings is reported.
    fn persist(&self, definition: &VmDefinition) -> Result<(), VmError> {
        self.store_definition(definition)?;
        let previous = lock(&self.definitions).insert(definition.name.clone(), definition.clone());
        if let Some(previous) = previous.filter(|p| p.settings_differ(definition)) {
            let state = self.state(definition);
            let previous = Box::new(previous);
            self.report(VmChange::Reconfigured { previous }, definition, state);
        }
        Ok(())
    }

    /// Defines a new VM after checking it against the host and the other VMs. The check of
    /// its name and UUID and the write are one step: of concurrent definitions of one name,
    /// exactly one succeeds.
    pub fn define(&self, definition: VmDefinition, files: FileAccess) -> Result<(), VmError> {
        self.check_fits(&definition)?;
        self.check_files(None, &definition, files)?;
        {
            let mut definitions = lock(&self.definitions);
            check_unique(&definitions, &definition)?;
            self.store_definition(&definition)?;
            definitions.insert(definition.name.clone(), definition.clone());
        }
        self.report(VmChange::Created, &definition, State::Defined);
        Ok(())
    }

    /// Checks that `definition` can be defined here: it fits the host, its images are there,
    /// and its name and UUID are free.
    pub fn check_new(&self, definition: &VmDefinition) -> Result<(), VmError> {
        self.check_fits(definition)?;
        check_unique(&lock(&self.definitions), definition)
    }

    /// Begins changes to stopped VMs' definitions, made together (see [`Edit`]); `what`
    /// names them in a refusal ("devices are added").
    pub fn edit(&self, what: &'static str) -> Edit<'_> {
        Edit {
            manager: self,
            what,
            changed: BTreeMap::new(),
        }
    }

    /// Changes VM `name`'s settings with `change`: what the VM runs with only while it is
    /// stopped; its ElementName, description, notes and startup policy in any state.
    pub fn modify_settings<E: From<VmError>>(
        &self,
        name: &str,
        files: FileAccess,
        change: impl FnOnce(&mut VmDefinition) -> Result<(), E>,
    ) -> Result<(), E> {
        let current = self
            .definition(name)
            .ok_or_else(|| VmError::not_defined(name))?;
        let mut target = current.clone();
        change(&mut target)?;
        if !target.differs_only_in_metadata(&current) {
            self.check_stopped(&current, "its settings change")?;
        }
        self.check_files(Some(&current), &target, files)?;
        self.persist(&target)?;
        Ok(())
    }

    /// Refuses unless VM `d` is stopped: `what` happens only then.
    fn check_stopped(&self, d: &VmDefinition, what: &str) -> Result<(), VmError> {
        let state = self.state(d);
        if !matches!(state, State::Defined | State::Off | State::Crashed) {
            return Err(VmError::failed(format!(
                "VM {} is {state}: {what} while it is stopped",
                d.name
            )));
        }
        Ok(())
    }

    /// Refuses the host files (disk images, kernel, initramfs) that `after` gives a VM and
    /// `before` did not, unless the caller may give any, or each is a volume of a storage
    /// pool.
    fn check_files(
        &self,
        before: Option<&VmDefinition>,
        after: &VmDefinition,
        files: FileAccess,
    ) -> Result<(), VmError> {
        if files == FileAccess::Any {
            return Ok(());
        }
        let had: BTreeSet<&Path> = before.map(host_files).unwrap_or_default();
        for (what, path) in host_files_named(after) {
            if had.contains(path) || self.storage_pools.is_volume(path) {
                continue;
            }
            return Err(VmError::forbidden(format!(
                "{what} {} is not a volume of a storage pool: only an administrator \
                     (read-write in every namespace) may give a VM other files of the host",
                path.display()
            )));
        }
        Ok(())
    }

    /// Checks a definition against the host and the boot image's limits.
    fn check_fits(&self, definition: &VmDefinition) -> Result<(), VmError> {
        definition::check_name(&definition.name).map_err(VmError::invalid)?;
        let cpus = self.host.logical_cpus as u64;
        if u64::from(definition.vcpus) > cpus {
            return Err(VmError::invalid(format!(
                "{} vCPUs: this host has {cpus} CPUs",
                definition.vcpus
            )));
        }
        if let (true, Some(why)) = (
            definition.cpu_share.is_set(),
            &self.host.kvm.cgroup_cpu_unsupported,
        ) {
            return Err(VmError::unsupported(format!(
                "KVM_ProcResourceAllocationSettingData: processor {} is not supported: {why}",
                definition.cpu_share.describe()
            )));
        }
        let host_mib = self.host.memory_total_bytes >> 20;
        if definition.memory_mib > host_mib {
            return Err(VmError::invalid(format!(
                "{} MiB of memory: this host has {host_mib} MiB",
                definition.memory_mib
            )));
        }
        definition
            .vm_config(PathBuf::new())
            .validate(u32::MAX)
            .map_err(VmError::invalid)
    }

    /// A file or directory of VM `d` in the VM directory: `UUID.suffix`, named after its
    /// UUID, which is short and fixed, so that any name a VM may have fits.
    pub(crate) fn vm_file(&self, d: &VmDefinition, suffix: &str) -> PathBuf {
        self.vm_dir.join(format!("{}.{suffix}", d.run_id()))
    }

    fn snapshots_dir(&self, d: &VmDefinition) -> PathBuf {
        self.vm_file(d, "snapshots")
    }

    /// The running process of VM `d`, if any. A process started before processes were
    /// named by UUID goes by the VM's name until it ends.
    pub(crate) fn process(&self, d: &VmDefinition) -> Option<Arc<VmHandle>> {
        self.supervisor
            .get(&d.run_id())
            .or_else(|| self.supervisor.get(&d.name))
    }

    /// The definition whose processes go by `run_id` (or, for processes started before
    /// they were named by UUID, by that name).
    pub fn definition_by_run_id(&self, run_id: &str) -> Option<VmDefinition> {
        by_run_id(&lock(&self.definitions), run_id)
    }

    /// Takes a full snapshot (memory, vCPUs, devices) of a running or paused VM; with
    /// `then_stop` the VM is powered off afterwards (libvirt-cim's "suspend" type).
    pub fn create_snapshot(&self, name: &str, then_stop: bool) -> Result<Snapshot, ChangeError> {
        let _claim = self.claim(name)?;
        let mut definition = self
            .definition(name)
            .ok_or_else(|| ChangeError::Failed(format!("VM {name} is not defined")))?;
        let vm = self.process(&definition).ok_or_else(|| {
            ChangeError::InvalidTransition(format!(
                "VM {name} is {}: a snapshot is taken of a running or paused VM",
                self.state(&definition)
            ))
        })?;
        let next = definition
            .snapshots
            .iter()
            .filter_map(|s| s.id.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let id = next.to_string();
        let dir = self.snapshots_dir(&definition).join(&id);
        vm.call(&Request::Snapshot { dir: dir.clone() })?;
        if then_stop {
            vm.call(&Request::Stop)?;
            vm.wait_exit(Duration::from_secs(30));
        }
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let snapshot = Snapshot {
            id,
            created,
            dir,
            vcpus: definition.vcpus,
            memory_mib: definition.memory_mib,
            devices: Some((definition.disks.clone(), definition.nics.clone())),
        };
        definition.snapshots.push(snapshot.clone());
        self.persist(&definition).map_err(ChangeError::from)?;
        Ok(snapshot)
    }

    /// Puts a VM back in a snapshot's state: a running VM is powered off first, and the
    /// snapshot runs on in a new process.
    pub fn apply_snapshot(&self, name: &str, id: &str) -> Result<(), ChangeError> {
        let _claim = self.claim(name)?;
        let mut definition = self
            .definition(name)
            .ok_or_else(|| ChangeError::Failed(format!("VM {name} is not defined")))?;
        let snapshot = definition
            .snapshots
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .ok_or_else(|| ChangeError::Failed(format!("VM {name} has no snapshot {id}")))?;
        if let Some(vm) = self.process(&definition) {
            vm.call(&Request::Stop)?;
            vm.wait_exit(Duration::from_secs(30));
        }
        if let Some(saved) = definition.saved.take() {
            let _ = std::fs::remove_dir_all(saved);
        }
        self.supervisor
            .restore(&definition.run_id(), &snapshot.dir)?;
        definition.vcpus = snapshot.vcpus;
        definition.memory_mib = snapshot.memory_mib;
        // The machine comes back with the devices it had: the snapshot's state is theirs.
        if let Some((disks, nics)) = snapshot.devices {
            definition.disks = disks;
            definition.nics = nics;
        }
        definition.last_applied = Some(snapshot.id);
        // The VM is now as the snapshot was, running or paused: that is what is requested.
        definition.requested_state = match self.state(&definition) {
            State::Paused => RequestedState::Quiesce,
            _ => RequestedState::Enabled,
        };
        self.persist(&definition).map_err(ChangeError::from)
    }

    /// Deletes a snapshot. A VM running from it keeps running: its memory mapping outlives
    /// the file.
    pub fn destroy_snapshot(&self, name: &str, id: &str) -> Result<(), VmError> {
        let mut definition = self
            .definition(name)
            .ok_or_else(|| VmError::not_defined(name))?;
        let position = definition
            .snapshots
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| VmError::not_found(format!("VM {name} has no snapshot {id}")))?;
        let snapshot = definition.snapshots.remove(position);
        if definition.last_applied.as_deref() == Some(id) {
            definition.last_applied = None;
        }
        self.persist(&definition)?;
        let _ = std::fs::remove_dir_all(&snapshot.dir);
        Ok(())
    }

    /// Stops the VM if it runs, then forgets it and its saved state.
    pub fn destroy(&self, name: &str) -> Result<(), VmError> {
        let definition = self
            .definition(name)
            .ok_or_else(|| VmError::not_defined(name))?;
        let last_state = self.state(&definition);
        if let Some(vm) = self.process(&definition) {
            // It may end on its own meanwhile; what matters is that it is gone after.
            let _ = vm.call(&Request::Stop);
            vm.wait_exit(Duration::from_secs(30));
        }
        self.forget(&definition, last_state, &Departure::Destroyed)
    }

    /// Removes a VM that no longer runs here: its record, saved state, snapshots, console
    /// logs and its processes' files; it is reported deleted, and its console's sessions
    /// are told `why`.
    pub(crate) fn forget(
        &self,
        definition: &VmDefinition,
        last_state: State,
        why: &Departure,
    ) -> Result<(), VmError> {
        self.consoles.depart(&definition.run_id(), why);
        let name = &definition.name;
        if let Some(saved) = &definition.saved {
            let _ = std::fs::remove_dir_all(saved);
        }
        let _ = std::fs::remove_dir_all(self.snapshots_dir(definition));
        let console = self.console_log(definition);
        let mut rotated = console.clone().into_os_string();
        rotated.push(".1");
        for log in [console, PathBuf::from(rotated)] {
            let _ = std::fs::remove_file(log);
        }
        self.supervisor.remove_files(&definition.run_id());
        self.store
            .delete_record(DEFINITIONS_TABLE, name)
            .map_err(|e| VmError::failed(format!("removing VM {name}: {e}")))?;
        lock(&self.definitions).remove(name);
        {
            let mut departed = lock(&self.departed);
            if departed.len() >= DEPARTED_KEPT {
                departed.clear();
            }
            departed.insert(name.clone(), definition.clone());
        }
        self.report(VmChange::Deleted, definition, last_state);
        Ok(())
    }

    /// Restores VM `d` from the snapshot in `dir` in a new process: running if `run`,
    /// else as the snapshot was taken (a snapshot taken paused comes back paused).
    pub(crate) fn restore_from(
        &self,
        d: &VmDefinition,
        dir: &Path,
        run: bool,
    ) -> Result<(), SupervisorError> {
        let vm = self.supervisor.restore(&d.run_id(), dir)?;
        if run && vm.status().is_ok_and(|s| s.state == State::Paused) {
            vm.call(&Request::Resume)?;
        }
        Ok(())
    }

    /// The VM processes.
    pub(crate) fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// The lifecycle state: from the VM process when there is one (asked now: for decisions),
    /// else from the definition and how the last process ended.
    pub fn state(&self, definition: &VmDefinition) -> State {
        if let Some(vm) = self.process(definition) {
            match vm.status() {
                Ok(status) => return status.state,
                // The process is going: its watcher is about to record how it ended.
                Err(_) => {
                    if let Some(exit) = vm.wait_exit(Duration::from_secs(2)) {
                        return exit.state;
                    }
                }
            }
        }
        self.state_at_rest(definition)
    }

    /// The lifecycle state as the supervisor last heard it, without asking the VM process:
    /// for showing, where a VM busy with a long request must not hold a reader up and a
    /// thousand VMs must not cost a thousand questions. Every state change a request made
    /// is already in it, and the VM's own changes as soon as their events arrive.
    pub fn observed_state(&self, definition: &VmDefinition) -> State {
        match self.process(definition) {
            Some(vm) => vm.observed_state(),
            None => self.state_at_rest(definition),
        }
    }

    /// The state of a VM with no process: saved, crashed (as its last process ended) or off.
    fn state_at_rest(&self, definition: &VmDefinition) -> State {
        if definition
            .saved
            .as_ref()
            .is_some_and(|dir| dir.join(SNAPSHOT_STATE_FILE).exists())
        {
            return State::Saved;
        }
        match self.last_exit(definition) {
            Some(exit) if exit.state == State::Crashed => State::Crashed,
            _ => State::Off,
        }
    }

    /// Why the VM's last process crashed (a guest fault, a VMM error, or the system call its
    /// sandbox stopped it for), while it is crashed.
    pub fn crash_reason(&self, definition: &VmDefinition) -> Option<String> {
        self.last_exit(definition)
            .filter(|exit| exit.state == State::Crashed)
            .map(|exit| exit.reason)
    }

    /// How the VM's last process ended, under its run id or (before run ids) its name.
    fn last_exit(&self, definition: &VmDefinition) -> Option<hypervisor_shim::ExitRecord> {
        self.supervisor
            .last_exit(&definition.run_id())
            .or_else(|| self.supervisor.last_exit(&definition.name))
    }

    /// Claims a VM for one state change, or says it is busy with another.
    pub(crate) fn claim(&self, name: &str) -> Result<Claim, ChangeError> {
        if !lock(&self.busy).insert(name.to_owned()) {
            return Err(ChangeError::Busy);
        }
        Ok(Claim {
            busy: self.busy.clone(),
            name: name.to_owned(),
        })
    }

    /// Claims defined VM `name` for a change that runs as a job: the claim, its definition
    /// and its state now.
    pub(crate) fn claim_defined(
        &self,
        name: &str,
    ) -> Result<(Claim, VmDefinition, State), ChangeError> {
        let claim = self.claim(name)?;
        let definition = self
            .definition(name)
            .ok_or_else(|| ChangeError::Failed(format!("VM {name} is not defined")))?;
        let state = self.state(&definition);
        Ok((claim, definition, state))
    }

    /// The jobs.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// Starts a state change that takes a while (a graceful shutdown, a save) as job
    /// `title`, after checking that the VM's state allows it; the VM stays claimed until the
    /// job ends.
    pub fn begin_change(
        self: &Arc<Self>,
        name: &str,
        requested: RequestedState,
        change: Change,
        title: String,
    ) -> Result<Job, ChangeError> {
        let (claim, _, state) = self.claim_defined(name)?;
        let allowed = match change {
            Change::ShutDown(_) => state == State::Running,
            Change::Offline => matches!(state, State::Running | State::Paused),
            _ => true,
        };
        if !allowed {
            return Err(ChangeError::InvalidTransition(format!(
                "VM {name} is {state}"
            )));
        }
        // A graceful shutdown only waits for the guest, so it can be cancelled; a save cannot
        // be taken back half way.
        let cancellable = matches!(change, Change::ShutDown(_));
        let name = name.to_owned();
        self.spawn_job(claim, title, cancellable, move |manager| {
            manager.perform(&name, requested, change)
        })
    }

    /// Runs `work` as job `title` on a thread of its own; the VM stays claimed until it ends.
    pub(crate) fn spawn_job(
        self: &Arc<Self>,
        claim: Claim,
        title: String,
        cancellable: bool,
        work: impl FnOnce(&VirtManager) -> Result<(), ChangeError> + Send + 'static,
    ) -> Result<Job, ChangeError> {
        self.spawn_job_claiming(vec![claim], title, cancellable, move |manager, _| {
            work(manager)
        })
    }

    /// Runs `work` as job `title` on a thread of its own, with the job's id; the VMs of
    /// `claims` (the first is the one the job is about) stay claimed until it ends.
    pub(crate) fn spawn_job_claiming(
        self: &Arc<Self>,
        claims: Vec<Claim>,
        title: String,
        cancellable: bool,
        work: impl FnOnce(&VirtManager, &str) -> Result<(), ChangeError> + Send + 'static,
    ) -> Result<Job, ChangeError> {
        let vm = claims.first().map(|c| c.name.clone()).unwrap_or_default();
        let job = self
            .jobs
            .start(title, &vm, cancellable)
            .map_err(ChangeError::from)?;
        let (manager, id) = (self.clone(), job.id.clone());
        std::thread::Builder::new()
            .name(format!("job-{vm}"))
            .spawn(move || {
                let result = work(&manager, &id);
                manager.jobs.finish(&id, &result);
                drop(claims);
            })
            .map_err(|e| ChangeError::Failed(format!("starting the job: {e}")))?;
        Ok(job)
    }

    /// Cancels the running job `id` (RequestStateChange 4 Terminate or 5 Kill on the job):
    /// a graceful shutdown stops waiting and the VM goes on running.
    pub fn cancel_job(&self, id: &str) -> Result<(), ChangeError> {
        let job = self
            .jobs
            .get(id)
            .ok_or_else(|| ChangeError::Failed(format!("no job {id}")))?;
        if job.state != JobState::Running {
            return Err(ChangeError::InvalidTransition(format!(
                "job {id} has ended ({:?})",
                job.state
            )));
        }
        if !job.cancellable {
            return Err(ChangeError::InvalidTransition(format!(
                "job {id} ({}) cannot be cancelled: a save is not taken back half way",
                job.name
            )));
        }
        let vm = self
            .definition(&job.vm)
            .and_then(|d| self.process(&d))
            .ok_or_else(|| ChangeError::InvalidTransition(format!("VM {} has ended", job.vm)))?;
        // The job may not have asked the VM for the shutdown yet (it has just started): the
        // VM then has none to cancel, and the request is tried again until it has.
        let deadline = std::time::Instant::now() + CANCEL_WAIT;
        loop {
            match vm.call(&Request::CancelShutdown) {
                Ok(()) => return Ok(()),
                Err(SupervisorError::Vm {
                    kind: ErrorKind::InvalidState,
                    message,
                }) => {
                    let running = self
                        .jobs
                        .get(id)
                        .is_some_and(|j| j.state == JobState::Running);
                    if !running || std::time::Instant::now() >= deadline {
                        return Err(ChangeError::InvalidTransition(message));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Starts the VMs whose automatic start says so (AutomaticStartupAction 4, or 3 for
    /// those last asked to run), each once its delay has passed since now, in sequence
    /// order, on a thread of their own. Called once at start, after the supervisor has
    /// re-adopted the VMs still running, which are left as they are.
    pub fn start_automatically(self: &Arc<Self>) -> std::io::Result<()> {
        let mut due: Vec<VmDefinition> = self
            .definitions()
            .into_iter()
            .filter(|d| d.startup.starts(d.requested_state))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        due.sort_by(|a, b| (a.startup.sequence, &a.name).cmp(&(b.startup.sequence, &b.name)));
        let began = std::time::Instant::now();
        let manager = self.clone();
        std::thread::Builder::new()
            .name("autostart".into())
            .spawn(move || {
                for d in due {
                    let at = began + Duration::from_millis(d.startup.delay_ms);
                    std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
                    let state = manager.state(&d);
                    if !matches!(
                        state,
                        State::Defined | State::Off | State::Crashed | State::Saved
                    ) {
                        continue;
                    }
                    match manager.change_state(&d.name, RequestedState::Enabled, Change::Enable) {
                        Ok(()) => tracing::info!(vm = d.name, "started automatically"),
                        Err(e) => tracing::warn!(vm = d.name, error = ?e, "automatic start failed"),
                    }
                }
            })
            .map(|_| ())
    }

    /// Carries out a requested state change and records the request.
    pub fn change_state(
        &self,
        name: &str,
        requested: RequestedState,
        change: Change,
    ) -> Result<(), ChangeError> {
        let _claim = self.claim(name)?;
        self.perform(name, requested, change)
    }

    /// Carries out a state change on a claimed VM.
    fn perform(
        &self,
        name: &str,
        requested: RequestedState,
        change: Change,
    ) -> Result<(), ChangeError> {
        let mut definition = self
            .definition(name)
            .ok_or_else(|| ChangeError::Failed(format!("VM {name} is not defined")))?;
        let state = self.state(&definition);
        // RequestedState records accepted requests only.
        check_transition(change, state)
            .map_err(|e| ChangeError::InvalidTransition(format!("VM {name}: {e}")))?;
        definition.requested_state = requested;
        self.persist(&definition).map_err(ChangeError::from)?;
        let vm = self.process(&definition);
        let invalid = || ChangeError::InvalidTransition(format!("VM {name} is {state}"));
        match (change, vm) {
            (Change::Enable, Some(vm)) => match state {
                State::Paused => Ok(vm.call(&Request::Resume)?),
                State::Running => Ok(()),
                _ => Err(invalid()),
            },
            (Change::Enable, None) => match &definition
                .saved
                .clone()
                .filter(|d| d.join(SNAPSHOT_STATE_FILE).exists())
            {
                Some(saved) => {
                    // Enabled means running, even for a VM saved while paused.
                    self.restore_from(&definition, saved, true)?;
                    let _ = std::fs::remove_dir_all(saved);
                    definition.saved = None;
                    self.persist(&definition).map_err(ChangeError::from)
                }
                None => {
                    // An interrupted save left nothing to restore: boot afresh.
                    if let Some(incomplete) = definition.saved.take() {
                        let _ = std::fs::remove_dir_all(incomplete);
                        self.persist(&definition).map_err(ChangeError::from)?;
                    }
                    self.supervisor
                        .start(&definition.vm_config(self.console_log(&definition)))?;
                    Ok(())
                }
            },
            (Change::Disable, Some(vm)) => {
                vm.call(&Request::Stop)?;
                vm.wait_exit(Duration::from_secs(30));
                Ok(())
            }
            (Change::Disable, None) => {
                if let Some(saved) = definition.saved.take() {
                    let _ = std::fs::remove_dir_all(saved);
                    self.persist(&definition).map_err(ChangeError::from)?;
                }
                Ok(())
            }
            (Change::ShutDown(timeout), Some(vm)) => {
                let timeout_ms = timeout.as_millis().min(u128::from(u64::MAX)) as u64;
                match vm.call(&Request::Shutdown { timeout_ms }) {
                    Ok(()) => {}
                    // DSP1057: a guest that does not shut down in time is powered off.
                    Err(SupervisorError::Vm {
                        kind: ErrorKind::Timeout,
                        ..
                    }) => vm.call(&Request::Stop)?,
                    // The client cancelled the job: the VM goes on running, as it now asks.
                    Err(SupervisorError::Vm {
                        kind: ErrorKind::Cancelled,
                        ..
                    }) => {
                        definition.requested_state = RequestedState::Enabled;
                        let _ = self.persist(&definition);
                        return Err(ChangeError::Cancelled);
                    }
                    Err(e) => return Err(e.into()),
                }
                vm.wait_exit(Duration::from_secs(30));
                Ok(())
            }
            (Change::Offline, Some(vm)) => {
                let dir = self.vm_file(&definition, "saved");
                let _ = std::fs::remove_dir_all(&dir);
                // Where the state goes is recorded first, so that a cimvirtd that dies
                // during the save still finds it; a save that never completed has no
                // state file and does not count.
                definition.saved = Some(dir.clone());
                self.persist(&definition).map_err(ChangeError::from)?;
                if let Err(e) = vm.call(&Request::Save { dir: dir.clone() }) {
                    definition.saved = None;
                    let _ = self.persist(&definition);
                    return Err(e.into());
                }
                vm.wait_exit(Duration::from_secs(30));
                Ok(())
            }
            (Change::Quiesce, Some(vm)) => Ok(vm.call(&Request::Pause)?),
            (Change::Reboot, Some(vm)) => Ok(vm.call(&Request::Reboot)?),
            (Change::Reset, Some(vm)) => Ok(vm.call(&Request::Reset)?),
            (
                Change::ShutDown(_)
                | Change::Offline
                | Change::Quiesce
                | Change::Reboot
                | Change::Reset,
                None,
            ) => Err(invalid()),
        }
    }
}

/// What host files a caller may give a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileAccess {
    /// Any file or block device the server can open: administrators.
    Any,
    /// Volumes of the storage pools only: everyone else.
    PoolVolumes,
}

/// The host files a definition uses, each named for a refusal: its disks' images, and its
/// Linux kernel and initramfs.
fn host_files_named(d: &VmDefinition) -> Vec<(&'static str, &Path)> {
    let mut out: Vec<(&'static str, &Path)> = d
        .disks
        .iter()
        .map(|disk| ("disk image", disk.path.as_path()))
        .collect();
    if let Some(linux) = &d.linux {
        out.push(("Kernel", linux.kernel.as_path()));
        if let Some(ramdisk) = &linux.ramdisk {
            out.push(("Ramdisk", ramdisk.as_path()));
        }
    }
    out
}

fn host_files(d: &VmDefinition) -> BTreeSet<&Path> {
    host_files_named(d).into_iter().map(|(_, p)| p).collect()
}

/// Whether a VM in `state` can make `change`, as the VM's lifecycle decides it.
fn check_transition(change: Change, state: State) -> Result<(), InvalidTransition> {
    let action = match change {
        Change::Enable => match state {
            State::Running => return Ok(()),
            State::Paused => Action::Resume,
            State::Saved => Action::Restore,
            _ => Action::Start,
        },
        // Powering off is always possible: a VM that is off stays so, a saved state is dropped.
        Change::Disable => return Ok(()),
        Change::ShutDown(_) => Action::Shutdown,
        Change::Offline => Action::Save,
        Change::Quiesce => Action::Pause,
        Change::Reboot => Action::Reboot,
        Change::Reset => Action::Reset,
    };
    state.apply(action).map(|_| ())
}

/// Refuses `definition` if its name or UUID is taken among `definitions`.
fn check_unique(
    definitions: &BTreeMap<String, VmDefinition>,
    definition: &VmDefinition,
) -> Result<(), VmError> {
    if definitions.contains_key(&definition.name) {
        return Err(VmError::exists(format!(
            "a VM named {} is already defined",
            definition.name
        )));
    }
    if let Some(other) = definitions.values().find(|d| d.uuid == definition.uuid) {
        return Err(VmError::exists(format!(
            "VM {} already has UUID {}",
            other.name, definition.uuid
        )));
    }
    Ok(())
}

/// Changes to stopped VMs' definitions, made together: each VM is changed in a copy, and
/// [`Edit::commit`] checks every copy against the host before any is stored, so a change
/// refused for one VM leaves every VM as it was.
pub struct Edit<'m> {
    manager: &'m VirtManager,
    what: &'static str,
    changed: BTreeMap<String, VmDefinition>,
}

impl Edit<'_> {
    /// VM `name`'s definition as changed so far, to change further; the VM must be
    /// stopped.
    pub fn stopped(&mut self, name: &str) -> Result<&mut VmDefinition, VmError> {
        let manager = self.manager;
        match self.changed.entry(name.to_owned()) {
            std::collections::btree_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
            std::collections::btree_map::Entry::Vacant(entry) => {
                let definition = manager
                    .definition(name)
                    .ok_or_else(|| VmError::not_defined(name))?;
                manager.check_stopped(&definition, self.what)?;
                Ok(entry.insert(definition))
            }
        }
    }

    /// Checks every changed definition against the host, and the host files it gives
    /// against what `files` allows, then stores them all.
    pub fn commit(self, files: FileAccess) -> Result<(), VmError> {
        for definition in self.changed.values() {
            self.manager.check_fits(definition)?;
            let before = self.manager.definition(&definition.name);
            self.manager
                .check_files(before.as_ref(), definition, files)?;
        }
        self.store()
    }

    /// Stores changes that only take devices away: they need no new host files, and a VM
    /// that is left with less is not checked against the host again.
    pub fn commit_removals(self) -> Result<(), VmError> {
        self.store()
    }

    fn store(self) -> Result<(), VmError> {
        for definition in self.changed.values() {
            self.manager.persist(definition)?;
        }
        Ok(())
    }
}
