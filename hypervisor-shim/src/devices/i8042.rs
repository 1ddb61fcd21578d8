//! The i8042 keyboard controller, as far as a VM needs it: the reset line (command 0xFE) and
//! a keyboard that can press Ctrl-Alt-Del. vm-superio's i8042 only knows the reset command,
//! hence this one.

use super::{IrqLine, PlatformEvent};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use vm_superio::Trigger;

/// The data port.
pub const DATA_PORT: u16 = 0x60;
/// The status (read) and command (write) port.
pub const COMMAND_PORT: u16 = 0x64;
/// The keyboard's interrupt line.
pub const KEYBOARD_GSI: u32 = 1;

const STATUS_OUTPUT_FULL: u8 = 1;
const STATUS_SYSTEM_FLAG: u8 = 1 << 2;
const CMD_READ_COMMAND_BYTE: u8 = 0x20;
const CMD_WRITE_COMMAND_BYTE: u8 = 0x60;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_RESET_CPU: u8 = 0xfe;
const SELF_TEST_PASSED: u8 = 0x55;
const COMMAND_BYTE_KBD_INTERRUPT: u8 = 1;
/// Ctrl, Alt and Delete pressed, in scan code set 2 (what a PC keyboard sends before
/// translation).
const CTRL_ALT_DEL: [u8; 4] = [0x14, 0x11, 0xe0, 0x71];
const BUFFER_LIMIT: usize = 16;

/// What the controller holds between port accesses.
#[derive(Clone, Serialize, Deserialize)]
pub struct I8042State {
    /// Bytes waiting to be read from the data port.
    pub buffer: Vec<u8>,
    /// The controller's command byte.
    pub command_byte: u8,
    /// Whether the next data-port write is a new command byte.
    pub writing_command_byte: bool,
}

/// The controller.
pub struct I8042 {
    buffer: VecDeque<u8>,
    command_byte: u8,
    writing_command_byte: bool,
    irq: IrqLine,
}

impl I8042 {
    /// A controller that raises `irq` when the keyboard has data.
    pub fn new(irq: IrqLine) -> I8042 {
        I8042 {
            buffer: VecDeque::new(),
            command_byte: COMMAND_BYTE_KBD_INTERRUPT,
            writing_command_byte: false,
            irq,
        }
    }

    /// Reads the data or status port.
    pub fn read(&mut self, port: u16) -> u8 {
        if port == DATA_PORT {
            self.buffer.pop_front().unwrap_or(0)
        } else {
            STATUS_SYSTEM_FLAG
                | if self.buffer.is_empty() {
                    0
                } else {
                    STATUS_OUTPUT_FULL
                }
        }
    }

    /// Writes the data or command port; a reset command is returned as a platform event.
    pub fn write(&mut self, port: u16, value: u8) -> Option<PlatformEvent> {
        if port == DATA_PORT {
            if self.writing_command_byte {
                self.command_byte = value;
                self.writing_command_byte = false;
            }
            return None;
        }
        match value {
            CMD_RESET_CPU => return Some(PlatformEvent::Reset),
            CMD_READ_COMMAND_BYTE => self.push(&[self.command_byte]),
            CMD_WRITE_COMMAND_BYTE => self.writing_command_byte = true,
            CMD_SELF_TEST => self.push(&[SELF_TEST_PASSED]),
            _ => {}
        }
        None
    }

    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.buffer.len() < BUFFER_LIMIT {
                self.buffer.push_back(b);
            }
        }
    }

    /// Presses Ctrl-Alt-Del and raises the keyboard interrupt.
    pub fn ctrl_alt_del(&mut self) -> std::io::Result<()> {
        self.push(&CTRL_ALT_DEL);
        self.irq.trigger()
    }

    /// The state to snapshot.
    pub fn state(&self) -> I8042State {
        I8042State {
            buffer: self.buffer.iter().copied().collect(),
            command_byte: self.command_byte,
            writing_command_byte: self.writing_command_byte,
        }
    }

    /// Takes a snapshotted state back.
    pub fn restore(&mut self, state: &I8042State) {
        self.buffer = state.buffer.iter().copied().take(BUFFER_LIMIT).collect();
        self.command_byte = state.command_byte;
        self.writing_command_byte = state.writing_command_byte;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EventFd;

    #[test]
    fn ctrl_alt_del_fills_the_buffer_and_raises_the_line() {
        let irq = EventFd::new(0).unwrap();
        let mut kbd = I8042::new(IrqLine(irq.try_clone().unwrap()));
        assert_eq!(kbd.read(COMMAND_PORT) & STATUS_OUTPUT_FULL, 0);
        kbd.ctrl_alt_del().unwrap();
        assert_eq!(irq.read().unwrap(), 1);
        let mut bytes = Vec::new();
        while kbd.read(COMMAND_PORT) & STATUS_OUTPUT_FULL != 0 {
            bytes.push(kbd.read(DATA_PORT));
        }
        assert_eq!(bytes, CTRL_ALT_DEL);
    }

    #[test]
    fn command_0xfe_resets_and_self_test_passes() {
        let mut kbd = I8042::new(IrqLine(EventFd::new(0).unwrap()));
        assert_eq!(
            kbd.write(COMMAND_PORT, CMD_RESET_CPU),
            Some(PlatformEvent::Reset)
        );
        assert_eq!(kbd.write(COMMAND_PORT, CMD_SELF_TEST), None);
        assert_eq!(kbd.read(DATA_PORT), SELF_TEST_PASSED);
        kbd.write(COMMAND_PORT, CMD_WRITE_COMMAND_BYTE);
        kbd.write(DATA_PORT, 0x47);
        kbd.write(COMMAND_PORT, CMD_READ_COMMAND_BYTE);
        assert_eq!(kbd.read(DATA_PORT), 0x47);
    }
}
