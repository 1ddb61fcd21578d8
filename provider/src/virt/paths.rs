//! The object paths of the `root/virt` instances, built in one place so that instances and
//! the associations that point at them always agree.

use cim_schema::ObjectPath;

use super::NAMESPACE;

/// Class names.
pub mod class {
    /// The host.
    pub const HOST_SYSTEM: &str = "KVM_HostSystem";
    /// A VM.
    pub const COMPUTER_SYSTEM: &str = "KVM_ComputerSystem";
    /// A logical CPU of the host.
    pub const HOST_PROCESSOR: &str = "KVM_HostProcessor";
    /// The host's RAM.
    pub const HOST_MEMORY: &str = "KVM_HostMemory";
    /// The service that defines VMs.
    pub const MANAGEMENT_SERVICE: &str = "KVM_VirtualSystemManagementService";
    /// Its capabilities.
    pub const MANAGEMENT_CAPABILITIES: &str = "KVM_VirtualSystemManagementCapabilities";
    /// A VM's settings.
    pub const SETTING_DATA: &str = "KVM_VirtualSystemSettingData";
    /// A VM's processor allocation.
    pub const PROC_RASD: &str = "KVM_ProcResourceAllocationSettingData";
    /// A VM's memory allocation.
    pub const MEM_RASD: &str = "KVM_MemResourceAllocationSettingData";
    /// A VM's disk allocation.
    pub const DISK_RASD: &str = "KVM_DiskResourceAllocationSettingData";
    /// A VM's network port allocation.
    pub const NET_RASD: &str = "KVM_NetResourceAllocationSettingData";
    /// The image behind a VM's disk (DSP1047's second level, under the drive RASD).
    pub const STORAGE_SASD: &str = "KVM_StorageAllocationSettingData";
    /// A VM's disk.
    pub const LOGICAL_DISK: &str = "KVM_LogicalDisk";
    /// A VM's network port.
    pub const NETWORK_PORT: &str = "KVM_NetworkPort";
    /// A VM's vCPU.
    pub const PROCESSOR: &str = "KVM_Processor";
    /// A VM's memory.
    pub const MEMORY: &str = "KVM_Memory";
    /// The states a VM can be asked for.
    pub const STATE_CAPABILITIES: &str = "KVM_EnabledLogicalElementCapabilities";
    /// Host to VM.
    pub const HOSTED_DEPENDENCY: &str = "KVM_HostedDependency";
    /// Host to service.
    pub const HOSTED_SERVICE: &str = "KVM_HostedService";
    /// VM to device.
    pub const SYSTEM_DEVICE: &str = "KVM_SystemDevice";
    /// VM or device to its settings.
    pub const SETTINGS_DEFINE_STATE: &str = "KVM_SettingsDefineState";
    /// VM to its settings, as DSP1057's "current" settings.
    pub const ELEMENT_SETTING_DATA: &str = "KVM_ElementSettingData";
    /// Settings to their resource allocations.
    pub const SETTING_DATA_COMPONENT: &str = "KVM_VirtualSystemSettingDataComponent";
    /// Element to its capabilities.
    pub const ELEMENT_CAPABILITIES: &str = "KVM_ElementCapabilities";
    /// The service that takes, applies and destroys snapshots.
    pub const SNAPSHOT_SERVICE: &str = "KVM_VirtualSystemSnapshotService";
    /// Its capabilities.
    pub const SNAPSHOT_SERVICE_CAPABILITIES: &str = "KVM_VirtualSystemSnapshotServiceCapabilities";
    /// Snapshot (its VSSD) to the VM it was taken of.
    pub const SNAPSHOT_OF: &str = "KVM_SnapshotOfVirtualSystem";
    /// VM to the snapshot last applied to it.
    pub const LAST_APPLIED: &str = "KVM_LastAppliedSnapshot";
    /// The host's processors, as a pool VMs draw vCPUs from.
    pub const PROCESSOR_POOL: &str = "KVM_ProcessorPool";
    /// The host's memory, as a pool.
    pub const MEMORY_POOL: &str = "KVM_MemoryPool";
    /// A storage pool (a directory of images).
    pub const DISK_POOL: &str = "KVM_DiskPool";
    /// The service that creates and deletes volumes in storage pools.
    pub const POOL_SERVICE: &str = "KVM_ResourcePoolConfigurationService";
    /// A volume (an image file) in a storage pool.
    pub const VOLUME_RASD: &str = "KVM_StorageVolumeResourceAllocationSettingData";
    /// A network (a Linux bridge).
    pub const NETWORK_POOL: &str = "KVM_NetworkPool";
    /// What a pool can allocate.
    pub const ALLOCATION_CAPABILITIES: &str = "KVM_AllocationCapabilities";
    /// Allocation capabilities to their Default/Minimum/Maximum/Increment template RASDs.
    pub const SETTINGS_DEFINE_CAPABILITIES: &str = "KVM_SettingsDefineCapabilities";
    /// Host to pool.
    pub const HOSTED_RESOURCE_POOL: &str = "KVM_HostedResourcePool";
    /// Pool to the devices allocated from it.
    pub const ELEMENT_ALLOCATED_FROM_POOL: &str = "KVM_ElementAllocatedFromPool";
    /// Pool to the RASDs allocated from it.
    pub const RESOURCE_ALLOCATION_FROM_POOL: &str = "KVM_ResourceAllocationFromPool";
    /// The snapshot types one VM allows now.
    pub const SNAPSHOT_CAPABILITIES: &str = "KVM_VirtualSystemSnapshotCapabilities";
    /// A background state change.
    pub const JOB: &str = "KVM_ConcreteJob";
    /// Job to the VM it changes.
    pub const AFFECTED_JOB_ELEMENT: &str = "KVM_AffectedJobElement";
    /// VM to the jobs its methods started.
    pub const OWNING_JOB_ELEMENT: &str = "KVM_OwningJobElement";
    /// The service that moves VMs to other hosts.
    pub const MIGRATION_SERVICE: &str = "KVM_VirtualSystemMigrationService";
    /// Its capabilities.
    pub const MIGRATION_CAPABILITIES: &str = "KVM_VirtualSystemMigrationCapabilities";
    /// The migration settings it supports, as defaults.
    pub const MIGRATION_SETTING_DATA: &str = "KVM_VirtualSystemMigrationSettingData";
    /// The service that gives clients the VMs' serial consoles (DSP1024).
    pub const TEXT_REDIRECTION_SERVICE: &str = "KVM_TextRedirectionService";
    /// Its capabilities.
    pub const TEXT_REDIRECTION_CAPABILITIES: &str = "KVM_TextRedirectionServiceCapabilities";
    /// A VM's serial console.
    pub const TEXT_REDIRECTION_SAP: &str = "KVM_TextRedirectionSAP";
    /// A URL of a VM's console.
    pub const CONSOLE_URL: &str = "KVM_RemoteServiceAccessPoint";
    /// A VM's console settings (libvirt-cim's character console RASD).
    pub const CONSOLE_RASD: &str = "KVM_ConsoleResourceAllocationSettingData";
    /// System to an access point it hosts.
    pub const HOSTED_ACCESS_POINT: &str = "KVM_HostedAccessPoint";
    /// Service to its access points.
    pub const SERVICE_ACCESS_BY_SAP: &str = "KVM_ServiceAccessBySAP";
    /// Access point to the element it gives access to.
    pub const SAP_AVAILABLE_FOR_ELEMENT: &str = "KVM_SAPAvailableForElement";
    /// Service to the systems it serves.
    pub const SERVICE_AFFECTS_ELEMENT: &str = "KVM_ServiceAffectsElement";
    /// URL to the access point reached there.
    pub const REMOTE_ACCESS_AVAILABLE: &str = "KVM_RemoteAccessAvailableToElement";
}

