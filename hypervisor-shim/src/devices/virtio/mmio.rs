//! The virtio-mmio transport, version 2 (virtio 1.2, section 4.2.2): the register window a
//! driver finds a device through, negotiates features in, and sets its queues up with. On
//! DRIVER_OK the queues go to the device's I/O thread; a pause, snapshot or reset takes them
//! back with their ring positions.

use super::{ActiveQueues, Interrupt, QueueSnapshot, VirtioDevice};
use crate::memory::Memory;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
    VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_mmio::*;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

/// "virt", the first register of every virtio-mmio device.
const MAGIC: u32 = u32::from_le_bytes(*b"virt");
/// The modern (non-legacy) register layout.
const VERSION: u32 = 2;
/// Our vendor ID, "CIMV".
const VENDOR: u32 = u32::from_le_bytes(*b"CIMV");

/// The transport's registers, for snapshots (the queues' come with [`QueueSnapshot`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportSnapshot {
    /// Device status.
    pub status: u32,
    /// The features the driver accepted.
    pub driver_features: u64,
    /// DeviceFeaturesSel.
    pub device_features_sel: u32,
    /// DriverFeaturesSel.
    pub driver_features_sel: u32,
    /// QueueSel.
    pub queue_sel: u32,
    /// Pending InterruptStatus bits.
    pub interrupt_status: u32,
    /// Every queue.
    pub queues: Vec<QueueSnapshot>,
}

/// One device's transport.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    regs: TransportSnapshot,
    /// The queues while the device is not active (set up by the driver, or taken back).
    queues: Vec<Queue>,
    events: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    memory: Arc<Memory>,
    active: bool,
}

impl MmioTransport {
    /// A transport for `device`, raising its line through `interrupt` and notified through
    /// `events` (one per queue, which the machine also registers as KVM ioeventfds).
    pub fn new(
        device: Box<dyn VirtioDevice>,
        memory: Arc<Memory>,
        interrupt: Arc<Interrupt>,
        events: Vec<EventFd>,
    ) -> std::io::Result<MmioTransport> {
        let queues = new_queues(device.queue_max_sizes())?;
        Ok(MmioTransport {
            device,
            regs: TransportSnapshot::default(),
            queues,
            events,
            interrupt,
            memory,
            active: false,
        })
    }

    fn offered_features(&self) -> u64 {
        self.device.features() | 1 << VIRTIO_F_VERSION_1
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        if self.active {
            return None;
        }
        self.queues.get_mut(self.regs.queue_sel as usize)
    }

