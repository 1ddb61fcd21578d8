//! VMs in and out of the host as OVF packages: an import reads and plans the package at
//! once (refusing what cannot be imported before any work), then checks, converts and
//! defines as a job; an export claims a stopped VM and writes its package as a job.

use std::path::PathBuf;
use std::sync::Arc;

use cimom::error::{CimError, CimResult, StatusCode};
use hypervisor_shim::lifecycle::State;
use hypervisor_shim::netif;
use uuid::Uuid;

use super::console::Departure;
use super::ovf::export::{self, ExportDisk, ExportOptions, ExportSystem};
use super::ovf::import::{self, ImportedDisk};
use super::ovf::plan::{ImportOptions, SystemPlan};
use super::ovf::writer::NicEntry;
use super::ovf::OvfError;
use crate::vm::definition::{DiskDefinition, NicDefinition, VmDefinition};
use crate::vm::devices::{device_name, random_mac};
use crate::vm::jobs::Job;
use crate::vm::manager::{FileAccess, VirtManager};
use crate::vm::ChangeError;

/// What ImportSystemDefinition asks for.
#[derive(Clone, Debug)]
pub struct ImportRequest {
    /// The `.ovf` or `.ova` on the host.
    pub package: PathBuf,
    /// A new name for the VM of a one-system package.
    pub name: Option<String>,
    /// The storage pool the disks go to (the first configured, `default`, when none).
    pub pool: Option<String>,
    /// How to read it.
    pub options: ImportOptions,
}

/// An import under way.
#[derive(Clone, Debug)]
pub struct ImportStarted {
    /// Its job.
    pub job: Job,
    /// The VMs it defines when the job completes, in package order.
    pub systems: Vec<String>,
}

/// The CIM error for a package that cannot be imported or exported.
pub fn cim_error(error: OvfError) -> CimError {
    let code = match &error {
        OvfError::NotOvf(_) | OvfError::Invalid(_) => StatusCode::InvalidParameter,
        OvfError::UnsupportedVersion(_) | OvfError::Unsupported(_) => StatusCode::NotSupported,
        OvfError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            StatusCode::NotFound
        }
        OvfError::Digest(_) | OvfError::Convert(_) | OvfError::Io { .. } => StatusCode::Failed,
    };
    CimError::new(code, error.to_string())
}

/// A definition of `plan` without its disks (they exist once the job has made them);
/// ports on networks no bridge here is named after are left unconnected, and said so.
fn draft(plan: &SystemPlan, bridges: &[String], report: &mut Vec<String>) -> VmDefinition {
    let mut draft = VmDefinition::new(plan.name.clone(), Uuid::new_v4());
    draft.vcpus = plan.vcpus;
    draft.memory_mib = plan.memory_mib;
    draft.description = plan.description.clone();
    draft.notes = plan.notes.clone();
    draft.nics = plan
        .nics
        .iter()
        .enumerate()
        .map(|(i, nic)| {
            let bridge = nic
                .network
                .as_ref()
                .filter(|n| bridges.contains(n))
                .cloned();
            if let (Some(network), None) = (&nic.network, &bridge) {
                report.push(format!(
                    "{}: network port {} is on network {network}, which no bridge here is \
                     named after: it is not connected",
                    plan.name,
                    i + 1
                ));
            }
            NicDefinition {
                mac: nic.mac.unwrap_or_else(random_mac),
                bridge,
            }
        })
        .collect();
    draft
}

