//! The ACPI sleep control register (as in hardware-reduced ACPI): writing S5 with SLP_EN
//! powers the machine off. The next issue's FADT points Linux at it; the test guest writes it
//! directly.

use super::PlatformEvent;

/// The port of the sleep control register.
pub const SLEEP_CONTROL_PORT: u16 = 0x600;
/// SLP_EN.
const SLEEP_ENABLE: u8 = 1 << 5;
/// The sleep type the VMM's \_S5 object names.
pub const S5_SLEEP_TYPE: u8 = 5;
/// The value a guest writes to power off: SLP_TYP = 5, SLP_EN.
pub const POWER_OFF_VALUE: u8 = (S5_SLEEP_TYPE << 2) | SLEEP_ENABLE;
/// The value a guest writes to reset (the FADT's reset register points here too).
pub const RESET_VALUE: u8 = 1;

/// What a write of `value` asks for.
pub fn decode(value: u8) -> Option<PlatformEvent> {
    if value == RESET_VALUE {
        Some(PlatformEvent::Reset)
    } else if value & SLEEP_ENABLE != 0 && (value >> 2) & 7 == S5_SLEEP_TYPE {
        Some(PlatformEvent::PowerOff)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_powers_off_and_one_resets() {
        assert_eq!(decode(0x34), Some(PlatformEvent::PowerOff));
        assert_eq!(decode(RESET_VALUE), Some(PlatformEvent::Reset));
        assert_eq!(decode(5 << 2), None, "no SLP_EN");
        assert_eq!(decode((3 << 2) | SLEEP_ENABLE), None, "S3 is not supported");
    }
}