/// A resource pool: the host's processors, its memory, a storage pool (a directory of
/// images) or a network (a Linux bridge).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pool {
    /// `ProcessorPool/0`.
    Processor,
    /// `MemoryPool/0`.
    Memory,
    /// `DiskPool/NAME`: a storage pool of the server's configuration.
    Disk(String),
    /// `NetworkPool/BRIDGE`: a Linux bridge on the host.
    Network(String),
}

impl Pool {
    /// PoolID, also the InstanceID of the pool and of its allocation capabilities.
    pub fn id(&self) -> String {
        match self {
            Pool::Processor => "ProcessorPool/0".into(),
            Pool::Memory => "MemoryPool/0".into(),
            Pool::Disk(name) => format!("DiskPool/{name}"),
            Pool::Network(bridge) => format!("NetworkPool/{bridge}"),
        }
    }

    /// The pool's class.
    pub fn class(&self) -> &'static str {
        match self {
            Pool::Processor => class::PROCESSOR_POOL,
            Pool::Memory => class::MEMORY_POOL,
            Pool::Disk(_) => class::DISK_POOL,
            Pool::Network(_) => class::NETWORK_POOL,
        }
    }

    /// The RASD ResourceType of what it holds.
    pub fn resource_type(&self) -> u16 {
        use super::settings::*;
        match self {
            Pool::Processor => RESOURCE_PROCESSOR,
            Pool::Memory => RESOURCE_MEMORY,
            Pool::Disk(_) => RESOURCE_DISK,
            Pool::Network(_) => RESOURCE_ETHERNET_ADAPTER,
        }
    }

    /// The class of the RASDs allocated from it.
    pub fn rasd_class(&self) -> &'static str {
        match self {
            Pool::Processor => class::PROC_RASD,
            Pool::Memory => class::MEM_RASD,
            Pool::Disk(_) => class::DISK_RASD,
            Pool::Network(_) => class::NET_RASD,
        }
    }
}

