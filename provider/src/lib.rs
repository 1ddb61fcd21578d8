//! cimvirtd: the cimvirt WBEM server for KVM hosts.
//!
//! - [`schema`]: the MOF the server serves, embedded and compiled at start-up.
//! - [`http`]: listeners, TLS, authentication, limits; the CIM-XML endpoint.
//! - [`cimxml`]: DSP0201 decoding and encoding.
//! - [`cimom`]: the object manager: operations, providers, queries, pull enumerations,
//!   the interop namespace.
//! - [`wsman`]: WS-Management (DSP0226/0227/0230) decoding and encoding.
//! - [`store`]: durable state in redb. [`auth`]: users, rights and authentication.
//!   [`config`]: settings. [`peer`]: clients as per-client limits count them.

#![deny(missing_docs)]

pub mod auth;
pub mod cimom;
pub mod cimxml;
pub mod config;
pub mod error;
pub mod http;
pub mod ids;
pub mod peer;
pub mod schema;
pub mod store;
pub mod virt;
pub mod wsman;

/// Locks a mutex, going on with the data if a panicking thread poisoned it: every mutex
/// in the server guards data that stays consistent between uses (no multi-step updates
/// are left half done by a panic).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
