//! virtio-net (virtio 1.2, section 5.1) on a tap device: one receive and one transmit queue,
//! a MAC address, link status, no offloads. The header each frame carries in guest memory
//! (`struct virtio_net_hdr_v1`, 12 bytes) is added and removed here, so the tap carries
//! plain Ethernet frames.

pub mod tap;

use super::io_thread::{IoThread, QueueHandler};
use super::{ActiveQueues, Interrupt, VirtioDevice};
use crate::memory::Memory;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use tap::Tap;
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::{VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{Queue, QueueT, Reader, Writer};

/// The header before every frame in guest memory.
const HEADER_BYTES: usize = 12;
/// Offset of `num_buffers` in the header: always 1, as buffers are not merged.
const NUM_BUFFERS: usize = 10;
/// The largest frame a tap gives (64 KiB and an Ethernet header).
const MAX_FRAME: usize = 65_550;
const QUEUE_SIZE: u16 = 256;
const RX: usize = 0;
const TX: usize = 1;

/// A network port of a VM's definition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    /// The Linux bridge the port's tap joins; none leaves the tap unattached.
    #[serde(default)]
    pub bridge: Option<String>,
    /// The tap's name; by default the kernel numbers one (`cv0`, `cv1`, ...).
    #[serde(default)]
    pub tap: Option<String>,
    /// The MAC address, `xx:xx:xx:xx:xx:xx`; by default one in the locally administered
    /// range, derived from the VM's name and the port's index (so it stays the same).
    #[serde(default)]
    pub mac: Option<MacAddress>,
}

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl std::str::FromStr for MacAddress {
    type Err = String;
    fn from_str(text: &str) -> Result<MacAddress, String> {
        let bad = || format!("{text:?} is not a MAC address (six hex pairs joined by ':')");
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        if bytes[0] & 1 != 0 {
            return Err(format!("{text} is a multicast address, not a port's"));
        }
        Ok(MacAddress(bytes))
    }
}

impl std::fmt::Display for MacAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Written as its text, `xx:xx:xx:xx:xx:xx`.
impl Serialize for MacAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Read from its text, with the parser's message for what is not one.
impl<'de> Deserialize<'de> for MacAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl MacAddress {
    /// A locally administered unicast address with the other bits from `random` (the
    /// first octet's two low bits are set to "local, unicast").
    pub fn locally_administered(random: [u8; 6]) -> MacAddress {
        let mut bytes = random;
        bytes[0] = (bytes[0] & 0xfc) | 0x02;
        MacAddress(bytes)
    }

    /// A locally administered unicast address (02:43:...) from `vm` and `index` (FNV-1a).
    pub fn generated(vm: &str, index: usize) -> MacAddress {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in vm.bytes().chain((index as u32).to_le_bytes()) {
            hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
        let h = hash.to_be_bytes();
        MacAddress([0x02, 0x43, h[0], h[1], h[2], h[3]])
    }
}

impl NetConfig {
    /// The port's MAC address: the configured one, or the generated one.
    pub fn mac_address(&self, vm: &str, index: usize) -> Result<MacAddress, String> {
        Ok(self.mac.unwrap_or_else(|| MacAddress::generated(vm, index)))
    }

    /// Checks the names and the address.
    pub fn validate(&self, vm: &str, index: usize) -> Result<(), String> {
        self.mac_address(vm, index)
            .map_err(|e| format!("network port {index}: {e}"))?;
        for name in self.tap.iter().chain(&self.bridge) {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return Err(format!(
                    "network port {index}: {name:?} is not an interface name (1 to 15 bytes, no '/' or space)"
                ));
            }
        }
        Ok(())
    }
}

/// A virtio-net device on its tap.
pub struct Net {
    tap: Arc<Tap>,
    mac: MacAddress,
    config_space: Vec<u8>,
    name: String,
    io_thread: Option<IoThread<NetWorker>>,
}

