//! virtio devices on the virtio-mmio transport (virtio 1.2, section 4.2), their rings handled
//! by the rust-vmm virtio-queue crate and their requests carried out on an I/O thread per
//! device, never on a vCPU thread.
//!
//! - [`mmio`]: the transport's registers, feature negotiation and queue setup.
//! - [`bus`]: a VM's devices by address.
//! - [`io_thread`]: the event loop that waits on the queues' notifications.
//! - [`block`]: virtio-blk on a raw image file.
//! - [`net`]: virtio-net on a tap device attached to a bridge.
//! - [`layout`]: where the devices sit in guest-physical memory and which GSIs they raise.

pub mod block;
pub mod bus;
pub mod io_thread;
pub mod layout;
pub mod mmio;
pub mod net;

use crate::memory::Memory;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use virtio_bindings::virtio_mmio::VIRTIO_MMIO_INT_VRING;
use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

/// A device's interrupt: the transport's InterruptStatus bits and the irqfd that raises its
/// line. Shared by the transport (which the guest reads and acknowledges through) and the
/// device's I/O thread (which sets bits as it completes requests).
pub struct Interrupt {
    status: AtomicU32,
    line: EventFd,
}

impl Interrupt {
    /// An interrupt raising its line through `line` (an irqfd).
    pub fn new(line: EventFd) -> Interrupt {
        Interrupt {
            status: AtomicU32::new(0),
            line,
        }
    }

    /// Tells the driver that buffers were used.
    pub fn signal_used_queue(&self) -> std::io::Result<()> {
        self.status
            .fetch_or(VIRTIO_MMIO_INT_VRING, Ordering::SeqCst);
        self.line.write(1)
    }

    /// The pending bits (InterruptStatus).
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// Clears the bits the driver acknowledged (InterruptACK).
    pub fn acknowledge(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Sets the pending bits (a snapshot's or a reset's).
    pub fn set_status(&self, bits: u32) {
        self.status.store(bits, Ordering::SeqCst);
    }
}

/// Copies from a device's configuration space `space` at `offset` into `data`; bytes past
/// its end read as zero.
pub fn read_config_space(space: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(bytes) = space.get(start..) {
        let n = bytes.len().min(data.len());
        data[..n].copy_from_slice(&bytes[..n]);
    }
}

/// What a device's I/O thread works with once the driver has set the device up.
pub struct ActiveQueues {
    /// The queues, in the device's order, with the driver's ring addresses.
    pub queues: Vec<Queue>,
    /// One notification eventfd per queue (written by KVM's ioeventfd or by the transport).
    pub events: Vec<EventFd>,
    /// Guest memory.
    pub memory: Arc<Memory>,
    /// The device's interrupt.
    pub interrupt: Arc<Interrupt>,
}

/// A virtio device behind the transport: it says what it is and offers, answers its
/// configuration space, and processes its queues once activated.
pub trait VirtioDevice: Send {
    /// The virtio device ID (`VIRTIO_ID_*`).
    fn device_type(&self) -> u32;
    /// The feature bits the device offers (the transport adds `VIRTIO_F_VERSION_1`).
    fn features(&self) -> u64;
    /// The largest size of each queue.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads the device configuration space at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Starts processing the queues with the features the driver accepted.
    fn activate(&mut self, driver_features: u64, queues: ActiveQueues) -> std::io::Result<()>;
    /// Stops processing, after the request in hand, and gives the queues back with their
    /// positions (for a pause, a snapshot or a reset). `None` when not active.
    fn deactivate(&mut self) -> Option<Vec<Queue>>;
}

/// One queue's registers and ring positions, for snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    /// QueueNum.
    pub size: u16,
    /// QueueReady.
    pub ready: bool,
    /// The descriptor table's guest address.
    pub desc_table: u64,
    /// The driver (available) ring's guest address.
    pub avail_ring: u64,
    /// The device (used) ring's guest address.
    pub used_ring: u64,
    /// The next available entry the device will take.
    pub next_avail: u16,
    /// The next used entry the device will fill.
    pub next_used: u16,
}
