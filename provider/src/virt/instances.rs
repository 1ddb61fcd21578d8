//! The instances of `root/virt`, built from the host inventory and the VMs' definitions and
//! live states. Each class has one builder; associations are built from the same paths as
//! the instances they join.

use std::collections::BTreeMap;

use cim_schema::{Class, DateTime, Instance, Interval, ObjectPath, Timestamp, Value};
use hypervisor_shim::inventory::HostInventory;
use hypervisor_shim::lifecycle::State;

use super::associations::ASSOCIATIONS;
use super::build::{u16s, with_keys};
use super::console::{self, ConsoleUrls};
use super::paths::{self, class, Pool};
use super::return_code::ReturnCode;
use super::settings;
use super::startup;
use super::state::CimState;
use crate::vm::definition::{DiskDefinition, NicDefinition, Snapshot, VmDefinition};
use crate::vm::jobs::{self, Job, JobState};
use crate::vm::manager::DiskPoolInfo;
use crate::vm::startup::StartupAction;
use crate::vm::ChangeError;
use cimom::dispatch::provider::build_instance as build;
use hypervisor_shim::storage::Volume;

/// What the instances are built from.
pub struct Model<'a> {
    /// The host's name (KVM_HostSystem.Name).
    pub hostname: &'a str,
    /// The host inventory.
    pub host: &'a HostInventory,
    /// Every defined VM with its lifecycle state.
    pub vms: &'a [(VmDefinition, State)],
    /// Why each crashed VM (by name) crashed.
    pub crash_reasons: &'a BTreeMap<String, String>,
    /// The jobs.
    pub jobs: &'a [Job],
    /// The storage pools.
    pub disk_pools: &'a [DiskPoolInfo],
    /// The host's Linux bridges, by name.
    pub bridges: &'a [String],
    /// Where the VMs' consoles are reached.
    pub console_urls: &'a ConsoleUrls,
    /// Open console sessions, by VM name (none for VMs left out).
    pub console_sessions: &'a BTreeMap<String, usize>,
}

impl Model<'_> {
    /// Every pool: the processors, the memory, each storage pool and each bridge.
    pub fn pools(&self) -> Vec<Pool> {
        let mut pools = vec![Pool::Processor, Pool::Memory];
        pools.extend(self.disk_pools.iter().map(|p| Pool::Disk(p.name.clone())));
        pools.extend(self.bridges.iter().map(|b| Pool::Network(b.clone())));
        pools
    }

    /// The storage pool whose directory holds `disk`'s image (pool directories are
    /// canonical; the image's may be written through a link).
    pub(super) fn disk_pool(&self, disk: &DiskDefinition) -> Option<&DiskPoolInfo> {
        let dir = disk.path.parent()?;
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        self.disk_pools.iter().find(|p| p.dir == dir)
    }

    /// The network pool (bridge) `nic` is connected to, if the bridge exists.
    fn network_pool(&self, nic: &NicDefinition) -> Option<Pool> {
        let bridge = nic.bridge.as_ref()?;
        self.bridges
            .contains(bridge)
            .then(|| Pool::Network(bridge.clone()))
    }

    /// Every disk and network port with the pool it is allocated from, as (pool, device,
    /// RASD).
    pub(super) fn allocations_from_pools(&self) -> Vec<(Pool, ObjectPath, ObjectPath)> {
        let mut out = Vec::new();
        for (d, _) in self.vms {
            for disk in &d.disks {
                if let Some(pool) = self.disk_pool(disk) {
                    out.push((
                        Pool::Disk(pool.name.clone()),
                        paths::logical_disk(&d.name, &disk.device),
                        paths::disk_rasd(&d.name, &disk.device),
                    ));
                }
            }
            for nic in &d.nics {
                if let Some(pool) = self.network_pool(nic) {
                    out.push((
                        pool,
                        paths::network_port(&d.name, &nic.mac.to_string()),
                        paths::net_rasd(&d.name, &nic.mac.to_string()),
                    ));
                }
            }
        }
        out
    }
}

/// Snapshot types CreateSnapshot takes: 2 full (DMTF), and libvirt-cim's 32768 (the same)
/// and 32769 (full, then the VM powered off).
pub const SNAPSHOT_TYPES_SUPPORTED: [u16; 3] = [2, 32768, 32769];

/// The states RequestStateChange carries out (KVM_EnabledLogicalElementCapabilities).
pub const REQUESTED_STATES_SUPPORTED: [u16; 7] = [2, 3, 4, 6, 9, 10, 11];

pub(super) fn text(s: &str) -> Value {
    Value::from(s)
}

pub(super) fn reference(path: ObjectPath) -> Value {
    Value::Reference(path)
}

/// Every class these providers serve, elements and associations, with its builder.
pub fn builders() -> impl Iterator<Item = &'static ClassBuilder> {
    ELEMENTS.iter().chain(ASSOCIATIONS)
}

/// The builder of exactly `class` (in any case), if it is one of these providers'.
pub fn builder(class: &str) -> Option<&'static ClassBuilder> {
    builders().find(|b| class.eq_ignore_ascii_case(b.class))
}

/// The instances of exactly `class`, or `None` when the class is not one of these
/// providers'.
pub fn of_class(class: &Class, model: &Model) -> Option<Vec<Instance>> {
    builder(class.name.as_str()).map(|b| (b.build)(class, model))
}

/// How the instances of one class are built from the model.
pub struct ClassBuilder {
    /// The class (exactly: not its subclasses).
    pub class: &'static str,
    /// Its instances.
    pub build: fn(&Class, &Model) -> Vec<Instance>,
}