/// The template RASDs a pool's allocation capabilities define (libvirt-cim's InstanceIDs),
/// with the ValueRole and ValueRange of the association to each.
pub const TEMPLATES: [(&str, u16, u16); 4] = [
    ("Default", 0, 0),
    ("Minimum", 3, 1),
    ("Maximum", 3, 2),
    ("Increment", 3, 3),
];

/// A pool.
pub fn pool(pool: &Pool) -> ObjectPath {
    path(pool.class()).with_key("InstanceID", pool.id().as_str())
}

/// A pool's allocation capabilities.
pub fn allocation_capabilities(pool: &Pool) -> ObjectPath {
    path(class::ALLOCATION_CAPABILITIES).with_key("InstanceID", pool.id().as_str())
}

/// A template RASD of a pool ("Default", "Minimum", "Maximum", "Increment"): libvirt-cim's
/// bare role for the processor and memory pools, which have a RASD class each, and
/// `POOLID/ROLE` for storage and network pools, which share theirs.
pub fn template(pool: &Pool, role: &str) -> ObjectPath {
    let id = match pool {
        Pool::Processor | Pool::Memory => role.to_owned(),
        Pool::Disk(_) | Pool::Network(_) => format!("{}/{role}", pool.id()),
    };
    path(pool.rasd_class()).with_key("InstanceID", id.as_str())
}

fn path(class: &str) -> ObjectPath {
    ObjectPath::class(Some(NAMESPACE.to_owned()), class)
}

/// The host.
pub fn host(hostname: &str) -> ObjectPath {
    path(class::HOST_SYSTEM)
        .with_key("CreationClassName", class::HOST_SYSTEM)
        .with_key("Name", hostname)
}

/// A VM.
pub fn system(name: &str) -> ObjectPath {
    path(class::COMPUTER_SYSTEM)
        .with_key("CreationClassName", class::COMPUTER_SYSTEM)
        .with_key("Name", name)
}

/// An element of the host keyed by its system and class (a service, a device): `key`
/// (Name or DeviceID) is `value`.
fn of_host(class: &str, hostname: &str, key: &str, value: &str) -> ObjectPath {
    path(class)
        .with_key("SystemCreationClassName", class::HOST_SYSTEM)
        .with_key("SystemName", hostname)
        .with_key("CreationClassName", class)
        .with_key(key, value)
}

/// The management service.
pub fn service(hostname: &str) -> ObjectPath {
    of_host(
        class::MANAGEMENT_SERVICE,
        hostname,
        "Name",
        "Management Service",
    )
}

/// The management service's capabilities.
pub fn management_capabilities() -> ObjectPath {
    path(class::MANAGEMENT_CAPABILITIES).with_key("InstanceID", "ManagementCapabilities")
}

