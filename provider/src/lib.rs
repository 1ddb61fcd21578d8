//! cimvirtd's own parts, on the [`cimom`] WBEM server: the VM domain ([`vm`]), the
//! virtualization providers of `root/virt` that map it to CIM ([`virt`]), the schema they
//! serve ([`schema`]), and the settings that put the server together ([`config`]).

pub mod config;
pub mod schema;
pub mod virt;
pub mod vm;