/// The classes of the elements these providers serve, each with its builder: with
/// [`super::associations::ASSOCIATIONS`], the one table registration and requests go by.
pub const ELEMENTS: &[ClassBuilder] = &[
    ClassBuilder {
        class: class::HOST_SYSTEM,
        build: |class, model| vec![host(class, model)],
    },
    ClassBuilder {
        class: class::HOST_PROCESSOR,
        build: |class, model| {
            (0..model.host.logical_cpus)
                .map(|i| host_processor(class, model, i))
                .collect()
        },
    },
    ClassBuilder {
        class: class::HOST_MEMORY,
        build: |class, model| vec![host_memory(class, model)],
    },
    ClassBuilder {
        class: class::MANAGEMENT_SERVICE,
        build: |class, model| vec![service(class, model)],
    },
    ClassBuilder {
        class: class::MANAGEMENT_CAPABILITIES,
        build: |class, _model| vec![management_capabilities(class)],
    },
    ClassBuilder {
        class: class::COMPUTER_SYSTEM,
        build: |class, model| {
            per_vm(model, &|d, s| {
                let why = model.crash_reasons.get(&d.name).map(String::as_str);
                vec![system(class, d, s, why)]
            })
        },
    },
    ClassBuilder {
        class: class::SETTING_DATA,
        build: |class, model| {
            per_vm(model, &|d, _| {
                let mut out = vec![setting_data(class, d)];
                out.extend(
                    d.snapshots
                        .iter()
                        .map(|s| snapshot_setting_data(class, d, s)),
                );
                out
            })
        },
    },
    ClassBuilder {
        class: class::SNAPSHOT_SERVICE,
        build: |class, model| vec![snapshot_service(class, model)],
    },
    ClassBuilder {
        class: class::POOL_SERVICE,
        build: |class, model| {
            let path = paths::pool_service(model.hostname);
            vec![running_service(class, &path, "RPCS", vec![])]
        },
    },
    ClassBuilder {
        class: class::VOLUME_RASD,
        build: |class, model| {
            model
                .disk_pools
                .iter()
                .flat_map(|pool| pool.volumes.iter().map(|v| volume(class, pool, v)))
                .collect()
        },
    },
    ClassBuilder {
        class: class::SNAPSHOT_SERVICE_CAPABILITIES,
        build: |class, _model| vec![snapshot_service_capabilities(class)],
    },
    ClassBuilder {
        class: class::MIGRATION_SERVICE,
        build: |class, model| {
            let path = paths::migration_service(model.hostname);
            vec![running_service(class, &path, "MigrationService", vec![])]
        },
    },
    ClassBuilder {
        class: class::MIGRATION_CAPABILITIES,
        build: |class, _model| vec![migration_capabilities(class)],
    },
    ClassBuilder {
        class: class::TEXT_REDIRECTION_SERVICE,
        build: |class, model| vec![console::model::service(class, model.hostname)],
    },
    ClassBuilder {
        class: class::TEXT_REDIRECTION_CAPABILITIES,
        build: |class, _model| vec![console::model::capabilities(class)],
    },
    ClassBuilder {
        class: class::TEXT_REDIRECTION_SAP,
        build: |class, model| {
            per_vm(model, &|d, _| {
                let sessions = model.console_sessions.get(&d.name).copied().unwrap_or(0);
                vec![console::model::access_point(
                    class,
                    &d.name,
                    d.console.enabled,
                    sessions,
                )]
            })
        },
    },
    ClassBuilder {
        class: class::CONSOLE_URL,
        build: |class, model| {
            per_vm(model, &|d, _| {
                model
                    .console_urls
                    .of(&d.name)
                    .iter()
                    .map(|url| console::model::url(class, model.hostname, &d.name, url))
                    .collect()
            })
        },
    },
    ClassBuilder {
        class: class::CONSOLE_RASD,
        build: |class, model| {
            with_snapshots(model, &|d| vec![console::model::rasd(class, &d.name)])
        },
    },
    ClassBuilder {
        class: class::MIGRATION_SETTING_DATA,
        build: |class, _model| {
            MIGRATION_SETTINGS
                .iter()
                .map(|(kind, migration_type, _)| {
                    migration_setting_data(class, kind, *migration_type)
                })
                .collect()
        },
    },
    ClassBuilder {
        class: class::PROC_RASD,
        build: size_rasds,
    },
    ClassBuilder {
        class: class::MEM_RASD,
        build: size_rasds,
    },
    ClassBuilder {
        class: class::DISK_RASD,
        build: |class, model| {
            with_snapshots(model, &|d| {
                d.disks
                    .iter()
                    .map(|disk| disk_rasd(class, model, d, disk))
                    .collect()
            })
        },
    },
    ClassBuilder {
        class: class::STORAGE_SASD,
        build: |class, model| {
            with_snapshots(model, &|d| {
                d.disks
                    .iter()
                    .map(|disk| storage_sasd(class, model, d, disk))
                    .collect()
            })
        },
    },
    ClassBuilder {
        class: class::NET_RASD,
        build: |class, model| {
            with_snapshots(model, &|d| {
                d.nics.iter().map(|nic| net_rasd(class, d, nic)).collect()
            })
        },
    },
    ClassBuilder {
        class: class::LOGICAL_DISK,
        build: |class, model| {
            per_vm(model, &|d, s| {
                d.disks
                    .iter()
                    .map(|disk| logical_disk(class, d, s, disk))
                    .collect()
            })
        },
    },
    ClassBuilder {
        class: class::NETWORK_PORT,
        build: |class, model| {
            per_vm(model, &|d, s| {
                d.nics
                    .iter()
                    .map(|nic| network_port(class, d, s, nic))
                    .collect()
            })
        },
    },
    ClassBuilder {
        class: class::PROCESSOR,
        build: |class, model| {
            per_vm(model, &|d, s| {
                (0..d.vcpus).map(|i| processor(class, d, s, i)).collect()
            })
        },
    },
    ClassBuilder {
        class: class::MEMORY,
        build: |class, model| per_vm(model, &|d, s| vec![memory(class, d, s)]),
    },
    ClassBuilder {
        class: class::STATE_CAPABILITIES,
        build: |class, model| {
            let mut out = vec![host_state_capabilities(class, model)];
            out.extend(per_vm(model, &|d, _| vec![state_capabilities(class, d)]));
            out
        },
    },
    ClassBuilder {
        class: class::SNAPSHOT_CAPABILITIES,
        build: |class, model| per_vm(model, &|d, s| vec![snapshot_capabilities(class, d, s)]),
    },
    ClassBuilder {
        class: class::JOB,
        build: |class, model| model.jobs.iter().map(|j| job(class, j)).collect(),
    },
    ClassBuilder {
        class: class::PROCESSOR_POOL,
        build: pools_of_class,
    },
    ClassBuilder {
        class: class::MEMORY_POOL,
        build: pools_of_class,
    },
    ClassBuilder {
        class: class::DISK_POOL,
        build: pools_of_class,
    },
    ClassBuilder {
        class: class::NETWORK_POOL,
        build: pools_of_class,
    },
    ClassBuilder {
        class: class::ALLOCATION_CAPABILITIES,
        build: |class, model| {
            model
                .pools()
                .iter()
                .map(|p| allocation_capabilities(class, p))
                .collect()
        },
    },
];

