//! The flat GDT the VMM enters a guest with (64-bit code for long-mode entries, 32-bit code
//! for PVH), and the segment registers that match it.

use kvm_bindings::kvm_segment;

/// Descriptor flags (access byte and the granularity nibble) of each boot GDT entry.
const FLAGS: [u16; 5] = [
    0,      // null
    0xa09b, // code: present, ring 0, execute/read, accessed, 64-bit, 4 KiB granularity
    0xc093, // data: present, ring 0, read/write, accessed, 32-bit operand size, 4 KiB granularity
    0x808b, // TSS: present, busy 64-bit TSS
    0xc09b, // code: present, ring 0, execute/read, accessed, 32-bit, 4 KiB granularity
];

/// The GDT index of the code segment.
pub const CODE_INDEX: usize = 1;
/// The GDT index of the data segment.
pub const DATA_INDEX: usize = 2;
/// The GDT index of the task-state segment.
pub const TSS_INDEX: usize = 3;
/// The GDT index of the 32-bit code segment (PVH's protected-mode entry).
pub const CODE32_INDEX: usize = 4;

/// Encodes one 8-byte descriptor.
pub fn descriptor(flags: u16, base: u32, limit: u32) -> u64 {
    let (base, limit, flags) = (u64::from(base), u64::from(limit), u64::from(flags));
    ((base & 0xff00_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
        | ((limit & 0xf_0000) << 32)
        | ((flags & 0xf0ff) << 40)
}

/// The boot GDT: every segment flat from 0 to 4 GiB.
pub fn boot_gdt() -> [u64; 5] {
    [
        descriptor(FLAGS[0], 0, 0),
        descriptor(FLAGS[CODE_INDEX], 0, 0xfffff),
        descriptor(FLAGS[DATA_INDEX], 0, 0xfffff),
        descriptor(FLAGS[TSS_INDEX], 0, 0xfffff),
        descriptor(FLAGS[CODE32_INDEX], 0, 0xfffff),
    ]
}

/// The segment register that selects GDT entry `index` holding `entry`.
pub fn segment(index: usize, entry: u64) -> kvm_segment {
    let limit = ((entry >> 32) & 0xf_0000 | entry & 0xffff) as u32;
    let granular = (entry >> 55) & 1 == 1;
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base: (entry >> 16) & 0xff_ffff | ((entry >> 56) & 0xff) << 24,
        limit: if granular {
            (limit << 12) | 0xfff
        } else {
            limit
        },
        selector: (index * 8) as u16,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g: u8::from(granular),
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_segment_is_flat_64_bit_ring_0() {
        let gdt = boot_gdt();
        let code = segment(CODE_INDEX, gdt[CODE_INDEX]);
        assert_eq!((code.base, code.limit, code.selector), (0, 0xffff_ffff, 8));
        assert_eq!(
            (code.l, code.db, code.dpl, code.present, code.type_),
            (1, 0, 0, 1, 0xb)
        );
        let data = segment(DATA_INDEX, gdt[DATA_INDEX]);
        assert_eq!(
            (data.selector, data.db, data.type_, data.s),
            (0x10, 1, 3, 1)
        );
        let tss = segment(TSS_INDEX, gdt[TSS_INDEX]);
        assert_eq!((tss.selector, tss.s, tss.type_), (0x18, 0, 0xb));
        let code32 = segment(CODE32_INDEX, gdt[CODE32_INDEX]);
        assert_eq!(
            (code32.selector, code32.l, code32.db, code32.limit),
            (0x20, 0, 1, 0xffff_ffff)
        );
    }
}
