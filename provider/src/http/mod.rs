//! HTTP and HTTPS listeners: connections, TLS, authentication, limits, the CIM-XML
//! endpoint at `/cimom` and the WS-Management endpoint at `/wsman`.

pub mod body;
mod cimxml;
mod headers;
mod server;
mod stream;
pub mod tls;
mod wsman;

use std::time::Duration;

pub use server::{serve, Listener, Scheme, ServeError};

/// Limits of the HTTP layer.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Largest request body accepted (413 above).
    pub max_request_bytes: u64,
    /// Most connections open at once (503 above).
    pub max_connections: usize,
    /// Time allowed for a request's headers (and the TLS handshake).
    pub header_read_timeout: Duration,
    /// Time allowed for a request's body (408 after).
    pub body_read_timeout: Duration,
    /// Time allowed for an operation, streaming included.
    pub request_timeout: Duration,
    /// How long a stopping server waits for running requests.
    pub shutdown_grace: Duration,
}
