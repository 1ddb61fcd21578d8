//! The virtualization providers of `root/virt`: the host, its VMs, their settings and
//! devices, and the methods that define, destroy and change the state of VMs, carried out
//! on the integrated hypervisor through [`crate::vm::manager::VirtManager`].
//!
//! Served: KVM_HostSystem; KVM_VirtualSystemManagementService (DefineSystem, DestroySystem,
//! AddResourceSettings, ModifyResourceSettings, RemoveResourceSettings, ModifySystemSettings)
//! with its capabilities; per VM, KVM_ComputerSystem (live state, RequestStateChange),
//! KVM_VirtualSystemSettingData, processor, memory, disk and network RASDs, KVM_Processor,
//! KVM_Memory, KVM_LogicalDisk and KVM_NetworkPort, KVM_EnabledLogicalElementCapabilities,
//! KVM_VirtualSystemSnapshotCapabilities; and the associations between them
//! (HostedDependency, HostedService, SystemDevice, SettingsDefineState, ElementSettingData,
//! VirtualSystemSettingDataComponent, ElementCapabilities); KVM_VirtualSystemSnapshotService
//! (CreateSnapshot, ApplySnapshot, DestroySnapshot) with snapshots as VSSDs,
//! SnapshotOfVirtualSystem and LastAppliedSnapshot; the processor, memory, disk and network
//! pools (DSP1041) with their allocation capabilities and Default/Minimum/Maximum/Increment
//! template RASDs (DSP1043); KVM_ResourcePoolConfigurationService; jobs (DSP1103);
//! KVM_VirtualSystemMigrationService (DSP1081, [`migration`]) with its capabilities and
//! settings; KVM_TextRedirectionService (DSP1024, [`console`]) with each VM's
//! KVM_TextRedirectionSAP (RequestStateChange), the URLs of its WebSocket as
//! KVM_RemoteServiceAccessPoints, and its console RASD.

mod arguments;
mod associations;
mod build;
pub mod console;
mod devices;
mod error;
pub mod indications;
mod instances;
mod methods;
pub mod migration;
mod modify;
pub mod ovf;
pub mod paths;
pub mod portability;
mod portability_methods;
mod properties;
mod resources;
pub mod return_code;
mod settings;
mod startup;
mod state;
mod vssd_properties;

use std::sync::Arc;

use async_trait::async_trait;
use cim_schema::{Class, Instance, Method, Name, ObjectPath, Repository, Value};

use crate::vm::manager::{DiskPoolInfo, VirtManager};
use crate::vm::{definition::VmDefinition, jobs::Job};
use cimom::dispatch::interop::{CentralElements, Interop, Profile};
use cimom::dispatch::provider::{
    InstanceProvider, InstanceSink, MethodProvider, MethodResult, ProviderContext, Registry,
};
use cimom::error::{CimError, CimResult, StatusCode};
use migration::MigrationSettings;
use paths::{class, Pool};
use return_code::ReturnCode;

/// The namespace of the KVM_ classes.
pub const NAMESPACE: &str = "root/virt";

/// The providers, sharing one manager.
pub struct Virt {
    manager: Arc<VirtManager>,
    hostname: String,
    migration: MigrationSettings,
    console_urls: console::ConsoleUrls,
}

impl Virt {
    /// Providers over `manager` for the host `hostname`, migrating VMs with `migration`,
    /// whose consoles are reached at `console_urls`.
    pub fn new(
        manager: Arc<VirtManager>,
        hostname: String,
        migration: MigrationSettings,
        console_urls: console::ConsoleUrls,
    ) -> Arc<Self> {
        Arc::new(Virt {
            manager,
            hostname,
            migration,
            console_urls,
        })
    }

    /// Registers the instance providers of `root/virt` for every class of `schema` whose
    /// instances the instance builders build, and the method providers for the classes
    /// of the method table.
    pub fn register(self: &Arc<Self>, schema: &Repository, registry: &mut Registry) {
        for class in served_classes(schema) {
            registry.register_instances(NAMESPACE, class.as_str(), self.clone());
        }
        let mut with_methods: Vec<&str> = METHODS.iter().map(|(class, _, _)| *class).collect();
        with_methods.sort_unstable();
        with_methods.dedup();
        for class in with_methods {
            registry.register_methods(NAMESPACE, class, self.clone());
        }
    }

