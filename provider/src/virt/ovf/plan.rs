//! What a virtual system of a package becomes on this host: its vCPUs, memory, disks (and
//! where each comes from), network ports and serial console, with every Item the host
//! cannot provide either skipped (optional, or lax import) or refused by name.

use hypervisor_shim::devices::virtio::net::MacAddress;

use super::descriptor::{Envelope, Item, VirtualSystem};
use super::units::{self, BaseUnit};
use super::OvfError;

/// How to read a package.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Skip Items and sections the host cannot provide even where the package requires
    /// them (as ovftool's `--lax` does), reporting them instead of refusing the import.
    pub lax: bool,
    /// The DeploymentOptionSection configuration to use (its default when none).
    pub deployment: Option<String>,
    /// Keep the MAC addresses the package gives its network ports (new ones otherwise).
    pub keep_macs: bool,
}

/// The image format an `ovf:format` URI names, as qemu-img calls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    /// VMDK: streamOptimized (VMware exports) and monolithicSparse (VirtualBox 2/3).
    Vmdk,
    /// VHD (Virtual Server / XenCenter): qemu-img's `vpc`.
    Vhd,
    /// VHDX.
    Vhdx,
    /// qcow2.
    Qcow2,
    /// A raw image, or an ISO (a raw image a CD drive reads).
    Raw,
    /// An unknown URI or none: qemu-img reads the file's header to tell.
    Probe,
}

impl ImageFormat {
    /// The format of an `ovf:format` URI.
    pub fn from_uri(uri: Option<&str>) -> ImageFormat {
        let Some(uri) = uri.map(str::to_ascii_lowercase) else {
            return ImageFormat::Probe;
        };
        if uri.contains("vmdk") {
            ImageFormat::Vmdk
        } else if uri.contains("vhdx") {
            ImageFormat::Vhdx
        } else if uri.contains("vhd") {
            ImageFormat::Vhd
        } else if uri.contains("qcow") {
            ImageFormat::Qcow2
        } else if uri.ends_with("raw") || uri.contains("#raw") || uri.contains("iso") {
            ImageFormat::Raw
        } else {
            ImageFormat::Probe
        }
    }

    /// qemu-img's name for it; none when it has to probe.
    pub fn qemu_name(self) -> Option<&'static str> {
        match self {
            ImageFormat::Vmdk => Some("vmdk"),
            ImageFormat::Vhd => Some("vpc"),
            ImageFormat::Vhdx => Some("vhdx"),
            ImageFormat::Qcow2 => Some("qcow2"),
            ImageFormat::Raw => Some("raw"),
            ImageFormat::Probe => None,
        }
    }
}

/// Where a planned disk's contents come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskSource {
    /// A File of the package, in a format.
    File {
        /// The File's `ovf:id`.
        file_id: String,
        /// Its image format.
        format: ImageFormat,
    },
    /// Nothing: a new empty disk.
    Blank,
}

/// A disk the VM gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedDisk {
    /// The Item it comes from, for messages.
    pub item: String,
    /// Its capacity in bytes (0: the image's own size).
    pub capacity: u64,
    /// Where its contents come from.
    pub source: DiskSource,
    /// A CD or DVD image: the guest only reads it.
    pub read_only: bool,
}

/// A network port the VM gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedNic {
    /// The package's network it is connected to (its `Connection`), if any.
    pub network: Option<String>,
    /// The MAC address to keep, if the options keep them and the package gives one.
    pub mac: Option<MacAddress>,
}

/// What one virtual system becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemPlan {
    /// The VM's name: `Name`, else `ovf:id` (or the name the client asked for).
    pub name: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The disks, in Item order (the guest's vda, vdb ...).
    pub disks: Vec<PlannedDisk>,
    /// The network ports, in Item order.
    pub nics: Vec<PlannedNic>,
    /// Items and sections left out, each as `ElementName (ResourceType N)` or `section X`.
    pub skipped: Vec<String>,
    /// What the package says of the system that the VM keeps as notes (product, OS).
    pub notes: Vec<String>,
    /// The AnnotationSection, kept as the description.
    pub description: Option<String>,
}