/// The instances `f` builds of each VM in the model, in its state.
fn per_vm(model: &Model, f: &dyn Fn(&VmDefinition, State) -> Vec<Instance>) -> Vec<Instance> {
    model.vms.iter().flat_map(|(d, s)| f(d, *s)).collect()
}

fn size_rasds(class: &Class, model: &Model) -> Vec<Instance> {
    with_snapshots(model, &|d| vec![rasd(class, d)])
}

fn pools_of_class(class: &Class, model: &Model) -> Vec<Instance> {
    model
        .pools()
        .iter()
        .filter(|p| p.class().eq_ignore_ascii_case(class.name.as_str()))
        .map(|p| pool(class, model, p))
        .collect()
}

fn host(class: &Class, model: &Model) -> Instance {
    let path = paths::host(model.hostname);
    let h = model.host;
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", text(model.hostname)),
                (
                    "Description",
                    text(&format!(
                        "{} ({} CPUs, {} MiB)",
                        h.cpu_model,
                        h.logical_cpus,
                        h.memory_total_bytes >> 20
                    )),
                ),
                ("EnabledState", Value::UInt16(2)),
                ("RequestedState", Value::UInt16(12)),
                ("OperationalStatus", u16s(&[2])),
                ("HealthState", Value::UInt16(5)),
                ("Dedicated", u16s(&[0])),
            ],
        ),
    )
}

/// What a healthy, enabled device of the host reports.
const HOST_DEVICE_STATE: [(&str, u16); 2] = [("EnabledState", 2), ("HealthState", 5)];

fn host_processor(class: &Class, model: &Model, index: usize) -> Instance {
    let path = paths::host_processor(model.hostname, index);
    let mut values = vec![
        ("ElementName", text(&format!("CPU {index}"))),
        // 1: Other, named in OtherFamilyDescription.
        ("Family", Value::UInt16(1)),
        ("OtherFamilyDescription", text(&model.host.cpu_model)),
        ("NumberOfEnabledCores", Value::UInt16(1)),
        ("OperationalStatus", u16s(&[2])),
    ];
    values.extend(HOST_DEVICE_STATE.map(|(n, v)| (n, Value::UInt16(v))));
    build(class, with_keys(&path, values))
}

fn host_memory(class: &Class, model: &Model) -> Instance {
    let path = paths::host_memory(model.hostname);
    const PAGE: u64 = 4096;
    let mut values = vec![
        ("ElementName", text("System memory")),
        ("Volatile", Value::Boolean(true)),
        ("BlockSize", Value::UInt64(PAGE)),
        (
            "NumberOfBlocks",
            Value::UInt64(model.host.memory_total_bytes / PAGE),
        ),
        (
            "ConsumableBlocks",
            Value::UInt64(model.host.memory_total_bytes / PAGE),
        ),
        ("OperationalStatus", u16s(&[2])),
    ];
    values.extend(HOST_DEVICE_STATE.map(|(n, v)| (n, Value::UInt16(v))));
    build(class, with_keys(&path, values))
}

fn host_state_capabilities(class: &Class, model: &Model) -> Instance {
    let path = paths::host_state_capabilities(model.hostname);
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", text(model.hostname)),
                // The host's state is not changed through cimvirt.
                ("RequestedStatesSupported", u16s(&[])),
                ("ElementNameEditSupported", Value::Boolean(false)),
            ],
        ),
    )
}

/// A running service of the host, named `name`.
fn running_service(
    class: &Class,
    path: &ObjectPath,
    name: &str,
    extra: Vec<(&str, Value)>,
) -> Instance {
    let mut values = vec![
        ("ElementName", text(name)),
        ("EnabledState", Value::UInt16(2)),
        ("Started", Value::Boolean(true)),
        ("HealthState", Value::UInt16(5)),
        ("OperationalStatus", u16s(&[2])),
    ];
    values.extend(extra);
    build(class, with_keys(path, values))
}

fn service(class: &Class, model: &Model) -> Instance {
    let path = paths::service(model.hostname);
    running_service(
        class,
        &path,
        "Management Service",
        vec![("Release", text(env!("CARGO_PKG_VERSION")))],
    )
}

