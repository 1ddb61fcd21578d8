//! The WBEM server as a library, with no KVM in it: whatever serves CIM plugs its
//! providers in through [`dispatch::provider`]'s traits.
//!
//! Layers, each using only those below it:
//! - [`http`]: HTTP/1.1 listeners (hyper), TLS (rustls), limits, the router of every
//!   endpoint, and the HTTP client for exports.
//! - [`cimxml`] and [`wsman`]: the two protocol bindings (DSP0200/DSP0201 messages;
//!   WS-Management with DSP0227/DSP0230), each decoding requests into one
//!   [`dispatch::operation::Operation`] and encoding its results.
//! - [`auth`]: users, rights, and authentication with bounded password checking.
//! - [`dispatch`]: the object manager: operations against the schema, the static instances
//!   and the providers; pull enumerations, queries, associations, the interop namespace
//!   (DSP1033), and indication routing and delivery.
//! - [`store`]: durable state in redb. [`error`]: CIM status codes. [`peer`]: clients as
//!   the per-client limits count them.

pub mod auth;
pub mod cimxml;
pub mod dispatch;
pub mod error;
pub mod http;
pub mod peer;
pub mod store;
pub mod wsman;

/// The namespace of profile registration and the object manager (DSP1033), also
/// reachable as `root/interop`.
pub const INTEROP_NAMESPACE: &str = "interop";

/// Locks a mutex, going on with the data if a panicking thread poisoned it: every mutex
/// in the server guards data that stays consistent between uses (no multi-step updates
/// are left half done by a panic).
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