impl Net {
    /// Creates the tap of port `index` of VM `vm`, sets it up and attaches it to its bridge.
    pub fn new(config: &NetConfig, vm: &str, index: usize) -> std::io::Result<Net> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let mac = config.mac_address(vm, index).map_err(invalid)?;
        let tap = Tap::open(config.tap.as_deref().unwrap_or("cv%d"))?;
        tap.set_up()?;
        if let Some(bridge) = &config.bridge {
            tap.attach_to_bridge(bridge)?;
        }
        let mut config_space = mac.0.to_vec();
        config_space.extend((VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        config_space.extend(1u16.to_le_bytes()); // max_virtqueue_pairs
        Ok(Net {
            tap: Arc::new(tap),
            mac,
            config_space,
            name: format!("virtio-net{index}"),
            io_thread: None,
        })
    }

    /// The tap's name.
    pub fn tap_name(&self) -> &str {
        self.tap.name()
    }

    /// The port's MAC address.
    pub fn mac(&self) -> MacAddress {
        self.mac
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_NET_F_MAC | 1 << VIRTIO_NET_F_STATUS | 1 << VIRTIO_RING_F_EVENT_IDX
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_space(&self.config_space, offset, data);
    }

    fn activate(&mut self, _driver_features: u64, active: ActiveQueues) -> std::io::Result<()> {
        let mut frame = vec![0u8; HEADER_BYTES + MAX_FRAME];
        frame[NUM_BUFFERS..HEADER_BYTES].copy_from_slice(&1u16.to_le_bytes());
        let worker = NetWorker {
            tap: self.tap.clone(),
            queues: active.queues,
            memory: active.memory,
            interrupt: active.interrupt,
            frame,
            pending: None,
            outgoing: vec![0u8; MAX_FRAME],
        };
        let tap_fd = self.tap.as_raw_fd();
        self.io_thread = Some(IoThread::spawn(
            self.name.clone(),
            active.events,
            &[tap_fd],
            worker,
        )?);
        Ok(())
    }

    fn deactivate(&mut self) -> Option<Vec<Queue>> {
        Some(self.io_thread.take()?.stop()?.queues)
    }
}

/// The I/O thread's side: both queues, the tap, and a frame read from the tap that waits
/// for a receive buffer.
struct NetWorker {
    tap: Arc<Tap>,
    queues: Vec<Queue>,
    memory: Arc<Memory>,
    interrupt: Arc<Interrupt>,
    /// The receive header, then room for one frame.
    frame: Vec<u8>,
    /// The length of the frame in `frame` not yet given to the guest.
    pending: Option<usize>,
    outgoing: Vec<u8>,
}

impl QueueHandler for NetWorker {
    fn process_queue(&mut self, index: usize) {
        match index {
            RX => self.receive(),
            TX => self.transmit(),
            _ => {}
        }
    }