fn management_capabilities(class: &Class) -> Instance {
    let path = paths::management_capabilities();
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", text("ManagementCapabilities")),
                (
                    "VirtualSystemTypesSupported",
                    Value::Array(vec![Some(text("KVM"))]),
                ),
                // DefineSystem (2), DestroySystem (3), ModifyResourceSettings (5),
                // ModifySystemSettings (6), RemoveResourceSettings (7), AddResourceSettings (10).
                ("SynchronousMethodsSupported", u16s(&[2, 3, 5, 6, 7, 10])),
                // Vendor values (the MOF of KVM_VirtualSystemManagementCapabilities):
                // ImportSystemDefinition (32768), ExportSystemDefinition (32769).
                ("AsynchronousMethodsSupported", u16s(&[32768, 32769])),
            ],
        ),
    )
}

/// A VM's KVM_ComputerSystem; `crash_reason`, for a crashed VM, becomes its
/// StatusDescriptions beside OperationalStatus Error.
pub(super) fn system(
    class: &Class,
    d: &VmDefinition,
    state: State,
    crash_reason: Option<&str>,
) -> Instance {
    let cim = CimState::of(state);
    let path = paths::system(&d.name);
    let mut values = vec![
        ("ElementName", text(d.element_name())),
        ("UUID", text(&d.uuid.to_string())),
        ("EnabledState", Value::UInt16(cim.enabled_state)),
        ("RequestedState", Value::UInt16(d.requested_state.into())),
        ("EnabledDefault", Value::UInt16(2)),
        ("HealthState", Value::UInt16(cim.health_state)),
        ("OperationalStatus", u16s(&[cim.operational_status])),
        ("Dedicated", u16s(&[0])),
    ];
    if let (State::Crashed, Some(why)) = (state, crash_reason) {
        values.push(("StatusDescriptions", Value::Array(vec![Some(text(why))])));
    }
    build(class, with_keys(&path, values))
}

fn setting_data(class: &Class, d: &VmDefinition) -> Instance {
    let path = paths::setting_data(&d.name);
    let mut values = vec![
        ("ElementName", text(d.element_name())),
        ("VirtualSystemIdentifier", text(&d.name)),
        ("VirtualSystemType", text("KVM")),
        ("UUID", text(&d.uuid.to_string())),
        ("Arch", text("x86_64")),
        ("Emulator", text("cimvirtd")),
        (
            "AutomaticStartupAction",
            Value::UInt16(startup::action_code(d.startup.action)),
        ),
        (
            "AutomaticStartupActionDelay",
            Value::DateTime(DateTime::Interval(startup::delay_interval(&d.startup))),
        ),
        (
            "AutomaticStartupActionSequenceNumber",
            Value::UInt16(d.startup.sequence),
        ),
        (
            "AutoStart",
            Value::UInt16(u16::from(d.startup.action == StartupAction::Always)),
        ),
        (
            "AutomaticShutdownAction",
            Value::UInt16(startup::SHUTDOWN_ACTION_TURN_OFF),
        ),
        (
            "AutomaticRecoveryAction",
            Value::UInt16(startup::RECOVERY_ACTION_NONE),
        ),
    ];
    if let Some(description) = &d.description {
        values.push(("Description", text(description)));
    }
    if !d.notes.is_empty() {
        values.push((
            "Notes",
            Value::array(d.notes.iter().map(|n| Value::from(n.as_str()))),
        ));
    }
    if let Some(linux) = &d.linux {
        values.push(("Kernel", text(&linux.kernel.display().to_string())));
        if let Some(ramdisk) = &linux.ramdisk {
            values.push(("Ramdisk", text(&ramdisk.display().to_string())));
        }
        if !linux.cmdline.is_empty() {
            values.push(("CommandLine", text(&linux.cmdline)));
        }
    }
    build(class, with_keys(&path, values))
}

/// What a pool holds and what is taken from it, in its AllocationUnits: (capacity, reserved,
/// units). A storage pool's are its file system's size and the bytes in use on it; a
/// network's, the ports of defined VMs connected to it (a bridge has no capacity).
fn pool_amounts(model: &Model, pool: &Pool) -> (Option<u64>, u64, &'static str) {
    match pool {
        Pool::Processor => (
            Some(model.host.logical_cpus as u64),
            model.vms.iter().map(|(d, _)| u64::from(d.vcpus)).sum(),
            "Processors",
        ),
        Pool::Memory => (
            Some(model.host.memory_total_bytes >> 10),
            model.vms.iter().map(|(d, _)| d.memory_mib << 10).sum(),
            "KiloBytes",
        ),
        Pool::Disk(name) => {
            let info = model.disk_pools.iter().find(|p| &p.name == name);
            (
                info.map(|p| p.capacity),
                info.map_or(0, |p| p.capacity.saturating_sub(p.available)),
                "Bytes",
            )
        }
        Pool::Network(bridge) => (
            None,
            model
                .vms
                .iter()
                .flat_map(|(d, _)| &d.nics)
                .filter(|n| n.bridge.as_ref() == Some(bridge))
                .count() as u64,
            "Ports",
        ),
    }
}

fn pool(class: &Class, model: &Model, pool: &Pool) -> Instance {
    let path = paths::pool(pool);
    let (capacity, reserved, units) = pool_amounts(model, pool);
    let id = pool.id();
    // The host's processors and memory are primordial; storage pools and bridges are made.
    let primordial = matches!(pool, Pool::Processor | Pool::Memory);
    let mut values = vec![
        ("PoolID", text(&id)),
        ("ElementName", text(&id)),
        ("ResourceType", Value::UInt16(pool.resource_type())),
        ("Primordial", Value::Boolean(primordial)),
        ("Reserved", Value::UInt64(reserved)),
        ("CurrentlyConsumedResource", Value::UInt64(reserved)),
        ("AllocationUnits", text(units)),
    ];
    if let Some(capacity) = capacity {
        values.push(("Capacity", Value::UInt64(capacity)));
        values.push(("MaxConsumableResource", Value::UInt64(capacity)));
    }
    build(class, with_keys(&path, values))
}