    /// A driver read at `offset` in the window.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            self.device
                .read_config(offset - u64::from(VIRTIO_MMIO_CONFIG), data);
            return;
        }
        if data.len() != 4 {
            data.fill(0);
            return;
        }
        let features = self.offered_features();
        let queue = self.queues.get(self.regs.queue_sel as usize);
        let value = match offset as u32 {
            VIRTIO_MMIO_MAGIC_VALUE => MAGIC,
            VIRTIO_MMIO_VERSION => VERSION,
            VIRTIO_MMIO_DEVICE_ID => self.device.device_type(),
            VIRTIO_MMIO_VENDOR_ID => VENDOR,
            VIRTIO_MMIO_DEVICE_FEATURES => match self.regs.device_features_sel {
                0 => features as u32,
                1 => (features >> 32) as u32,
                _ => 0,
            },
            VIRTIO_MMIO_QUEUE_NUM_MAX => self
                .device
                .queue_max_sizes()
                .get(self.regs.queue_sel as usize)
                .map_or(0, |&max| u32::from(max)),
            VIRTIO_MMIO_QUEUE_READY => u32::from(self.active || queue.is_some_and(|q| q.ready())),
            VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt.status(),
            VIRTIO_MMIO_STATUS => self.regs.status,
            VIRTIO_MMIO_CONFIG_GENERATION => 0,
            _ => 0,
        };
        data.copy_from_slice(&value.to_le_bytes());
    }

    /// A driver write at `offset` in the window.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= u64::from(VIRTIO_MMIO_CONFIG) {
            // Neither device has writable configuration fields.
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let value = u32::from_le_bytes(bytes);
        let setting_up = self.regs.status & VIRTIO_CONFIG_S_DRIVER_OK == 0;
        match offset as u32 {
            VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.regs.device_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.regs.driver_features_sel = value,
            VIRTIO_MMIO_DRIVER_FEATURES if self.negotiating() => {
                let features = &mut self.regs.driver_features;
                match self.regs.driver_features_sel {
                    0 => *features = (*features & !0xffff_ffff) | u64::from(value),
                    1 => *features = (*features & 0xffff_ffff) | u64::from(value) << 32,
                    _ => {}
                }
            }
            VIRTIO_MMIO_QUEUE_SEL => self.regs.queue_sel = value,
            VIRTIO_MMIO_QUEUE_NUM if setting_up => {
                if let Some(queue) = self.selected_queue() {
                    queue.set_size(value as u16);
                }
            }
            VIRTIO_MMIO_QUEUE_READY if setting_up => {
                if let Some(queue) = self.selected_queue() {
                    queue.set_ready(value == 1);
                }
            }
            VIRTIO_MMIO_QUEUE_DESC_LOW | VIRTIO_MMIO_QUEUE_DESC_HIGH if setting_up => {
                let high = offset as u32 == VIRTIO_MMIO_QUEUE_DESC_HIGH;
                if let Some(queue) = self.selected_queue() {
                    let (low, high) = split(value, high);
                    queue.set_desc_table_address(low, high);
                }
            }
            VIRTIO_MMIO_QUEUE_AVAIL_LOW | VIRTIO_MMIO_QUEUE_AVAIL_HIGH if setting_up => {
                let high = offset as u32 == VIRTIO_MMIO_QUEUE_AVAIL_HIGH;
                if let Some(queue) = self.selected_queue() {
                    let (low, high) = split(value, high);
                    queue.set_avail_ring_address(low, high);
                }
            }
            VIRTIO_MMIO_QUEUE_USED_LOW | VIRTIO_MMIO_QUEUE_USED_HIGH if setting_up => {
                let high = offset as u32 == VIRTIO_MMIO_QUEUE_USED_HIGH;
                if let Some(queue) = self.selected_queue() {
                    let (low, high) = split(value, high);
                    queue.set_used_ring_address(low, high);
                }
            }
            // Reached only when KVM's ioeventfd did not take the write.
            VIRTIO_MMIO_QUEUE_NOTIFY => {
                if let Some(event) = self.events.get(value as usize) {
                    let _ = event.write(1);
                }
            }
            VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt.acknowledge(value),
            VIRTIO_MMIO_STATUS => self.set_status(value),
            other => tracing::debug!(
                offset = other,
                value,
                "virtio-mmio: write ignored (read-only, unknown, or after DRIVER_OK)"
            ),
        }
    }

    fn negotiating(&self) -> bool {
        self.regs.status & (VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK)
            == VIRTIO_CONFIG_S_DRIVER
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.regs.status;
        let mut new = value;
        // FEATURES_OK holds only for a subset of what was offered, with VERSION_1 (no legacy).
        if new & VIRTIO_CONFIG_S_FEATURES_OK != 0 && old & VIRTIO_CONFIG_S_FEATURES_OK == 0 {
            let accepted = self.regs.driver_features;
            if accepted & !self.offered_features() != 0 || accepted & 1 << VIRTIO_F_VERSION_1 == 0 {
                tracing::warn!(
                    accepted = format_args!("{accepted:#x}"),
                    "virtio-mmio: the driver accepted features not offered, or not VERSION_1"
                );
                new &= !VIRTIO_CONFIG_S_FEATURES_OK;
            }
        }
        self.regs.status = new;
        if new & VIRTIO_CONFIG_S_DRIVER_OK != 0 && old & VIRTIO_CONFIG_S_DRIVER_OK == 0 {
            self.activate();
        }
    }

    fn activate(&mut self) {
        let needs = VIRTIO_CONFIG_S_ACKNOWLEDGE
            | VIRTIO_CONFIG_S_DRIVER
            | VIRTIO_CONFIG_S_FEATURES_OK
            | VIRTIO_CONFIG_S_DRIVER_OK;
        if self.active
            || self.regs.status & needs != needs
            || self.regs.status & (VIRTIO_CONFIG_S_FAILED | VIRTIO_CONFIG_S_NEEDS_RESET) != 0
        {
            return;
        }
        let event_idx = self.regs.driver_features & 1 << VIRTIO_RING_F_EVENT_IDX != 0;
        let mut unusable = None;
        for (index, queue) in self.queues.iter_mut().enumerate() {
            queue.set_event_idx(event_idx);
            if !queue.is_valid(&self.memory.guest) {
                unusable = Some(index);
            }
        }
        if let Some(index) = unusable {
            tracing::warn!(
                index,
                "virtio-mmio: a queue is not ready or outside guest memory"
            );
            self.regs.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
            return;
        }
        let events = match self.events.iter().map(EventFd::try_clone).collect() {
            Ok(events) => events,
            Err(e) => return self.failed(&e),
        };
        let queues = std::mem::take(&mut self.queues);
        let result = self.device.activate(
            self.regs.driver_features,
            ActiveQueues {
                queues,
                events,
                memory: self.memory.clone(),
                interrupt: self.interrupt.clone(),
            },
        );
        match result {
            Ok(()) => self.active = true,
            Err(e) => self.failed(&e),
        }
    }

    fn failed(&mut self, error: &std::io::Error) {
        tracing::error!("virtio-mmio: the device could not start: {error}");
        self.regs.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
        if self.queues.is_empty() {
            self.queues = new_queues(self.device.queue_max_sizes()).unwrap_or_default();
        }
    }

    /// Stops the device's I/O (its I/O thread ends) and keeps its queues, for a pause.
    pub fn pause(&mut self) {
        if self.active {
            self.active = false;
            match self.device.deactivate() {
                Some(queues) => self.queues = queues,
                None => {
                    tracing::error!("virtio-mmio: the I/O thread died; the device needs a reset");
                    self.regs.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
                    self.queues = new_queues(self.device.queue_max_sizes()).unwrap_or_default();
                }
            }
        }
    }

    /// Starts the device's I/O again if the driver had set it up.
    pub fn resume(&mut self) {
        if self.regs.status & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            self.activate();
        }
    }

    /// Back to the power-on state: no driver, no features, empty queues.
    pub fn reset(&mut self) {
        self.pause();
        self.regs = TransportSnapshot::default();
        self.interrupt.set_status(0);
        match new_queues(self.device.queue_max_sizes()) {
            Ok(queues) => self.queues = queues,
            Err(e) => tracing::error!("virtio-mmio: queues after reset: {e}"),
        }
    }

    /// The registers and queues (while paused).
    pub fn snapshot(&self) -> TransportSnapshot {
        TransportSnapshot {
            interrupt_status: self.interrupt.status(),
            queues: self
                .queues
                .iter()
                .map(|q| QueueSnapshot {
                    size: q.size(),
                    ready: q.ready(),
                    desc_table: q.desc_table(),
                    avail_ring: q.avail_ring(),
                    used_ring: q.used_ring(),
                    next_avail: q.next_avail(),
                    next_used: q.next_used(),
                })
                .collect(),
            ..self.regs.clone()
        }
    }

    /// Takes the registers and queues of a snapshot; the device starts on the next resume.
    pub fn restore(&mut self, saved: &TransportSnapshot) -> Result<(), String> {
        self.pause();
        let max_sizes = self.device.queue_max_sizes();
        if saved.queues.len() != max_sizes.len() {
            return Err(format!(
                "the snapshot's device has {} queues, this one {}",
                saved.queues.len(),
                max_sizes.len()
            ));
        }
        let mut queues = Vec::with_capacity(max_sizes.len());
        for (state, &max) in saved.queues.iter().zip(max_sizes) {
            let mut queue = Queue::new(max).map_err(|e| e.to_string())?;
            queue.try_set_size(state.size).map_err(|e| e.to_string())?;
            queue
                .try_set_desc_table_address(vm_memory::GuestAddress(state.desc_table))
                .map_err(|e| e.to_string())?;
            queue
                .try_set_avail_ring_address(vm_memory::GuestAddress(state.avail_ring))
                .map_err(|e| e.to_string())?;
            queue
                .try_set_used_ring_address(vm_memory::GuestAddress(state.used_ring))
                .map_err(|e| e.to_string())?;
            queue.set_ready(state.ready);
            queue.set_next_avail(state.next_avail);
            queue.set_next_used(state.next_used);
            queues.push(queue);
        }
        self.queues = queues;
        self.regs = TransportSnapshot {
            queues: Vec::new(),
            ..saved.clone()
        };
        self.interrupt.set_status(saved.interrupt_status);
        Ok(())
    }
}

