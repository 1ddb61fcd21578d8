//! The methods: KVM_ComputerSystem.RequestStateChange and the management service's
//! DefineSystem and DestroySystem.

use cim_schema::{Instance, Name, ObjectPath, Value};

pub(super) use super::arguments::argument;
use super::arguments::{self, JobRequest};
use super::paths::Pool;
use super::return_code::ReturnCode;
use super::{paths, properties, resources, settings, Virt};
use crate::vm::manager::{Change, FileAccess};
use cimom::dispatch::provider::{MethodResult, ProviderContext};
use cimom::error::{CimError, CimResult};

/// The Name key of a KVM_ComputerSystem reference argument.
pub(super) fn system_name(value: Option<&Value>, argument: &str) -> CimResult<String> {
    match value {
        Some(Value::Reference(path)) => match path.key("Name") {
            Some(Value::String(s)) => Ok(s.to_string()),
            _ => Err(CimError::invalid_parameter(format!(
                "{argument} has no Name key"
            ))),
        },
        _ => Err(CimError::invalid_parameter(format!(
            "{argument} (a KVM_ComputerSystem reference) is required"
        ))),
    }
}

/// The VM and snapshot id of a snapshot VSSD reference argument.
fn snapshot_of(value: Option<&Value>, argument: &str) -> CimResult<(String, String)> {
    let id = match value {
        Some(Value::Reference(path)) => match path.key("InstanceID") {
            Some(Value::String(s)) => s.to_string(),
            _ => {
                return Err(CimError::invalid_parameter(format!(
                    "{argument} has no InstanceID key"
                )))
            }
        },
        _ => {
            return Err(CimError::invalid_parameter(format!(
                "{argument} (a snapshot's VSSD reference) is required"
            )))
        }
    };
    let (name, snapshot) = paths::parse_snapshot_id(&id)
        .ok_or_else(|| CimError::not_found(format!("{id} is not a snapshot")))?;
    Ok((name.to_owned(), snapshot.to_owned()))
}

/// What host files the caller may give a VM: any for administrators, else pool volumes.
pub(super) fn file_access(ctx: &ProviderContext) -> FileAccess {
    if ctx.administrator {
        FileAccess::Any
    } else {
        FileAccess::PoolVolumes
    }
}

/// The classes embedded settings must be, or derive from.
const VSSD_CLASS: &str = "CIM_VirtualSystemSettingData";
const RASD_CLASS: &str = "CIM_ResourceAllocationSettingData";

/// Refuses an embedded instance in `argument` whose class is not `required` or a subclass
/// of it in the request's namespace.
fn check_class(
    ctx: &ProviderContext,
    instance: &Instance,
    required: &str,
    argument: &str,
) -> CimResult<()> {
    let class = instance.class_name.as_str();
    let derives = ctx
        .schema
        .namespace(&ctx.namespace)
        .is_ok_and(|ns| ns.is_subclass_of(class, required));
    if derives {
        Ok(())
    } else {
        Err(CimError::invalid_parameter(format!(
            "{argument} is an instance of {class}, which is not {required} or a subclass of it"
        )))
    }
}

/// The embedded VSSD of a SystemSettings argument.
fn embedded_vssd(
    ctx: &ProviderContext,
    arguments: &[(Name, Option<Value>)],
) -> CimResult<Instance> {
    match argument(arguments, "SystemSettings") {
        Some(Value::Instance(i)) => {
            check_class(ctx, i, VSSD_CLASS, "SystemSettings")?;
            Ok((**i).clone())
        }
        _ => Err(CimError::invalid_parameter(
            "SystemSettings (an embedded VSSD) is required",
        )),
    }
}

/// The embedded RASDs of a ResourceSettings argument.
fn embedded_rasds(ctx: &ProviderContext, value: Option<&Value>) -> CimResult<Vec<Instance>> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .flatten()
            .map(|item| match item {
                Value::Instance(i) => {
                    check_class(ctx, i, RASD_CLASS, "ResourceSettings")?;
                    Ok((**i).clone())
                }
                other => Err(CimError::invalid_parameter(format!(
                    "ResourceSettings holds {other:?}, not an embedded RASD"
                ))),
            })
            .collect(),
        other => Err(CimError::invalid_parameter(format!(
            "ResourceSettings must be an array, not {other:?}"
        ))),
    }
}

