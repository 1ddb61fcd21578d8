//! The indications of `root/virt`, under libvirt-cim's names:
//! - `KVM_ComputerSystemCreatedIndication` when a VM is defined,
//!   `KVM_ComputerSystemDeletedIndication` when it is destroyed, and
//!   `KVM_ComputerSystemModifiedIndication` each time its state changes, with the VM's
//!   `KVM_ComputerSystem` as SourceInstance (and the one before as PreviousInstance);
//! - when its definition changes (ModifySystemSettings, AddResourceSettings,
//!   ModifyResourceSettings, RemoveResourceSettings, ApplySnapshot): a
//!   `KVM_ResourceAllocationSettingData{Created,Modified,Deleted}Indication` for each RASD
//!   added, changed or removed, with the RASD as SourceInstance, and a
//!   `KVM_ComputerSystemModifiedIndication` when its VSSD changed.
//!
//! An event carries the VM's definition as it was when it happened, so nothing that
//! happens later (the VM destroyed meanwhile, say) can lose it. Events are queued by the
//! manager and the supervisor's listener and turned into indications on one task, in
//! order; the dispatcher queues each indication for its destinations.

use std::sync::Arc;

use cim_schema::{DateTime, Instance, Namespace, Timestamp, Value};
use hypervisor_shim::lifecycle::State;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{instances, paths, NAMESPACE};
use crate::vm::definition::VmDefinition;
use crate::vm::events::{VmChange, VmEvent};
use crate::vm::manager::{reported_state_marker, VirtManager};
use cimom::dispatch::indication::dispatcher::Dispatcher;
use cimom::dispatch::provider::build_instance;
use cimom::dispatch::Cimom;

/// Builds the indications of each event and raises them, until the queue closes.
pub async fn run(
    mut events: UnboundedReceiver<VmEvent>,
    manager: Arc<VirtManager>,
    cimom: Arc<Cimom>,
    hostname: String,
    dispatcher: Arc<Dispatcher>,
) {
    while let Some(event) = events.recv().await {
        // A state change is queued together with the record of the state it reports.
        let name = &event.definition.name;
        let marker = match event.change {
            VmChange::Modified { .. } => Some((
                reported_state_marker(name),
                serde_json::to_vec(&event.state).expect("a state serializes"),
            )),
            _ => None,
        };
        let marker = marker.as_ref().map(|(k, v)| (k.as_str(), v.as_slice()));
        for indication in build(&cimom, &manager, &hostname, &event) {
            dispatcher.raise(NAMESPACE, &indication, marker);
        }
        if event.change == VmChange::Deleted {
            manager.forget_reported_state(name);
        }
    }
}

/// The indications of `event`.
fn build(cimom: &Cimom, manager: &VirtManager, hostname: &str, event: &VmEvent) -> Vec<Instance> {
    let schema = cimom.schema();
    let Ok(ns) = schema.namespace(NAMESPACE) else {
        return Vec::new();
    };
    let d = &event.definition;
    let indication = |class_name: &str, source: Instance, previous: Option<Instance>| {
        let class = ns.class(class_name)?;
        let source_path = match class_name.starts_with("KVM_ComputerSystem") {
            true => paths::system(&d.name),
            false => source.path(ns.class(source.class_name.as_str())?, Some(NAMESPACE)),
        };
        let mut values = vec![
            (
                "IndicationIdentifier",
                Value::from(uuid::Uuid::new_v4().to_string().as_str()),
            ),
            (
                "IndicationTime",
                Value::DateTime(DateTime::Timestamp(Timestamp::from_system_time(event.time))),
            ),
            (
                "SourceInstanceModelPath",
                Value::from(source_path.to_string().as_str()),
            ),
            ("SourceInstanceHost", Value::from(hostname)),
            ("SourceInstance", Value::Instance(Box::new(source))),
        ];
        if let Some(before) = previous {
            values.push(("PreviousInstance", Value::Instance(Box::new(before))));
        }
        Some(build_instance(class, values))
    };
    let Some(system_class) = ns.class(paths::class::COMPUTER_SYSTEM) else {
        return Vec::new();
    };
    let system = |d: &VmDefinition, state: State| {
        let why = (state == State::Crashed)
            .then(|| manager.crash_reason(d))
            .flatten();
        instances::system(system_class, d, state, why.as_deref())
    };
    let built = match &event.change {
        VmChange::Created => vec![indication(
            "KVM_ComputerSystemCreatedIndication",
            system(d, event.state),
            None,
        )],
        VmChange::Deleted => vec![indication(
            "KVM_ComputerSystemDeletedIndication",
            system(d, event.state),
            None,
        )],
        VmChange::Modified { previous } => vec![indication(
            "KVM_ComputerSystemModifiedIndication",
            system(d, event.state),
            Some(system(d, *previous)),
        )],
        VmChange::Reconfigured { previous } => {
            reconfigured(ns, manager, hostname, previous, event, &system)
                .into_iter()
                .map(|(class, source, before)| indication(class, source, before))
                .collect()
        }
    };
    built.into_iter().flatten().collect()
}

/// (indication class, SourceInstance, PreviousInstance) for each RASD a reconfiguration
/// added, changed or removed, and for the system when its VSSD changed.
fn reconfigured(
    ns: &Namespace,
    manager: &VirtManager,
    hostname: &str,
    previous: &VmDefinition,
    event: &VmEvent,
    system: &dyn Fn(&VmDefinition, State) -> Instance,
) -> Vec<(&'static str, Instance, Option<Instance>)> {
    let pools = manager.disk_pools(false);
    let no_reasons = std::collections::BTreeMap::new();
    let model = instances::Model {
        hostname,
        host: manager.host(),
        vms: &[],
        crash_reasons: &no_reasons,
        jobs: &[],
        disk_pools: &pools,
        bridges: &[],
        console_urls: &Default::default(),
        console_sessions: &Default::default(),
    };
    let (vssd_before, before) = instances::settings_of(ns, &model, previous);
    let (vssd_after, after) = instances::settings_of(ns, &model, &event.definition);
    let id = |i: &Instance| i.get("InstanceID").cloned();
    let mut out = Vec::new();
    if vssd_before != vssd_after {
        out.push((
            "KVM_ComputerSystemModifiedIndication",
            system(&event.definition, event.state),
            Some(system(previous, event.state)),
        ));
    }
    for rasd in &after {
        match before.iter().find(|b| id(b) == id(rasd)) {
            None => out.push((
                "KVM_ResourceAllocationSettingDataCreatedIndication",
                rasd.clone(),
                None,
            )),
            Some(old) if old != rasd => out.push((
                "KVM_ResourceAllocationSettingDataModifiedIndication",
                rasd.clone(),
                Some(old.clone()),
            )),
            Some(_) => {}
        }
    }
    for old in &before {
        if !after.iter().any(|a| id(a) == id(old)) {
            out.push((
                "KVM_ResourceAllocationSettingDataDeletedIndication",
                old.clone(),
                None,
            ));
        }
    }
    out
}
