//! The virtualization providers of `root/virt`: the host, its VMs and their settings, and
//! the methods that define, destroy and change the state of VMs, carried out on the
//! integrated hypervisor through [`manager::VirtManager`].
//!
//! This is the first part of the profiles: KVM_HostSystem, KVM_ComputerSystem with
//! RequestStateChange, KVM_VirtualSystemManagementService with DefineSystem and
//! DestroySystem, and each VM's KVM_VirtualSystemSettingData and processor and memory RASDs.

pub mod definition;
pub mod manager;
mod state;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cim_schema::{Class, DateTime, Instance, Method, Name, ObjectPath, Value};

use crate::cimom::provider::{
    InstanceProvider, InstanceSink, MethodProvider, MethodResult, ProviderContext, Registry,
};
use crate::error::{CimError, CimResult};
use definition::VmDefinition;
use manager::{Change, VirtManager};

/// The namespace of the KVM_ classes.
pub const NAMESPACE: &str = "root/virt";
const HOST_SYSTEM: &str = "KVM_HostSystem";
const COMPUTER_SYSTEM: &str = "KVM_ComputerSystem";
const MANAGEMENT_SERVICE: &str = "KVM_VirtualSystemManagementService";
const SETTING_DATA: &str = "KVM_VirtualSystemSettingData";
const PROC_RASD: &str = "KVM_ProcResourceAllocationSettingData";
const MEM_RASD: &str = "KVM_MemResourceAllocationSettingData";
/// How long RequestStateChange(4) waits for the guest when the client gives no timeout.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// The providers, sharing one manager.
pub struct Virt {
    manager: Arc<VirtManager>,
    hostname: String,
}

impl Virt {
    /// Providers over `manager` for the host `hostname`.
    pub fn new(manager: Arc<VirtManager>, hostname: String) -> Arc<Self> {
        Arc::new(Virt { manager, hostname })
    }

    /// Registers the instance and method providers in `root/virt`.
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        for class in [
            HOST_SYSTEM,
            COMPUTER_SYSTEM,
            MANAGEMENT_SERVICE,
            SETTING_DATA,
            PROC_RASD,
            MEM_RASD,
        ] {
            registry.register_instances(NAMESPACE, class, self.clone());
        }
        registry.register_methods(NAMESPACE, COMPUTER_SYSTEM, self.clone());
        registry.register_methods(NAMESPACE, MANAGEMENT_SERVICE, self.clone());
    }

    fn host_path(&self) -> ObjectPath {
        ObjectPath::class(Some(NAMESPACE.to_owned()), HOST_SYSTEM)
            .with_key("CreationClassName", HOST_SYSTEM)
            .with_key("Name", self.hostname.as_str())
    }

    fn system_path(name: &str) -> ObjectPath {
        ObjectPath::class(Some(NAMESPACE.to_owned()), COMPUTER_SYSTEM)
            .with_key("CreationClassName", COMPUTER_SYSTEM)
            .with_key("Name", name)
    }

    fn service_path(&self) -> ObjectPath {
        ObjectPath::class(Some(NAMESPACE.to_owned()), MANAGEMENT_SERVICE)
            .with_key("SystemCreationClassName", HOST_SYSTEM)
            .with_key("SystemName", self.hostname.as_str())
            .with_key("CreationClassName", MANAGEMENT_SERVICE)
            .with_key("Name", "Management Service")
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&VirtManager) -> T + Send + 'static,
    ) -> CimResult<T> {
        let manager = self.manager.clone();
        tokio::task::spawn_blocking(move || work(&manager))
            .await
            .map_err(|e| CimError::failed(format!("the VM operation failed: {e}")))
    }

    fn host_instance(&self, class: &Class) -> Instance {
        let host = self.manager.host();
        let path = self.host_path();
        let mut values = keys_of(&path);
        values.extend([
            ("ElementName", Value::from(self.hostname.as_str())),
            (
                "Description",
                Value::from(
                    format!(
                        "{} ({} CPUs, {} MiB)",
                        host.cpu_model,
                        host.logical_cpus,
                        host.memory_total_bytes >> 20
                    )
                    .as_str(),
                ),
            ),
            ("EnabledState", Value::UInt16(2)),
            ("RequestedState", Value::UInt16(12)),
            (
                "OperationalStatus",
                Value::Array(vec![Some(Value::UInt16(2))]),
            ),
            ("HealthState", Value::UInt16(5)),
        ]);
        build(class, values)
    }

    fn system_instance(
        &self,
        class: &Class,
        definition: &VmDefinition,
        lifecycle: hypervisor_shim::lifecycle::State,
    ) -> Instance {
        let cim = state::CimState::of(lifecycle);
        let path = Self::system_path(&definition.name);
        let mut values = keys_of(&path);
        values.extend([
            ("ElementName", Value::from(definition.name.as_str())),
            ("UUID", Value::from(definition.uuid.as_str())),
            ("EnabledState", Value::UInt16(cim.enabled_state)),
            ("RequestedState", Value::UInt16(definition.requested_state)),
            ("EnabledDefault", Value::UInt16(2)),
            ("HealthState", Value::UInt16(cim.health_state)),
            (
                "OperationalStatus",
                Value::Array(vec![Some(Value::UInt16(cim.operational_status))]),
            ),
            ("Dedicated", Value::Array(vec![Some(Value::UInt16(0))])),
        ]);
        build(class, values)
    }

    fn setting_data_instances(class: &Class, definition: &VmDefinition) -> Instance {
        build(
            class,
            vec![
                (
                    "InstanceID",
                    Value::from(format!("KVM:{}", definition.name).as_str()),
                ),
                ("ElementName", Value::from(definition.name.as_str())),
                (
                    "VirtualSystemIdentifier",
                    Value::from(definition.name.as_str()),
                ),
                ("VirtualSystemType", Value::from("KVM")),
                ("UUID", Value::from(definition.uuid.as_str())),
                ("Arch", Value::from("x86_64")),
                ("Emulator", Value::from("cimvirtd")),
            ],
        )
    }

    fn rasd_instance(class: &Class, definition: &VmDefinition) -> Instance {
        let processor = class.name == *PROC_RASD;
        let (suffix, resource_type, quantity, units) = if processor {
            (
                "proc",
                definition::RESOURCE_PROCESSOR,
                u64::from(definition.vcpus),
                "count",
            )
        } else {
            // libvirt-cim reports memory in KiB.
            (
                "mem",
                definition::RESOURCE_MEMORY,
                definition.memory_mib << 10,
                "KiloBytes",
            )
        };
        build(
            class,
            vec![
                (
                    "InstanceID",
                    Value::from(format!("{}/{suffix}", definition.name).as_str()),
                ),
                ("ResourceType", Value::UInt16(resource_type)),
                ("VirtualQuantity", Value::UInt64(quantity)),
                ("Reservation", Value::UInt64(quantity)),
                ("Limit", Value::UInt64(quantity)),
                ("AllocationUnits", Value::from(units)),
                ("ElementName", Value::from(suffix)),
            ],
        )
    }
}

