//! KVM_VirtualSystemManagementService.ImportSystemDefinition and ExportSystemDefinition:
//! their arguments read into requests, and their answers (a job, 4096).

use std::path::PathBuf;

use cim_schema::{Instance, Name, Value};
use cimom::dispatch::provider::{MethodResult, ProviderContext};
use cimom::error::{CimError, CimResult, StatusCode};

use super::methods::{argument, done, system_name};
use super::ovf::export::ExportOptions;
use super::ovf::plan::ImportOptions;
use super::ovf::writer::DiskFormat;
use super::portability::ImportRequest;
use super::properties::{boolean_property, string_property};
use super::return_code::PortabilityReturnCode;
use super::{paths, Virt};

/// Class of ImportSettingData (the VSSD renames the VM, nothing more).
const IMPORT_SETTINGS: &str = "KVM_ImportSettingData";
/// Class of ExportSettingData.
const EXPORT_SETTINGS: &str = "KVM_ExportSettingData";

/// Packages are host files: only administrators read or write them through cimvirt.
fn require_administrator(ctx: &ProviderContext, method: &str) -> CimResult<()> {
    if ctx.administrator {
        Ok(())
    } else {
        Err(CimError::new(
            StatusCode::AccessDenied,
            format!(
                "{method} reads or writes the host's files: only administrators (read-write \
                 in every namespace) may call it"
            ),
        ))
    }
}

/// An absolute host path argument.
fn host_path(arguments: &[(Name, Option<Value>)], name: &str) -> CimResult<PathBuf> {
    match argument(arguments, name) {
        Some(Value::String(s)) if s.starts_with('/') => Ok(PathBuf::from(s.to_string())),
        Some(Value::String(s)) => Err(CimError::invalid_parameter(format!(
            "{name} {s:?} is not an absolute path on the host"
        ))),
        _ => Err(CimError::invalid_parameter(format!(
            "{name} (a path on the host) is required"
        ))),
    }
}

/// What CIM_SettingData gives every setting: its identity and description, which name the
/// settings object and set nothing.
const SETTING_IDENTITY: &[&str] = &[
    "InstanceID",
    "ElementName",
    "Caption",
    "Description",
    "ChangeableType",
    "ConfigurationName",
    "Generation",
];

/// Refuses a property of `settings` given a value that the method does not read (`reads`,
/// beside `identity`): no setting is accepted and then dropped.
fn check_read(
    settings: &Instance,
    argument: &str,
    identity: &[&str],
    reads: &[&str],
) -> CimResult<()> {
    let unread = settings.properties.values().find(|p| {
        p.value.is_some()
            && !identity
                .iter()
                .chain(reads)
                .any(|name| p.name.as_str().eq_ignore_ascii_case(name))
    });
    match unread {
        Some(p) => Err(CimError::not_supported(format!(
            "{argument}: {}.{} is not a setting this method reads (it reads {})",
            settings.class_name,
            p.name,
            reads.join(", ")
        ))),
        None => Ok(()),
    }
}

fn embedded<'a>(
    arguments: &'a [(Name, Option<Value>)],
    name: &str,
) -> CimResult<Option<&'a Instance>> {
    match argument(arguments, name) {
        None => Ok(None),
        Some(Value::Instance(i)) => Ok(Some(i)),
        Some(other) => Err(CimError::invalid_parameter(format!(
            "{name} must be an embedded instance, not {other:?}"
        ))),
    }
}

/// Reads ImportSettingData into the request: a KVM_ImportSettingData (VirtualSystemName,
/// StoragePool, Lax, DeploymentOption), or a VSSD whose VirtualSystemIdentifier or
/// ElementName renames the VM.
fn import_settings(settings: Option<&Instance>, request: &mut ImportRequest) -> CimResult<()> {
    let Some(settings) = settings else {
        return Ok(());
    };
    let class = settings.class_name.as_str();
    if class.eq_ignore_ascii_case(IMPORT_SETTINGS) {
        check_read(
            settings,
            "ImportSettingData",
            SETTING_IDENTITY,
            &[
                "VirtualSystemName",
                "StoragePool",
                "Lax",
                "DeploymentOption",
            ],
        )?;
        request.name = string_property(settings, "VirtualSystemName");
        request.pool = string_property(settings, "StoragePool");
        request.options.lax = boolean_property(settings, "Lax")?.unwrap_or(false);
        request.options.deployment = string_property(settings, "DeploymentOption");
    } else if class.eq_ignore_ascii_case("KVM_VirtualSystemSettingData")
        || class.eq_ignore_ascii_case("CIM_VirtualSystemSettingData")
    {
        // A VSSD names the VM; its other settings change after the import, through
        // ModifySystemSettings. VirtualSystemType is the label clients send (see
        // vssd_properties).
        check_read(
            settings,
            "ImportSettingData",
            &["InstanceID", "Caption", "VirtualSystemType"],
            &["VirtualSystemIdentifier", "ElementName"],
        )?;
        request.name = string_property(settings, "VirtualSystemIdentifier")
            .or_else(|| string_property(settings, "ElementName"));
    } else {
        return Err(CimError::invalid_parameter(format!(
            "ImportSettingData is a {class}: give a {IMPORT_SETTINGS} or a \
             KVM_VirtualSystemSettingData"
        )));
    }
    Ok(())
}