/// The storage pool a `Pool` argument names (a KVM_DiskPool reference, `DiskPool/NAME`).
fn storage_pool_of(value: Option<&Value>) -> CimResult<String> {
    match value {
        Some(Value::Reference(path)) => match path.key("InstanceID") {
            Some(Value::String(id)) => id
                .strip_prefix("DiskPool/")
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| {
                    CimError::invalid_parameter(format!("Pool {id} is not a storage pool"))
                }),
            _ => Err(CimError::invalid_parameter("Pool has no InstanceID")),
        },
        _ => Err(CimError::invalid_parameter(
            "Pool (a KVM_DiskPool reference) is required",
        )),
    }
}

/// The job id of a KVM_ConcreteJob path, for `method`.
fn job_id(target: &ObjectPath, method: &str) -> CimResult<String> {
    match target.key("InstanceID") {
        Some(Value::String(s)) => paths::parse_job_id(s).map(str::to_owned),
        _ => None,
    }
    .ok_or_else(|| {
        CimError::invalid_parameter(format!("{method} needs a KVM_ConcreteJob instance"))
    })
}

fn references(paths: Vec<ObjectPath>) -> Value {
    Value::Array(
        paths
            .into_iter()
            .map(|p| Some(Value::Reference(p)))
            .collect(),
    )
}

pub(super) fn done(code: impl Into<Value>, out: Vec<(Name, Value)>) -> MethodResult {
    MethodResult {
        return_value: code.into(),
        out,
    }
}

/// Each method parses its arguments, runs the work on the blocking pool, and answers with
/// DSP1042/DSP1057 return codes.
impl Virt {
    /// RequestStateChange on a VM's KVM_TextRedirectionSAP: 2 enables its console, 3
    /// disables it (closing every session); the setting is kept with the VM.
    pub(super) async fn console_state_change(
        &self,
        target: &ObjectPath,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let name = match target.key("SystemName") {
            Some(Value::String(s)) => s.to_string(),
            _ => {
                return Err(CimError::invalid_parameter(
                    "RequestStateChange needs a KVM_TextRedirectionSAP instance",
                ))
            }
        };
        let Some(enabled) = arguments::console_state_change(arguments)? else {
            return Ok(done(ReturnCode::NotSupported, vec![]));
        };
        self.blocking(move |m| m.set_console_enabled(&name, enabled))
            .await??;
        Ok(done(ReturnCode::Completed, vec![]))
    }

    pub(super) async fn request_state_change(
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
        let Some((requested, change)) = arguments::vm_state_change(arguments)? else {
            return Ok(done(ReturnCode::NotSupported, vec![]));
        };
        let known = self.manager.definition(&name).is_some();
        if !known {
            return Err(CimError::not_found(format!(
                "Referenced domain `{name}' does not exist"
            )));
        }
        // A graceful shutdown and a save take a while: they run as a job (4096).
        if matches!(change, Change::ShutDown(_) | Change::Offline) {
            let manager = self.manager.clone();
            let title = format!("RequestStateChange({requested}) of {name}");
            let started = tokio::task::spawn_blocking(move || {
                manager.begin_change(&name, requested, change, title)
            })
            .await
            .map_err(|e| CimError::failed(format!("the VM operation failed: {e}")))?;
            return Ok(match started {
                Ok(job) => done(
                    ReturnCode::JobStarted,
                    vec![(Name::new("Job"), Value::Reference(paths::job(&job.id)))],
                ),
                Err(e) => done(ReturnCode::from(&e), vec![]),
            });
        }
        let result = self
            .blocking(move |m| m.change_state(&name, requested, change))
            .await?;
        Ok(match result {
            Ok(()) => done(ReturnCode::Completed, vec![]),
            Err(e) => {
                tracing::info!(
                    code = ReturnCode::from(&e).number(),
                    "RequestStateChange({requested}) not done: {e:?}"
                );
                done(ReturnCode::from(&e), vec![])
            }
        })
    }

