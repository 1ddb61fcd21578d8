//! Disks and network ports from RASDs: a disk's image, device name and access (libvirt-cim's
//! Address and `readonly`, DSP1047's HostResource and Access, and its two-level drives with
//! storage allocations), a port's MAC and bridge (Address, NetworkName, DSP1050's
//! Connection, a NetworkPool PoolID); adding, changing and removing them.

use std::path::PathBuf;

use cim_schema::Instance;
use hypervisor_shim::devices::virtio::layout::MAX_DEVICES;
use hypervisor_shim::devices::virtio::net::{MacAddress, NetConfig};

use super::properties::{
    boolean_property, first_of_array, invalid, string_property, unsigned_property,
};
use super::settings::{resource_kind, ResourceKind, RESOURCE_DISK, RESOURCE_LOGICAL_DISK};
use super::{console, paths};
use crate::vm::definition::{DiskDefinition, NicDefinition, VmDefinition};
use crate::vm::devices::{device_name, random_mac};
use cimom::error::{CimError, CimResult};

/// DSP1047's two levels, as Hyper-V-style clients send them: a drive RASD (ResourceType 17)
/// without an image, and a storage allocation (31) whose HostResource is the image. Each
/// imageless drive takes the next such allocation, in order, as one disk: the drive's
/// VirtualDevice with the allocation's image and Access. Other RASDs pass unchanged.
pub(super) fn pair_drives_with_images(resources: &[Instance]) -> CimResult<Vec<Instance>> {
    let has_image = |r: &Instance| {
        string_property(r, "Address").is_some() || first_of_array(r, "HostResource").is_some()
    };
    let kind = |r: &Instance| unsigned_property(r, "ResourceType").ok().flatten();
    let mut images: std::collections::VecDeque<&Instance> = resources
        .iter()
        .filter(|r| kind(r) == Some(u64::from(RESOURCE_LOGICAL_DISK)) && has_image(r))
        .collect();
    let drives = resources
        .iter()
        .filter(|r| kind(r) == Some(u64::from(RESOURCE_DISK)) && !has_image(r))
        .count();
    // Without storage allocations an imageless drive is refused for its missing image.
    if drives == 0 || images.is_empty() {
        return Ok(resources.to_vec());
    }
    if drives != images.len() {
        return Err(invalid(format!(
            "{drives} disk drives without an image and {} storage allocations with one: each \
             drive needs its own",
            images.len()
        )));
    }
    let mut out = Vec::with_capacity(resources.len());
    for rasd in resources {
        match kind(rasd) {
            Some(k) if k == u64::from(RESOURCE_DISK) && !has_image(rasd) => {
                let image = images.pop_front().unwrap_or(rasd);
                let mut disk = image.clone();
                if let Some(device) = rasd.get("VirtualDevice") {
                    disk.set("VirtualDevice", device.clone());
                }
                out.push(disk);
            }
            Some(k) if k == u64::from(RESOURCE_LOGICAL_DISK) && has_image(rasd) => {}
            _ => out.push(rasd.clone()),
        }
    }
    Ok(out)
}

/// An image a disk may use: an absolute path to a file or block device the server can open
/// now.
fn disk_image(path: String) -> CimResult<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(invalid(format!(
            "disk image {}: give an absolute path on the host",
            path.display()
        )));
    }
    match std::fs::File::open(&path).and_then(|f| f.metadata()) {
        Ok(meta) if meta.is_file() || meta.file_type().is_block_device() => Ok(path),
        Ok(_) => Err(invalid(format!(
            "disk image {}: not a file or block device",
            path.display()
        ))),
        Err(e) => Err(invalid(format!("disk image {}: {e}", path.display()))),
    }
}