impl VirtManager {
    /// Reads and plans the package, checks that every VM can be defined here, and starts
    /// the job that checks the manifest, converts the disks and defines the VMs.
    pub fn begin_import(self: &Arc<Self>, request: ImportRequest) -> CimResult<ImportStarted> {
        let pool = match &request.pool {
            Some(name) => self.storage_pool(name)?,
            None => self.default_storage_pool()?,
        };
        let prepared = import::prepare(&request.package, request.name.as_deref(), &request.options)
            .map_err(cim_error)?;
        let bridges: Vec<String> = netif::bridges()
            .unwrap_or_default()
            .into_iter()
            .map(|b| b.name)
            .collect();
        let mut report = Vec::new();
        let mut drafts = Vec::with_capacity(prepared.plans.len());
        for plan in &prepared.plans {
            crate::vm::definition::check_name(&plan.name).map_err(|e| {
                CimError::invalid_parameter(format!(
                    "{e}; give the VM another name in ImportSettingData"
                ))
            })?;
            if drafts.iter().any(|d: &VmDefinition| d.name == plan.name) {
                return Err(CimError::invalid_parameter(format!(
                    "the package names two virtual systems {}",
                    plan.name
                )));
            }
            let draft = draft(plan, &bridges, &mut report);
            self.check_new(&draft)?;
            drafts.push(draft);
            for skipped in &plan.skipped {
                report.push(format!("{}: skipped {skipped}", plan.name));
            }
        }
        let systems: Vec<String> = drafts.iter().map(|d| d.name.clone()).collect();
        let claims = systems
            .iter()
            .map(|name| self.claim(name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                CimError::failed("another import or change of a VM of that name is under way")
            })?;
        let title = format!(
            "ImportSystemDefinition of {} ({})",
            request.package.display(),
            systems.join(", ")
        );
        let job = self
            .spawn_job_claiming(claims, title, false, move |manager, id| {
                let mut progress = |percent| manager.jobs().set_percent(id, percent);
                let disks = prepared
                    .run(&pool, &mut progress, &mut report)
                    .map_err(|e| ChangeError::Failed(e.to_string()))?;
                let defined = manager.define_imported(drafts, disks, &pool);
                let mut outcome = format!("imported {}", defined?.join(", "));
                if !report.is_empty() {
                    outcome.push_str("; ");
                    outcome.push_str(&report.join("; "));
                }
                manager.jobs().set_outcome(id, outcome);
                Ok(())
            })
            .map_err(|e| CimError::failed(e.describe()))?;
        Ok(ImportStarted { job, systems })
    }

    /// Defines the imported VMs with their new disks; if one cannot be, none stays and
    /// every volume the import made is deleted.
    fn define_imported(
        &self,
        drafts: Vec<VmDefinition>,
        disks: Vec<Vec<ImportedDisk>>,
        pool: &hypervisor_shim::storage::StoragePool,
    ) -> Result<Vec<String>, ChangeError> {
        let mut defined: Vec<VmDefinition> = Vec::new();
        let volumes: Vec<String> = disks
            .iter()
            .flatten()
            .map(|d| d.volume.name.clone())
            .collect();
        for (mut definition, disks) in drafts.into_iter().zip(disks) {
            definition.disks = disks
                .into_iter()
                .enumerate()
                .map(|(i, d)| DiskDefinition {
                    device: device_name(i),
                    path: d.volume.path,
                    read_only: d.read_only,
                })
                .collect();
            match self.define(definition.clone(), FileAccess::PoolVolumes) {
                Ok(()) => defined.push(definition),
                Err(e) => {
                    for vm in &defined {
                        let _ = self.forget(vm, State::Defined, &Departure::Destroyed);
                    }
                    for volume in &volumes {
                        let _ = pool.delete_volume(volume);
                    }
                    return Err(ChangeError::Failed(format!(
                        "defining {}: {}",
                        definition.name, e.message
                    )));
                }
            }
        }
        Ok(defined.into_iter().map(|d| d.name).collect())
    }

    /// Starts the job that exports VM `name`, stopped or saved, into `dir`.
    pub fn begin_export(
        self: &Arc<Self>,
        name: &str,
        dir: PathBuf,
        options: ExportOptions,
    ) -> Result<Job, ChangeError> {
        let (claim, definition, state) = self.claim_defined(name)?;
        if !matches!(
            state,
            State::Defined | State::Off | State::Saved | State::Crashed
        ) {
            return Err(ChangeError::InvalidTransition(format!(
                "VM {name} is {state}: only a stopped or saved VM is exported"
            )));
        }
        let system = ExportSystem {
            name: definition.name.clone(),
            vcpus: definition.vcpus,
            memory_mib: definition.memory_mib,
            disks: definition
                .disks
                .iter()
                .map(|d| ExportDisk {
                    path: d.path.clone(),
                    read_only: d.read_only,
                })
                .collect(),
            nics: definition
                .nics
                .iter()
                .map(|n| NicEntry {
                    mac: n.mac.to_string(),
                    network: n.bridge.clone(),
                })
                .collect(),
            description: definition.description.clone(),
        };
        let title = format!("ExportSystemDefinition of {name} to {}", dir.display());
        self.spawn_job_claiming(vec![claim], title, false, move |manager, id| {
            let mut progress = |percent| manager.jobs().set_percent(id, percent);
            let written = export::export(&system, &dir, options, &mut progress)
                .map_err(|e| ChangeError::Failed(e.to_string()))?;
            let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            manager
                .jobs()
                .set_outcome(id, format!("wrote {}", names.join(", ")));
            Ok(())
        })
    }
}