    pub(super) async fn define_system(
        &self,
        ctx: &ProviderContext,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let system = embedded_vssd(ctx, arguments)?;
        // DefineSystem may leave ResourceSettings out: the defaults apply.
        let resources = match argument(arguments, "ResourceSettings") {
            None => Vec::new(),
            given => embedded_rasds(ctx, given)?,
        };
        let definition = settings::from_settings(&system, &resources, uuid::Uuid::new_v4())?;
        let name = definition.name.clone();
        let files = file_access(ctx);
        self.blocking(move |m| m.define(definition, files))
            .await??;
        Ok(done(
            ReturnCode::Completed,
            vec![(
                Name::new("ResultingSystem"),
                Value::Reference(paths::system(&name)),
            )],
        ))
    }

    pub(super) async fn modify_resource_settings(
        &self,
        ctx: &ProviderContext,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let rasds = match argument(arguments, "ResourceSettings") {
            None => {
                return Err(CimError::invalid_parameter(
                    "ResourceSettings (embedded RASDs) is required",
                ))
            }
            given => embedded_rasds(ctx, given)?,
        };
        let files = file_access(ctx);
        let paths = self
            .blocking(move |m| resources::modify_resources(m, &rasds, files))
            .await??;
        Ok(done(
            ReturnCode::Completed,
            vec![(Name::new("ResultingResourceSettings"), references(paths))],
        ))
    }

    pub(super) async fn create_resource_in_pool(
        &self,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let pool = storage_pool_of(argument(arguments, "Pool"))?;
        let settings = match argument(arguments, "Settings") {
            Some(Value::Instance(i)) => (**i).clone(),
            _ => return Err(CimError::invalid_parameter(
                "Settings (an embedded KVM_StorageVolumeResourceAllocationSettingData) is required",
            )),
        };
        let name = match settings.get("VolumeName") {
            Some(Value::String(s)) if !s.is_empty() => s.to_string(),
            _ => return Err(CimError::invalid_parameter("Settings names no VolumeName")),
        };
        if !matches!(settings.get("FormatType"), None | Some(Value::UInt16(1))) {
            return Err(CimError::invalid_parameter(
                "FormatType: volumes are raw images (1)",
            ));
        }
        let capacity = properties::byte_quantity(&settings, "Capacity", "Bytes")?
            .ok_or_else(|| CimError::invalid_parameter("Settings gives no Capacity"))?;
        let resource = paths::volume(&pool, &name);
        self.blocking(move |m| m.create_volume(&pool, &name, capacity))
            .await??;
        Ok(done(
            ReturnCode::Completed,
            vec![(Name::new("Resource"), Value::Reference(resource))],
        ))
    }

    /// CreateChildResourcePool (libvirt-cim's form): ElementName names the pool, Settings
    /// holds one KVM_DiskPoolResourceAllocationSettingData (a directory: Type 1, Path) or
    /// KVM_NetPoolResourceAllocationSettingData (a bridge without addresses or forwarding).
    pub(super) async fn create_child_resource_pool(
        &self,
        ctx: &ProviderContext,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let name = match argument(arguments, "ElementName") {
            Some(Value::String(s)) if !s.is_empty() => s.to_string(),
            _ => {
                return Err(CimError::invalid_parameter(
                    "ElementName (the pool's name) is required",
                ))
            }
        };
        let settings = match argument(arguments, "Settings") {
            None => None,
            given => embedded_rasds(ctx, given)?.into_iter().next(),
        }
        .ok_or_else(|| {
            CimError::invalid_parameter(
                "Settings (a KVM_DiskPoolResourceAllocationSettingData or \
                 KVM_NetPoolResourceAllocationSettingData) is required",
            )
        })?;
        let class = settings.class_name.as_str();
        let pool = if class.eq_ignore_ascii_case("KVM_DiskPoolResourceAllocationSettingData") {
            if !matches!(settings.get("Type"), None | Some(Value::UInt16(0 | 1))) {
                return Err(CimError::not_supported(
                    "storage pools are directories (Type 1): file systems, disks, iSCSI and \
                     logical volumes are not offered",
                ));
            }
            let dir = match settings.get("Path") {
                Some(Value::String(p)) if !p.is_empty() => std::path::PathBuf::from(p.to_string()),
                _ => return Err(CimError::invalid_parameter("Settings gives no Path")),
            };
            let pool = Pool::Disk(name.clone());
            self.blocking(move |m| m.create_storage_pool(&name, &dir))
                .await??;
            paths::pool(&pool)
        } else if class.eq_ignore_ascii_case("KVM_NetPoolResourceAllocationSettingData") {
            for unsupported in ["Netmask", "IPRangeStart", "IPRangeEnd", "ForwardDevice"] {
                if matches!(settings.get(unsupported), Some(Value::String(s)) if !s.is_empty()) {
                    return Err(CimError::not_supported(format!(
                        "{unsupported}: a network pool is a bridge; cimvirt runs no DHCP server \
                         and sets up no addresses or forwarding"
                    )));
                }
            }
            if !matches!(settings.get("ForwardMode"), None | Some(Value::UInt16(0))) {
                return Err(CimError::not_supported(
                    "ForwardMode: NAT and routed networks are not offered (0, none, is)",
                ));
            }
            let pool = Pool::Network(name.clone());
            self.blocking(move |m| m.create_network_pool(&name))
                .await??;
            paths::pool(&pool)
        } else {
            return Err(CimError::invalid_parameter(format!(
                "Settings is a {class}: a new pool is a KVM_DiskPoolResourceAllocationSettingData \
                 or a KVM_NetPoolResourceAllocationSettingData"
            )));
        };
        Ok(done(
            ReturnCode::Completed,
            vec![(Name::new("Pool"), Value::Reference(pool))],
        ))
    }

