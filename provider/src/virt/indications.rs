//! The indications of `root/virt`, under libvirt-cim's names: a
//! `KVM_ComputerSystemCreatedIndication` when a VM is defined, a
//! `KVM_ComputerSystemDeletedIndication` when it is destroyed, and a
//! `KVM_ComputerSystemModifiedIndication` each time its state changes, with the VM's
//! `KVM_ComputerSystem` as SourceInstance (and the one before as PreviousInstance). Events
//! are queued by the manager and the supervisor's listener, and built and delivered on one
//! task, in order.

use std::collections::HashMap;
use std::sync::Arc;

use cim_schema::{DateTime, Instance, Timestamp, Value};
use hypervisor_shim::lifecycle::State;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::definition::VmDefinition;
use super::manager::VirtManager;
use super::{instances, paths, NAMESPACE};
use crate::cimom::provider::build_instance;
use crate::cimom::{indication, Cimom};
use crate::http::client::Client;

/// What happened to a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmChange {
    /// It was defined.
    Created,
    /// It was destroyed.
    Deleted,
    /// Its state changed from `previous`.
    Modified {
        /// The state before.
        previous: State,
    },
}

/// One event to report.
#[derive(Clone, Debug)]
pub struct VmEvent {
    /// What happened.
    pub change: VmChange,
    /// The VM, by its run id ([`VmDefinition::run_id`]).
    pub vm: String,
    /// Its definition, for events where the manager may no longer have it.
    pub definition: Option<VmDefinition>,
    /// Its state now.
    pub state: State,
}

/// Where the manager queues events.
pub type EventSender = UnboundedSender<VmEvent>;

/// A queue of events: the sender for the manager, the receiver for [`run`].
pub fn channel() -> (EventSender, UnboundedReceiver<VmEvent>) {
    unbounded_channel()
}

/// Builds and delivers the indication of each event, until the queue closes.
pub async fn run(
    mut events: UnboundedReceiver<VmEvent>,
    manager: Arc<VirtManager>,
    cimom: Arc<Cimom>,
    hostname: String,
    client: Client,
) {
    // The definitions of the VMs events have been seen for: a state change still queued
    // when its VM is destroyed is delivered with the definition it had, not dropped.
    let mut known: HashMap<String, VmDefinition> = HashMap::new();
    while let Some(event) = events.recv().await {
        let definition = match event.definition.clone() {
            Some(d) => d,
            None => match manager
                .definition_by_run_id(&event.vm)
                .or_else(|| known.get(&event.vm).cloned())
            {
                Some(d) => d,
                None => {
                    tracing::warn!(
                        vm = event.vm,
                        "an indication of a VM that is gone could not be built"
                    );
                    continue;
                }
            },
        };
        if event.change == VmChange::Deleted {
            known.remove(&event.vm);
        } else {
            known.insert(event.vm.clone(), definition.clone());
        }
        if let Some(indication) = build(&cimom, &hostname, &event, &definition) {
            indication::deliver(&client, &cimom, NAMESPACE, &indication).await;
        }
    }
}

/// The indication instance of `event`.
fn build(
    cimom: &Cimom,
    hostname: &str,
    event: &VmEvent,
    definition: &VmDefinition,
) -> Option<Instance> {
    let schema = cimom.schema();
    let ns = schema.namespace(NAMESPACE).ok()?;
    let system_class = ns.class(paths::class::COMPUTER_SYSTEM)?;
    let class_name = match event.change {
        VmChange::Created => "KVM_ComputerSystemCreatedIndication",
        VmChange::Deleted => "KVM_ComputerSystemDeletedIndication",
        VmChange::Modified { .. } => "KVM_ComputerSystemModifiedIndication",
    };
    let class = ns.class(class_name)?;
    let source = instances::system(system_class, definition, event.state);
    let mut values = vec![
        (
            "IndicationIdentifier",
            Value::from(crate::ids::random_uuid().as_str()),
        ),
        (
            "IndicationTime",
            Value::DateTime(DateTime::Timestamp(Timestamp::now())),
        ),
        (
            "SourceInstanceModelPath",
            Value::from(paths::system(&definition.name).to_string().as_str()),
        ),
        ("SourceInstanceHost", Value::from(hostname)),
        ("SourceInstance", Value::Instance(Box::new(source))),
    ];
    if let VmChange::Modified { previous } = event.change {
        let before = instances::system(system_class, definition, previous);
        values.push(("PreviousInstance", Value::Instance(Box::new(before))));
    }
    Some(build_instance(class, values))
}
