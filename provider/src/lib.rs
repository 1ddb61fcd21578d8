//! cimvirtd's own parts, on the [`cimom`] WBEM server: the virtualization providers of
//! `root/virt` ([`virt`]), the schema they serve ([`schema`]), and the settings that put
//! the server together ([`config`]).

pub mod config;
pub mod schema;
pub mod virt;