    /// DeleteResourcePool: a storage pool created through CIM is forgotten (its images
    /// stay), a network pool's bridge is deleted.
    pub(super) async fn delete_resource_pool(
        &self,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let id = match argument(arguments, "Pool") {
            Some(Value::Reference(path)) => match path.key("InstanceID") {
                Some(Value::String(id)) => id.to_string(),
                _ => return Err(CimError::invalid_parameter("Pool has no InstanceID")),
            },
            _ => {
                return Err(CimError::invalid_parameter(
                    "Pool (a pool reference) is required",
                ))
            }
        };
        if let Some(name) = id.strip_prefix("DiskPool/").filter(|n| !n.is_empty()) {
            let name = name.to_owned();
            self.blocking(move |m| m.delete_storage_pool(&name))
                .await??;
        } else if let Some(name) = id.strip_prefix("NetworkPool/").filter(|n| !n.is_empty()) {
            let name = name.to_owned();
            self.blocking(move |m| m.delete_network_pool(&name))
                .await??;
        } else {
            return Err(CimError::invalid_parameter(format!(
                "{id}: only storage and network pools are created and deleted"
            )));
        }
        Ok(done(ReturnCode::Completed, vec![]))
    }

    pub(super) async fn delete_resource_in_pool(
        &self,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let (pool, volume) = match argument(arguments, "Resource") {
            Some(Value::Reference(path)) => match path.key("InstanceID") {
                Some(Value::String(id)) => paths::parse_volume_id(id)
                    .map(|(p, v)| (p.to_owned(), v.to_owned()))
                    .ok_or_else(|| {
                        CimError::invalid_parameter(format!(
                            "Resource {id} is not a volume (DiskPool/POOL/VOLUME)"
                        ))
                    })?,
                _ => return Err(CimError::invalid_parameter("Resource has no InstanceID")),
            },
            _ => {
                return Err(CimError::invalid_parameter(
                    "Resource (a volume's RASD reference) is required",
                ))
            }
        };
        if let Some(given) = argument(arguments, "Pool") {
            if storage_pool_of(Some(given))? != pool {
                return Err(CimError::invalid_parameter(format!(
                    "the volume is in DiskPool/{pool}, not the Pool given"
                )));
            }
        }
        self.blocking(move |m| m.delete_volume(&pool, &volume))
            .await??;
        Ok(done(ReturnCode::Completed, vec![]))
    }

    pub(super) async fn modify_system_settings(
        &self,
        ctx: &ProviderContext,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let vssd = embedded_vssd(ctx, arguments)?;
        let files = file_access(ctx);
        self.blocking(move |m| resources::modify_system(m, &vssd, files))
            .await??;
        Ok(done(ReturnCode::Completed, vec![]))
    }