fn allocation_capabilities(class: &Class, pool: &Pool) -> Instance {
    let path = paths::allocation_capabilities(pool);
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", text(&pool.id())),
                ("ResourceType", Value::UInt16(pool.resource_type())),
                // 2: Specific (the pool is named, not chosen by the host).
                ("RequestTypesSupported", Value::UInt16(2)),
                // 2: Dedicated.
                ("SharingMode", Value::UInt16(2)),
            ],
        ),
    )
}

/// The template RASDs of `class` (a RASD class): each pool's Default, Minimum, Maximum and
/// Increment, which DefineSystem's defaults and limits are.
pub fn templates(class: &Class, model: &Model) -> Vec<Instance> {
    model
        .pools()
        .into_iter()
        .filter(|p| class.name.as_str().eq_ignore_ascii_case(p.rasd_class()))
        .flat_map(|pool| {
            paths::TEMPLATES
                .iter()
                .map(|(role, _, _)| template(class, model, &pool, role))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn template(class: &Class, model: &Model, pool: &Pool, role: &str) -> Instance {
    let (quantity, units) = template_quantity(model, pool, role);
    let path = paths::template(pool, role);
    let mut values = vec![
        ("ElementName", text(role)),
        ("ResourceType", Value::UInt16(pool.resource_type())),
        ("PoolID", text(&pool.id())),
        ("VirtualQuantity", Value::UInt64(quantity)),
        ("AllocationUnits", text(units)),
    ];
    match pool {
        Pool::Disk(_) => {
            values.push(("VirtualDevice", text("vda")));
            values.push(("EmulatedType", Value::UInt16(0)));
            values.push(("BusType", text("virtio")));
            values.push(("DriverType", text("raw")));
        }
        Pool::Network(bridge) => {
            values.push(("NetworkType", text("bridge")));
            values.push(("NetworkName", text(bridge)));
            values.push(("ResourceSubType", text("virtio")));
        }
        Pool::Processor | Pool::Memory => {}
    }
    build(class, with_keys(&path, values))
}

fn template_quantity(model: &Model, pool: &Pool, role: &str) -> (u64, &'static str) {
    use hypervisor_shim::devices::virtio::layout::MAX_DEVICES;
    use hypervisor_shim::guest::test_guest::layout;
    match (pool, role) {
        // A new volume's size: 1 GiB by default, from 1 MiB to what the pool has free.
        (Pool::Disk(_), "Default") => (1 << 30, "Bytes"),
        (Pool::Disk(_), "Minimum") => (1 << 20, "Bytes"),
        (Pool::Disk(name), "Maximum") => (
            model
                .disk_pools
                .iter()
                .find(|p| &p.name == name)
                .map_or(0, |p| p.available),
            "Bytes",
        ),
        (Pool::Disk(_), _) => (512, "Bytes"),
        (Pool::Network(_), "Maximum") => (MAX_DEVICES as u64, "Ports"),
        (Pool::Network(_), _) => (1, "Ports"),
        (Pool::Processor, "Default") => (
            u64::from(crate::vm::definition::DEFAULT_VCPUS),
            "Processors",
        ),
        (Pool::Processor, "Maximum") => (
            (model.host.logical_cpus as u64).min(u64::from(layout::MAX_VCPUS)),
            "Processors",
        ),
        (Pool::Processor, _) => (1, "Processors"),
        (Pool::Memory, "Default") => (crate::vm::definition::DEFAULT_MEMORY_MIB << 10, "KiloBytes"),
        (Pool::Memory, "Minimum") => (layout::MIN_MEMORY >> 10, "KiloBytes"),
        (Pool::Memory, "Maximum") => (model.host.memory_total_bytes >> 10, "KiloBytes"),
        (Pool::Memory, _) => (1024, "KiloBytes"),
    }
}

/// What CreateSnapshot would take of this VM now: a running or paused VM has state to
/// take; an off one has none.
fn snapshot_capabilities(class: &Class, d: &VmDefinition, state: State) -> Instance {
    let path = paths::snapshot_capabilities(&d.name);
    let enabled: &[u16] = if matches!(state, State::Running | State::Paused) {
        &SNAPSHOT_TYPES_SUPPORTED
    } else {
        &[]
    };
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", text(&d.name)),
                ("SnapshotTypesEnabled", u16s(enabled)),
                ("GuestOSNotificationEnabled", Value::Boolean(false)),
            ],
        ),
    )
}

fn datetime_ms(ms: u64) -> Value {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    Value::DateTime(DateTime::Timestamp(Timestamp::from_unix(
        secs,
        (ms % 1000) as u32 * 1000,
    )))
}

/// CIM_ConcreteJob.JobState of `state` (the domain happens to store the same numbers, for
/// its records' sake; this is the CIM side's own mapping).
fn job_state(state: JobState) -> u16 {
    match state {
        JobState::Running => 4,
        JobState::Completed => 7,
        JobState::Terminated => 8,
        JobState::Exception => 10,
    }
}

