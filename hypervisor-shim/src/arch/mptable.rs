//! The Intel MultiProcessor Specification 1.4 table, which tells a guest kernel without ACPI
//! where its processors, its IOAPIC and its interrupt lines are.

use super::layout::{IOAPIC_ADDRESS, LAPIC_ADDRESS, MPTABLE};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const SPEC_REVISION: u8 = 4;
/// CPU signature (family 6) and features (FPU, APIC) for processor entries.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = (1 << 9) | 1;
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
/// The ISA IRQs routed to IOAPIC pins of the same number.
const ISA_IRQS: u8 = 16;
/// The most processors an MP table describes (APIC IDs are 8 bits and the IOAPIC takes one).
pub const MAX_CPUS: u32 = 254;

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |sum, b| sum.wrapping_add(*b))
        .wrapping_neg()
}

/// The whole table (floating pointer, then the configuration table) for `cpus` processors,
/// as it sits at [`MPTABLE`].
pub fn build(cpus: u32) -> Result<Vec<u8>, String> {
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(format!(
            "an MP table describes 1 to {MAX_CPUS} processors, not {cpus}"
        ));
    }
    let ioapic_id = cpus as u8;
    let mut entries = Vec::new();
    let mut count = 0u16;
    for cpu in 0..cpus {
        let flags = 1 | if cpu == 0 { 2 } else { 0 }; // enabled, bootstrap processor
        entries.extend_from_slice(&[ENTRY_PROCESSOR, cpu as u8, LAPIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_BUS, 0]);
    entries.extend_from_slice(b"ISA   ");
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&(IOAPIC_ADDRESS as u32).to_le_bytes());
    count += 2;
    for irq in 0..ISA_IRQS {
        let kind = if irq == 0 {
            INT_TYPE_EXTINT
        } else {
            INT_TYPE_INT
        };
        entries.extend_from_slice(&[ENTRY_IO_INTERRUPT, kind, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // LINT0 takes the legacy PIC (ExtINT) and LINT1 NMIs, on every local APIC.
    for (kind, lint) in [(INT_TYPE_EXTINT, 0u8), (INT_TYPE_NMI, 1)] {
        entries.extend_from_slice(&[ENTRY_LOCAL_INTERRUPT, kind, 0, 0, 0, 0, 0xff, lint]);
        count += 1;
    }

    let table_address = MPTABLE + 16;
    let mut config = Vec::with_capacity(44 + entries.len());
    config.extend_from_slice(b"PCMP");
    config.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    config.extend_from_slice(&[SPEC_REVISION, 0]); // checksum filled below
    config.extend_from_slice(b"CIMVIRT ");
    config.extend_from_slice(b"KVM VMM     ");
    config.extend_from_slice(&[0; 6]); // no OEM table
    config.extend_from_slice(&count.to_le_bytes());
    config.extend_from_slice(&(LAPIC_ADDRESS as u32).to_le_bytes());
    config.extend_from_slice(&[0; 4]); // no extended table
    config.extend_from_slice(&entries);
    config[7] = checksum(&config);

    let mut table = Vec::with_capacity(16 + config.len());
    table.extend_from_slice(b"_MP_");
    table.extend_from_slice(&(table_address as u32).to_le_bytes());
    table.extend_from_slice(&[1, SPEC_REVISION, 0, 0, 0, 0, 0, 0]); // length 1 (16 bytes)
    table[10] = checksum(&table[..16]);
    table.extend_from_slice(&config);
    Ok(table)
}

/// Writes the table for `cpus` processors into guest memory.
pub fn write<M: GuestMemory>(mem: &M, cpus: u32) -> Result<(), String> {
    let table = build(cpus)?;
    mem.write_slice(&table, GuestAddress(MPTABLE))
        .map_err(|e| format!("writing the MP table: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums_to_zero(bytes: &[u8]) -> bool {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)) == 0
    }

    #[test]
    fn the_table_checks_out_as_a_guest_reads_it() {
        let table = build(4).unwrap();
        assert_eq!(&table[..4], b"_MP_");
        assert!(sums_to_zero(&table[..16]), "floating pointer checksum");
        let pointer = u32::from_le_bytes(table[4..8].try_into().unwrap()) as u64;
        assert_eq!(pointer, MPTABLE + 16);
        let config = &table[16..];
        assert_eq!(&config[..4], b"PCMP");
        let length = u16::from_le_bytes([config[4], config[5]]) as usize;
        assert_eq!(length, config.len());
        assert!(sums_to_zero(config), "configuration table checksum");
        let count = u16::from_le_bytes([config[34], config[35]]);
        assert_eq!(count, 4 + 1 + 1 + 16 + 2);
        // The first processor is the enabled bootstrap processor; the others are enabled.
        assert_eq!(&config[44..48], &[ENTRY_PROCESSOR, 0, LAPIC_VERSION, 3]);
        assert_eq!(&config[64..68], &[ENTRY_PROCESSOR, 1, LAPIC_VERSION, 1]);
        assert!(build(0).is_err() && build(MAX_CPUS + 1).is_err());
        assert!(build(MAX_CPUS).is_ok());
    }
}