    /// Advertises the profiles these providers implement in the interop namespace (DSP1033),
    /// with libvirt-cim's InstanceIDs where it has the profile: System Virtualization
    /// (DSP1042, central instance the host), and, scoped by it, Computer System (DSP1052,
    /// the host; itself scoping CPU, DSP1022, and System Memory, DSP1026), Virtual System (DSP1057,
    /// the VMs), Resource Allocation (DSP1041, one registration per kind of pool, as
    /// libvirt-cim has them), Allocation Capabilities (DSP1043), Processor, Memory, Storage
    /// and Ethernet Port Resource Virtualization (DSP1044, DSP1045, DSP1047, DSP1050, their
    /// pools), Job Control (DSP1103, the jobs), Virtual System Snapshot (the snapshot
    /// service), Virtual System Migration (DSP1081, the migration service) and Text Console
    /// Redirection (DSP1024, the console service). Central
    /// instances that come and go (VMs, storage pools, bridges, jobs) are read when a client
    /// asks.
    pub fn register_profiles(self: &Arc<Self>, interop: &Interop) {
        const DSP1042: &str = "CIM:DSP1042-SystemVirtualization-1.0.0";
        let conforms = Name::new("KVM_ElementConformsToProfile");
        let profile = |id: &str, name: &str, version: &str| Profile {
            class: Name::new("KVM_RegisteredProfile"),
            instance_id: id.into(),
            organization: 2,
            name: name.into(),
            version: version.into(),
            conformance: Vec::new(),
            dynamic_conformance: None,
            scoping: Some((Name::new("KVM_ReferencedProfile"), DSP1042.into())),
        };
        let fixed = |id: &str, name: &str, version: &str, central: Vec<ObjectPath>| Profile {
            conformance: central
                .into_iter()
                .map(|path| (conforms.clone(), path))
                .collect(),
            ..profile(id, name, version)
        };
        let live = |id: &str, name: &str, version: &str, central: CentralElements| Profile {
            dynamic_conformance: Some((conforms.clone(), central)),
            ..profile(id, name, version)
        };
        let manager = self.manager.clone();
        let pools_of = move |keep: fn(&Pool) -> bool| {
            let manager = manager.clone();
            CentralElements(Arc::new(move || {
                current_pools(&manager)
                    .into_iter()
                    .filter(keep)
                    .map(|p| paths::pool(&p))
                    .collect()
            }))
        };

        interop.register_profile(Profile {
            scoping: None,
            ..fixed(
                DSP1042,
                "System Virtualization",
                "1.0.0",
                vec![paths::host(&self.hostname)],
            )
        });
        // The host's own profiles: Computer System (DSP1052), and under it CPU (DSP1022) and
        // System Memory (DSP1026).
        const DSP1052: &str = "CIM:DSP1052-ComputerSystem-1.0.0";
        interop.register_profile(fixed(
            DSP1052,
            "Computer System",
            "1.0.0",
            vec![paths::host(&self.hostname)],
        ));
        let under_dsp1052 = Some((Name::new("KVM_ReferencedProfile"), DSP1052.to_owned()));
        interop.register_profile(Profile {
            scoping: under_dsp1052.clone(),
            ..fixed(
                "CIM:DSP1022-CPU-1.0.0",
                "CPU",
                "1.0.0",
                (0..self.manager.host().logical_cpus)
                    .map(|i| paths::host_processor(&self.hostname, i))
                    .collect(),
            )
        });
        interop.register_profile(Profile {
            scoping: under_dsp1052,
            ..fixed(
                "CIM:DSP1026-SystemMemory-1.0.0",
                "System Memory",
                "1.0.0",
                vec![paths::host_memory(&self.hostname)],
            )
        });
        let manager = self.manager.clone();
        interop.register_profile(live(
            "CIM:DSP1057-VirtualSystem-1.0.0a",
            "Virtual System Profile",
            "1.0.0a",
            CentralElements(Arc::new(move || {
                manager
                    .definitions()
                    .iter()
                    .map(|d| paths::system(&d.name))
                    .collect()
            })),
        ));
        const DSP1041: (&str, &str) = ("Resource Allocation", "1.1.0c");
        interop.register_profile(fixed(
            "CIM:DSP1041-ResourceAllocation-1.1.0c_p",
            DSP1041.0,
            DSP1041.1,
            vec![paths::pool(&Pool::Processor)],
        ));
        interop.register_profile(fixed(
            "CIM:DSP1041-ResourceAllocation-1.1.0c_m",
            DSP1041.0,
            DSP1041.1,
            vec![paths::pool(&Pool::Memory)],
        ));
        interop.register_profile(live(
            "CIM:DSP1041-ResourceAllocation-1.1.0c_d",
            DSP1041.0,
            DSP1041.1,
            pools_of(|p| matches!(p, Pool::Disk(_))),
        ));
        interop.register_profile(live(
            "CIM:DSP1041-ResourceAllocation-1.1.0c_n",
            DSP1041.0,
            DSP1041.1,
            pools_of(|p| matches!(p, Pool::Network(_))),
        ));
        let manager = self.manager.clone();
        interop.register_profile(live(
            "CIM:DSP1043-AllocationCapabilities-1.0.0a",
            "Allocation Capabilities",
            "1.0.0a",
            CentralElements(Arc::new(move || {
                current_pools(&manager)
                    .iter()
                    .map(paths::allocation_capabilities)
                    .collect()
            })),
        ));
        interop.register_profile(fixed(
            "CIM:DSP1044-ProcessorResourceVirtualization-1.0.0",
            "Processor Resource Virtualization",
            "1.0.0",
            vec![paths::pool(&Pool::Processor)],
        ));
        interop.register_profile(fixed(
            "CIM:DSP1045-MemoryResourceVirtualization-1.0.0",
            "Memory Resource Virtualization",
            "1.0.0",
            vec![paths::pool(&Pool::Memory)],
        ));
        interop.register_profile(live(
            "CIM:DSP1047-StorageResourceVirtualization-1.0.0",
            "Storage Resource Virtualization",
            "1.0.0",
            pools_of(|p| matches!(p, Pool::Disk(_))),
        ));
        interop.register_profile(live(
            "CIM:DSP1050-EthernetPortResourceVirtualization-1.0.0",
            "Ethernet Port Resource Virtualization",
            "1.0.0",
            pools_of(|p| matches!(p, Pool::Network(_))),
        ));
        let manager = self.manager.clone();
        interop.register_profile(live(
            "CIM:DSP1103-JobControl-1.0.0",
            "Job Control",
            "1.0.0",
            CentralElements(Arc::new(move || {
                manager
                    .jobs()
                    .list()
                    .iter()
                    .map(|j| paths::job(&j.id))
                    .collect()
            })),
        ));
        interop.register_profile(fixed(
            "CIM:DSP1081-VirtualSystemMigration-0.8.1",
            "Virtual System Migration",
            "0.8.1",
            vec![paths::migration_service(&self.hostname)],
        ));
        interop.register_profile(fixed(
            "CIM:DSP1024-TextConsoleRedirection-1.0.0",
            "Text Console Redirection",
            "1.0.0",
            vec![paths::text_redirection_service(&self.hostname)],
        ));
        // The DSP number of DMTF's snapshot profile is not cited: it could not be confirmed
        // from the sources at hand; clients find the profile by organization and name.
        interop.register_profile(fixed(
            "CIM:VirtualSystemSnapshot-1.0.0",
            "Virtual System Snapshot",
            "1.0.0",
            vec![paths::snapshot_service(&self.hostname)],
        ));
    }

