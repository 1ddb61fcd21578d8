//! The legacy devices of this VMM's PC, on one port-I/O bus: COM1 (16550, vm-superio), the
//! i8042 controller, the CMOS RTC, the ACPI sleep control register and the POST port; and
//! the ACPI power button's interrupt line. The virtio devices, on MMIO, are in [`virtio`].

pub mod cmos;
pub mod console;
pub mod i8042;
pub mod power;
pub mod virtio;

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::SystemTime;
use vm_superio::serial::{NoEvents, SerialState};
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// COM1's ports.
pub const COM1: u16 = 0x3f8;
/// COM1's interrupt line.
pub const COM1_GSI: u32 = 4;
/// The POST diagnostic port; the test guest's first instruction writes it.
pub const POST_PORT: u16 = 0x80;

/// Something a device asks of the whole machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformEvent {
    /// The guest powered off (S5).
    PowerOff,
    /// The guest asked for a reset (i8042 0xFE, or the sleep control register's reboot).
    Reset,
}

/// An [`EventFd`] registered as an irqfd: writing it raises the device's interrupt line.
pub struct IrqLine(pub EventFd);

impl Trigger for IrqLine {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The serializable state of every device, for snapshots.
#[derive(Clone, Serialize, Deserialize)]
pub struct DevicesState {
    /// COM1's registers and receive FIFO.
    #[serde(with = "SerialStateDef")]
    pub serial: SerialState,
    /// The i8042's buffer and command byte.
    pub i8042: i8042::I8042State,
    /// CMOS index and NVRAM.
    pub cmos: cmos::CmosState,
}

/// [`SerialState`]'s fields, for serde's remote derive (vm-superio has no serde).
#[derive(Serialize, Deserialize)]
#[serde(remote = "SerialState")]
#[allow(missing_docs)]
struct SerialStateDef {
    pub baud_divisor_low: u8,
    pub baud_divisor_high: u8,
    pub interrupt_enable: u8,
    pub interrupt_identification: u8,
    pub line_control: u8,
    pub line_status: u8,
    pub modem_control: u8,
    pub modem_status: u8,
    pub scratch: u8,
    pub in_buffer: Vec<u8>,
}

/// All port-I/O devices.
pub struct Devices {
    serial: Serial<IrqLine, NoEvents, console::Console>,
    serial_irq: EventFd,
    i8042: i8042::I8042,
    cmos: cmos::Cmos,
    power_button: IrqLine,
    platform: Box<dyn Fn(PlatformEvent) + Send>,
    first_instruction: OnceLock<SystemTime>,
}

impl Devices {
    /// Devices for a guest with `memory` bytes of RAM, writing COM1 to `console`, raising
    /// their lines through the given eventfds and reporting power events to `platform`.
    pub fn new(
        console: console::Console,
        serial_irq: EventFd,
        keyboard_irq: EventFd,
        power_button_irq: EventFd,
        memory: u64,
        platform: Box<dyn Fn(PlatformEvent) + Send>,
    ) -> std::io::Result<Devices> {
        Ok(Devices {
            serial: Serial::new(IrqLine(serial_irq.try_clone()?), console),
            serial_irq,
            i8042: i8042::I8042::new(IrqLine(keyboard_irq)),
            cmos: cmos::Cmos::new(memory),
            power_button: IrqLine(power_button_irq),
            platform,
            first_instruction: OnceLock::new(),
        })
    }

    /// Handles `in` from `port`.
    pub fn io_in(&mut self, port: u16, data: &mut [u8]) {
        let value = match port {
            COM1..=0x3ff => self.serial.read((port - COM1) as u8),
            i8042::DATA_PORT | i8042::COMMAND_PORT => self.i8042.read(port),
            cmos::INDEX_PORT | cmos::DATA_PORT => self.cmos.read(port),
            _ => 0xff,
        };
        data.fill(0xff);
        if let Some(first) = data.first_mut() {
            *first = value;
        }
    }

    /// Handles `out` to `port`.
    pub fn io_out(&mut self, port: u16, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        let event = match port {
            COM1..=0x3ff => {
                if let Err(e) = self.serial.write((port - COM1) as u8, value) {
                    tracing::warn!("COM1: {e:?}");
                }
                None
            }
            i8042::DATA_PORT | i8042::COMMAND_PORT => self.i8042.write(port, value),
            cmos::INDEX_PORT | cmos::DATA_PORT => {
                self.cmos.write(port, value);
                None
            }
            power::SLEEP_CONTROL_PORT => power::decode(value),
            POST_PORT => {
                let _ = self.first_instruction.set(SystemTime::now());
                None
            }
            _ => None,
        };
        if let Some(event) = event {
            self.platform_event(event);
        }
    }

    /// Reports a power-off or reset the guest asked for.
    pub fn platform_event(&self, event: PlatformEvent) {
        (self.platform)(event);
    }

    /// Feeds bytes to the guest through COM1's receive FIFO; returns how many fit.
    pub fn send_to_serial(&mut self, bytes: &[u8]) -> usize {
        self.serial.enqueue_raw_bytes(bytes).unwrap_or(0)
    }

    /// Presses Ctrl-Alt-Del on the i8042 keyboard.
    pub fn ctrl_alt_del(&mut self) -> std::io::Result<()> {
        self.i8042.ctrl_alt_del()
    }

    /// Presses the ACPI power button: the Generic Event Device's interrupt, whose `_EVT`
    /// method notifies the guest's power button driver (`arch::acpi`).
    pub fn press_power_button(&self) -> std::io::Result<()> {
        self.power_button.trigger()
    }

    /// When the guest first wrote the POST port.
    pub fn first_instruction(&self) -> Option<SystemTime> {
        self.first_instruction.get().copied()
    }

    /// The console sink behind COM1.
    pub fn console(&mut self) -> &mut console::Console {
        self.serial.writer_mut()
    }

    /// Every device's state.
    pub fn state(&self) -> DevicesState {
        DevicesState {
            serial: self.serial.state(),
            i8042: self.i8042.state(),
            cmos: self.cmos.state(),
        }
    }

    /// Puts every device in `state` (from a snapshot, or the power-on state for a reset).
    pub fn restore(&mut self, state: &DevicesState) -> std::io::Result<()> {
        let irq = IrqLine(self.serial_irq.try_clone()?);
        let console = std::mem::replace(self.serial.writer_mut(), console::Console::discard());
        self.serial = Serial::from_state(&state.serial, irq, NoEvents, console)
            .map_err(|e| std::io::Error::other(format!("COM1 state: {e:?}")))?;
        self.i8042.restore(&state.i8042);
        self.cmos.restore(&state.cmos);
        Ok(())
    }
}
