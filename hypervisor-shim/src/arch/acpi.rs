//! ACPI tables for Linux guests (acpi_tables crate): RSDP, XSDT, a hardware-reduced FADT,
//! a MADT with every vCPU and the IOAPIC, and a DSDT describing COM1, the sleep states and
//! a power button behind a Generic Event Device, as Cloud Hypervisor does: the VMM's
//! graceful shutdown raises the GED's interrupt, the guest's `_EVT` method notifies the power
//! button, and the guest's power-off writes S5 to the sleep control register
//! (`devices::power`), which the VMM sees.
//!
//! The tables live in the BIOS area (0xe0000, reserved in the memory map), where Linux also
//! finds the RSDP by scanning when the boot protocol does not pass it.

use super::layout;
use crate::devices::virtio::layout as virtio_layout;
use crate::devices::{power, COM1, COM1_GSI};
use acpi_tables::aml;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError};

/// The interrupt line of the Generic Event Device that carries the power button.
pub const POWER_BUTTON_GSI: u32 = 5;

const OEM_ID: [u8; 6] = *b"CIMVRT";
const OEM_REVISION: u32 = 1;
/// FADT IAPC_BOOT_ARCH: legacy devices and an i8042 are present (Linux's i8042 driver and
/// Ctrl-Alt-Del need the latter).
const IAPC_LEGACY_DEVICES: u16 = 1;
const IAPC_8042: u16 = 1 << 1;
/// Offset of the MADT's flags field; PCAT_COMPAT says a pair of 8259s is present.
const MADT_FLAGS_OFFSET: usize = 40;
const MADT_PCAT_COMPAT: u32 = 1;
/// Offset of every table's checksum byte.
const CHECKSUM_OFFSET: usize = 9;

/// Why the tables could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// The tables outgrew their area.
    #[error("the ACPI tables need {0} bytes, more than the BIOS area holds")]
    TooLarge(u64),
    /// Guest memory refused the write.
    #[error(transparent)]
    Memory(#[from] GuestMemoryError),
}

fn oem_table_id(signature: &[u8; 4]) -> [u8; 8] {
    let mut id = *b"CIMV    ";
    id[4..].copy_from_slice(signature);
    id
}

fn bytes_of(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

/// Sets a table's checksum byte so that all its bytes sum to zero.
fn fix_checksum(table: &mut [u8]) {
    table[CHECKSUM_OFFSET] = 0;
    let sum = table.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    table[CHECKSUM_OFFSET] = sum.wrapping_neg();
}

/// The DSDT's AML: \_S5 for power-off, COM1, the power button and the GED that notifies it.
pub fn dsdt_aml(virtio_devices: usize) -> Vec<u8> {
    // Each object is written in one statement: the AML builders borrow their parts, which
    // live as temporaries until the statement ends.
    let mut out = Vec::new();
    aml::Name::new(
        "_S5_".into(),
        &aml::Package::new(vec![&power::S5_SLEEP_TYPE]),
    )
    .to_aml_bytes(&mut out);
    aml::Device::new(
        "_SB_.COM1".into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0501")),
            &aml::Name::new("_UID".into(), &aml::ZERO),
            &aml::Name::new(
                "_CRS".into(),
                &aml::ResourceTemplate::new(vec![
                    &aml::IO::new(COM1, COM1, 1, 8),
                    &aml::Interrupt::new(true, true, false, false, COM1_GSI),
                ]),
            ),
        ],
    )
    .to_aml_bytes(&mut out);
    aml::Device::new(
        "_SB_.PWRB".into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0C0C")),
            &aml::Name::new("_UID".into(), &aml::ZERO),
        ],
    )
    .to_aml_bytes(&mut out);
    aml::Device::new(
        "_SB_.GED_".into(),
        vec![
            &aml::Name::new("_HID".into(), &"ACPI0013"),
            &aml::Name::new("_UID".into(), &aml::ZERO),
            &aml::Name::new(
                "_CRS".into(),
                &aml::ResourceTemplate::new(vec![&aml::Interrupt::new(
                    true,
                    true,
                    false,
                    false,
                    POWER_BUTTON_GSI,
                )]),
            ),
            // 0x80: the "button pressed" notification of the ACPI power button device.
            &aml::Method::new(
                "_EVT".into(),
                1,
                true,
                vec![&aml::Notify::new(&aml::Path::new("\\_SB_.PWRB"), &0x80u8)],
            ),
        ],
    )
    .to_aml_bytes(&mut out);
    // Debian's kernels take virtio-mmio devices from ACPI only (LNRO0005, the ID Linux's
    // virtio_mmio driver matches), not from the command line.
    for index in 0..virtio_devices.min(virtio_layout::MAX_DEVICES) {
        aml::Device::new(
            format!("_SB_.VR{index:02X}").as_str().into(),
            vec![
                &aml::Name::new("_HID".into(), &"LNRO0005"),
                &aml::Name::new("_UID".into(), &(index as u32)),
                &aml::Name::new(
                    "_CRS".into(),
                    &aml::ResourceTemplate::new(vec![
                        &aml::Memory32Fixed::new(
                            true,
                            virtio_layout::mmio_address(index) as u32,
                            virtio_layout::MMIO_SIZE as u32,
                        ),
                        &aml::Interrupt::new(true, true, false, false, virtio_layout::GSIS[index]),
                    ]),
                ),
            ],
        )
        .to_aml_bytes(&mut out);
    }
    out
}