    /// Runs blocking VM work on tokio's blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&VirtManager) -> T + Send + 'static,
    ) -> CimResult<T> {
        let manager = self.manager.clone();
        tokio::task::spawn_blocking(move || work(&manager))
            .await
            .map_err(|e| CimError::failed(format!("the VM operation failed: {e}")))
    }
}

/// The classes of the builders' table, as `schema`'s `root/virt` names them.
fn served_classes(schema: &Repository) -> Vec<Name> {
    let Ok(ns) = schema.namespace(NAMESPACE) else {
        return Vec::new();
    };
    instances::builders()
        .filter_map(|builder| ns.class(builder.class))
        .map(|class| class.name.clone())
        .collect()
}

/// The pools the host has now: processors, memory, the storage pools and the bridges.
fn current_pools(manager: &VirtManager) -> Vec<Pool> {
    let mut pools = vec![Pool::Processor, Pool::Memory];
    pools.extend(
        manager
            .disk_pools(false)
            .into_iter()
            .map(|p| Pool::Disk(p.name)),
    );
    pools.extend(host_bridges().into_iter().map(Pool::Network));
    pools
}

/// The host's bridges by name, from sysfs (a host without it has none to offer).
fn host_bridges() -> Vec<String> {
    hypervisor_shim::netif::bridges()
        .map(|b| b.into_iter().map(|b| b.name).collect())
        .unwrap_or_default()
}