/// The CIM ResourceType numbers an import reads (DSP1041, CIM_ResourceAllocationSettingData)
/// beside those a VM definition's RASDs use.
mod resource {
    pub use crate::virt::settings::{
        RESOURCE_DISK as DISK_DRIVE, RESOURCE_ETHERNET_ADAPTER as ETHERNET_ADAPTER,
        RESOURCE_ETHERNET_CONNECTION as ETHERNET_CONNECTION, RESOURCE_LOGICAL_DISK as LOGICAL_DISK,
        RESOURCE_MEMORY as MEMORY, RESOURCE_PROCESSOR as PROCESSOR,
    };
    pub const IDE_CONTROLLER: u16 = 5;
    pub const SCSI_HBA: u16 = 6;
    pub const CD_DRIVE: u16 = 15;
    pub const DVD_DRIVE: u16 = 16;
    pub const STORAGE_EXTENT: u16 = 19;
    /// "Other storage device": SATA/AHCI controllers, as VirtualBox and VMware write them.
    pub const OTHER_STORAGE: u16 = 20;
    pub const SERIAL_PORT: u16 = 21;
}

/// Why the host cannot provide an Item, for the report.
fn unprovided(item: &Item) -> &'static str {
    match item.resource_type {
        Some(1) => "vendor-specific device",
        Some(14) => "floppy drive",
        Some(15 | 16) => "CD/DVD drive with no image",
        Some(22) => "parallel port",
        Some(23) => "USB controller",
        Some(24) => "graphics controller",
        Some(35) => "sound card",
        _ => "device",
    }
}

/// The reference of a HostResource: (`disk` or `file`, id), from `ovf:/disk/ID`,
/// VirtualBox's `/disk/ID`, or the same for files.
fn host_reference(value: &str) -> Option<(&str, &str)> {
    let path = value.strip_prefix("ovf:").unwrap_or(value);
    let path = path.strip_prefix('/')?;
    let (kind, id) = path.split_once('/')?;
    matches!(kind, "disk" | "file")
        .then_some((kind, id))
        .filter(|(_, id)| !id.is_empty())
}

/// Plans `system` of `envelope`. `name` overrides the system's own name.
pub fn plan(
    envelope: &Envelope,
    system: &VirtualSystem,
    name: Option<&str>,
    options: &ImportOptions,
) -> Result<SystemPlan, OvfError> {
    let configuration = match &options.deployment {
        Some(chosen) if envelope.configurations.iter().any(|c| c == chosen) => Some(chosen.clone()),
        Some(chosen) => {
            return Err(OvfError::Invalid(format!(
                "the package has no deployment option {chosen:?} (it has: {})",
                envelope.configurations.join(", ")
            )))
        }
        None => envelope.configurations.first().cloned(),
    };
    let mut plan = SystemPlan {
        name: name
            .map(str::to_owned)
            .or_else(|| system.name.clone())
            .unwrap_or_else(|| system.id.clone()),
        vcpus: crate::vm::definition::DEFAULT_VCPUS,
        memory_mib: crate::vm::definition::DEFAULT_MEMORY_MIB,
        disks: Vec::new(),
        nics: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
        description: system.annotation.clone(),
    };
    for section in &system.foreign_sections {
        if section.required && !options.lax {
            return Err(OvfError::Unsupported(format!(
                "virtual system {}: section {} is required and not understood by this host",
                plan.name, section.name
            )));
        }
        plan.skipped.push(format!("section {}", section.name));
    }
    let applies = |item: &&Item| {
        let in_configuration = item.configurations.is_empty()
            || configuration
                .as_ref()
                .is_some_and(|c| item.configurations.contains(c));
        let normal_bound = matches!(item.bound.as_deref(), None | Some("normal"));
        in_configuration && normal_bound
    };
    let mut serial_taken = false;
    for item in system.items.iter().filter(applies) {
        let refuse_or_skip = |plan: &mut SystemPlan, why: &str| {
            if item.required && !options.lax {
                return Err(OvfError::Unsupported(format!(
                    "virtual system {}: Item {} is required, and this host cannot provide it \
                     ({why}); import with Lax to skip it",
                    plan.name,
                    item.describe()
                )));
            }
            plan.skipped.push(item.describe());
            Ok(())
        };
        match item.resource_type {
            Some(resource::PROCESSOR) => {
                let count = item.virtual_quantity.filter(|q| *q > 0).ok_or_else(|| {
                    OvfError::Invalid(format!("Item {} gives no VirtualQuantity", item.describe()))
                })?;
                plan.vcpus = u32::try_from(count).map_err(|_| {
                    OvfError::Invalid(format!("Item {}: {count} vCPUs", item.describe()))
                })?;
            }
            Some(resource::MEMORY) => plan.memory_mib = memory_mib(item)?,
            Some(resource::DISK_DRIVE | resource::LOGICAL_DISK | resource::STORAGE_EXTENT) => {
                match disk(envelope, item, false)? {
                    Some(disk) => plan.disks.push(disk),
                    None => refuse_or_skip(&mut plan, "a disk with no image or size")?,
                }
            }
            Some(resource::CD_DRIVE | resource::DVD_DRIVE) => match disk(envelope, item, true)? {
                Some(disk) => plan.disks.push(disk),
                None => refuse_or_skip(&mut plan, unprovided(item))?,
            },
            Some(resource::ETHERNET_ADAPTER | resource::ETHERNET_CONNECTION) => {
                let mac = match (&item.address, options.keep_macs) {
                    (Some(address), true) => address.replace('-', ":").parse().ok(),
                    _ => None,
                };
                plan.nics.push(PlannedNic {
                    network: item.connection.first().cloned(),
                    mac,
                });
            }
            // Controllers: the disks are virtio disks, which need none.
            Some(resource::IDE_CONTROLLER | resource::SCSI_HBA | resource::OTHER_STORAGE) => {}
            Some(resource::SERIAL_PORT) if !serial_taken => serial_taken = true,
            Some(resource::SERIAL_PORT) => {
                refuse_or_skip(&mut plan, "a VM has one serial port, its console")?
            }
            _ => refuse_or_skip(&mut plan, unprovided(item))?,
        }
    }
    if let Some(os) = &system.operating_system {
        plan.notes.push(format!("OVF operating system: {os}"));
    }
    plan.notes.extend(
        system
            .product
            .iter()
            .map(|line| format!("OVF product {line}")),
    );
    Ok(plan)
}

