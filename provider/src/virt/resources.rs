//! The management service's changes to VMs, from what clients send: RASDs that change,
//! add or remove a VM's resources, and a VSSD that changes its settings, each applied to
//! the VM model as one change of the definitions it names (all or nothing).

use cim_schema::{Instance, ObjectPath, Value};

use super::devices;
use super::paths;
use super::settings;
use crate::vm::definition::VmDefinition;
use crate::vm::manager::{FileAccess, VirtManager};
use cimom::error::{CimError, CimResult};

/// The RASD of disk or network port `id` (a device name or a MAC address) of `definition`.
fn device_rasd_path(definition: &VmDefinition, id: &str) -> ObjectPath {
    if id == paths::CONSOLE_DEVICE {
        return paths::console_rasd(&definition.name);
    }
    match definition.disk(id) {
        Some(_) => paths::disk_rasd(&definition.name, id),
        None => paths::net_rasd(&definition.name, id),
    }
}

/// Changes the allocations of stopped VMs (ModifyResourceSettings): each RASD names its
/// target by InstanceID (`<vm>/proc`, `<vm>/mem`, `<vm>/<disk>`, `<vm>/<MAC>`) and
/// replaces the properties it gives.
pub fn modify_resources(
    manager: &VirtManager,
    rasds: &[Instance],
    files: FileAccess,
) -> CimResult<Vec<ObjectPath>> {
    let mut edit = manager.edit("its resources change");
    let mut results = Vec::with_capacity(rasds.len());
    for rasd in rasds {
        let id = match rasd.get("InstanceID") {
            Some(Value::String(id)) => id.to_string(),
            _ => {
                return Err(CimError::invalid_parameter(format!(
                    "{} has no InstanceID naming the resource",
                    rasd.class_name
                )))
            }
        };
        let (vm, resource) = settings::parse_rasd_id(&id).ok_or_else(|| {
            CimError::not_found(format!(
                "no resource {id}: RASDs are <vm>/proc, <vm>/mem, <vm>/<disk> and <vm>/<MAC>"
            ))
        })?;
        let target = edit.stopped(vm)?;
        let mut given = rasd.clone();
        let path = match resource {
            "proc" | "mem" => {
                let (kind, path) = if resource == "proc" {
                    (settings::RESOURCE_PROCESSOR, paths::proc_rasd(vm))
                } else {
                    (settings::RESOURCE_MEMORY, paths::mem_rasd(vm))
                };
                given.set("ResourceType", Value::UInt16(kind));
                settings::set_size(target, &given)?;
                path
            }
            device => {
                devices::modify_device(target, device, &given)?;
                device_rasd_path(target, device)
            }
        };
        results.push(path);
    }
    edit.commit(files)?;
    Ok(results)
}

/// Changes a VM's settings (ModifySystemSettings): the VSSD names the VM by InstanceID
/// (`KVM:<name>`) or VirtualSystemIdentifier.
pub fn modify_system(
    manager: &VirtManager,
    vssd: &Instance,
    files: FileAccess,
) -> CimResult<ObjectPath> {
    let name = match (vssd.get("InstanceID"), vssd.get("VirtualSystemIdentifier")) {
        (Some(Value::String(id)), _) => id
            .strip_prefix("KVM:")
            .filter(|n| !n.contains(':'))
            .map(str::to_owned)
            .ok_or_else(|| {
                CimError::invalid_parameter(format!(
                    "SystemSettings InstanceID {id} is not a VM's settings (KVM:<name>)"
                ))
            })?,
        (None, Some(Value::String(name))) => name.to_string(),
        _ => {
            return Err(CimError::invalid_parameter(
                "SystemSettings names its VM by InstanceID (KVM:<name>) or \
                 VirtualSystemIdentifier",
            ))
        }
    };
    manager.modify_settings(&name, files, |definition| {
        settings::modify_system(definition, vssd)
    })?;
    Ok(paths::setting_data(&name))
}

/// Adds disks and network ports to the stopped VM `vm` (AddResourceSettings); returns
/// their RASDs.
pub fn add_resources(
    manager: &VirtManager,
    vm: &str,
    rasds: &[Instance],
    files: FileAccess,
) -> CimResult<Vec<ObjectPath>> {
    let mut edit = manager.edit("devices are added");
    let target = edit.stopped(vm)?;
    let mut results = Vec::with_capacity(rasds.len());
    for rasd in rasds {
        let id = devices::add_device(target, rasd)?;
        results.push(device_rasd_path(target, &id));
    }
    edit.commit(files)?;
    Ok(results)
}

/// Removes the disks and network ports whose RASDs `rasds` names from their stopped VMs
/// (RemoveResourceSettings).
pub fn remove_resources(manager: &VirtManager, rasds: &[ObjectPath]) -> CimResult<()> {
    let mut edit = manager.edit("devices are removed");
    for path in rasds {
        let id = path
            .key("InstanceID")
            .and_then(|v| match v {
                Value::String(s) => Some(s.to_string()),
                _ => None,
            })
            .ok_or_else(|| CimError::invalid_parameter(format!("{path} does not name a RASD")))?;
        let (vm, resource) = settings::parse_rasd_id(&id)
            .ok_or_else(|| CimError::not_found(format!("no resource {id}")))?;
        if matches!(resource, "proc" | "mem") {
            return Err(CimError::invalid_parameter(format!(
                "{id}: a VM keeps its processors and memory (change them with \
                 ModifyResourceSettings)"
            )));
        }
        devices::remove_device(edit.stopped(vm)?, resource)?;
    }
    edit.commit_removals()?;
    Ok(())
}