/// The live state the instances are built from.
struct Live {
    vms: Vec<(VmDefinition, hypervisor_shim::lifecycle::State)>,
    /// Open console sessions, by VM name (VMs without any are left out).
    console_sessions: std::collections::BTreeMap<String, usize>,
    crash_reasons: std::collections::BTreeMap<String, String>,
    jobs: Vec<Job>,
    disk_pools: Vec<DiskPoolInfo>,
    bridges: Vec<String>,
}

/// Which VMs a request's instances are built from.
#[derive(Clone, Copy)]
enum VmScope<'a> {
    /// Every VM: an enumeration, or a pool whose figures add up every VM's share.
    All,
    /// The VMs an instance path names (in its keys or the keys of the paths it
    /// references): the instance it identifies, if it exists, is built from them alone.
    NamedIn(&'a ObjectPath),
}

impl VmScope<'_> {
    /// The scope of a request for `class` that looks for the instance at `path`, if any.
    fn of<'a>(class: &Class, path: Option<&'a ObjectPath>) -> VmScope<'a> {
        match path {
            Some(path) if !sums_over_vms(class) => VmScope::NamedIn(path),
            _ => VmScope::All,
        }
    }
}

/// Whether an instance of `class` adds up what every VM takes (the pools do).
fn sums_over_vms(class: &Class) -> bool {
    [
        class::PROCESSOR_POOL,
        class::MEMORY_POOL,
        class::DISK_POOL,
        class::NETWORK_POOL,
    ]
    .iter()
    .any(|pool| class.name.as_str().eq_ignore_ascii_case(pool))
}

/// How many VMs' instances an enumeration builds at a time: a thousand VMs' instances at
/// once would cost several MiB that the allocator then keeps.
const VMS_PER_BATCH: usize = 64;

/// The strings in `path`'s keys and in the keys of the paths it references.
fn key_strings<'a>(path: &'a ObjectPath, out: &mut Vec<&'a str>) {
    for binding in &path.keys {
        match &binding.value {
            Value::String(s) => out.push(s),
            Value::Reference(referenced) => key_strings(referenced, out),
            _ => {}
        }
    }
}

/// Whether a key value names VM `vm`: as a system's Name or a device's SystemName, as a
/// settings InstanceID (`KVM:NAME`, `KVM:NAME:snapshot:ID`), or as the `NAME/...` or
/// `NAME:snapshot:ID/...` of a RASD's InstanceID or a device's DeviceID. (A VM's name holds
/// no `/` or `:`, so no other VM's keys match.)
fn names_vm(key: &str, vm: &str) -> bool {
    let follows_name = |rest: &str| rest.starts_with('/') || rest.starts_with(':');
    if key == vm || key.strip_prefix(vm).is_some_and(follows_name) {
        return true;
    }
    key.strip_prefix("KVM:")
        .and_then(|id| id.strip_prefix(vm))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
}

impl Virt {
    /// Reads what the instances of `class` are built from: the VMs in `scope`, each in the
    /// state the supervisor last observed (no VM is asked), and the host's pools. Only
    /// volume instances list the storage pools' directories: every other request would pay
    /// for it for nothing.
    async fn live(&self, class: &Class, scope: VmScope<'_>) -> CimResult<Live> {
        let with_volumes = class.name.as_str().eq_ignore_ascii_case(class::VOLUME_RASD);
        let definitions = match scope {
            VmScope::All => self.manager.definitions(),
            VmScope::NamedIn(path) => {
                let mut keys = Vec::new();
                key_strings(path, &mut keys);
                self.manager
                    .definitions_where(|vm| keys.iter().any(|key| names_vm(key, vm)))
            }
        };
        let (disk_pools, bridges) = self
            .blocking(move |m| (m.disk_pools(with_volumes), host_bridges()))
            .await?;
        let vms: Vec<_> = definitions
            .into_iter()
            .map(|d| {
                let state = self.manager.observed_state(&d);
                (d, state)
            })
            .collect();
        let crash_reasons = vms
            .iter()
            .filter(|(_, state)| *state == hypervisor_shim::lifecycle::State::Crashed)
            .filter_map(|(d, _)| Some((d.name.clone(), self.manager.crash_reason(d)?)))
            .collect();
        // Only a console's own instance shows how many clients it has.
        let console_sessions = if class
            .name
            .as_str()
            .eq_ignore_ascii_case(class::TEXT_REDIRECTION_SAP)
        {
            let consoles = self.manager.consoles();
            vms.iter()
                .map(|(d, _)| (d.name.clone(), consoles.sessions(&d.run_id())))
                .filter(|(_, n)| *n > 0)
                .collect()
        } else {
            Default::default()
        };
        Ok(Live {
            vms,
            console_sessions,
            crash_reasons,
            jobs: self.manager.jobs().list(),
            disk_pools,
            bridges,
        })
    }