    fn process_source(&mut self, _index: usize) {
        self.receive();
    }
}

impl NetWorker {
    /// Moves frames from the tap into receive buffers until one of them runs out.
    fn receive(&mut self) {
        let mem = &self.memory.guest;
        let Some(queue) = self.queues.get_mut(RX) else {
            return;
        };
        let mut used = 0;
        loop {
            let len = match self.pending {
                Some(len) => len,
                None => match self.tap.read_frame(&mut self.frame[HEADER_BYTES..]) {
                    Ok(len) => len,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::warn!("virtio-net: reading the tap: {e}");
                        break;
                    }
                },
            };
            self.pending = Some(len);
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                // Wait for the driver to add buffers (it notifies: notifications stay on).
                match queue.enable_notification(mem) {
                    Ok(true) => continue,
                    _ => break,
                }
            };
            let head = chain.head_index();
            let frame = &self.frame[..HEADER_BYTES + len];
            let written = match Writer::new(mem, chain) {
                Ok(mut writer) if writer.available_bytes() >= frame.len() => {
                    writer.write_all(frame).map(|()| frame.len()).unwrap_or(0)
                }
                // A buffer too small for the frame: the frame is dropped.
                _ => 0,
            };
            self.pending = None;
            if let Err(e) = queue.add_used(mem, head, written as u32) {
                tracing::warn!("virtio-net: returning a receive buffer: {e}");
            }
            used += 1;
        }
        signal(queue, mem, &self.interrupt, used);
    }

    /// Sends every frame the driver queued.
    fn transmit(&mut self) {
        let mem = &self.memory.guest;
        let Some(queue) = self.queues.get_mut(TX) else {
            return;
        };
        let mut used = 0;
        loop {
            if queue.disable_notification(mem).is_err() {
                break;
            }
            while let Some(chain) = queue.pop_descriptor_chain(mem) {
                let head = chain.head_index();
                if let Ok(mut reader) = Reader::new(mem, chain) {
                    let len = reader.available_bytes().saturating_sub(HEADER_BYTES);
                    let mut header = [0u8; HEADER_BYTES];
                    let read = reader.read_exact(&mut header).and_then(|()| {
                        let len = len.min(self.outgoing.len());
                        reader.read_exact(&mut self.outgoing[..len]).map(|()| len)
                    });
                    match read.map(|len| self.tap.write_frame(&self.outgoing[..len])) {
                        Ok(Ok(_)) => {}
                        // The tap's queue is full or the frame is malformed: it is dropped,
                        // as a wire would.
                        Ok(Err(e)) => tracing::debug!("virtio-net: frame dropped: {e}"),
                        Err(e) => tracing::warn!("virtio-net: reading a frame: {e}"),
                    }
                }
                if let Err(e) = queue.add_used(mem, head, 0) {
                    tracing::warn!("virtio-net: returning a transmit buffer: {e}");
                }
                used += 1;
            }
            match queue.enable_notification(mem) {
                Ok(true) => continue,
                _ => break,
            }
        }
        signal(queue, mem, &self.interrupt, used);
    }
}

fn signal(
    queue: &mut Queue,
    mem: &crate::memory::GuestMemoryMmap,
    interrupt: &Interrupt,
    used: usize,
) {
    if used > 0 && queue.needs_notification(mem).unwrap_or(true) {
        if let Err(e) = interrupt.signal_used_queue() {
            tracing::warn!("virtio-net: raising the interrupt: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses_parse_print_and_generate_locally_administered() {
        let mac: MacAddress = "52:54:00:ab:cd:ef".parse().unwrap();
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:ef");
        for bad in [
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:ef:01",
            "5:54:00:ab:cd:ef",
            "zz:54:00:ab:cd:ef",
        ] {
            assert!(bad.parse::<MacAddress>().is_err(), "{bad}");
        }
        assert!("01:00:5e:00:00:01"
            .parse::<MacAddress>()
            .unwrap_err()
            .contains("multicast"));
        let a = MacAddress::generated("vm1", 0);
        assert_eq!(a, MacAddress::generated("vm1", 0), "stable");
        assert_ne!(a, MacAddress::generated("vm1", 1));
        assert_ne!(a, MacAddress::generated("vm2", 0));
        assert_eq!(a.0[0], 0x02, "locally administered, unicast");
    }

    #[test]
    fn port_settings_are_checked() {
        let port = |bridge: &str| NetConfig {
            bridge: Some(bridge.into()),
            tap: None,
            mac: None,
        };
        assert!(port("br0").validate("vm", 0).is_ok());
        assert!(port("a-bridge-name-too-long").validate("vm", 0).is_err());
        // An address is checked as the configuration is read.
        let read = |json: &str| serde_json::from_str::<NetConfig>(json);
        let err = read(r#"{"bridge":"br0","mac":"nope"}"#).unwrap_err();
        assert!(err.to_string().contains("is not a MAC address"), "{err}");
        assert!(read(r#"{"mac":"01:00:5e:00:00:01"}"#).is_err(), "multicast");
        let port = read(r#"{"mac":"52:54:00:AB:CD:EF"}"#).unwrap();
        assert_eq!(
            port.mac,
            Some(MacAddress([0x52, 0x54, 0, 0xab, 0xcd, 0xef]))
        );
        assert_eq!(
            serde_json::to_string(&port.mac).unwrap(),
            r#""52:54:00:ab:cd:ef""#
        );
    }
}
