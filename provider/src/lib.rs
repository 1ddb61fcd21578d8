//! cimvirtd: the cimvirt WBEM server for KVM hosts and its virtualization providers.
//!
//! So far: the schema it serves ([`schema`]). The HTTP server, the CIM-XML and WS-Man
//! front ends and the KVM_ providers build on it.

#![deny(missing_docs)]

pub mod schema;