fn job(class: &Class, j: &Job) -> Instance {
    let path = paths::job(&j.id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let elapsed = j.finished_ms.unwrap_or(now).saturating_sub(j.submitted_ms);
    let failure = j.failure.as_ref().map(ChangeError::describe);
    let status = match j.state {
        JobState::Running => "Running".to_owned(),
        JobState::Completed => match &j.outcome {
            Some(outcome) => format!("Completed: {outcome}"),
            None => "Completed".to_owned(),
        },
        JobState::Terminated | JobState::Exception => {
            format!("Failed: {}", failure.as_deref().unwrap_or("unknown"))
        }
    };
    let operational = match j.state {
        JobState::Running => vec![2, 8],    // OK, Starting
        JobState::Completed => vec![2, 17], // OK, Completed
        JobState::Terminated | JobState::Exception => vec![6, 17], // Error, Completed
    };
    // A cancelled job ends without an error code, as it always has.
    let error_code = match &j.failure {
        Some(ChangeError::Cancelled) | None => 0,
        Some(failure) => ReturnCode::from(failure).number() as u16,
    };
    let mut values = vec![
        ("Name", text(&j.name)),
        ("ElementName", text(&j.name)),
        ("JobState", Value::UInt16(job_state(j.state))),
        ("JobStatus", text(&status)),
        ("PercentComplete", Value::UInt16(j.percent)),
        ("TimeSubmitted", datetime_ms(j.submitted_ms)),
        ("StartTime", datetime_ms(j.submitted_ms)),
        (
            "ElapsedTime",
            Value::DateTime(DateTime::Interval(Interval::from_duration(
                std::time::Duration::from_millis(elapsed),
            ))),
        ),
        (
            "TimeOfLastStateChange",
            datetime_ms(j.finished_ms.unwrap_or(j.submitted_ms)),
        ),
        (
            "TimeBeforeRemoval",
            Value::DateTime(DateTime::Interval(Interval::from_duration(
                jobs::TIME_BEFORE_REMOVAL,
            ))),
        ),
        ("DeleteOnCompletion", Value::Boolean(false)),
        ("ErrorCode", Value::UInt16(error_code)),
        ("OperationalStatus", u16s(&operational)),
    ];
    if let Some(description) = &failure {
        values.push(("ErrorDescription", text(description)));
    }
    build(class, with_keys(&path, values))
}

/// The settings a snapshot holds, as a definition named `NAME:snapshot:ID`, so that its
/// RASDs are `NAME:snapshot:ID/proc` ... beside the VM's `NAME/proc` ...
pub(super) fn snapshot_view(d: &VmDefinition, s: &Snapshot) -> VmDefinition {
    let (disks, nics) = s.devices.clone().unwrap_or_default();
    VmDefinition {
        name: format!("{}:snapshot:{}", d.name, s.id),
        vcpus: s.vcpus,
        memory_mib: s.memory_mib,
        disks,
        nics,
        snapshots: Vec::new(),
        element_name: None,
        ..d.clone()
    }
}

/// `f` of every VM and of every snapshot's settings.
fn with_snapshots(model: &Model, f: &dyn Fn(&VmDefinition) -> Vec<Instance>) -> Vec<Instance> {
    model
        .vms
        .iter()
        .flat_map(|(d, _)| {
            let mut out = f(d);
            for s in &d.snapshots {
                out.extend(f(&snapshot_view(d, s)));
            }
            out
        })
        .collect()
}

/// The resource allocations of `d` (its processors, memory, disks and network ports) as
/// the RASD classes of `ns` show them, with the VSSD: what a reconfiguration's indications
/// compare. A class `ns` lacks is left out.
pub(super) fn settings_of(
    ns: &cim_schema::Namespace,
    model: &Model,
    d: &VmDefinition,
) -> (Option<Instance>, Vec<Instance>) {
    let vssd = ns.class(class::SETTING_DATA).map(|c| setting_data(c, d));
    let mut rasds = Vec::new();
    for name in [class::PROC_RASD, class::MEM_RASD] {
        if let Some(c) = ns.class(name) {
            rasds.push(rasd(c, d));
        }
    }
    if let Some(c) = ns.class(class::DISK_RASD) {
        rasds.extend(d.disks.iter().map(|disk| disk_rasd(c, model, d, disk)));
    }
    if let Some(c) = ns.class(class::NET_RASD) {
        rasds.extend(d.nics.iter().map(|nic| net_rasd(c, d, nic)));
    }
    if let Some(c) = ns.class(class::CONSOLE_RASD) {
        rasds.push(console::model::rasd(c, &d.name));
    }
    (vssd, rasds)
}

/// The RASDs (and DSP1047 storage allocations) of a definition.
pub(super) fn rasd_paths(d: &VmDefinition) -> Vec<ObjectPath> {
    [paths::proc_rasd(&d.name), paths::mem_rasd(&d.name)]
        .into_iter()
        .chain(device_pairs(d).into_iter().map(|(_, rasd)| rasd))
        .chain(
            d.disks
                .iter()
                .map(|disk| paths::storage_sasd(&d.name, &disk.device)),
        )
        .chain(std::iter::once(paths::console_rasd(&d.name)))
        .collect()
}

fn snapshot_setting_data(class: &Class, d: &VmDefinition, s: &Snapshot) -> Instance {
    let path = paths::snapshot(&d.name, &s.id);
    let created = Timestamp::from_unix(i64::try_from(s.created).unwrap_or(i64::MAX), 0);
    build(
        class,
        with_keys(
            &path,
            vec![
                (
                    "ElementName",
                    text(&format!("{} snapshot {}", d.name, s.id)),
                ),
                ("VirtualSystemIdentifier", text(&d.name)),
                ("VirtualSystemType", text("KVM")),
                ("UUID", text(&d.uuid.to_string())),
                (
                    "CreationTime",
                    Value::DateTime(DateTime::Timestamp(created)),
                ),
                ("SnapshotDataRoot", text(&s.dir.display().to_string())),
            ],
        ),
    )
}

fn volume(class: &Class, pool: &DiskPoolInfo, volume: &Volume) -> Instance {
    let path = paths::volume(&pool.name, &volume.name);
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", text(&volume.name)),
                ("VolumeName", text(&volume.name)),
                ("Path", text(&volume.path.display().to_string())),
                (
                    "ResourceType",
                    Value::UInt16(settings::RESOURCE_LOGICAL_DISK),
                ),
                ("PoolID", text(&Pool::Disk(pool.name.clone()).id())),
                ("FormatType", Value::UInt16(1)),
                ("Capacity", Value::UInt64(volume.capacity)),
                ("AllocationQuantity", Value::UInt64(volume.allocation)),
                ("AllocationUnits", text("Bytes")),
            ],
        ),
    )
}