/// An instance of `class` with its defaults and the given values for the properties the
/// class has.
fn build(class: &Class, values: Vec<(&str, Value)>) -> Instance {
    let mut inst = Instance::from_class_defaults(class);
    for (name, value) in values {
        if class.property(name).is_some() {
            inst.set(name, value);
        }
    }
    inst
}

fn keys_of(path: &ObjectPath) -> Vec<(&str, Value)> {
    path.keys
        .iter()
        .map(|k| (k.name.as_str(), k.value.clone()))
        .collect()
}

#[async_trait]
impl InstanceProvider for Virt {
    async fn enumerate_instances(
        &self,
        _ctx: &ProviderContext,
        class: &Arc<Class>,
        sink: &InstanceSink,
    ) -> CimResult<()> {
        let name = class.name.as_str();
        if name.eq_ignore_ascii_case(HOST_SYSTEM) {
            sink.send(self.host_instance(class)).await;
            return Ok(());
        }
        if name.eq_ignore_ascii_case(MANAGEMENT_SERVICE) {
            let path = self.service_path();
            let mut values = keys_of(&path);
            values.extend([
                ("ElementName", Value::from("Management Service")),
                ("EnabledState", Value::UInt16(2)),
                ("Started", Value::Boolean(true)),
                ("Release", Value::from(env!("CARGO_PKG_VERSION"))),
                ("HealthState", Value::UInt16(5)),
            ]);
            sink.send(build(class, values)).await;
            return Ok(());
        }
        let with_states = name.eq_ignore_ascii_case(COMPUTER_SYSTEM);
        let vms = self
            .blocking(move |m| {
                m.definitions()
                    .into_iter()
                    .map(|d| {
                        let state = if with_states { Some(m.state(&d)) } else { None };
                        (d, state)
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        for (definition, state) in vms {
            let instance = match state {
                Some(state) => self.system_instance(class, &definition, state),
                None if name.eq_ignore_ascii_case(SETTING_DATA) => {
                    Self::setting_data_instances(class, &definition)
                }
                None => Self::rasd_instance(class, &definition),
            };
            if !sink.send(instance).await {
                break;
            }
        }
        Ok(())
    }
}

fn argument<'a>(arguments: &'a [(Name, Option<Value>)], name: &str) -> Option<&'a Value> {
    arguments
        .iter()
        .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_ref())
}

fn interval(value: Option<&Value>) -> Option<Duration> {
    match value {
        Some(Value::DateTime(DateTime::Interval(i))) => Some(
            Duration::from_secs(
                u64::from(i.days) * 86_400
                    + u64::from(i.hours) * 3600
                    + u64::from(i.minutes) * 60
                    + u64::from(i.seconds),
            ) + Duration::from_micros(u64::from(i.microseconds)),
        ),
        _ => None,
    }
}

fn done(code: u32, out: Vec<(Name, Value)>) -> MethodResult {
    MethodResult {
        return_value: Value::UInt32(code),
        out,
    }
}

impl Virt {
    async fn request_state_change(
        &self,
        target: &ObjectPath,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let name = match target.key("Name") {
            Some(Value::String(s)) => s.to_string(),
            _ => {
                return Err(CimError::invalid_parameter(
                    "RequestStateChange needs a KVM_ComputerSystem instance",
                ))
            }
        };
        let requested = match argument(arguments, "RequestedState") {
            Some(Value::UInt16(v)) => *v,
            _ => return Err(CimError::invalid_parameter("RequestedState is required")),
        };
        let timeout = interval(argument(arguments, "TimeoutPeriod"));
        let change = match requested {
            2 => Change::Enable,
            3 => Change::Disable,
            4 => Change::ShutDown(timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT)),
            6 => Change::Offline,
            9 => Change::Quiesce,
            10 => Change::Reboot,
            11 => Change::Reset,
            // Defined by DSP1057 but not offered: Test, Defer, Not Applicable, Shut Down's
            // relatives. 1 = Not Supported.
            _ => return Ok(done(1, vec![])),
        };
        let known = self.manager.definition(&name).is_some();
        if !known {
            return Err(CimError::not_found(format!(
                "Referenced domain `{name}' does not exist"
            )));
        }
        let result = self
            .blocking(move |m| m.change_state(&name, requested, change))
            .await?;
        Ok(match result {
            Ok(()) => done(0, vec![]),
            Err(e) => {
                tracing::info!(
                    code = e.code(),
                    "RequestStateChange({requested}) not done: {e:?}"
                );
                done(e.code(), vec![])
            }
        })
    }

