//! HTTP and HTTPS listeners: connections, TLS, authentication, limits, the CIM-XML
//! endpoint at `/cimom` and the WS-Management endpoint at `/wsman`, and further
//! [`Endpoint`]s (which may take their connection over: [`HeldConnection`]).

pub mod body;
mod cimxml;
pub mod client;
mod connections;
mod headers;
mod server;
mod stream;
pub mod tls;
mod wsman;

use std::time::Duration;

pub use headers::plain;
pub use server::{serve, HeldConnection, Listener, Scheme, ServeError, Services};

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
    /// If only administrators (read-write in every namespace) may use it, what it does,
    /// for the refusal the others get (403: "user NAME may not WHAT: ..."). The router
    /// checks it before the endpoint sees the request.
    fn administrators_only(&self) -> Option<&'static str>;
    /// Answers one request of `user`.
    async fn serve(&self, user: Arc<User>, request: Request<Incoming>) -> Response<ResponseBody>;
}

/// Limits of the HTTP layer.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Largest request body accepted (413 above).
    pub max_request_bytes: u64,
    /// Most connections open at once; above, the longest idle one is closed, or 503 when
    /// all are busy.
    pub max_connections: usize,
    /// Most connections of one client (an IPv4 address or IPv6 /64) open at once; above,
    /// its longest idle one is closed, or 503 when all are busy.
    pub max_connections_per_client: usize,
    /// How long a connection may stay idle while the table is at most half full (shorter
    /// as it fills, down to 1 s).
    pub idle_timeout: Duration,
    /// Largest body of a request answered without authentication (WS-Management Identify).
    pub max_anonymous_request_bytes: u64,
    /// Time allowed for a request's headers (and the TLS handshake).
    pub header_read_timeout: Duration,
    /// Time allowed for a request's body (408 after).
    pub body_read_timeout: Duration,
    /// Time allowed for an operation, streaming included.
    pub request_timeout: Duration,
    /// How long a stopping server waits for running requests.
    pub shutdown_grace: Duration,
}