fn memory_mib(item: &Item) -> Result<u64, OvfError> {
    let quantity = item.virtual_quantity.filter(|q| *q > 0).ok_or_else(|| {
        OvfError::Invalid(format!("Item {} gives no VirtualQuantity", item.describe()))
    })?;
    // No unit: MiB, as every writer means and virt-v2v assumes.
    let unit = match item.quantity_units() {
        None => units::parse("byte * 2^20"),
        Some(text) => units::parse(text),
    }
    .filter(|u| u.base == BaseUnit::Byte)
    .ok_or_else(|| {
        OvfError::Invalid(format!(
            "Item {}: AllocationUnits {:?} is not a unit of bytes",
            item.describe(),
            item.quantity_units().unwrap_or_default()
        ))
    })?;
    let bytes = unit
        .apply(quantity)
        .ok_or_else(|| OvfError::Invalid(format!("Item {}: too much memory", item.describe())))?;
    Ok(bytes.div_ceil(1 << 20))
}

/// The disk an Item describes, if it names one (or a size for a blank one).
fn disk(
    envelope: &Envelope,
    item: &Item,
    read_only: bool,
) -> Result<Option<PlannedDisk>, OvfError> {
    let Some(reference) = item.host_resource.first() else {
        // An OVF 2.x StorageItem may give only a size: a new empty disk.
        let blank = match (item.virtual_quantity, read_only) {
            (Some(quantity), false) if quantity > 0 => {
                let unit = item
                    .quantity_units()
                    .and_then(units::parse)
                    .filter(|u| u.base == BaseUnit::Byte);
                unit.and_then(|u| u.apply(quantity))
            }
            _ => None,
        };
        return Ok(blank.map(|capacity| PlannedDisk {
            item: item.describe(),
            capacity,
            source: DiskSource::Blank,
            read_only,
        }));
    };
    let (kind, id) = host_reference(reference).ok_or_else(|| {
        OvfError::Invalid(format!(
            "Item {}: HostResource {reference:?} names no ovf:/disk/ or ovf:/file/",
            item.describe()
        ))
    })?;
    let file_format = |file_id: &str, format: Option<&str>| {
        envelope
            .file(file_id)
            .map(|_| DiskSource::File {
                file_id: file_id.to_owned(),
                format: ImageFormat::from_uri(format),
            })
            .ok_or_else(|| {
                OvfError::Invalid(format!(
                    "Item {}: References holds no File {file_id}",
                    item.describe()
                ))
            })
    };
    let planned = if kind == "disk" {
        let disk = envelope.disk(id).ok_or_else(|| {
            OvfError::Invalid(format!(
                "Item {}: the DiskSection holds no Disk {id}",
                item.describe()
            ))
        })?;
        PlannedDisk {
            item: item.describe(),
            capacity: envelope.capacity_bytes(disk)?,
            source: match &disk.file_ref {
                Some(file) => file_format(file, disk.format.as_deref())?,
                None => DiskSource::Blank,
            },
            read_only,
        }
    } else {
        // A File straight on an Item (an ISO on a CD drive): its own size.
        let format = if read_only { Some("iso") } else { None };
        PlannedDisk {
            item: item.describe(),
            capacity: 0,
            source: file_format(id, format)?,
            read_only,
        }
    };
    Ok(Some(planned))
}
