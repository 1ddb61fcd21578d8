//! Where virtio-mmio devices sit: one 4 KiB register window each in the MMIO gap below
//! 4 GiB, and one IOAPIC line each. The test guest probes these windows directly; Linux
//! finds them in the DSDT (`LNRO0005` devices, `arch::acpi`).

/// The first device's register window.
pub const MMIO_BASE: u64 = 0xd000_0000;
/// Each device's window (the transport's registers, then its configuration space).
pub const MMIO_SIZE: u64 = 0x1000;
/// The IOAPIC lines given to devices, in order: the ones no legacy device uses (COM1 is 4,
/// the power button 5, the keyboard 1, the PS/2 mouse Linux may probe 12).
pub const GSIS: [u32; 13] = [10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23];
/// The most virtio devices one VM can have: one per free line.
pub const MAX_DEVICES: usize = GSIS.len();

/// Device `index`'s register window.
pub fn mmio_address(index: usize) -> u64 {
    MMIO_BASE + index as u64 * MMIO_SIZE
}

/// Which device, and the offset inside its window, a guest-physical address falls in.
pub fn device_at(address: u64) -> Option<(usize, u64)> {
    let offset = address.checked_sub(MMIO_BASE)?;
    let index = (offset / MMIO_SIZE) as usize;
    (index < MAX_DEVICES).then_some((index, offset % MMIO_SIZE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_to_devices_and_offsets() {
        assert_eq!(device_at(MMIO_BASE), Some((0, 0)));
        assert_eq!(device_at(mmio_address(2) + 0x70), Some((2, 0x70)));
        assert_eq!(device_at(MMIO_BASE - 1), None);
        assert_eq!(device_at(mmio_address(MAX_DEVICES)), None);
        assert!(mmio_address(MAX_DEVICES) < crate::arch::layout::IOAPIC_ADDRESS);
    }
}
