//! KVM_VirtualSystemMigrationService's methods: MigrateVirtualSystemToHost and ToSystem
//! (jobs), CheckVirtualSystemIsMigratableToHost and ToSystem, with DSP1081's return codes.

use cim_schema::{Instance, Name, ObjectPath, Value};
use tracing::info;

use super::source::Refusal;
use super::MigrationKind;
use crate::virt::methods::{argument, done, system_name};
use crate::virt::return_code::MigrationReturnCode;
use crate::virt::{paths, Virt, NAMESPACE};
use cimom::dispatch::provider::MethodResult;
use cimom::error::{CimError, CimResult, StatusCode};

/// Where a ToSystem method's DestinationSystem is: the host of its path, or else its Name.
fn destination_of_system(value: Option<&Value>) -> CimResult<String> {
    let Some(Value::Reference(path)) = value else {
        return Err(CimError::invalid_parameter(
            "DestinationSystem (a reference to the destination's KVM_HostSystem) is required",
        ));
    };
    if let Some(host) = path.host.as_deref().filter(|h| !h.is_empty()) {
        return Ok(host.to_owned());
    }
    match path.key("Name") {
        Some(Value::String(name)) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(CimError::invalid_parameter(
            "DestinationSystem has neither a host nor a Name key",
        )),
    }
}

/// The destination's KVM_ComputerSystem for VM `name`.
fn new_system(destination: &str, name: &str) -> ObjectPath {
    let mut path = paths::system(name);
    path.host = Some(destination.to_owned());
    path.namespace = Some(NAMESPACE.to_owned());
    path
}

impl Virt {
    /// Runs one of the migration service's methods.
    pub(in crate::virt) async fn migration_method(
        &self,
        method: &str,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        let lower = method.to_ascii_lowercase();
        let (check, to_system) = match lower.as_str() {
            "migratevirtualsystemtohost" => (false, false),
            "migratevirtualsystemtosystem" => (false, true),
            "checkvirtualsystemismigratabletohost" => (true, false),
            "checkvirtualsystemismigratabletosystem" => (true, true),
            _ => {
                return Err(CimError::new(
                    StatusCode::MethodNotAvailable,
                    format!("{method} is not available"),
                ))
            }
        };
        let name = system_name(argument(arguments, "ComputerSystem"), "ComputerSystem")?;
        let destination = if to_system {
            destination_of_system(argument(arguments, "DestinationSystem"))?
        } else {
            match argument(arguments, "DestinationHost") {
                Some(Value::String(host)) if !host.trim().is_empty() => host.trim().to_owned(),
                _ => return Err(CimError::invalid_parameter("DestinationHost is required")),
            }
        };
        let settings: Option<Instance> = match argument(arguments, "MigrationSettingData") {
            None => None,
            Some(Value::Instance(i)) => Some((**i).clone()),
            Some(other) => {
                return Err(CimError::invalid_parameter(format!(
                    "MigrationSettingData must be an embedded instance, not {other:?}"
                )))
            }
        };
        for changed in ["NewSystemSettingData", "NewResourceSettingData"] {
            if argument(arguments, changed).is_some() {
                return Err(CimError::not_supported(format!(
                    "{changed}: a VM moves with its settings unchanged; change them before or \
                     after the migration"
                )));
            }
        }
        let kind =
            MigrationKind::from_settings(settings.as_ref()).map_err(CimError::not_supported)?;
        if self.manager.definition(&name).is_none() {
            return Err(CimError::not_found(format!(
                "Referenced domain `{name}' does not exist"
            )));
        }
        let (manager, migration) = (self.manager.clone(), self.migration.clone());
        let runtime = tokio::runtime::Handle::current();
        let refused = |e: Refusal| -> CimResult<MethodResult> {
            match e {
                Refusal::InvalidParameter(why) => Err(CimError::invalid_parameter(why)),
                other => {
                    info!(
                        vm = name,
                        method,
                        code = MigrationReturnCode::from(&other).number(),
                        "migration refused: {other}"
                    );
                    Ok(done(MigrationReturnCode::from(&other), vec![]))
                }
            }
        };
        if check {
            let (vm, to) = (name.clone(), destination.clone());
            let answer = tokio::task::spawn_blocking(move || {
                manager.check_migration(&vm, &to, kind, &migration, runtime)
            })
            .await
            .map_err(|e| CimError::failed(format!("the migration check failed: {e}")))?;
            return match answer {
                Ok(migratable) => Ok(done(
                    MigrationReturnCode::Completed,
                    vec![(Name::new("IsMigratable"), Value::Boolean(migratable))],
                )),
                Err(e) => refused(e),
            };
        }
        let (vm, to) = (name.clone(), destination.clone());
        let started = tokio::task::spawn_blocking(move || {
            manager.begin_migration(&vm, &to, kind, &migration, runtime)
        })
        .await
        .map_err(|e| CimError::failed(format!("starting the migration failed: {e}")))?;
        match started {
            Ok(job) => {
                let mut out = vec![(Name::new("Job"), Value::Reference(paths::job(&job.id)))];
                if to_system {
                    out.push((
                        Name::new("NewComputerSystem"),
                        Value::Reference(new_system(&destination, &name)),
                    ));
                }
                Ok(done(MigrationReturnCode::JobStarted, out))
            }
            Err(e) => refused(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_system_is_found_by_its_host_or_its_name() {
        let host = paths::host("kvm2.example");
        assert_eq!(
            destination_of_system(Some(&Value::Reference(host.clone()))).unwrap(),
            "kvm2.example"
        );
        let mut remote = host;
        remote.host = Some("10.0.0.2:15989".into());
        assert_eq!(
            destination_of_system(Some(&Value::Reference(remote))).unwrap(),
            "10.0.0.2:15989"
        );
        assert!(destination_of_system(None).is_err());
        assert_eq!(
            new_system("kvm2:5989", "vm1").to_string(),
            "//kvm2:5989/root/virt:KVM_ComputerSystem.CreationClassName=\"KVM_ComputerSystem\",Name=\"vm1\""
        );
    }
}
