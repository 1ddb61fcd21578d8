//! Accepting connections and serving them with hyper until shutdown.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::body::{Body, Frame, SizeHint};
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::body::ResponseBody;
use super::cimxml::Handler;
use super::connections::{Busy, ConnectionTable, Refusal, Slot, TableLimits};
use super::{Endpoint, HttpLimits};
use crate::auth::Authenticator;
use crate::dispatch::Cimom;
use crate::wsman::WsmanConfig;

/// HTTP or HTTPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

/// A bound listening socket.
pub struct Listener {
    /// The scheme served.
    pub scheme: Scheme,
    /// The socket.
    pub socket: TcpListener,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// An HTTPS listener without a certificate.
    #[error("an HTTPS listener needs a TLS certificate")]
    NoCertificate,
}

/// What the server answers: CIM-XML and WS-Management from the object manager, for the
/// users `auth` knows, and the further `endpoints`.
pub struct Services {
    /// The object manager.
    pub cimom: Arc<Cimom>,
    /// The users.
    pub auth: Arc<Authenticator>,
    /// The WS-Management settings.
    pub wsman: WsmanConfig,
    /// Endpoints beside `/cimom` and `/wsman`.
    pub endpoints: Vec<Arc<dyn Endpoint>>,
}

/// Refusals answered at once; beyond them, refused connections are closed unanswered
/// (a refusal over HTTPS costs a TLS handshake).
const MAX_REFUSALS_IN_PROGRESS: usize = 32;
/// How long a refused client gets to take its answer.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// The most a connection buffers: a request's head must fit (HTTP 431 otherwise), which
/// bounds what a slow sender of endless headers holds per connection.
const MAX_CONNECTION_BUFFER: usize = 64 * 1024;
/// How often idle connections past their timeout are closed.
const IDLE_SWEEP: Duration = Duration::from_millis(250);

/// Connections being served, evicted ones that finish a request included: what a
/// stopping server waits for.
#[derive(Default)]
struct Running {
    count: AtomicUsize,
    none_left: Notify,
}

struct RunningGuard(Arc<Running>);

impl Running {
    fn enter(self: &Arc<Self>) -> RunningGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        RunningGuard(self.clone())
    }

    async fn all_done(&self) {
        loop {
            let notified = self.none_left.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

/// A response body that keeps its connection marked busy until it has been sent.
struct TrackedBody {
    inner: ResponseBody,
    _busy: Busy,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves all listeners until `shutdown` turns true, then stops accepting, lets running
/// requests finish (up to the grace period) and returns.
pub async fn serve(
    listeners: Vec<Listener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    services: Services,
    limits: HttpLimits,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    if listeners.iter().any(|l| l.scheme == Scheme::Https) && tls.is_none() {
        return Err(ServeError::NoCertificate);
    }
    let acceptor = tls.map(TlsAcceptor::from);
    let table = ConnectionTable::new(TableLimits {
        max_total: limits.max_connections,
        max_per_client: limits.max_connections_per_client,
        idle_timeout: limits.idle_timeout,
    });
    let running = Arc::new(Running::default());
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_PROGRESS));
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel::<(TcpStream, SocketAddr, Scheme)>(64);
    let mut background = Vec::new();
    for l in listeners {
        let tx = conn_tx.clone();
        let mut stop = shutdown.clone();
        background.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = l.socket.accept() => match accepted {
                        Ok((stream, peer)) => {
                            if tx.send((stream, peer, l.scheme)).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    },
                    _ = stop.changed() => break,
                }
            }
        }));
    }
    drop(conn_tx);
    let sweeper_table = table.clone();
    background.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(IDLE_SWEEP);
        loop {
            tick.tick().await;
            let closed = sweeper_table.close_idle();
            if closed > 0 {
                debug!(closed, "closed idle connections");
            }
        }
    }));
    let handler = Arc::new(Handler::new(
        services.cimom,
        services.auth,
        limits.clone(),
        services.wsman,
        services.endpoints,
    ));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // A client may send its request and shut down its side (`shutdown(SHUT_WR)`): it
        // still gets its answer.
        .half_close(true)
        .max_buf_size(MAX_CONNECTION_BUFFER)
        .keep_alive(true);
    loop {
        let (stream, peer, scheme) = tokio::select! {
            next = conn_rx.recv() => match next {
                Some(c) => c,
                None => break,
            },
            _ = shutdown.changed() => break,
        };
        let slot = match table.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                refuse(stream, peer, scheme, why, acceptor.clone(), &refusals);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            slot,
            peer,
            scheme,
            handler: handler.clone(),
            builder: builder.clone(),
            shutdown: shutdown.clone(),
            handshake_timeout: limits.header_read_timeout,
        };
        let guard = running.enter();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _guard = guard;
            match (scheme, acceptor) {
                (Scheme::Https, Some(acceptor)) => connection.serve_tls(stream, acceptor).await,
                _ => connection.serve(stream).await,
            }
        });
    }
    for t in background {
        t.abort();
    }
    info!(
        connections = running.count.load(Ordering::Acquire),
        "stopping: waiting for running requests"
    );
    if tokio::time::timeout(limits.shutdown_grace, running.all_done())
        .await
        .is_err()
    {
        warn!("requests still running after the grace period were cut off");
    }
    Ok(())
}