fn export_settings(settings: Option<&Instance>) -> CimResult<ExportOptions> {
    let mut options = ExportOptions {
        format: DiskFormat::StreamOptimizedVmdk,
        ova: false,
    };
    let Some(settings) = settings else {
        return Ok(options);
    };
    if !settings
        .class_name
        .as_str()
        .eq_ignore_ascii_case(EXPORT_SETTINGS)
    {
        return Err(CimError::invalid_parameter(format!(
            "ExportSettingData is a {}: give a {EXPORT_SETTINGS}",
            settings.class_name
        )));
    }
    check_read(
        settings,
        "ExportSettingData",
        SETTING_IDENTITY,
        &["DiskFormat", "CreateOva"],
    )?;
    if let Some(format) = string_property(settings, "DiskFormat") {
        options.format = match format.to_ascii_lowercase().as_str() {
            "vmdk" => DiskFormat::StreamOptimizedVmdk,
            "raw" => DiskFormat::Raw,
            "qcow2" => DiskFormat::Qcow2,
            other => {
                return Err(CimError::invalid_parameter(format!(
                    "DiskFormat {other:?}: vmdk (streamOptimized), raw or qcow2"
                )))
            }
        };
    }
    options.ova = boolean_property(settings, "CreateOva")?.unwrap_or(false);
    Ok(options)
}

impl Virt {
    /// ImportSystemDefinition: the package is read and planned at once (a package that
    /// cannot be imported is refused with a CIM error naming why); the rest runs as a job.
    /// ResultingSystem and ResultingSystems name the VMs it defines when it completes.
    pub(super) async fn import_system_definition(
        &self,
        ctx: &ProviderContext,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        require_administrator(ctx, "ImportSystemDefinition")?;
        let mut request = ImportRequest {
            package: host_path(arguments, "SystemDefinitionFile")?,
            name: None,
            pool: None,
            options: ImportOptions::default(),
        };
        // A new identity unless the client asks to keep the package's (MAC addresses).
        request.options.keep_macs = matches!(
            argument(arguments, "GenerateNewSystemIdentifier"),
            Some(Value::Boolean(false))
        );
        import_settings(embedded(arguments, "ImportSettingData")?, &mut request)?;
        let manager = self.manager.clone();
        let started = tokio::task::spawn_blocking(move || manager.begin_import(request))
            .await
            .map_err(|e| CimError::failed(format!("the import failed: {e}")))??;
        let systems: Vec<Option<Value>> = started
            .systems
            .iter()
            .map(|name| Some(Value::Reference(paths::system(name))))
            .collect();
        let mut out = vec![(
            Name::new("Job"),
            Value::Reference(paths::job(&started.job.id)),
        )];
        if let Some(first) = started.systems.first() {
            out.push((
                Name::new("ResultingSystem"),
                Value::Reference(paths::system(first)),
            ));
        }
        out.push((Name::new("ResultingSystems"), Value::Array(systems)));
        Ok(done(PortabilityReturnCode::JobStarted, out))
    }

    /// ExportSystemDefinition: a stopped or saved VM's package written by a job.
    pub(super) async fn export_system_definition(
        &self,
        ctx: &ProviderContext,
        arguments: &[(Name, Option<Value>)],
    ) -> CimResult<MethodResult> {
        require_administrator(ctx, "ExportSystemDefinition")?;
        let name = system_name(argument(arguments, "ComputerSystem"), "ComputerSystem")?;
        let dir = host_path(arguments, "ExportDirectory")?;
        if !dir.is_dir() {
            return Err(CimError::invalid_parameter(format!(
                "ExportDirectory {} is not a directory",
                dir.display()
            )));
        }
        let options = export_settings(embedded(arguments, "ExportSettingData")?)?;
        if self.manager.definition(&name).is_none() {
            return Err(CimError::not_found(format!(
                "Referenced domain `{name}' does not exist"
            )));
        }
        let manager = self.manager.clone();
        let started =
            tokio::task::spawn_blocking(move || manager.begin_export(&name, dir, options))
                .await
                .map_err(|e| CimError::failed(format!("the export failed: {e}")))?;
        Ok(match started {
            Ok(job) => done(
                PortabilityReturnCode::JobStarted,
                vec![(Name::new("Job"), Value::Reference(paths::job(&job.id)))],
            ),
            Err(e) => done(PortabilityReturnCode::from(&e), vec![]),
        })
    }
}
