//! Reading an OVF descriptor (DSP0243 1.0, 1.1 and 2.x) into what an import needs: the
//! package's files and disks, its networks, its deployment options, and each virtual
//! system with its hardware Items. Nothing here decides what a KVM host can provide
//! ([`super::plan`] does); this only reads, and refuses what is not an OVF envelope.

use cimom::cimxml::dom::{self, Element, XmlLimits};

use super::OvfError;

/// The envelope namespace of OVF 1.0 and 1.1.
pub const OVF1: &str = "http://schemas.dmtf.org/ovf/envelope/1";
/// The envelope namespace of OVF 2.x.
pub const OVF2: &str = "http://schemas.dmtf.org/ovf/envelope/2";
/// VMware's pre-DMTF OVF 0.9 namespace, refused.
const OVF09: &str = "http://www.vmware.com/schema/ovf/1/envelope";
/// The WS-CIM schema namespaces' common start (rasd, vssd, sasd, epasd). Matched by
/// prefix: writers differ in a trailing `.xsd`, and DSP0243's own example misspells one.
const WSCIM: &str = "http://schemas.dmtf.org/wbem/wscim/1/";

/// The largest descriptor read: real ones are tens of KiB.
pub const MAX_DESCRIPTOR_BYTES: u64 = 16 << 20;

const LIMITS: XmlLimits = XmlLimits {
    max_depth: 64,
    max_elements: 200_000,
};

/// Which OVF the envelope is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OvfVersion {
    /// 1.0 or 1.1 (one namespace serves both).
    V1,
    /// 2.x: adds StorageItem and EthernetPortItem.
    V2,
}

/// A File of the References section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    /// `ovf:id`.
    pub id: String,
    /// `ovf:href`, relative to the descriptor.
    pub href: String,
    /// `ovf:size`, if given.
    pub size: Option<u64>,
    /// Whether it is stored gzip-compressed (`ovf:compression="gzip"`).
    pub gzip: bool,
    /// `ovf:chunkSize`: the file is stored in chunks.
    pub chunked: bool,
}

/// A Disk of the DiskSection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskDesc {
    /// `ovf:diskId`.
    pub id: String,
    /// `ovf:fileRef`: none for a blank disk.
    pub file_ref: Option<String>,
    /// `ovf:capacity` as written (a number, or `${property}`).
    pub capacity: String,
    /// `ovf:capacityAllocationUnits` (bytes when absent).
    pub capacity_units: Option<String>,
    /// `ovf:format`, a URI naming the image format.
    pub format: Option<String>,
}

/// One Item of a VirtualHardwareSection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Item {
    /// ResourceType, if it is a number.
    pub resource_type: Option<u16>,
    /// ResourceType as written, for messages.
    pub resource_type_text: String,
    /// ResourceSubType.
    pub subtype: Option<String>,
    /// ElementName (or Caption, as some writers name Items).
    pub element_name: String,
    /// InstanceID.
    pub instance_id: Option<String>,
    /// HostResource values (`ovf:/disk/ID`, `ovf:/file/ID`).
    pub host_resource: Vec<String>,
    /// Connection values (a network's name, for a NIC).
    pub connection: Vec<String>,
    /// Address (a NIC's MAC).
    pub address: Option<String>,
    /// VirtualQuantity, if a number.
    pub virtual_quantity: Option<u64>,
    /// AllocationUnits.
    pub allocation_units: Option<String>,
    /// VirtualQuantityUnits (preferred over AllocationUnits where given).
    pub virtual_quantity_units: Option<String>,
    /// `ovf:required` (true unless `false`).
    pub required: bool,
    /// `ovf:configuration`: the deployment options it belongs to (all when empty).
    pub configurations: Vec<String>,
    /// `ovf:bound` (`min`, `max`, `normal`).
    pub bound: Option<String>,
}

impl Item {
    /// How messages name it: `ElementName (ResourceType N)`.
    pub fn describe(&self) -> String {
        format!(
            "{} (ResourceType {})",
            self.element_name, self.resource_type_text
        )
    }