/// A VM's settings.
pub fn setting_data(name: &str) -> ObjectPath {
    path(class::SETTING_DATA).with_key("InstanceID", format!("KVM:{name}").as_str())
}

/// A VM's processor RASD.
pub fn proc_rasd(name: &str) -> ObjectPath {
    path(class::PROC_RASD).with_key("InstanceID", format!("{name}/proc").as_str())
}

/// A VM's memory RASD.
pub fn mem_rasd(name: &str) -> ObjectPath {
    path(class::MEM_RASD).with_key("InstanceID", format!("{name}/mem").as_str())
}

/// A VM's disk RASD (`<vm>/<device>`).
pub fn disk_rasd(vm: &str, device: &str) -> ObjectPath {
    path(class::DISK_RASD).with_key("InstanceID", format!("{vm}/{device}").as_str())
}

/// The image of a VM's disk (`<vm>/<device>`, as its drive's RASD).
pub fn storage_sasd(vm: &str, device: &str) -> ObjectPath {
    path(class::STORAGE_SASD).with_key("InstanceID", format!("{vm}/{device}").as_str())
}

/// A VM's network port RASD (`<vm>/<MAC>`).
pub fn net_rasd(vm: &str, mac: &str) -> ObjectPath {
    path(class::NET_RASD).with_key("InstanceID", format!("{vm}/{mac}").as_str())
}

/// A VM's disk.
pub fn logical_disk(vm: &str, disk: &str) -> ObjectPath {
    device(class::LOGICAL_DISK, vm, disk)
}

/// A VM's network port.
pub fn network_port(vm: &str, mac: &str) -> ObjectPath {
    device(class::NETWORK_PORT, vm, mac)
}

fn device(class: &str, vm: &str, id: &str) -> ObjectPath {
    path(class)
        .with_key("SystemCreationClassName", class::COMPUTER_SYSTEM)
        .with_key("SystemName", vm)
        .with_key("CreationClassName", class)
        .with_key("DeviceID", format!("{vm}/{id}").as_str())
}

/// Logical CPU `index` of the host.
pub fn host_processor(hostname: &str, index: usize) -> ObjectPath {
    of_host(
        class::HOST_PROCESSOR,
        hostname,
        "DeviceID",
        &format!("CPU{index}"),
    )
}

/// The host's RAM.
pub fn host_memory(hostname: &str) -> ObjectPath {
    of_host(class::HOST_MEMORY, hostname, "DeviceID", "memory")
}

/// The host's state capabilities (it offers no state changes).
pub fn host_state_capabilities(hostname: &str) -> ObjectPath {
    path(class::STATE_CAPABILITIES)
        .with_key("InstanceID", format!("HostSystem/{hostname}").as_str())
}

/// vCPU `index` of a VM.
pub fn processor(vm: &str, index: u32) -> ObjectPath {
    device(class::PROCESSOR, vm, &index.to_string())
}

/// A VM's memory device.
pub fn memory(vm: &str) -> ObjectPath {
    device(class::MEMORY, vm, "mem")
}

/// A VM's state capabilities.
pub fn state_capabilities(name: &str) -> ObjectPath {
    path(class::STATE_CAPABILITIES).with_key("InstanceID", name)
}

/// The snapshot service.
pub fn snapshot_service(hostname: &str) -> ObjectPath {
    of_host(class::SNAPSHOT_SERVICE, hostname, "Name", "SnapshotService")
}

/// The migration service (libvirt-cim's Name, "MigrationService").
pub fn migration_service(hostname: &str) -> ObjectPath {
    of_host(
        class::MIGRATION_SERVICE,
        hostname,
        "Name",
        "MigrationService",
    )
}

/// The text console redirection service.
pub fn text_redirection_service(hostname: &str) -> ObjectPath {
    of_host(
        class::TEXT_REDIRECTION_SERVICE,
        hostname,
        "Name",
        "TextRedirectionService",
    )
}

/// The text console redirection service's capabilities.
pub fn text_redirection_capabilities() -> ObjectPath {
    path(class::TEXT_REDIRECTION_CAPABILITIES).with_key("InstanceID", "TextRedirectionCapabilities")
}

