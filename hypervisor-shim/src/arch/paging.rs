//! Identity-mapped page tables for a 64-bit entry.

use super::layout::{IDENTITY_MAPPED, PAGE_DIRECTORIES, PDPT, PML4};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

const PRESENT_WRITABLE: u64 = 0x3;
const LARGE_PAGE: u64 = 0x80;
const LARGE_PAGE_SIZE: u64 = 2 << 20;

/// Writes a PML4, a PDPT and page directories mapping the first 4 GiB one-to-one with 2 MiB
/// pages; returns the value for CR3.
pub fn write_identity_map<M: GuestMemory>(mem: &M) -> Result<u64, vm_memory::GuestMemoryError> {
    mem.write_obj(PDPT | PRESENT_WRITABLE, GuestAddress(PML4))?;
    let directories = IDENTITY_MAPPED / (512 * LARGE_PAGE_SIZE);
    for dir in 0..directories {
        let dir_addr = PAGE_DIRECTORIES + dir * 4096;
        mem.write_obj(dir_addr | PRESENT_WRITABLE, GuestAddress(PDPT + dir * 8))?;
        let entries: Vec<u8> = (0..512u64)
            .flat_map(|i| {
                let page = (dir * 512 + i) * LARGE_PAGE_SIZE;
                (page | PRESENT_WRITABLE | LARGE_PAGE).to_le_bytes()
            })
            .collect();
        mem.write_slice(&entries, GuestAddress(dir_addr))?;
    }
    Ok(PML4)
}