    /// The unit of VirtualQuantity.
    pub fn quantity_units(&self) -> Option<&str> {
        self.virtual_quantity_units
            .as_deref()
            .or(self.allocation_units.as_deref())
    }
}

/// A section the importer does not know, with whether the package requires it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignSection {
    /// Its element name as written.
    pub name: String,
    /// `ovf:required` (true unless `false`).
    pub required: bool,
}

/// One VirtualSystem (from the envelope or any collection within it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VirtualSystem {
    /// `ovf:id`.
    pub id: String,
    /// `Name`.
    pub name: Option<String>,
    /// The hardware Items of its first VirtualHardwareSection.
    pub items: Vec<Item>,
    /// `vssd:VirtualSystemType` of that section.
    pub system_type: Option<String>,
    /// OperatingSystemSection: `ovf:id`, `vmw:osType` and Description, as one line.
    pub operating_system: Option<String>,
    /// ProductSection text lines (product, vendor, version, properties).
    pub product: Vec<String>,
    /// AnnotationSection's Annotation.
    pub annotation: Option<String>,
    /// Sections not understood, here and in the collections around it.
    pub foreign_sections: Vec<ForeignSection>,
}

/// A descriptor, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Its OVF version.
    pub version: OvfVersion,
    /// The References.
    pub files: Vec<FileRef>,
    /// The DiskSection.
    pub disks: Vec<DiskDesc>,
    /// The NetworkSection's network names.
    pub networks: Vec<String>,
    /// The DeploymentOptionSection's configuration ids, the default first.
    pub configurations: Vec<String>,
    /// Every virtual system, in document order (collections flattened).
    pub systems: Vec<VirtualSystem>,
    /// ProductSection properties (key, value), for `${key}` capacities.
    pub properties: Vec<(String, String)>,
    /// Envelope-level sections not understood.
    pub foreign_sections: Vec<ForeignSection>,
}

impl Envelope {
    /// The File with `ovf:id` `id`.
    pub fn file(&self, id: &str) -> Option<&FileRef> {
        self.files.iter().find(|f| f.id == id)
    }

    /// The Disk with `ovf:diskId` `id`.
    pub fn disk(&self, id: &str) -> Option<&DiskDesc> {
        self.disks.iter().find(|d| d.id == id)
    }

    /// A disk's capacity in bytes: its number (or the property it names) times its units.
    pub fn capacity_bytes(&self, disk: &DiskDesc) -> Result<u64, OvfError> {
        let written = disk.capacity.trim();
        let number = match written
            .strip_prefix("${")
            .and_then(|rest| rest.strip_suffix('}'))
        {
            Some(key) => self
                .properties
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| {
                    OvfError::Invalid(format!(
                        "Disk {} has capacity {written}, and no ProductSection property {key}",
                        disk.id
                    ))
                })?,
            None => written,
        };
        let quantity: u64 = number.trim().parse().map_err(|_| {
            OvfError::Invalid(format!(
                "Disk {}: capacity {number:?} is not a number",
                disk.id
            ))
        })?;
        let unit = match &disk.capacity_units {
            None => super::units::Unit::BYTE,
            Some(text) => super::units::parse(text)
                .filter(|u| u.base == super::units::BaseUnit::Byte)
                .ok_or_else(|| {
                    OvfError::Invalid(format!(
                        "Disk {}: capacityAllocationUnits {text:?} is not a unit of bytes",
                        disk.id
                    ))
                })?,
        };
        unit.apply(quantity).ok_or_else(|| {
            OvfError::Invalid(format!("Disk {}: the capacity is too large", disk.id))
        })
    }
}