    fn model<'a>(&'a self, live: &'a Live) -> instances::Model<'a> {
        instances::Model {
            hostname: &self.hostname,
            host: self.manager.host(),
            vms: &live.vms,
            crash_reasons: &live.crash_reasons,
            console_urls: &self.console_urls,
            console_sessions: &live.console_sessions,
            jobs: &live.jobs,
            disk_pools: &live.disk_pools,
            bridges: &live.bridges,
        }
    }
}

#[async_trait]
impl InstanceProvider for Virt {
    /// Finds an instance: the VMs' allocations and, among the RASDs, each pool's templates
    /// (Default, Minimum, Maximum, Increment) as well.
    async fn get_instance(
        &self,
        _ctx: &ProviderContext,
        class: &Arc<Class>,
        path: &ObjectPath,
    ) -> CimResult<Instance> {
        let live = self.live(class, VmScope::of(class, Some(path))).await?;
        let model = self.model(&live);
        let wanted = path.local();
        instances::of_class(class, &model)
            .unwrap_or_default()
            .into_iter()
            .chain(instances::templates(class, &model))
            .find(|i| i.path(class, None) == wanted)
            .ok_or_else(|| CimError::not_found(format!("instance {path} does not exist")))
    }

    /// A VM's system (its ElementName) and settings change; other classes are read-only.
    async fn modify_instance(
        &self,
        ctx: &ProviderContext,
        class: &Arc<Class>,
        path: &ObjectPath,
        instance: Instance,
        property_list: Option<&[Name]>,
    ) -> CimResult<()> {
        let name = class.name.as_str();
        if !name.eq_ignore_ascii_case(class::COMPUTER_SYSTEM)
            && !name.eq_ignore_ascii_case(class::SETTING_DATA)
        {
            return Err(CimError::not_supported(format!(
                "instances of {name} cannot be modified"
            )));
        }
        self.modify_vm_instance(ctx, class, path, instance, property_list)
            .await
    }

    async fn enumerate_instances(
        &self,
        _ctx: &ProviderContext,
        class: &Arc<Class>,
        sink: &InstanceSink,
    ) -> CimResult<()> {
        let live = self.live(class, VmScope::All).await?;
        let model = self.model(&live);
        if sums_over_vms(class) || live.vms.len() <= VMS_PER_BATCH {
            let Some(instances) = instances::of_class(class, &model) else {
                return Err(no_provider(class));
            };
            send_all(sink, instances).await;
        } else {
            // The instances no VM is part of (the host's, its services', the jobs'), then
            // each batch of VMs' own, without those again.
            let Some(apart) = instances::of_class(class, &instances::Model { vms: &[], ..model })
            else {
                return Err(no_provider(class));
            };
            let paths_apart: Vec<ObjectPath> = apart.iter().map(|i| i.path(class, None)).collect();
            if !send_all(sink, apart).await {
                return Ok(());
            }
            for batch in live.vms.chunks(VMS_PER_BATCH) {
                let model = instances::Model {
                    vms: batch,
                    ..model
                };
                let instances = instances::of_class(class, &model)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|i| {
                        paths_apart.is_empty() || !paths_apart.contains(&i.path(class, None))
                    });
                if !send_all(sink, instances).await {
                    return Ok(());
                }
            }
        }
        // The templates are instances of the profile like any other: a query such as
        // `InstanceID LIKE '%Default%'` (the usual Hyper-V script idiom) finds them.
        send_all(sink, instances::templates(class, &model)).await;
        Ok(())
    }
}

fn no_provider(class: &Class) -> CimError {
    CimError::not_supported(format!("{} has no provider here", class.name))
}