/// VM `vm`'s serial console: scoped by the VM, as its keys say.
pub fn text_sap(vm: &str) -> ObjectPath {
    path(class::TEXT_REDIRECTION_SAP)
        .with_key("SystemCreationClassName", class::COMPUTER_SYSTEM)
        .with_key("SystemName", vm)
        .with_key("CreationClassName", class::TEXT_REDIRECTION_SAP)
        .with_key("Name", "COM1")
}

/// The URL `url` of VM `vm`'s console, scoped by the host that serves it.
pub fn console_url(hostname: &str, vm: &str, url: &str) -> ObjectPath {
    of_host(
        class::CONSOLE_URL,
        hostname,
        "Name",
        &format!("{vm}/console/{url}"),
    )
}

/// VM `vm`'s console RASD (libvirt-cim's InstanceID).
pub fn console_rasd(vm: &str) -> ObjectPath {
    path(class::CONSOLE_RASD).with_key("InstanceID", format!("{vm}/{CONSOLE_DEVICE}").as_str())
}

/// The device part of the console RASD's InstanceID, as libvirt-cim writes it.
pub const CONSOLE_DEVICE: &str = "charconsole:0";

/// The migration service's capabilities.
pub fn migration_capabilities() -> ObjectPath {
    path(class::MIGRATION_CAPABILITIES).with_key("InstanceID", "MigrationCapabilities")
}

/// The migration settings of one MigrationType the service carries out.
pub fn migration_setting_data(kind: &str) -> ObjectPath {
    path(class::MIGRATION_SETTING_DATA).with_key(
        "InstanceID",
        format!("MigrationSettingData/{kind}").as_str(),
    )
}

/// The pool configuration service.
pub fn pool_service(hostname: &str) -> ObjectPath {
    of_host(class::POOL_SERVICE, hostname, "Name", "RPCS")
}

/// Volume `volume` of storage pool `pool` (InstanceID `DiskPool/POOL/VOLUME`).
pub fn volume(pool: &str, volume: &str) -> ObjectPath {
    path(class::VOLUME_RASD).with_key(
        "InstanceID",
        format!("{}/{volume}", Pool::Disk(pool.to_owned()).id()).as_str(),
    )
}

/// The storage pool and volume a volume's InstanceID names.
pub fn parse_volume_id(instance_id: &str) -> Option<(&str, &str)> {
    let (pool, volume) = instance_id.strip_prefix("DiskPool/")?.split_once('/')?;
    (!pool.is_empty() && !volume.is_empty()).then_some((pool, volume))
}

/// The snapshot service's capabilities.
pub fn snapshot_service_capabilities() -> ObjectPath {
    path(class::SNAPSHOT_SERVICE_CAPABILITIES).with_key("InstanceID", "SnapshotServiceCapabilities")
}

/// The settings (VSSD) of snapshot `id` of a VM.
pub fn snapshot(name: &str, id: &str) -> ObjectPath {
    path(class::SETTING_DATA).with_key("InstanceID", format!("KVM:{name}:snapshot:{id}").as_str())
}

/// A job.
pub fn job(id: &str) -> ObjectPath {
    path(class::JOB).with_key("InstanceID", format!("KVM:Job:{id}").as_str())
}

/// The job id a job's InstanceID names.
pub fn parse_job_id(instance_id: &str) -> Option<&str> {
    instance_id.strip_prefix("KVM:Job:")
}

/// The VM and snapshot id a snapshot VSSD's InstanceID names.
pub fn parse_snapshot_id(instance_id: &str) -> Option<(&str, &str)> {
    let rest = instance_id.strip_prefix("KVM:")?;
    rest.split_once(":snapshot:")
}

/// A VM's snapshot capabilities.
pub fn snapshot_capabilities(name: &str) -> ObjectPath {
    path(class::SNAPSHOT_CAPABILITIES).with_key("InstanceID", format!("{name}/snapshot").as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_ids_round_trip() {
        let path = snapshot("vm-1.a", "12");
        let Some(cim_schema::Value::String(id)) = path.key("InstanceID") else {
            panic!()
        };
        assert_eq!(parse_snapshot_id(id), Some(("vm-1.a", "12")));
        assert_eq!(parse_snapshot_id("KVM:vm"), None);
    }
}
