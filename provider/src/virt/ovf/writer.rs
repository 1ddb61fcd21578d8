//! Writing the descriptor of an exported VM: an OVF 1.1 envelope as VMware and VirtualBox
//! import it, valid against DMTF's OVF envelope schema (DSP8023), whose WS-CIM elements
//! must come in alphabetical order.

use quick_xml::escape::escape;

/// The disk formats an export writes, as DSP0243 descriptors name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFormat {
    /// VMDK streamOptimized: what VMware writes and every importer reads.
    StreamOptimizedVmdk,
    /// Raw.
    Raw,
    /// qcow2.
    Qcow2,
}

impl DiskFormat {
    /// The `ovf:format` URI.
    pub fn uri(self) -> &'static str {
        match self {
            DiskFormat::StreamOptimizedVmdk => {
                "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
            }
            DiskFormat::Raw => "http://www.gnome.org/~markmc/qcow-image-format.html#raw",
            DiskFormat::Qcow2 => "http://www.gnome.org/~markmc/qcow-image-format.html",
        }
    }

    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            DiskFormat::StreamOptimizedVmdk => "vmdk",
            DiskFormat::Raw => "img",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// A file of the package.
#[derive(Clone, Debug)]
pub struct FileEntry {
    /// Its name in the package.
    pub href: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A disk or CD image of the exported VM.
#[derive(Clone, Debug)]
pub struct DiskEntry {
    /// Its file.
    pub file: FileEntry,
    /// The disk's capacity in bytes.
    pub capacity: u64,
    /// The bytes it holds (sparse images hold less).
    pub populated: u64,
    /// Its format (a CD image is always raw).
    pub format: DiskFormat,
    /// A CD image the guest only reads.
    pub cdrom: bool,
}

/// A network port of the exported VM.
#[derive(Clone, Debug)]
pub struct NicEntry {
    /// Its MAC address.
    pub mac: String,
    /// The network it is on (its bridge's name), if any.
    pub network: Option<String>,
}

/// What the descriptor describes.
#[derive(Clone, Debug)]
pub struct SystemEntry {
    /// The VM's name.
    pub name: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Disks and CD images, in the guest's order.
    pub disks: Vec<DiskEntry>,
    /// Network ports.
    pub nics: Vec<NicEntry>,
    /// The VM's description, written as its AnnotationSection.
    pub description: Option<String>,
}

/// The network a port without a bridge is put on, so that every NIC names one.
pub const UNCONNECTED_NETWORK: &str = "unconnected";

struct Out(String);

impl Out {
    fn line(&mut self, depth: usize, text: &str) {
        for _ in 0..depth {
            self.0.push_str("  ");
        }
        self.0.push_str(text);
        self.0.push('\n');
    }

    /// An Item: `fields` are (rasd element, value) in alphabetical order.
    fn item(&mut self, depth: usize, fields: &[(&str, String)]) {
        self.item_tagged(depth, "<Item>", fields);
    }