/// Reads a descriptor. Refuses what is not XML, not an OVF envelope, or OVF 0.9.
pub fn parse(bytes: &[u8]) -> Result<Envelope, OvfError> {
    let text = without_false_encoding(bytes);
    let root = dom::parse(&text, &LIMITS).map_err(|e| OvfError::NotOvf(e.to_string()))?;
    let version = match root.namespace.as_deref() {
        Some(OVF1) if root.local_name() == "Envelope" => OvfVersion::V1,
        Some(OVF2) if root.local_name() == "Envelope" => OvfVersion::V2,
        Some(OVF09) => {
            return Err(OvfError::UnsupportedVersion(
                "OVF 0.9 (VMware's pre-DMTF envelope namespace): only DSP0243 1.x and 2.x \
                 envelopes are imported"
                    .into(),
            ))
        }
        other => {
            return Err(OvfError::NotOvf(format!(
                "the root element is {} in namespace {}, not a DSP0243 Envelope",
                root.name,
                other.unwrap_or("(none)")
            )))
        }
    };
    let ns = match version {
        OvfVersion::V1 => OVF1,
        OvfVersion::V2 => OVF2,
    };
    let reader = Reader { ns };
    let mut envelope = Envelope {
        version,
        files: Vec::new(),
        disks: Vec::new(),
        networks: Vec::new(),
        configurations: Vec::new(),
        systems: Vec::new(),
        properties: Vec::new(),
        foreign_sections: Vec::new(),
    };
    if let Some(references) = root.child_ns(ns, "References") {
        for file in references.children_ns(ns, "File") {
            envelope.files.push(reader.file(file)?);
        }
    }
    for child in &root.children {
        match reader.section(child) {
            Some("DiskSection") => {
                for disk in child.children_ns(ns, "Disk") {
                    envelope.disks.push(reader.disk(disk)?);
                }
            }
            Some("NetworkSection") => {
                for network in child.children_ns(ns, "Network") {
                    if let Some(name) = network.attr_local("name") {
                        envelope.networks.push(name.to_owned());
                    }
                }
            }
            Some("DeploymentOptionSection") => {
                let mut options: Vec<(bool, String)> = child
                    .children_ns(ns, "Configuration")
                    .filter_map(|c| {
                        let id = c.attr_local("id")?.to_owned();
                        Some((c.attr_local("default") == Some("true"), id))
                    })
                    .collect();
                // The default first; without one, the first listed is (DSP0243).
                options.sort_by_key(|(default, _)| !default);
                envelope.configurations = options.into_iter().map(|(_, id)| id).collect();
            }
            Some(_) => {}
            None => {
                if let Some(foreign) = reader.foreign(child) {
                    envelope.foreign_sections.push(foreign);
                }
            }
        }
    }
    collect_properties(&root, ns, &mut envelope.properties);
    let content = root
        .children
        .iter()
        .find(|c| c.is(ns, "VirtualSystem") || c.is(ns, "VirtualSystemCollection"))
        .ok_or_else(|| {
            OvfError::NotOvf(
                "the envelope holds no VirtualSystem or VirtualSystemCollection".into(),
            )
        })?;
    reader.content(content, &[], &mut envelope.systems)?;
    Ok(envelope)
}

/// XenCenter writes `encoding="utf-16"` before 8-bit text: with no byte-order mark and the
/// document readable as UTF-8, the declaration is taken for the mistake it is.
fn without_false_encoding(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let head = &bytes[..bytes.len().min(200)];
    let declared_utf16 = String::from_utf8_lossy(head)
        .to_ascii_lowercase()
        .contains("encoding=\"utf-16\"");
    let has_bom = bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]);
    if declared_utf16 && !has_bom && std::str::from_utf8(bytes).is_ok() {
        let text = String::from_utf8_lossy(bytes).replacen("encoding=\"utf-16\"", "", 1);
        std::borrow::Cow::Owned(text.into_bytes())
    } else {
        std::borrow::Cow::Borrowed(bytes)
    }
}

fn collect_properties(element: &Element, ns: &str, out: &mut Vec<(String, String)>) {
    for child in &element.children {
        if child.is(ns, "Property") {
            if let (Some(key), Some(value)) = (child.attr_local("key"), child.attr_local("value")) {
                out.push((key.to_owned(), value.to_owned()));
            }
        } else {
            collect_properties(child, ns, out);
        }
    }
}