fn snapshot_service(class: &Class, model: &Model) -> Instance {
    let path = paths::snapshot_service(model.hostname);
    running_service(class, &path, "SnapshotService", vec![])
}

fn snapshot_service_capabilities(class: &Class) -> Instance {
    let path = paths::snapshot_service_capabilities();
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", text("SnapshotServiceCapabilities")),
                // CreateSnapshot (2), DestroySnapshot (3), ApplySnapshot (4).
                ("SynchronousMethodsSupported", u16s(&[2, 3, 4])),
                ("SnapshotTypesSupported", u16s(&SNAPSHOT_TYPES_SUPPORTED)),
            ],
        ),
    )
}

/// The migration settings carried out: name, MigrationType, and DSP1043's ValueRole (0
/// Default, 3 Supported).
pub(super) const MIGRATION_SETTINGS: [(&str, u16, u16); 4] = [
    ("Live", 2, 0),
    ("Resume", 3, 3),
    ("Restart", 4, 3),
    ("Offline", 1, 3),
];

fn migration_capabilities(class: &Class) -> Instance {
    let path = paths::migration_capabilities();
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", text("MigrationCapabilities")),
                // CheckVirtualSystemIsMigratableToHost (4) and ToSystem (5) answer at once;
                // MigrateVirtualSystemToHost (2) and ToSystem (3) run as jobs.
                ("SynchronousMethodsSupported", u16s(&[4, 5])),
                ("AsynchronousMethodsSupported", u16s(&[2, 3])),
                // DNS names, IPv4 and IPv6 addresses.
                ("DestinationHostFormatsSupported", u16s(&[2, 3, 4])),
            ],
        ),
    )
}

fn migration_setting_data(class: &Class, kind: &str, migration_type: u16) -> Instance {
    let path = paths::migration_setting_data(kind);
    let mut values = vec![
        ("ElementName", text(kind)),
        ("MigrationType", Value::UInt16(migration_type)),
        // HTTPS, the peer's certificate and name verified.
        ("TransportType", Value::UInt16(4)),
    ];
    if migration_type == 1 {
        values.push((
            "Caption",
            text("Other: a stopped VM's definition moves (offline)"),
        ));
    }
    build(class, with_keys(&path, values))
}

fn rasd(class: &Class, d: &VmDefinition) -> Instance {
    let processor = class.name.as_str().eq_ignore_ascii_case(class::PROC_RASD);
    let (path, resource_type, quantity, units) = if processor {
        (
            paths::proc_rasd(&d.name),
            settings::RESOURCE_PROCESSOR,
            u64::from(d.vcpus),
            "count",
        )
    } else {
        // libvirt-cim reports memory in KiB.
        (
            paths::mem_rasd(&d.name),
            settings::RESOURCE_MEMORY,
            d.memory_mib << 10,
            "KiloBytes",
        )
    };
    let mut values = vec![
        ("ResourceType", Value::UInt16(resource_type)),
        ("VirtualQuantity", Value::UInt64(quantity)),
        ("AllocationUnits", text(units)),
        ("ElementName", text(if processor { "proc" } else { "mem" })),
    ];
    // Memory is the VM's alone and it gets no more (as libvirt-cim shows it); processors
    // have no reservation, and a Weight and Limit only where the VM was given them.
    if processor {
        if let Some(weight) = d.cpu_share.weight {
            values.push(("Weight", Value::UInt32(weight)));
        }
        if let Some(limit) = d.cpu_share.limit {
            values.push(("Limit", Value::UInt64(u64::from(limit))));
        }
    } else {
        values.push(("Reservation", Value::UInt64(quantity)));
        values.push(("Limit", Value::UInt64(quantity)));
    }
    build(class, with_keys(&path, values))
}

fn processor(class: &Class, d: &VmDefinition, state: State, index: u32) -> Instance {
    let path = paths::processor(&d.name, index);
    let cim = CimState::of(state);
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", text(&format!("vCPU {index}"))),
                ("EnabledState", Value::UInt16(cim.enabled_state)),
                ("HealthState", Value::UInt16(cim.health_state)),
                ("OperationalStatus", u16s(&[cim.operational_status])),
            ],
        ),
    )
}

fn memory(class: &Class, d: &VmDefinition, state: State) -> Instance {
    let path = paths::memory(&d.name);
    let cim = CimState::of(state);
    let kib = d.memory_mib << 10;
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", text("mem")),
                ("BlockSize", Value::UInt64(1024)),
                ("NumberOfBlocks", Value::UInt64(kib)),
                ("ConsumableBlocks", Value::UInt64(kib)),
                ("EnabledState", Value::UInt16(cim.enabled_state)),
                ("HealthState", Value::UInt16(cim.health_state)),
                ("OperationalStatus", u16s(&[cim.operational_status])),
            ],
        ),
    )
}

/// The size of a disk's image now (0 if it cannot be read).
fn image_bytes(disk: &DiskDefinition) -> u64 {
    std::fs::metadata(&disk.path).map_or(0, |m| m.len())
}