    async fn define_system(&self, arguments: &[(Name, Option<Value>)]) -> CimResult<MethodResult> {
        let system = match argument(arguments, "SystemSettings") {
            Some(Value::Instance(i)) => (**i).clone(),
            _ => {
                return Err(CimError::invalid_parameter(
                    "SystemSettings (an embedded VSSD) is required",
                ))
            }
        };
        let mut resources = Vec::new();
        match argument(arguments, "ResourceSettings") {
            Some(Value::Array(items)) => {
                for item in items.iter().flatten() {
                    match item {
                        Value::Instance(i) => resources.push((**i).clone()),
                        other => {
                            return Err(CimError::invalid_parameter(format!(
                                "ResourceSettings holds {other:?}, not an embedded RASD"
                            )))
                        }
                    }
                }
            }
            None => {}
            Some(other) => {
                return Err(CimError::invalid_parameter(format!(
                    "ResourceSettings must be an array, not {other:?}"
                )))
            }
        }
        let definition = definition::from_settings(&system, &resources, definition::random_uuid())?;
        let name = definition.name.clone();
        self.blocking(move |m| m.define(definition)).await??;
        Ok(done(
            0,
            vec![(
                Name::new("ResultingSystem"),
                Value::Reference(Self::system_path(&name)),
            )],
        ))
    }

    async fn destroy_system(&self, arguments: &[(Name, Option<Value>)]) -> CimResult<MethodResult> {
        let name = match argument(arguments, "AffectedSystem") {
            Some(Value::Reference(path)) => match path.key("Name") {
                Some(Value::String(s)) => s.to_string(),
                _ => {
                    return Err(CimError::invalid_parameter(
                        "AffectedSystem has no Name key",
                    ))
                }
            },
            _ => {
                return Err(CimError::invalid_parameter(
                    "AffectedSystem (a KVM_ComputerSystem reference) is required",
                ))
            }
        };
        self.blocking(move |m| m.destroy(&name)).await??;
        Ok(done(0, vec![]))
    }
}

#[async_trait]
impl MethodProvider for Virt {
    async fn invoke_method(
        &self,
        _ctx: &ProviderContext,
        class: &Arc<Class>,
        target: &ObjectPath,
        method: &Method,
        arguments: Vec<(Name, Option<Value>)>,
    ) -> CimResult<MethodResult> {
        let (class, method_name) = (class.name.as_str(), method.name.as_str());
        if class.eq_ignore_ascii_case(COMPUTER_SYSTEM)
            && method_name.eq_ignore_ascii_case("RequestStateChange")
        {
            return self.request_state_change(target, &arguments).await;
        }
        if class.eq_ignore_ascii_case(MANAGEMENT_SERVICE) {
            if method_name.eq_ignore_ascii_case("DefineSystem") {
                return self.define_system(&arguments).await;
            }
            if method_name.eq_ignore_ascii_case("DestroySystem") {
                return self.destroy_system(&arguments).await;
            }
        }
        Err(CimError::new(
            crate::error::StatusCode::MethodNotAvailable,
            format!("{class}.{method_name} is not available yet"),
        ))
    }
}
