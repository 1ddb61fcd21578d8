//! Boot register state for a 64-bit entry: general and special registers, FPU, MSRs, and
//! the local APIC's LINT pins.

use super::gdt;
use super::layout::{BOOT_GDT, BOOT_IDT};
use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_regs, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Writes the boot GDT and an empty IDT into guest memory.
pub fn write_descriptor_tables<M: GuestMemory>(mem: &M) -> Result<(), vm_memory::GuestMemoryError> {
    for (i, entry) in gdt::boot_gdt().iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(BOOT_GDT + i as u64 * 8))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT))
}

/// Loads the boot GDT and the empty IDT, with `cs` from GDT entry `code_index` and every
/// data segment flat.
fn flat_segments(sregs: &mut kvm_sregs, code_index: usize) {
    let table = gdt::boot_gdt();
    let data = gdt::segment(gdt::DATA_INDEX, table[gdt::DATA_INDEX]);
    sregs.gdt.base = BOOT_GDT;
    sregs.gdt.limit = (table.len() * 8 - 1) as u16;
    sregs.idt.base = BOOT_IDT;
    sregs.idt.limit = 7;
    sregs.cs = gdt::segment(code_index, table[code_index]);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = gdt::segment(gdt::TSS_INDEX, table[gdt::TSS_INDEX]);
}

/// Special registers for long mode with paging through `cr3`, on top of the vCPU's reset
/// state `sregs`.
pub fn long_mode_sregs(mut sregs: kvm_sregs, cr3: u64) -> kvm_sregs {
    flat_segments(&mut sregs, gdt::CODE_INDEX);
    sregs.cr3 = cr3;
    sregs.cr4 |= CR4_PAE;
    sregs.cr0 |= CR0_PE | CR0_ET | CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    sregs
}

/// Special registers for PVH's entry: 32-bit protected mode on flat segments, paging off
/// (<https://xenbits.xen.org/docs/unstable/misc/pvh.html>), on top of the reset state `sregs`.
pub fn pvh_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    flat_segments(&mut sregs, gdt::CODE32_INDEX);
    sregs.cr0 = CR0_PE | CR0_ET;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    sregs
}

/// General registers at PVH's entry point: interrupts off, the start info in `rbx`.
pub fn pvh_regs(entry: u64, start_info: u64) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry,
        rbx: start_info,
        ..Default::default()
    }
}

/// General registers at a 64-bit entry point: interrupts off, the given stack and the two
/// argument registers (`rsi` carries Linux's boot parameters; the test guest takes its vCPU
/// index in `rdi`).
pub fn entry_regs(entry: u64, stack: u64, rdi: u64, rsi: u64) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry,
        rsp: stack,
        rbp: stack,
        rdi,
        rsi,
        ..Default::default()
    }
}

/// The FPU as after FNINIT, with SSE exceptions masked.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

/// MSRs a 64-bit entry expects: SYSCALL and SYSENTER cleared, fast strings on, MTRRs on
/// with write-back as the default type.
pub fn boot_msrs() -> Vec<(u32, u64)> {
    const IA32_SYSENTER_CS: u32 = 0x174;
    const IA32_SYSENTER_ESP: u32 = 0x175;
    const IA32_SYSENTER_EIP: u32 = 0x176;
    const STAR: u32 = 0xc000_0081;
    const LSTAR: u32 = 0xc000_0082;
    const CSTAR: u32 = 0xc000_0083;
    const SYSCALL_MASK: u32 = 0xc000_0084;
    const KERNEL_GS_BASE: u32 = 0xc000_0102;
    const IA32_TSC: u32 = 0x10;
    const IA32_MISC_ENABLE: u32 = 0x1a0;
    const MTRR_DEF_TYPE: u32 = 0x2ff;
    vec![
        (IA32_SYSENTER_CS, 0),
        (IA32_SYSENTER_ESP, 0),
        (IA32_SYSENTER_EIP, 0),
        (STAR, 0),
        (CSTAR, 0),
        (KERNEL_GS_BASE, 0),
        (SYSCALL_MASK, 0),
        (LSTAR, 0),
        (IA32_TSC, 0),
        (IA32_MISC_ENABLE, 1),
        (MTRR_DEF_TYPE, (1 << 11) | 6),
    ]
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const DELIVERY_EXTINT: u32 = 7;
const DELIVERY_NMI: u32 = 4;

fn lapic_register(lapic: &kvm_lapic_state, offset: usize) -> u32 {
    let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[offset + i] as u8);
    u32::from_le_bytes(bytes)
}

fn set_lapic_register(lapic: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (i, byte) in value.to_le_bytes().into_iter().enumerate() {
        lapic.regs[offset + i] = byte as _;
    }
}

/// LINT0 delivers the legacy PIC (ExtINT) and LINT1 NMIs, as on a PC.
pub fn with_lint_pins(mut lapic: kvm_lapic_state) -> kvm_lapic_state {
    let lvt0 = lapic_register(&lapic, APIC_LVT0);
    set_lapic_register(
        &mut lapic,
        APIC_LVT0,
        (lvt0 & !0x700) | (DELIVERY_EXTINT << 8),
    );
    let lvt1 = lapic_register(&lapic, APIC_LVT1);
    set_lapic_register(&mut lapic, APIC_LVT1, (lvt1 & !0x700) | (DELIVERY_NMI << 8));
    lapic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_pins_get_extint_and_nmi() {
        let lapic = with_lint_pins(kvm_lapic_state::default());
        assert_eq!(lapic_register(&lapic, APIC_LVT0) >> 8 & 7, DELIVERY_EXTINT);
        assert_eq!(lapic_register(&lapic, APIC_LVT1) >> 8 & 7, DELIVERY_NMI);
    }

    #[test]
    fn long_mode_turns_on_paging_and_64_bit_code() {
        let sregs = long_mode_sregs(kvm_sregs::default(), 0x9000);
        assert_eq!(sregs.cr3, 0x9000);
        assert_ne!(sregs.cr0 & CR0_PG, 0);
        assert_ne!(sregs.efer & EFER_LMA, 0);
        assert_eq!(sregs.cs.l, 1);
    }

    #[test]
    fn pvh_enters_32_bit_protected_mode_without_paging() {
        let sregs = pvh_sregs(long_mode_sregs(kvm_sregs::default(), 0x9000));
        assert_eq!(sregs.cr0 & (CR0_PE | CR0_PG), CR0_PE);
        assert_eq!((sregs.efer, sregs.cr4), (0, 0));
        assert_eq!((sregs.cs.l, sregs.cs.db, sregs.cs.selector), (0, 1, 0x20));
        assert_eq!(pvh_regs(0x100_0000, 0x6000).rbx, 0x6000);
    }
}