/// The (low, high) halves of a 64-bit address register pair: one write sets one half.
fn split(value: u32, high: bool) -> (Option<u32>, Option<u32>) {
    if high {
        (None, Some(value))
    } else {
        (Some(value), None)
    }
}

fn new_queues(max_sizes: &[u16]) -> std::io::Result<Vec<Queue>> {
    max_sizes
        .iter()
        .map(|&max| Queue::new(max).map_err(|e| std::io::Error::other(e.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::block::{Block, DiskConfig};

    struct Driver {
        transport: MmioTransport,
        _dir: tempfile::TempDir,
    }

    impl Driver {
        fn new() -> Driver {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("d.img");
            std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
            let config = DiskConfig {
                path,
                read_only: false,
                id: None,
            };
            let block = Block::new(&config, "test-blk".into()).unwrap();
            let memory = Arc::new(Memory::anonymous(16 << 20).unwrap());
            let interrupt = Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()));
            let events = vec![EventFd::new(libc::EFD_NONBLOCK).unwrap()];
            let transport = MmioTransport::new(Box::new(block), memory, interrupt, events).unwrap();
            Driver {
                transport,
                _dir: dir,
            }
        }

        fn read(&self, offset: u32) -> u32 {
            let mut data = [0u8; 4];
            self.transport.read(u64::from(offset), &mut data);
            u32::from_le_bytes(data)
        }

        fn write(&mut self, offset: u32, value: u32) {
            self.transport
                .write(u64::from(offset), &value.to_le_bytes());
        }

        fn negotiate(&mut self, high_features: u32) -> u32 {
            self.write(VIRTIO_MMIO_STATUS, 0);
            self.write(VIRTIO_MMIO_STATUS, 3);
            self.write(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
            self.write(VIRTIO_MMIO_DRIVER_FEATURES, high_features);
            self.write(VIRTIO_MMIO_STATUS, 0xb);
            self.read(VIRTIO_MMIO_STATUS)
        }

        fn set_up_queue(&mut self) {
            self.write(VIRTIO_MMIO_QUEUE_SEL, 0);
            self.write(VIRTIO_MMIO_QUEUE_NUM, 8);
            self.write(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x10_0000);
            self.write(VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0x10_1000);
            self.write(VIRTIO_MMIO_QUEUE_USED_LOW, 0x10_2000);
            self.write(VIRTIO_MMIO_QUEUE_READY, 1);
        }
    }

    #[test]
    fn the_identity_registers_describe_a_modern_block_device() {
        let mut driver = Driver::new();
        assert_eq!(driver.read(VIRTIO_MMIO_MAGIC_VALUE), 0x7472_6976);
        assert_eq!(driver.read(VIRTIO_MMIO_VERSION), 2);
        assert_eq!(driver.read(VIRTIO_MMIO_DEVICE_ID), 2);
        assert_eq!(driver.read(VIRTIO_MMIO_QUEUE_NUM_MAX), 256);
        driver.write(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        assert_eq!(driver.read(VIRTIO_MMIO_DEVICE_FEATURES) & 1, 1, "VERSION_1");
        let mut capacity = [0u8; 8];
        driver.transport.read(0x100, &mut capacity);
        assert_eq!(u64::from_le_bytes(capacity), 2048);
    }

    #[test]
    fn features_ok_needs_version_1_and_nothing_unoffered() {
        let mut driver = Driver::new();
        assert_eq!(
            driver.negotiate(0) & VIRTIO_CONFIG_S_FEATURES_OK,
            0,
            "legacy"
        );
        assert_eq!(
            driver.negotiate(1 | 1 << 6) & VIRTIO_CONFIG_S_FEATURES_OK,
            0,
            "unoffered"
        );
        assert_ne!(driver.negotiate(1) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
    }

    #[test]
    fn driver_ok_starts_the_device_and_a_reset_stops_it() {
        let mut driver = Driver::new();
        driver.negotiate(1);
        driver.set_up_queue();
        driver.write(VIRTIO_MMIO_STATUS, 0xf);
        assert!(driver.transport.active);
        assert_eq!(driver.read(VIRTIO_MMIO_QUEUE_READY), 1);
        // The queue cannot move under a running device.
        driver.write(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x20_0000);
        driver.transport.pause();
        let saved = driver.transport.snapshot();
        assert_eq!(saved.queues[0].desc_table, 0x10_0000);
        assert_eq!((saved.queues[0].size, saved.status), (8, 0xf));
        driver.transport.resume();
        assert!(driver.transport.active);
        driver.write(VIRTIO_MMIO_STATUS, 0);
        assert!(!driver.transport.active);
        assert_eq!(
            driver.transport.snapshot().queues[0],
            QueueSnapshot {
                size: 256,
                ..QueueSnapshot::default()
            }
        );
        driver.transport.restore(&saved).unwrap();
        driver.transport.resume();
        assert!(
            driver.transport.active,
            "a restored device starts on resume"
        );
    }

    #[test]
    fn a_queue_outside_guest_memory_needs_a_reset() {
        let mut driver = Driver::new();
        driver.negotiate(1);
        driver.set_up_queue();
        driver.write(VIRTIO_MMIO_QUEUE_DESC_HIGH, 1);
        driver.write(VIRTIO_MMIO_STATUS, 0xf);
        assert!(!driver.transport.active);
        assert_ne!(
            driver.read(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET,
            0
        );
    }
}