/// The sections of the envelope namespace this reader understands (or knows to be safe to
/// pass over: a EULA is for the person importing, a start order for a vApp).
const KNOWN_SECTIONS: &[&str] = &[
    "DiskSection",
    "NetworkSection",
    "DeploymentOptionSection",
    "VirtualHardwareSection",
    "OperatingSystemSection",
    "ProductSection",
    "AnnotationSection",
    "EulaSection",
    "StartupSection",
    "ResourceAllocationSection",
    "InstallSection",
];

struct Reader<'a> {
    ns: &'a str,
}

fn text(element: &Element) -> String {
    element.text.trim().to_owned()
}

fn wscim_children<'e>(
    item: &'e Element<'e>,
    local: &'e str,
) -> impl Iterator<Item = &'e Element<'e>> {
    item.children.iter().filter(move |c| {
        c.local_name() == local && c.namespace.as_deref().is_some_and(|n| n.starts_with(WSCIM))
    })
}

fn wscim_text(item: &Element, local: &str) -> Option<String> {
    wscim_children(item, local)
        .next()
        .map(text)
        .filter(|t| !t.is_empty())
}

impl Reader<'_> {
    /// The name of a section of the envelope namespace that is understood, if `element`
    /// is one.
    fn section<'e>(&self, element: &'e Element) -> Option<&'e str> {
        if element.namespace.as_deref() != Some(self.ns) {
            return None;
        }
        let name = element.local_name();
        KNOWN_SECTIONS.contains(&name).then_some(name)
    }

    /// A section this reader does not understand (another namespace's, or an unknown one
    /// of OVF's); other elements (Info, Name, References, content) are not sections.
    fn foreign(&self, element: &Element) -> Option<ForeignSection> {
        let name = element.local_name();
        let is_section = name.ends_with("Section") || name == "Section";
        if !is_section || self.section(element).is_some() {
            return None;
        }
        Some(ForeignSection {
            name: element.name.to_string(),
            required: element.attr_local("required") != Some("false"),
        })
    }

    fn file(&self, file: &Element) -> Result<FileRef, OvfError> {
        let attr = |name: &str| {
            file.attr_local(name)
                .map(str::to_owned)
                .ok_or_else(|| OvfError::Invalid(format!("a File has no ovf:{name}")))
        };
        let size = match file.attr_local("size") {
            None => None,
            Some(s) => Some(s.trim().parse().map_err(|_| {
                OvfError::Invalid(format!("File size {s:?} is not a number of bytes"))
            })?),
        };
        let compression = file.attr_local("compression").unwrap_or("").trim();
        let gzip = match compression {
            "" | "identity" => false,
            "gzip" => true,
            other => {
                return Err(OvfError::Unsupported(format!(
                    "File {}: compression {other:?} (only gzip is defined)",
                    attr("href")?
                )))
            }
        };
        Ok(FileRef {
            id: attr("id")?,
            href: attr("href")?,
            size,
            gzip,
            chunked: file.attr_local("chunkSize").is_some(),
        })
    }

    fn disk(&self, disk: &Element) -> Result<DiskDesc, OvfError> {
        let id = disk
            .attr_local("diskId")
            .ok_or_else(|| OvfError::Invalid("a Disk has no ovf:diskId".into()))?;
        let capacity = disk
            .attr_local("capacity")
            .ok_or_else(|| OvfError::Invalid(format!("Disk {id} has no ovf:capacity")))?;
        Ok(DiskDesc {
            id: id.to_owned(),
            file_ref: disk.attr_local("fileRef").map(str::to_owned),
            capacity: capacity.to_owned(),
            capacity_units: disk
                .attr_local("capacityAllocationUnits")
                .map(str::to_owned),
            format: disk.attr_local("format").map(str::to_owned),
        })
    }

    /// Reads a VirtualSystem, or each system of a collection (nested ones too); sections of
    /// the collections around a system count as its own.
    fn content(
        &self,
        element: &Element,
        outer: &[ForeignSection],
        out: &mut Vec<VirtualSystem>,
    ) -> Result<(), OvfError> {
        let id = element
            .attr_local("id")
            .ok_or_else(|| OvfError::Invalid(format!("a {} has no ovf:id", element.name)))?
            .to_owned();
        let mut foreign: Vec<ForeignSection> = outer.to_vec();
        foreign.extend(element.children.iter().filter_map(|c| self.foreign(c)));
        if element.local_name() == "VirtualSystemCollection" {
            for child in &element.children {
                if child.is(self.ns, "VirtualSystem")
                    || child.is(self.ns, "VirtualSystemCollection")
                {
                    self.content(child, &foreign, out)?;
                }
            }
            return Ok(());
        }
        let mut system = VirtualSystem {
            id,
            name: element
                .child_ns(self.ns, "Name")
                .map(text)
                .filter(|n| !n.is_empty()),
            foreign_sections: foreign,
            ..VirtualSystem::default()
        };
        let mut hardware_seen = false;
        for child in &element.children {
            match self.section(child) {
                Some("VirtualHardwareSection") if !hardware_seen => {
                    hardware_seen = true;
                    system.system_type = child
                        .child_ns(self.ns, "System")
                        .and_then(|s| wscim_text(s, "VirtualSystemType"));
                    // Item (rasd); OVF 2.x adds StorageItem (sasd) and EthernetPortItem (epasd).
                    for item in child.children.iter().filter(|c| {
                        ["Item", "StorageItem", "EthernetPortItem"]
                            .iter()
                            .any(|local| c.is(self.ns, local))
                    }) {
                        system.items.push(self.item(item));
                    }
                }
                Some("OperatingSystemSection") => {
                    let mut parts = Vec::new();
                    if let Some(id) = child.attr_local("id") {
                        parts.push(format!("CIM OS type {id}"));
                    }
                    if let Some(os_type) = child.attr_local("osType") {
                        parts.push(os_type.to_owned());
                    }
                    if let Some(d) = child.child_ns(self.ns, "Description").map(text) {
                        if !d.is_empty() {
                            parts.push(d);
                        }
                    }
                    system.operating_system = Some(parts.join(", "));
                }
                Some("ProductSection") => {
                    for field in ["Product", "Vendor", "Version", "FullVersion", "ProductUrl"] {
                        if let Some(value) = child.child_ns(self.ns, field).map(text) {
                            if !value.is_empty() {
                                system.product.push(format!("{field}: {value}"));
                            }
                        }
                    }
                    let mut properties = Vec::new();
                    collect_properties(child, self.ns, &mut properties);
                    for (key, value) in properties {
                        system.product.push(format!("Property {key} = {value}"));
                    }
                }
                Some("AnnotationSection") => {
                    system.annotation = child
                        .child_ns(self.ns, "Annotation")
                        .map(text)
                        .filter(|a| !a.is_empty());
                }
                _ => {}
            }
        }
        out.push(system);
        Ok(())
    }

    fn item(&self, item: &Element) -> Item {
        let resource_type_text = wscim_text(item, "ResourceType").unwrap_or_default();
        let element_name = wscim_text(item, "ElementName")
            .or_else(|| wscim_text(item, "Caption"))
            .or_else(|| wscim_text(item, "Description"))
            .unwrap_or_else(|| "(unnamed Item)".to_owned());
        let texts = |local: &str| -> Vec<String> {
            wscim_children(item, local)
                .map(text)
                .filter(|t| !t.is_empty())
                .collect()
        };
        Item {
            resource_type: resource_type_text.parse().ok(),
            resource_type_text,
            subtype: wscim_text(item, "ResourceSubType"),
            element_name,
            instance_id: wscim_text(item, "InstanceID"),
            host_resource: texts("HostResource"),
            connection: texts("Connection"),
            address: wscim_text(item, "Address"),
            virtual_quantity: wscim_text(item, "VirtualQuantity").and_then(|q| q.parse().ok()),
            allocation_units: wscim_text(item, "AllocationUnits"),
            virtual_quantity_units: wscim_text(item, "VirtualQuantityUnits")
                // epasd writes a count ("1") there; only a unit name is a unit.
                .filter(|u| u.chars().any(|c| c.is_ascii_alphabetic())),
            required: item.attr_local("required") != Some("false"),
            configurations: item
                .attr_local("configuration")
                .map(|c| c.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            bound: item.attr_local("bound").map(str::to_owned),
        }
    }
}
