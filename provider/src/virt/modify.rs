//! ModifyInstance, and so WS-Management Put, of a VM's KVM_ComputerSystem and its
//! KVM_VirtualSystemSettingData, as Hyper-V-style clients change a VM: the settings go
//! through ModifySystemSettings' rules; of the system, only ElementName can change (its
//! state changes through RequestStateChange).

use std::sync::Arc;

use cim_schema::{eq_ignore_case, Class, Instance, Name, ObjectPath, Value};

use super::methods::file_access;
use super::paths::class;
use super::Virt;
use cimom::dispatch::provider::{InstanceProvider, ProviderContext};
use cimom::error::{CimError, CimResult};

/// The settings InstanceID of the VM named `name`.
fn settings_id(name: &str) -> String {
    format!("KVM:{name}")
}

/// `modified` cut to `property_list`: a listed property it leaves out becomes NULL
/// (DSP0200 ModifyInstance), one not listed is not changed.
fn listed(class: &Class, mut modified: Instance, property_list: Option<&[Name]>) -> Instance {
    let Some(list) = property_list else {
        return modified;
    };
    modified
        .properties
        .retain(|name, _| list.iter().any(|l| l.matches(name.as_str())));
    let mut declared = Instance::from_class_defaults(class);
    for name in list {
        if modified.properties.contains(name.as_str()) {
            continue;
        }
        if let Some(mut property) = declared.properties.remove(name.as_str()) {
            property.value = None;
            modified.properties.insert(name.clone(), property);
        }
    }
    modified
}

impl Virt {
    /// Changes a VM's system or settings instance at `path` to `modified`.
    pub(super) async fn modify_vm_instance(
        &self,
        ctx: &ProviderContext,
        class: &Arc<Class>,
        path: &ObjectPath,
        modified: Instance,
        property_list: Option<&[Name]>,
    ) -> CimResult<()> {
        let modified = listed(class, modified, property_list);
        let vssd = if eq_ignore_case(class.name.as_str(), class::SETTING_DATA) {
            self.settings_change(path, modified)?
        } else {
            self.system_change(ctx, class, path, modified).await?
        };
        let files = file_access(ctx);
        self.blocking(move |m| super::resources::modify_system(m, &vssd, files))
            .await??;
        Ok(())
    }

    /// The VSSD a modified settings instance asks for, named by its path.
    fn settings_change(&self, path: &ObjectPath, mut vssd: Instance) -> CimResult<Instance> {
        let Some(Value::String(id)) = path.key("InstanceID") else {
            return Err(CimError::invalid_parameter(
                "the settings path has no InstanceID",
            ));
        };
        let is_vm = id.strip_prefix("KVM:").is_some_and(|n| !n.contains(':'));
        if !is_vm {
            return Err(CimError::not_supported(format!(
                "{id} is a snapshot's settings, which do not change"
            )));
        }
        vssd.set("InstanceID", Value::from(id.as_ref()));
        Ok(vssd)
    }

    /// The VSSD a modified KVM_ComputerSystem asks for: its ElementName. Any other property
    /// must keep the value it has.
    async fn system_change(
        &self,
        ctx: &ProviderContext,
        system_class: &Arc<Class>,
        path: &ObjectPath,
        modified: Instance,
    ) -> CimResult<Instance> {
        let Some(Value::String(name)) = path.key("Name") else {
            return Err(CimError::invalid_parameter("the system path has no Name"));
        };
        let current = self.get_instance(ctx, system_class, path).await?;
        let mut vssd = Instance::new(Name::new(class::SETTING_DATA));
        vssd.set("InstanceID", Value::from(settings_id(name).as_str()));
        for (property, given) in modified.properties.iter() {
            if eq_ignore_case(property.as_str(), "ElementName") {
                // NULL gives the VM its name back as its ElementName.
                let element_name = given
                    .value
                    .clone()
                    .unwrap_or_else(|| Value::from(name.as_ref()));
                vssd.set("ElementName", element_name);
                continue;
            }
            if given.value.as_ref() != current.get(property.as_str()) {
                return Err(CimError::not_supported(format!(
                    "{}.{property} cannot be changed: of a VM's system, ElementName can \
                     (its state changes through RequestStateChange, its settings through \
                     its KVM_VirtualSystemSettingData)",
                    class::COMPUTER_SYSTEM
                )));
            }
        }
        Ok(vssd)
    }
}
