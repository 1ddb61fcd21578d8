//! x86-64 boot setup: the guest-physical layout, the GDT and page tables a 64-bit entry
//! needs, CPUID, MSRs, the local APIC's interrupt pins, the MP table, the ACPI tables, and
//! the Linux boot protocols.

pub mod acpi;
pub mod cpuid;
pub mod gdt;
pub mod layout;
pub mod linux;
pub mod mptable;
pub mod paging;
pub mod regs;