/// The MADT: a local APIC per vCPU (APIC ID = index, as the CPUID the VMM gives says) and
/// the IOAPIC with its pins from GSI 0.
fn madt(vcpus: u32) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        oem_table_id(b"APIC"),
        OEM_REVISION,
        LocalInterruptController::Address(layout::LAPIC_ADDRESS as u32),
    );
    for index in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(
            index as u8,
            index as u8,
            EnabledStatus::Enabled,
        ));
    }
    madt.add_structure(IoApic::new(0, layout::IOAPIC_ADDRESS as u32, 0));
    let mut bytes = bytes_of(&madt);
    bytes[MADT_FLAGS_OFFSET..MADT_FLAGS_OFFSET + 4]
        .copy_from_slice(&MADT_PCAT_COMPAT.to_le_bytes());
    fix_checksum(&mut bytes);
    bytes
}

/// A hardware-reduced FADT pointing at the DSDT, with the sleep control and status
/// registers and the reset register on the VMM's power port.
fn fadt(dsdt: u64) -> Vec<u8> {
    let power_port = GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(power::SLEEP_CONTROL_PORT),
    );
    let mut fadt = FADTBuilder::new(OEM_ID, oem_table_id(b"FACP"), OEM_REVISION)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup)
        .dsdt_64(dsdt);
    fadt.sleep_control_reg = power_port;
    fadt.sleep_status_reg = power_port;
    fadt.reset_reg = power_port;
    fadt.reset_value = power::RESET_VALUE;
    fadt.iapc_boot_arch = (IAPC_LEGACY_DEVICES | IAPC_8042).into();
    bytes_of(&fadt.finalize())
}