    pub(super) async fn add_resource_settings(
        &self,
        ctx: &ProviderContext,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let vm =
            match argument(arguments, "AffectedConfiguration") {
                Some(Value::Reference(path)) => match path.key("InstanceID") {
                    Some(Value::String(id)) => id
                        .strip_prefix("KVM:")
                        .filter(|name| !name.contains(':'))
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            CimError::invalid_parameter(format!(
                                "AffectedConfiguration {id} is not a VM's settings (KVM:<name>)"
                            ))
                        })?,
                    _ => {
                        return Err(CimError::invalid_parameter(
                            "AffectedConfiguration has no InstanceID key",
                        ))
                    }
                },
                _ => return Err(CimError::invalid_parameter(
                    "AffectedConfiguration (a KVM_VirtualSystemSettingData reference) is required",
                )),
            };
        let rasds = match argument(arguments, "ResourceSettings") {
            None => {
                return Err(CimError::invalid_parameter(
                    "ResourceSettings (embedded RASDs) is required",
                ))
            }
            given => embedded_rasds(ctx, given)?,
        };
        let files = file_access(ctx);
        let paths = self
            .blocking(move |m| resources::add_resources(m, &vm, &rasds, files))
            .await??;
        Ok(done(
            ReturnCode::Completed,
            vec![(Name::new("ResultingResourceSettings"), references(paths))],
        ))
    }

    pub(super) async fn remove_resource_settings(
        &self,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let rasds: Vec<ObjectPath> = match argument(arguments, "ResourceSettings") {
            Some(Value::Array(items)) => items
                .iter()
                .flatten()
                .map(|item| match item {
                    Value::Reference(path) => Ok(path.clone()),
                    other => Err(CimError::invalid_parameter(format!(
                        "ResourceSettings holds {other:?}, not a RASD reference"
                    ))),
                })
                .collect::<CimResult<_>>()?,
            Some(Value::Reference(path)) => vec![path.clone()],
            _ => {
                return Err(CimError::invalid_parameter(
                    "ResourceSettings (RASD references) is required",
                ))
            }
        };
        self.blocking(move |m| resources::remove_resources(m, &rasds))
            .await??;
        Ok(done(ReturnCode::Completed, vec![]))
    }

    pub(super) async fn create_snapshot(
        &self,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let name = system_name(argument(arguments, "AffectedSystem"), "AffectedSystem")?;
        let Some(then_stop) = arguments::snapshot_then_stop(arguments) else {
            return Ok(done(ReturnCode::NotSupported, vec![]));
        };
        self.require_defined(&name)?;
        let result = {
            let name = name.clone();
            self.blocking(move |m| m.create_snapshot(&name, then_stop))
                .await?
        };
        Ok(match result {
            Ok(snapshot) => done(
                ReturnCode::Completed,
                vec![(
                    Name::new("ResultingSnapshot"),
                    Value::Reference(paths::snapshot(&name, &snapshot.id)),
                )],
            ),
            Err(e) => done(ReturnCode::from(&e), vec![]),
        })
    }

    pub(super) async fn apply_snapshot(
        &self,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let (name, id) = snapshot_of(argument(arguments, "Snapshot"), "Snapshot")?;
        self.require_defined(&name)?;
        let result = self.blocking(move |m| m.apply_snapshot(&name, &id)).await?;
        Ok(match result {
            Ok(()) => done(ReturnCode::Completed, vec![]),
            Err(e) => done(ReturnCode::from(&e), vec![]),
        })
    }

    pub(super) async fn destroy_snapshot(
        &self,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let (name, id) = snapshot_of(argument(arguments, "AffectedSnapshot"), "AffectedSnapshot")?;
        self.blocking(move |m| m.destroy_snapshot(&name, &id))
            .await??;
        Ok(done(ReturnCode::Completed, vec![]))
    }

    /// CIM_ConcreteJob.GetError: the job's error as an embedded CIM_Error, or none.
    /// RequestStateChange on a job (DSP1103): 4 Terminate and 5 Kill cancel a running
    /// graceful shutdown; the other states are not supported (1), an ended job or one that
    /// cannot be cancelled answers 4097.
    pub(super) async fn job_state_change(
        &self,
        target: &ObjectPath,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let id = job_id(target, "RequestStateChange")?;
        if let JobRequest::Other(_) = arguments::job_state_change(arguments)? {
            return Ok(done(ReturnCode::NotSupported, vec![]));
        }
        Ok(match self.blocking(move |m| m.cancel_job(&id)).await? {
            Ok(()) => done(ReturnCode::Completed, vec![]),
            Err(e) => {
                tracing::info!(
                    code = ReturnCode::from(&e).number(),
                    "job RequestStateChange refused: {e:?}"
                );
                done(ReturnCode::from(&e), vec![])
            }
        })
    }

    /// CIM_ConcreteJob.GetError (deprecated) and GetErrors (DSP1103): the job's error as
    /// an embedded CIM_Error (an array of it for GetErrors), or none (NULL).
    pub(super) async fn job_errors(
        &self,
        target: &ObjectPath,
        as_array: bool,
    ) -> CimResult<MethodResult> {
        let id = job_id(target, if as_array { "GetErrors" } else { "GetError" })?;
        let job = self.manager.jobs().get(&id).ok_or_else(|| {
            CimError::not_found(format!(
                "job {id} does not exist (finished jobs are kept 5 minutes)"
            ))
        })?;
        let error = job.failure.as_ref().map(|failure| {
            let mut error = Instance::new(Name::new("CIM_Error"));
            error.set("ErrorType", Value::UInt16(4)); // Software Error
            error.set("PerceivedSeverity", Value::UInt16(5)); // Major
            error.set("OwningEntity", Value::from("cimvirt"));
            error.set("Message", Value::from(failure.describe().as_str()));
            error.set("CIMStatusCode", Value::UInt32(1)); // CIM_ERR_FAILED
            Value::Instance(Box::new(error))
        });
        let out = match error {
            Some(e) if as_array => vec![(Name::new("Errors"), Value::Array(vec![Some(e)]))],
            Some(e) => vec![(Name::new("Error"), e)],
            None => vec![],
        };
        Ok(done(ReturnCode::Completed, out))
    }

    /// CIM_Job.KillJob (deprecated for RequestStateChange 5): cancels the job where it can
    /// be cancelled, as RequestStateChange does, and with DeleteOnKill deletes it. Returns
    /// 0, or 4 (Failed) for a job that has ended or cannot be cancelled.
    pub(super) async fn kill_job(
        &self,
        target: &ObjectPath,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let id = job_id(target, "KillJob")?;
        let delete = arguments::delete_on_kill(arguments);
        let manager = self.manager.clone();
        let killed = self
            .blocking(move |m| m.cancel_job(&id).map(|()| id))
            .await?;
        match killed {
            Ok(id) => {
                if delete {
                    manager.jobs().remove(&id)?;
                }
                Ok(done(ReturnCode::Completed, vec![]))
            }
            Err(e) => {
                tracing::info!("KillJob refused: {e:?}");
                Ok(done(ReturnCode::Failed, vec![]))
            }
        }
    }

    /// CIM_ComputerSystem.SetPowerState (deprecated for RequestStateChange, which it maps
    /// to): 1 Full Power starts or resumes (2), 5 Power Cycle resets (11), 6 Power Off turns
    /// off (3). The power-save states, Hibernate and Soft Off (which take a while: use
    /// RequestStateChange 6 and 4, which answer with a job) and a scheduled Time are not
    /// supported (1). Other answers are RequestStateChange's.
    pub(super) async fn set_power_state(
        &self,
        target: &ObjectPath,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let name = system_name(Some(&Value::Reference(target.clone())), "the target")?;
        let Some((requested, change)) = arguments::power_state(arguments)? else {
            return Ok(done(ReturnCode::NotSupported, vec![]));
        };
        self.require_defined(&name)?;
        let result = self
            .blocking(move |m| m.change_state(&name, requested, change))
            .await?;
        Ok(done(
            result.map_or_else(|e| ReturnCode::from(&e), |()| ReturnCode::Completed),
            vec![],
        ))
    }

    fn require_defined(&self, name: &str) -> CimResult<()> {
        match self.manager.definition(name) {
            Some(_) => Ok(()),
            None => Err(CimError::not_found(format!(
                "Referenced domain `{name}' does not exist"
            ))),
        }
    }

    pub(super) async fn destroy_system(
        &self,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let name = system_name(argument(arguments, "AffectedSystem"), "AffectedSystem")?;
        self.blocking(move |m| m.destroy(&name)).await??;
        Ok(done(ReturnCode::Completed, vec![]))
    }
}