/// Sends `instances` until the sink takes no more; whether it took them all.
async fn send_all(sink: &InstanceSink, instances: impl IntoIterator<Item = Instance>) -> bool {
    for instance in instances {
        if !sink.send(instance).await {
            return false;
        }
    }
    true
}

/// A method's handler: the provider, the caller, the target, the arguments.
type Handler = for<'a> fn(
    &'a Virt,
    &'a ProviderContext,
    &'a ObjectPath,
    &'a [(Name, Option<Value>)],
) -> BoxFuture<'a, CimResult<MethodResult>>;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Every extrinsic method these providers carry out, by class and method: the one table the
/// method providers are registered from and calls are dispatched by.
const METHODS: &[(&str, &str, Handler)] = &[
    (
        class::TEXT_REDIRECTION_SAP,
        "RequestStateChange",
        |v, _, target, args| Box::pin(v.console_state_change(target, args)),
    ),
    (
        class::COMPUTER_SYSTEM,
        "RequestStateChange",
        |v, _, target, args| Box::pin(v.request_state_change(target, args)),
    ),
    (
        class::COMPUTER_SYSTEM,
        "SetPowerState",
        |v, _, target, args| Box::pin(v.set_power_state(target, args)),
    ),
    (
        class::MANAGEMENT_SERVICE,
        "DefineSystem",
        |v, ctx, _, args| Box::pin(v.define_system(ctx, args)),
    ),
    (
        class::MANAGEMENT_SERVICE,
        "ImportSystemDefinition",
        |v, ctx, _, args| Box::pin(v.import_system_definition(ctx, args)),
    ),
    (
        class::MANAGEMENT_SERVICE,
        "ExportSystemDefinition",
        |v, ctx, _, args| Box::pin(v.export_system_definition(ctx, args)),
    ),
    (
        class::MANAGEMENT_SERVICE,
        "DestroySystem",
        |v, _, _, args| Box::pin(v.destroy_system(args)),
    ),
    (
        class::MANAGEMENT_SERVICE,
        "ModifyResourceSettings",
        |v, ctx, _, args| Box::pin(v.modify_resource_settings(ctx, args)),
    ),
    (
        class::MANAGEMENT_SERVICE,
        "ModifySystemSettings",
        |v, ctx, _, args| Box::pin(v.modify_system_settings(ctx, args)),
    ),
    (
        class::MANAGEMENT_SERVICE,
        "AddResourceSettings",
        |v, ctx, _, args| Box::pin(v.add_resource_settings(ctx, args)),
    ),
    (
        class::MANAGEMENT_SERVICE,
        "RemoveResourceSettings",
        |v, _, _, args| Box::pin(v.remove_resource_settings(args)),
    ),
    (
        class::POOL_SERVICE,
        "CreateResourceInPool",
        |v, _, _, args| Box::pin(v.create_resource_in_pool(args)),
    ),
    (
        class::POOL_SERVICE,
        "CreateChildResourcePool",
        |v, ctx, _, args| Box::pin(v.create_child_resource_pool(ctx, args)),
    ),
    (
        class::POOL_SERVICE,
        "DeleteResourcePool",
        |v, _, _, args| Box::pin(v.delete_resource_pool(args)),
    ),
    (
        class::POOL_SERVICE,
        "DeleteResourceInPool",
        |v, _, _, args| Box::pin(v.delete_resource_in_pool(args)),
    ),
    // Volumes are read from the pool's directory whenever a client asks.
    (
        class::POOL_SERVICE,
        "RefreshResourcesInPool",
        |_, _, _, _| Box::pin(async { Ok(methods::done(ReturnCode::Completed, vec![])) }),
    ),
    (
        class::SNAPSHOT_SERVICE,
        "CreateSnapshot",
        |v, _, _, args| Box::pin(v.create_snapshot(args)),
    ),
    (class::SNAPSHOT_SERVICE, "ApplySnapshot", |v, _, _, args| {
        Box::pin(v.apply_snapshot(args))
    }),
    (
        class::SNAPSHOT_SERVICE,
        "DestroySnapshot",
        |v, _, _, args| Box::pin(v.destroy_snapshot(args)),
    ),
    (class::JOB, "GetError", |v, _, target, _| {
        Box::pin(v.job_errors(target, false))
    }),
    (class::JOB, "GetErrors", |v, _, target, _| {
        Box::pin(v.job_errors(target, true))
    }),
    (class::JOB, "KillJob", |v, _, target, args| {
        Box::pin(v.kill_job(target, args))
    }),
    (class::JOB, "RequestStateChange", |v, _, target, args| {
        Box::pin(v.job_state_change(target, args))
    }),
    (
        class::MIGRATION_SERVICE,
        "MigrateVirtualSystemToHost",
        |v, _, _, args| Box::pin(v.migration_method("MigrateVirtualSystemToHost", args)),
    ),
    (
        class::MIGRATION_SERVICE,
        "MigrateVirtualSystemToSystem",
        |v, _, _, args| Box::pin(v.migration_method("MigrateVirtualSystemToSystem", args)),
    ),
    (
        class::MIGRATION_SERVICE,
        "CheckVirtualSystemIsMigratableToHost",
        |v, _, _, args| Box::pin(v.migration_method("CheckVirtualSystemIsMigratableToHost", args)),
    ),
    (
        class::MIGRATION_SERVICE,
        "CheckVirtualSystemIsMigratableToSystem",
        |v, _, _, args| {
            Box::pin(v.migration_method("CheckVirtualSystemIsMigratableToSystem", args))
        },
    ),
];

