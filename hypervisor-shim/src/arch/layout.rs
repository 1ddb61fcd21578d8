//! Where things live in guest-physical memory.

/// The boot GDT (five entries: null, 64-bit code, data, TSS, 32-bit code).
pub const BOOT_GDT: u64 = 0x500;
/// An empty IDT for the entry; the guest installs its own.
pub const BOOT_IDT: u64 = 0x530;
/// Linux's PVH start info (`hvm_start_info`).
pub const PVH_START_INFO: u64 = 0x6000;
/// The PVH memory map, after the start info.
pub const PVH_MEMMAP: u64 = 0x6040;
/// The PVH module list (the initramfs).
pub const PVH_MODLIST: u64 = 0x6200;
/// The stack pointer of a 64-bit Linux entry (the kernel switches to its own at once).
pub const LINUX_BOOT_STACK: u64 = 0x8ff0;
/// Linux's zero page (`struct boot_params`) for a 64-bit entry.
pub const ZERO_PAGE: u64 = 0x7000;
/// The kernel command line.
pub const CMDLINE: u64 = 0x2_0000;
/// Where the extended BIOS data area would start: base memory ends here.
pub const EBDA_START: u64 = 0x9_fc00;
/// The MP table: the last KiB of base memory, where guests look for it first.
pub const MPTABLE: u64 = EBDA_START;
/// The ACPI tables, RSDP first, in the BIOS area (reserved in the memory map).
pub const ACPI_TABLES: u64 = 0xe_0000;
/// The first address above the BIOS area (1 MiB): kernels load at or above it.
pub const HIGH_MEMORY: u64 = 0x10_0000;
/// The IOAPIC's registers.
pub const IOAPIC_ADDRESS: u64 = 0xfec0_0000;
/// The local APICs' registers.
pub const LAPIC_ADDRESS: u64 = 0xfee0_0000;
/// The page-map level 4 table.
pub const PML4: u64 = 0x9000;
/// The page-directory-pointer table.
pub const PDPT: u64 = 0xa000;
/// Four page directories of 2 MiB pages: the identity map covers the first 4 GiB, including
/// the IOAPIC and local APIC windows.
pub const PAGE_DIRECTORIES: u64 = 0xb000;
/// How much the boot page tables map.
pub const IDENTITY_MAPPED: u64 = 4 << 30;
/// Guest RAM stops below this address and resumes at 4 GiB: the window for MMIO devices,
/// the IOAPIC (0xfec00000) and the local APIC (0xfee00000).
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// The first address above the MMIO window.
pub const MMIO_GAP_END: u64 = 1 << 32;

/// The guest-physical RAM ranges for `size` bytes of memory: one below the MMIO window and,
/// for large guests, the rest above 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(u64, u64)> {
    if size <= MMIO_GAP_START {
        vec![(0, size)]
    } else {
        vec![(0, MMIO_GAP_START), (MMIO_GAP_END, size - MMIO_GAP_START)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guests_have_one_range_and_large_ones_skip_the_mmio_window() {
        assert_eq!(ram_ranges(64 << 20), vec![(0, 64 << 20)]);
        assert_eq!(
            ram_ranges(4 << 30),
            vec![(0, 0xc000_0000), (1 << 32, (4 << 30) - 0xc000_0000)]
        );
    }
}