/// A disk from a disk RASD: the image from Address (libvirt-cim) or HostResource (DSP1047),
/// read-only from `readonly` or Access 1 (Readable), the device from VirtualDevice or the
/// first free name. `current` is the disk being changed, if any.
fn disk_from_rasd(
    definition: &VmDefinition,
    rasd: &Instance,
    current: Option<&DiskDefinition>,
) -> CimResult<DiskDefinition> {
    let path =
        match string_property(rasd, "Address").or_else(|| first_of_array(rasd, "HostResource")) {
            Some(path) => disk_image(path)?,
            None => match current {
                Some(disk) => disk.path.clone(),
                None => {
                    return Err(invalid(format!(
                        "{}: a disk names its image in Address (or HostResource)",
                        rasd.class_name
                    )))
                }
            },
        };
    let read_only = match (
        boolean_property(rasd, "readonly")?,
        unsigned_property(rasd, "Access")?,
    ) {
        (Some(read_only), _) => read_only,
        (None, Some(access)) => access == 1,
        (None, None) => current.is_some_and(|d| d.read_only),
    };
    let device = match (current, string_property(rasd, "VirtualDevice")) {
        (Some(disk), Some(asked)) if asked != disk.device => {
            return Err(invalid(format!(
                "disk {}: the device name cannot change (remove the disk and add it again)",
                disk.device
            )))
        }
        (Some(disk), _) => disk.device.clone(),
        (None, Some(asked)) => asked,
        (None, None) => (0..)
            .map(device_name)
            .find(|name| definition.disk(name).is_none())
            .unwrap_or_default(),
    };
    let valid_name = device.len() > 2
        && device.starts_with("vd")
        && device[2..].bytes().all(|b| b.is_ascii_lowercase());
    if !valid_name {
        return Err(invalid(format!(
            "VirtualDevice {device:?}: disks are virtio disks named vda, vdb ..."
        )));
    }
    let others = definition
        .disks
        .iter()
        .filter(|d| Some(d.device.as_str()) != current.map(|c| c.device.as_str()));
    for other in others {
        if other.device == device {
            return Err(invalid(format!(
                "{}: a disk {device} exists already",
                definition.name
            )));
        }
        if other.path == path {
            return Err(invalid(format!(
                "{}: disk {} uses {} already",
                definition.name,
                other.device,
                path.display()
            )));
        }
    }
    Ok(DiskDefinition {
        device,
        path,
        read_only,
    })
}

/// A network port from a network RASD: the MAC from Address (or a new random one), the
/// bridge from NetworkName, DSP1050's Connection, or the PoolID `NetworkPool/<bridge>`.
fn nic_from_rasd(
    definition: &VmDefinition,
    rasd: &Instance,
    current: Option<&NicDefinition>,
) -> CimResult<NicDefinition> {
    let asked = string_property(rasd, "Address")
        .map(|text| text.parse::<MacAddress>())
        .transpose()
        .map_err(|e| invalid(format!("network port Address: {e}")))?;
    let mac = match (current, asked) {
        (Some(nic), Some(asked)) if asked != nic.mac => {
            return Err(invalid(format!(
                "network port {}: the MAC address cannot change (remove the port and add it again)",
                nic.mac
            )))
        }
        (Some(nic), _) => nic.mac,
        (None, Some(asked)) => asked,
        (None, None) => random_mac(),
    };
    let bridge = string_property(rasd, "NetworkName")
        .or_else(|| first_of_array(rasd, "Connection"))
        .or_else(|| {
            string_property(rasd, "PoolID")
                .and_then(|p| p.strip_prefix("NetworkPool/").map(str::to_owned))
        })
        .or_else(|| current.and_then(|n| n.bridge.clone()));
    let nic = NicDefinition { mac, bridge };
    NetConfig {
        bridge: nic.bridge.clone(),
        tap: None,
        mac: Some(nic.mac),
    }
    .validate(&definition.name, definition.nics.len())
    .map_err(invalid)?;
    if current.is_none() && definition.nics.iter().any(|n| n.mac == nic.mac) {
        return Err(invalid(format!(
            "{}: a network port with MAC address {} exists already",
            definition.name, nic.mac
        )));
    }
    Ok(nic)
}

/// Adds the disk or network port of `rasd` to `definition`. A console RASD that describes
/// the serial console the VM has is accepted as it is.
pub fn add_device(definition: &mut VmDefinition, rasd: &Instance) -> CimResult<String> {
    let id = match resource_kind(rasd)? {
        ResourceKind::Console => {
            console::rasd::check(&definition.name, rasd)?;
            return Ok(paths::CONSOLE_DEVICE.to_owned());
        }
        ResourceKind::Disk => {
            let disk = disk_from_rasd(definition, rasd, None)?;
            let id = disk.device.clone();
            definition.disks.push(disk);
            id
        }
        ResourceKind::Nic => {
            let nic = nic_from_rasd(definition, rasd, None)?;
            let id = nic.mac.to_string();
            definition.nics.push(nic);
            id
        }
        ResourceKind::Processor | ResourceKind::Memory => {
            return Err(invalid(format!(
                "{} already has its processors and memory: change them with ModifyResourceSettings",
                definition.name
            )))
        }
    };
    if definition.disks.len() + definition.nics.len() > MAX_DEVICES {
        return Err(invalid(format!(
            "{}: a VM has at most {MAX_DEVICES} disks and network ports together",
            definition.name
        )));
    }
    Ok(id)
}