    /// An Item whose start tag is `tag` (to carry `ovf:required`).
    fn item_tagged(&mut self, depth: usize, tag: &str, fields: &[(&str, String)]) {
        self.line(depth, tag);
        for (name, value) in fields {
            self.line(
                depth + 1,
                &format!("<rasd:{name}>{}</rasd:{name}>", escape(value.as_str())),
            );
        }
        self.line(depth, "</Item>");
    }
}

/// The descriptor's text.
pub fn descriptor(system: &SystemEntry) -> String {
    let e = |text: &str| escape(text).into_owned();
    let mut out = Out(String::new());
    out.line(0, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    out.line(
        0,
        r#"<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ovf:version="1.1.0">"#,
    );
    out.line(1, "<References>");
    for (i, disk) in system.disks.iter().enumerate() {
        out.line(
            2,
            &format!(
                r#"<File ovf:href="{}" ovf:id="file{}" ovf:size="{}"/>"#,
                e(&disk.file.href),
                i + 1,
                disk.file.size
            ),
        );
    }
    out.line(1, "</References>");
    let hard_disks: Vec<(usize, &DiskEntry)> = system
        .disks
        .iter()
        .enumerate()
        .filter(|(_, d)| !d.cdrom)
        .collect();
    if !hard_disks.is_empty() {
        out.line(1, "<DiskSection>");
        out.line(2, "<Info>Virtual disks</Info>");
        for (i, disk) in &hard_disks {
            out.line(
                2,
                &format!(
                    r#"<Disk ovf:capacity="{}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk{n}" ovf:fileRef="file{n}" ovf:format="{}" ovf:populatedSize="{}"/>"#,
                    disk.capacity,
                    disk.format.uri(),
                    disk.populated,
                    n = i + 1
                ),
            );
        }
        out.line(1, "</DiskSection>");
    }
    let mut networks: Vec<&str> = system
        .nics
        .iter()
        .map(|n| n.network.as_deref().unwrap_or(UNCONNECTED_NETWORK))
        .collect();
    networks.sort_unstable();
    networks.dedup();
    if !networks.is_empty() {
        out.line(1, "<NetworkSection>");
        out.line(2, "<Info>Logical networks the VM is connected to</Info>");
        for network in &networks {
            out.line(2, &format!(r#"<Network ovf:name="{}">"#, e(network)));
            let description = match *network {
                UNCONNECTED_NETWORK => "Ports connected to no bridge".to_owned(),
                bridge => format!("Linux bridge {bridge}"),
            };
            out.line(
                3,
                &format!("<Description>{}</Description>", e(&description)),
            );
            out.line(2, "</Network>");
        }
        out.line(1, "</NetworkSection>");
    }
    out.line(
        1,
        &format!(r#"<VirtualSystem ovf:id="{}">"#, e(&system.name)),
    );
    out.line(2, "<Info>A virtual machine exported by cimvirt</Info>");
    out.line(2, &format!("<Name>{}</Name>", e(&system.name)));
    if let Some(description) = &system.description {
        out.line(2, "<AnnotationSection>");
        out.line(3, "<Info>The VM's description</Info>");
        out.line(3, &format!("<Annotation>{}</Annotation>", e(description)));
        out.line(2, "</AnnotationSection>");
    }
    out.line(2, r#"<OperatingSystemSection ovf:id="1">"#);
    out.line(
        3,
        "<Info>The guest operating system (not known to the host)</Info>",
    );
    out.line(3, "<Description>Other</Description>");
    out.line(2, "</OperatingSystemSection>");
    out.line(2, "<VirtualHardwareSection>");
    out.line(3, "<Info>Virtual hardware requirements</Info>");
    out.line(3, "<System>");
    out.line(
        4,
        "<vssd:ElementName>Virtual Hardware Family</vssd:ElementName>",
    );
    out.line(4, "<vssd:InstanceID>0</vssd:InstanceID>");
    out.line(
        4,
        &format!(
            "<vssd:VirtualSystemIdentifier>{}</vssd:VirtualSystemIdentifier>",
            e(&system.name)
        ),
    );
    out.line(4, "<vssd:VirtualSystemType>kvm</vssd:VirtualSystemType>");
    out.line(3, "</System>");
    let mut id = 0u32;
    let mut next = || {
        id += 1;
        id.to_string()
    };
    out.item(
        3,
        &[
            ("AllocationUnits", "hertz * 10^6".into()),
            ("Description", "Number of virtual CPUs".into()),
            ("ElementName", format!("{} virtual CPU(s)", system.vcpus)),
            ("InstanceID", next()),
            ("ResourceType", "3".into()),
            ("VirtualQuantity", system.vcpus.to_string()),
        ],
    );
    out.item(
        3,
        &[
            ("AllocationUnits", "byte * 2^20".into()),
            ("Description", "Memory size".into()),
            ("ElementName", format!("{} MB of memory", system.memory_mib)),
            ("InstanceID", next()),
            ("ResourceType", "4".into()),
            ("VirtualQuantity", system.memory_mib.to_string()),
        ],
    );
    if !system.disks.is_empty() {
        // The guest sees virtio disks; the package declares a SATA (AHCI) controller,
        // which every importer offers and every current guest has a driver for.
        let controller = next();
        out.item(
            3,
            &[
                ("Address", "0".into()),
                ("Description", "SATA controller".into()),
                ("ElementName", "SATA controller 0".into()),
                ("InstanceID", controller.clone()),
                ("ResourceSubType", "AHCI".into()),
                ("ResourceType", "20".into()),
            ],
        );
        for (i, disk) in system.disks.iter().enumerate() {
            let (name, host_resource, resource_type) = if disk.cdrom {
                (
                    format!("CD-ROM {}", i + 1),
                    format!("ovf:/file/file{}", i + 1),
                    "15",
                )
            } else {
                (
                    format!("Hard disk {}", i + 1),
                    format!("ovf:/disk/vmdisk{}", i + 1),
                    "17",
                )
            };
            out.item(
                3,
                &[
                    ("AddressOnParent", i.to_string()),
                    ("ElementName", name),
                    ("HostResource", host_resource),
                    ("InstanceID", next()),
                    ("Parent", controller.clone()),
                    ("ResourceType", resource_type.into()),
                ],
            );
        }
    }
    for (i, nic) in system.nics.iter().enumerate() {
        out.item(
            3,
            &[
                ("Address", nic.mac.clone()),
                ("AutomaticAllocation", "true".into()),
                (
                    "Connection",
                    nic.network.as_deref().unwrap_or(UNCONNECTED_NETWORK).into(),
                ),
                ("Description", "virtio network adapter".into()),
                ("ElementName", format!("Ethernet adapter {}", i + 1)),
                ("InstanceID", next()),
                ("ResourceSubType", "virtio".into()),
                ("ResourceType", "10".into()),
            ],
        );
    }
    // Importers that cannot attach a serial port to anything may leave it out.
    out.item_tagged(
        3,
        r#"<Item ovf:required="false">"#,
        &[
            ("Description", "The serial console".into()),
            ("ElementName", "Serial port 1".into()),
            ("InstanceID", next()),
            ("ResourceType", "21".into()),
        ],
    );
    out.line(2, "</VirtualHardwareSection>");
    out.line(1, "</VirtualSystem>");
    out.line(0, "</Envelope>");
    out.0
}