/// Writes every table for a guest with `vcpus` vCPUs; returns the RSDP's address.
pub fn write_tables<M: GuestMemoryBackend>(
    mem: &M,
    vcpus: u32,
    virtio_devices: usize,
) -> Result<u64, AcpiError> {
    let mut next = layout::ACPI_TABLES + Rsdp::len() as u64;
    let mut place = |table: &[u8]| -> Result<u64, AcpiError> {
        let at = next.next_multiple_of(16);
        next = at + table.len() as u64;
        if next > layout::HIGH_MEMORY {
            return Err(AcpiError::TooLarge(next - layout::ACPI_TABLES));
        }
        mem.write_slice(table, GuestAddress(at))?;
        Ok(at)
    };

    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, oem_table_id(b"DSDT"), OEM_REVISION);
    dsdt.append_slice(&dsdt_aml(virtio_devices));
    let dsdt_at = place(dsdt.as_slice())?;
    let fadt_at = place(&fadt(dsdt_at))?;
    let madt_at = place(&madt(vcpus))?;
    let mut xsdt = XSDT::new(OEM_ID, oem_table_id(b"XSDT"), OEM_REVISION);
    xsdt.add_entry(fadt_at);
    xsdt.add_entry(madt_at);
    let xsdt_at = place(&bytes_of(&xsdt))?;
    mem.write_slice(
        &bytes_of(&Rsdp::new(OEM_ID, xsdt_at)),
        GuestAddress(layout::ACPI_TABLES),
    )?;
    Ok(layout::ACPI_TABLES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_at(mem: &vm_memory::GuestMemoryMmap<()>, at: u64) -> Vec<u8> {
        let mut header = [0u8; 8];
        mem.read_slice(&mut header, GuestAddress(at)).unwrap();
        let len = u32::from_le_bytes(header[4..8].try_into().unwrap()) as usize;
        let mut table = vec![0u8; len];
        mem.read_slice(&mut table, GuestAddress(at)).unwrap();
        table
    }

    fn sums_to_zero(bytes: &[u8]) -> bool {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)) == 0
    }

    #[test]
    fn the_tables_chain_from_the_rsdp_with_valid_checksums() {
        let mem =
            vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let rsdp_at = write_tables(&mem, 4, 2).unwrap();
        let mut rsdp = [0u8; 36];
        mem.read_slice(&mut rsdp, GuestAddress(rsdp_at)).unwrap();
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert!(sums_to_zero(&rsdp[..20]) && sums_to_zero(&rsdp));
        let xsdt = table_at(&mem, u64::from_le_bytes(rsdp[24..32].try_into().unwrap()));
        assert_eq!(&xsdt[..4], b"XSDT");
        assert!(sums_to_zero(&xsdt));
        let entries: Vec<u64> = xsdt[36..]
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let fadt = table_at(&mem, entries[0]);
        let madt = table_at(&mem, entries[1]);
        assert_eq!((&fadt[..4], &madt[..4]), (&b"FACP"[..], &b"APIC"[..]));
        assert!(sums_to_zero(&fadt) && sums_to_zero(&madt));
        // Hardware-reduced, with the sleep control register on the power port.
        let flags = u32::from_le_bytes(fadt[112..116].try_into().unwrap());
        assert_ne!(flags & Flags::HwReducedAcpi as u32, 0);
        assert_eq!(fadt[244], AddressSpace::SystemIo as u8);
        assert_eq!(
            u64::from_le_bytes(fadt[248..256].try_into().unwrap()),
            u64::from(power::SLEEP_CONTROL_PORT)
        );
        // Four local APICs (type 0) with IDs 0..3, and one IOAPIC (type 1).
        let mut apic_ids = Vec::new();
        let mut ioapics = 0;
        let mut at = 44;
        while at < madt.len() {
            match madt[at] {
                0 => apic_ids.push(madt[at + 3]),
                1 => ioapics += 1,
                _ => {}
            }
            at += usize::from(madt[at + 1]);
        }
        assert_eq!((apic_ids, ioapics), (vec![0, 1, 2, 3], 1));
        let dsdt_at = u64::from_le_bytes(fadt[140..148].try_into().unwrap());
        let dsdt = table_at(&mem, dsdt_at);
        assert!(sums_to_zero(&dsdt));
        let aml = &dsdt[36..];
        for name in [
            &b"_S5_"[..],
            b"COM1",
            b"PWRB",
            b"GED_",
            b"_EVT",
            b"ACPI0013",
            b"VR00",
            b"VR01",
            b"LNRO0005",
            // The second virtio device's register window, in its Memory32Fixed descriptor.
            &0xd000_1000u32.to_le_bytes(),
        ] {
            assert!(
                aml.windows(name.len()).any(|w| w == name),
                "the DSDT names {}",
                String::from_utf8_lossy(name)
            );
        }
        assert!(
            !aml.windows(4).any(|w| w == b"VR02"),
            "two virtio devices, two entries"
        );
    }

    #[test]
    fn the_most_vcpus_fit_in_the_bios_area() {
        let mem =
            vm_memory::GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        assert!(write_tables(&mem, 254, virtio_layout::MAX_DEVICES).is_ok());
    }
}