/// Changes the disk `device` or the network port `mac` (one of them: the RASD's InstanceID
/// resource) as `rasd` says.
pub fn modify_device(
    definition: &mut VmDefinition,
    resource: &str,
    rasd: &Instance,
) -> CimResult<()> {
    if resource == paths::CONSOLE_DEVICE {
        return console::rasd::check(&definition.name, rasd);
    }
    if let Some(index) = definition.disks.iter().position(|d| d.device == resource) {
        let disk = disk_from_rasd(definition, rasd, Some(&definition.disks[index]))?;
        definition.disks[index] = disk;
        return Ok(());
    }
    if let Some(index) = definition
        .nics
        .iter()
        .position(|n| is_port(resource, n.mac))
    {
        let nic = nic_from_rasd(definition, rasd, Some(&definition.nics[index]))?;
        definition.nics[index] = nic;
        return Ok(());
    }
    Err(CimError::not_found(format!(
        "{} has no disk or network port {resource}",
        definition.name
    )))
}

/// Whether the resource named `resource` (a device name or a MAC address) is the network
/// port `mac`.
fn is_port(resource: &str, mac: MacAddress) -> bool {
    resource.parse::<MacAddress>() == Ok(mac)
}

/// Removes the disk `device` or the network port `mac`.
pub fn remove_device(definition: &mut VmDefinition, resource: &str) -> CimResult<()> {
    if resource == paths::CONSOLE_DEVICE {
        return Err(CimError::new(
            cimom::error::StatusCode::NotSupported,
            format!(
                "{}/{resource}: every VM keeps its serial console; RequestStateChange(3) on its \
                 KVM_TextRedirectionSAP closes it to clients",
                definition.name
            ),
        ));
    }
    let before = definition.disks.len() + definition.nics.len();
    definition.disks.retain(|d| d.device != resource);
    definition.nics.retain(|n| !is_port(resource, n.mac));
    if definition.disks.len() + definition.nics.len() == before {
        return Err(CimError::not_found(format!(
            "{} has no disk or network port {resource}",
            definition.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virt::properties::instance;
    use crate::virt::settings::{from_settings, parse_rasd_id};
    use cim_schema::Value;
    use cimom::error::StatusCode;

    #[test]
    fn disks_and_network_ports_are_added_named_changed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let image = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, [0u8; 4096]).unwrap();
            Value::from(path.display().to_string().as_str())
        };
        let (a, b) = (image("a.img"), image("b.img"));
        let vssd = instance(
            "KVM_VirtualSystemSettingData",
            &[("VirtualSystemIdentifier", "vm".into())],
        );
        let disk = |props: &[(&str, Value)]| {
            let mut all = vec![("ResourceType", Value::UInt16(17))];
            all.extend(props.iter().cloned());
            instance("KVM_DiskResourceAllocationSettingData", &all)
        };
        let nic = |props: &[(&str, Value)]| {
            let mut all = vec![("ResourceType", Value::UInt16(10))];
            all.extend(props.iter().cloned());
            instance("KVM_NetResourceAllocationSettingData", &all)
        };
        let mut d = from_settings(
            &vssd,
            &[
                disk(&[("Address", a.clone())]),
                // DSP1047's spelling: a logical disk with its image in HostResource.
                instance(
                    "CIM_StorageAllocationSettingData",
                    &[
                        ("ResourceType", Value::UInt16(31)),
                        ("HostResource", Value::Array(vec![Some(b.clone())])),
                        ("Access", Value::UInt16(1)),
                    ],
                ),
                nic(&[("NetworkName", "br0".into())]),
                nic(&[
                    ("Address", "52:54:00:AA:BB:CC".into()),
                    ("Connection", Value::Array(vec![Some("br1".into())])),
                ]),
            ],
            uuid::Uuid::nil(),
        )
        .unwrap();
        assert_eq!(
            d.disks
                .iter()
                .map(|x| (x.device.as_str(), x.read_only))
                .collect::<Vec<_>>(),
            [("vda", false), ("vdb", true)]
        );
        assert_eq!(d.nics[0].bridge.as_deref(), Some("br0"));
        assert_eq!(d.nics[0].mac.0[0] & 0x3, 2, "locally administered, unicast");
        assert_eq!(d.nics[1].mac.to_string(), "52:54:00:aa:bb:cc");
        assert_eq!(d.nics[1].bridge.as_deref(), Some("br1"));
        let config = d.vm_config("c".into());
        assert_eq!(config.disks.len(), 2);
        assert_eq!(config.nics[1].mac, d.nics[1].mac.into());

        // The same image, the same device, a bad device name, a missing image.
        for (props, why) in [
            (vec![("Address", a.clone())], "uses"),
            (
                vec![("Address", image("c.img")), ("VirtualDevice", "vda".into())],
                "exists already",
            ),
            (
                vec![("Address", image("d.img")), ("VirtualDevice", "sda".into())],
                "vda, vdb",
            ),
            (
                vec![("Address", "/nonexistent.img".into())],
                "/nonexistent.img",
            ),
            (vec![("Address", "relative.img".into())], "absolute"),
        ] {
            let err = add_device(&mut d, &disk(&props)).unwrap_err();
            assert!(err.description.contains(why), "{why}: {err:?}");
        }
        let err = add_device(&mut d, &nic(&[("Address", "01:00:5e:00:00:01".into())])).unwrap_err();
        assert!(err.description.contains("multicast"), "{err:?}");
        let err = add_device(&mut d, &nic(&[("Address", "52:54:00:aa:bb:cc".into())])).unwrap_err();
        assert!(err.description.contains("exists already"), "{err:?}");

        assert_eq!(
            add_device(&mut d, &disk(&[("Address", image("e.img"))])).unwrap(),
            "vdc"
        );
        modify_device(&mut d, "vdc", &disk(&[("readonly", Value::Boolean(true))])).unwrap();
        assert!(d.disk("vdc").unwrap().read_only);
        let err =
            modify_device(&mut d, "vdc", &disk(&[("VirtualDevice", "vdz".into())])).unwrap_err();
        assert!(err.description.contains("cannot change"), "{err:?}");
        modify_device(
            &mut d,
            "52:54:00:aa:bb:cc",
            &nic(&[("NetworkName", "br2".into())]),
        )
        .unwrap();
        assert_eq!(
            d.nic("52:54:00:AA:BB:CC").unwrap().bridge.as_deref(),
            Some("br2")
        );
        remove_device(&mut d, "vda").unwrap();
        remove_device(&mut d, "52:54:00:aa:bb:cc").unwrap();
        assert_eq!(
            remove_device(&mut d, "vda").unwrap_err().code,
            StatusCode::NotFound
        );
        assert_eq!((d.disks.len(), d.nics.len()), (2, 1));
        assert_eq!(
            parse_rasd_id("vm/52:54:00:aa:bb:cc"),
            Some(("vm", "52:54:00:aa:bb:cc"))
        );
    }

    #[test]
    fn dsp1047_drives_take_their_images_from_storage_allocations() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("a.img");
        std::fs::write(&image, [0u8; 4096]).unwrap();
        let path = Value::from(image.display().to_string().as_str());
        let vssd = instance(
            "KVM_VirtualSystemSettingData",
            &[("VirtualSystemIdentifier", "hv".into())],
        );
        let drive = instance(
            "CIM_ResourceAllocationSettingData",
            &[
                ("ResourceType", Value::UInt16(17)),
                ("VirtualDevice", "vdb".into()),
            ],
        );
        let sasd = instance(
            "CIM_StorageAllocationSettingData",
            &[
                ("ResourceType", Value::UInt16(31)),
                ("HostResource", Value::Array(vec![Some(path)])),
                ("Access", Value::UInt16(1)),
            ],
        );
        let d = from_settings(&vssd, &[sasd.clone(), drive.clone()], uuid::Uuid::nil()).unwrap();
        assert_eq!(d.disks.len(), 1);
        assert_eq!(
            (
                d.disks[0].device.as_str(),
                d.disks[0].read_only,
                &d.disks[0].path
            ),
            ("vdb", true, &image)
        );
        let err =
            from_settings(&vssd, &[drive.clone(), drive, sasd], uuid::Uuid::nil()).unwrap_err();
        assert!(
            err.description.contains("each drive needs its own"),
            "{err:?}"
        );
    }
}
