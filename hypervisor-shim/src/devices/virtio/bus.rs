//! The virtio-mmio devices of one VM, by address: what vCPU threads' MMIO exits reach, and
//! what pauses, snapshots and resets go through.

use super::layout;
use super::mmio::{MmioTransport, TransportSnapshot};
use crate::lock;
use std::sync::Mutex;

/// Every virtio-mmio device of a VM, device `i` at [`layout::mmio_address`]`(i)`.
#[derive(Default)]
pub struct VirtioBus {
    transports: Vec<Mutex<MmioTransport>>,
}

impl VirtioBus {
    /// The bus of `transports`, in window order.
    pub fn new(transports: Vec<MmioTransport>) -> VirtioBus {
        VirtioBus {
            transports: transports.into_iter().map(Mutex::new).collect(),
        }
    }

    /// How many devices there are.
    pub fn len(&self) -> usize {
        self.transports.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.transports.is_empty()
    }

    fn at(&self, address: u64) -> Option<(&Mutex<MmioTransport>, u64)> {
        let (index, offset) = layout::device_at(address)?;
        Some((self.transports.get(index)?, offset))
    }

    /// A read of `address`; false if no device is there.
    pub fn read(&self, address: u64, data: &mut [u8]) -> bool {
        match self.at(address) {
            Some((transport, offset)) => {
                lock(transport).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// A write to `address`; false if no device is there.
    pub fn write(&self, address: u64, data: &[u8]) -> bool {
        match self.at(address) {
            Some((transport, offset)) => {
                lock(transport).write(offset, data);
                true
            }
            None => false,
        }
    }

    /// Stops every device's I/O (after the vCPUs are paused).
    pub fn pause(&self) {
        self.transports.iter().for_each(|t| lock(t).pause());
    }

    /// Starts the I/O of every device the driver had set up.
    pub fn resume(&self) {
        self.transports.iter().for_each(|t| lock(t).resume());
    }

    /// Puts every device back in its power-on state.
    pub fn reset(&self) {
        self.transports.iter().for_each(|t| lock(t).reset());
    }

    /// Every device's registers and queues (while paused).
    pub fn snapshot(&self) -> Vec<TransportSnapshot> {
        self.transports.iter().map(|t| lock(t).snapshot()).collect()
    }

    /// Loads a snapshot's devices; the I/O starts on the next resume.
    pub fn restore(&self, saved: &[TransportSnapshot]) -> Result<(), String> {
        if saved.len() != self.transports.len() {
            return Err(format!(
                "the snapshot has {} virtio devices, the VM {}",
                saved.len(),
                self.transports.len()
            ));
        }
        for (transport, state) in self.transports.iter().zip(saved) {
            lock(transport).restore(state)?;
        }
        Ok(())
    }
}