#[async_trait]
impl MethodProvider for Virt {
    async fn invoke_method(
        &self,
        ctx: &ProviderContext,
        class: &Arc<Class>,
        target: &ObjectPath,
        method: &Method,
        arguments: Vec<(Name, Option<Value>)>,
    ) -> CimResult<MethodResult> {
        let (class, method_name) = (class.name.as_str(), method.name.as_str());
        let handler = METHODS
            .iter()
            .find(|(c, m, _)| class.eq_ignore_ascii_case(c) && method_name.eq_ignore_ascii_case(m));
        match handler {
            Some((_, _, handler)) => handler(self, ctx, target, &arguments).await,
            None => Err(CimError::new(
                StatusCode::MethodNotAvailable,
                format!("{class}.{method_name} is not available yet"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_names_the_vms_its_keys_name_and_no_other() {
        let vm = "web";
        for key in [
            "web",
            "KVM:web",
            "KVM:web:snapshot:3",
            "web/proc",
            "web/52:54:00:12:34:56",
            "web:snapshot:1/mem",
        ] {
            assert!(names_vm(key, vm), "{key} names {vm}");
        }
        for key in [
            "webserver",
            "KVM:webserver",
            "we",
            "KVM:Job:web",
            "db/web",
            "Web",
        ] {
            assert!(!names_vm(key, vm), "{key} does not name {vm}");
        }
    }

    #[test]
    fn the_classes_served_are_the_kvm_classes_whose_instances_are_built() {
        let schema = crate::schema::load().expect("the embedded schema compiles");
        let served = served_classes(&schema);
        let table = instances::builders().count();
        assert_eq!(
            served.len(),
            table,
            "every class of the table is in the schema"
        );
        assert!(
            served.iter().all(|c| c.as_str().starts_with("KVM_")),
            "{served:?}"
        );
        for central in [
            class::HOST_SYSTEM,
            class::COMPUTER_SYSTEM,
            class::SETTING_DATA,
            class::PROC_RASD,
            class::HOSTED_DEPENDENCY,
            class::ELEMENT_CAPABILITIES,
            class::JOB,
            class::MIGRATION_SERVICE,
        ] {
            assert!(served.iter().any(|c| c.as_str() == central), "{central}");
        }
        assert_eq!(served.len(), 56, "{served:?}");
    }

    #[test]
    fn every_method_of_the_table_is_one_its_class_declares() {
        let schema = crate::schema::load().expect("the embedded schema compiles");
        for (class, method, _) in METHODS {
            let declared = schema.class(NAMESPACE, class).expect(class);
            assert!(declared.method(method).is_some(), "{class}.{method}");
        }
    }

    #[test]
    fn the_keys_of_referenced_paths_are_searched_too() {
        let association = ObjectPath::class(None, class::SYSTEM_DEVICE)
            .with_key("GroupComponent", Value::Reference(paths::system("web")))
            .with_key(
                "PartComponent",
                Value::Reference(paths::logical_disk("web", "vda")),
            );
        let mut keys = Vec::new();
        key_strings(&association, &mut keys);
        assert!(
            keys.contains(&"web") && keys.contains(&"web/vda"),
            "{keys:?}"
        );
    }
}