/// One accepted connection and what serving it needs.
struct Connection {
    slot: Slot,
    peer: SocketAddr,
    scheme: Scheme,
    handler: Arc<Handler>,
    builder: hyper::server::conn::http1::Builder,
    shutdown: watch::Receiver<bool>,
    handshake_timeout: Duration,
}

impl Connection {
    async fn serve_tls(self, stream: TcpStream, acceptor: TlsAcceptor) {
        // The handshake is idle time too: the table may close it to make room.
        let handshake = tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream));
        let tls = tokio::select! {
            done = handshake => match done {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(peer = %self.peer, "TLS handshake timed out");
                    return;
                }
            },
            _ = self.slot.closed() => return,
        };
        self.serve(tls).await
    }

    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            slot,
            peer,
            scheme,
            handler,
            builder,
            mut shutdown,
            ..
        } = self;
        let slot = Arc::new(slot);
        let service_slot = slot.clone();
        let service_shutdown = shutdown.clone();
        let service = service_fn(move |mut req: Request<Incoming>| {
            // Marked here, as the request's head is read, and kept until its response has
            // been sent.
            let busy = service_slot.busy();
            if req.headers().contains_key(hyper::header::UPGRADE) {
                req.extensions_mut().insert(Upgradable {
                    slot: service_slot.clone(),
                    shutdown: service_shutdown.clone(),
                });
            }
            let handler = handler.clone();
            async move {
                let reply = handler.handle(req, scheme, peer).await;
                Ok::<_, std::convert::Infallible>(
                    reply.map(|inner| TrackedBody { inner, _busy: busy }),
                )
            }
        });
        // An endpoint may take the connection over (a WebSocket): it then holds the slot.
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = slot.closed() => {
                if !slot.is_busy() {
                    debug!(%peer, "idle connection closed");
                    return;
                }
                // A request arrived just as the connection was chosen: finish it, then close.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            _ = stopping(&mut shutdown) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// What a request that asks for an upgrade carries, for an endpoint that takes the
/// connection over.
#[derive(Clone)]
struct Upgradable {
    slot: Arc<Slot>,
    shutdown: watch::Receiver<bool>,
}

/// A connection an endpoint has taken over from HTTP (a WebSocket, after its upgrade): it
/// stays counted against the connection limits, overall and per client, is never closed
/// as idle, and tells its holder when the server stops.
pub struct HeldConnection {
    _busy: Busy,
    _slot: Arc<Slot>,
    shutdown: watch::Receiver<bool>,
}

impl HeldConnection {
    /// The connection of `request`, if it asked for an upgrade (an `Upgrade` header) and
    /// nobody took it yet.
    pub fn take<B>(request: &mut Request<B>) -> Option<HeldConnection> {
        let Upgradable { slot, shutdown } = request.extensions_mut().remove::<Upgradable>()?;
        Some(HeldConnection {
            _busy: slot.busy(),
            _slot: slot,
            shutdown,
        })
    }

    /// Resolves once the server is told to stop.
    pub async fn stopping(&mut self) {
        stopping(&mut self.shutdown).await
    }
}

const BUSY_BODY: &str = "the server has reached its limit of concurrent connections";
const CLIENT_BUSY_BODY: &str = "this client has reached its limit of concurrent connections";

/// Answers a refused connection with 503 (over TLS on an HTTPS listener, after the
/// handshake: never plain text there), or closes it unanswered when too many refusals are
/// already in progress.
fn refuse(
    stream: TcpStream,
    peer: SocketAddr,
    scheme: Scheme,
    why: Refusal,
    acceptor: Option<TlsAcceptor>,
    refusals: &Arc<Semaphore>,
) {
    debug!(%peer, ?why, "connection refused");
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        return;
    };
    let text = match why {
        Refusal::ServerBusy => BUSY_BODY,
        Refusal::ClientBusy => CLIENT_BUSY_BODY,
    };
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\nRetry-After: 1\r\n\r\n{text}",
        text.len()
    );
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async move {
            match (scheme, acceptor) {
                (Scheme::Https, Some(acceptor)) => {
                    if let Ok(mut tls) = acceptor.accept(stream).await {
                        let _ = tls.write_all(answer.as_bytes()).await;
                        let _ = tls.shutdown().await;
                    }
                }
                _ => {
                    let mut stream = stream;
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                }
            }
        })
        .await;
    });
}

/// Resolves once the server is told to stop; never if the sender is gone without saying so.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
