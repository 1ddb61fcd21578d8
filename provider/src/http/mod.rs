//! HTTP and HTTPS listeners: connections, TLS, authentication, limits, the CIM-XML
//! endpoint at `/cimom` and the WS-Management endpoint at `/wsman`.

pub mod body;
mod cimxml;
pub mod client;
mod headers;
mod server;
mod stream;
pub mod tls;
mod wsman;

use std::time::Duration;

pub use headers::plain;
pub use server::{serve, Listener, Scheme, ServeError, Services};

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::auth::User;
use body::ResponseBody;

/// A further endpoint beside CIM-XML and WS-Management, under a path prefix of its own;
/// it gets the requests of authenticated users only.
#[async_trait::async_trait]
pub trait Endpoint: Send + Sync {
    /// The path prefix it serves, such as `/cimvirt/migration/`.
    fn prefix(&self) -> &'static str;
    /// Answers one request of `user`.
    async fn serve(&self, user: Arc<User>, request: Request<Incoming>) -> Response<ResponseBody>;
}

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
