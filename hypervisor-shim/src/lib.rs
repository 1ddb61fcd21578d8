//! cimvirt's KVM virtual machine monitor and host inventory.
//!
//! Empty for now: the VMM (rust-vmm crates, one process per VM, the built-in test guest) is
//! built by the VMM issues. The crate is here so that the workspace has its final shape.
