//! What happens to VMs, as the manager and the VM processes' listener report it: defined,
//! destroyed, changed state or changed definition. Each event carries the definition as it
//! was when it happened, so nothing that happens later (the VM destroyed meanwhile, say)
//! can lose it. Whoever reads the queue turns events into notifications, in order.

use std::time::SystemTime;

use hypervisor_shim::lifecycle::State;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::definition::VmDefinition;

/// What happened to a VM.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Its definition changed from `previous`.
    Reconfigured {
        /// The definition before.
        previous: Box<VmDefinition>,
    },
}

/// One event to report.
#[derive(Clone, Debug)]
pub struct VmEvent {
    /// What happened.
    pub change: VmChange,
    /// The VM's definition when it happened.
    pub definition: VmDefinition,
    /// Its state then.
    pub state: State,
    /// When it happened.
    pub time: SystemTime,
}

impl VmEvent {
    /// An event that happens now.
    pub fn now(change: VmChange, definition: VmDefinition, state: State) -> Self {
        VmEvent {
            change,
            definition,
            state,
            time: SystemTime::now(),
        }
    }
}

/// Where the manager queues events.
pub type EventSender = UnboundedSender<VmEvent>;

/// A queue of events: the sender for the manager, the receiver for whoever reports them.
pub fn channel() -> (EventSender, UnboundedReceiver<VmEvent>) {
    unbounded_channel()
}