fn disk_rasd(class: &Class, model: &Model, d: &VmDefinition, disk: &DiskDefinition) -> Instance {
    let path = paths::disk_rasd(&d.name, &disk.device);
    let image = disk.path.display().to_string();
    let pool_id = model
        .disk_pool(disk)
        .map(|p| Pool::Disk(p.name.clone()).id());
    let mut instance = build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", text(&disk.device)),
                ("ResourceType", Value::UInt16(settings::RESOURCE_DISK)),
                ("Address", text(&image)),
                ("HostResource", Value::Array(vec![Some(text(&image))])),
                ("VirtualDevice", text(&disk.device)),
                ("VirtualQuantity", Value::UInt64(image_bytes(disk))),
                ("AllocationUnits", text("Bytes")),
                ("EmulatedType", Value::UInt16(0)),
                ("BusType", text("virtio")),
                ("DriverType", text("raw")),
                ("readonly", Value::Boolean(disk.read_only)),
            ],
        ),
    );
    if let Some(id) = pool_id {
        instance.set("PoolID", text(&id));
    }
    instance
}

/// DSP1047's storage allocation under a disk's drive RASD: the image it maps (HostResource),
/// its size in 512-byte blocks, and whether the guest may write it (Access).
fn storage_sasd(class: &Class, model: &Model, d: &VmDefinition, disk: &DiskDefinition) -> Instance {
    let path = paths::storage_sasd(&d.name, &disk.device);
    let image = disk.path.display().to_string();
    let drive = paths::disk_rasd(&d.name, &disk.device).to_string();
    let mut values = vec![
        ("ElementName", text(&disk.device)),
        (
            "ResourceType",
            Value::UInt16(settings::RESOURCE_LOGICAL_DISK),
        ),
        ("HostResource", Value::Array(vec![Some(text(&image))])),
        ("Parent", text(&drive)),
        ("VirtualQuantity", Value::UInt64(image_bytes(disk) / 512)),
        ("VirtualQuantityUnits", text("count(fixed size block)")),
        ("VirtualResourceBlockSize", Value::UInt64(512)),
        // 1: Readable, 3: Read/Write Supported.
        ("Access", Value::UInt16(if disk.read_only { 1 } else { 3 })),
    ];
    if let Some(pool) = model.disk_pool(disk) {
        values.push(("PoolID", text(&Pool::Disk(pool.name.clone()).id())));
    }
    build(class, with_keys(&path, values))
}

fn net_rasd(class: &Class, d: &VmDefinition, nic: &NicDefinition) -> Instance {
    let path = paths::net_rasd(&d.name, &nic.mac.to_string());
    let mut values = vec![
        ("ElementName", text(&nic.mac.to_string())),
        (
            "ResourceType",
            Value::UInt16(settings::RESOURCE_ETHERNET_ADAPTER),
        ),
        ("ResourceSubType", text("virtio")),
        ("Address", text(&nic.mac.to_string())),
        ("VirtualQuantity", Value::UInt64(1)),
        // libvirt's name for a tap that joins no bridge is "ethernet".
        (
            "NetworkType",
            text(if nic.bridge.is_some() {
                "bridge"
            } else {
                "ethernet"
            }),
        ),
    ];
    if let Some(bridge) = &nic.bridge {
        values.push(("NetworkName", text(bridge)));
        values.push(("Connection", Value::Array(vec![Some(text(bridge))])));
        values.push(("PoolID", text(&Pool::Network(bridge.clone()).id())));
    }
    build(class, with_keys(&path, values))
}

fn logical_disk(class: &Class, d: &VmDefinition, state: State, disk: &DiskDefinition) -> Instance {
    let path = paths::logical_disk(&d.name, &disk.device);
    let cim = CimState::of(state);
    let blocks = image_bytes(disk) / 512;
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", text(&disk.device)),
                ("Name", text(&disk.path.display().to_string())),
                ("BlockSize", Value::UInt64(512)),
                ("NumberOfBlocks", Value::UInt64(blocks)),
                ("ConsumableBlocks", Value::UInt64(blocks)),
                ("EnabledState", Value::UInt16(cim.enabled_state)),
                ("HealthState", Value::UInt16(cim.health_state)),
                ("OperationalStatus", u16s(&[cim.operational_status])),
            ],
        ),
    )
}

fn network_port(class: &Class, d: &VmDefinition, state: State, nic: &NicDefinition) -> Instance {
    let path = paths::network_port(&d.name, &nic.mac.to_string());
    let cim = CimState::of(state);
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", text(&nic.mac.to_string())),
                // CIM writes a port's permanent address as 12 hex digits, no separators.
                (
                    "PermanentAddress",
                    text(&nic.mac.to_string().replace(':', "").to_uppercase()),
                ),
                (
                    "NetworkAddresses",
                    Value::Array(vec![Some(text(&nic.mac.to_string()))]),
                ),
                // 2: Ethernet.
                ("LinkTechnology", Value::UInt16(2)),
                ("EnabledState", Value::UInt16(cim.enabled_state)),
                ("HealthState", Value::UInt16(cim.health_state)),
                ("OperationalStatus", u16s(&[cim.operational_status])),
            ],
        ),
    )
}

/// A VM's disks and network ports, each as (device, its RASD).
pub(super) fn device_pairs(d: &VmDefinition) -> Vec<(ObjectPath, ObjectPath)> {
    let disks = d.disks.iter().map(|disk| {
        (
            paths::logical_disk(&d.name, &disk.device),
            paths::disk_rasd(&d.name, &disk.device),
        )
    });
    let nics = d.nics.iter().map(|nic| {
        (
            paths::network_port(&d.name, &nic.mac.to_string()),
            paths::net_rasd(&d.name, &nic.mac.to_string()),
        )
    });
    disks.chain(nics).collect()
}

fn state_capabilities(class: &Class, d: &VmDefinition) -> Instance {
    let path = paths::state_capabilities(&d.name);
    build(
        class,
        with_keys(
            &path,
            vec![
                ("ElementName", text(&d.name)),
                (
                    "RequestedStatesSupported",
                    u16s(&REQUESTED_STATES_SUPPORTED),
                ),
                ("ElementNameEditSupported", Value::Boolean(false)),
            ],
        ),
    )
}
