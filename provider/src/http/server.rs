//! Accepting connections and serving them with hyper until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use super::cimxml::Handler;
use super::{Endpoint, HttpLimits};
use crate::auth::Authenticator;
use crate::cimom::Cimom;
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

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 58\r\nConnection: close\r\nRetry-After: 1\r\n\r\nthe server has reached its limit of concurrent connections";

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
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel::<(TcpStream, SocketAddr, Scheme)>(64);
    let mut accept_tasks = Vec::new();
    for l in listeners {
        let tx = conn_tx.clone();
        let mut stop = shutdown.clone();
        accept_tasks.push(tokio::spawn(async move {
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
    let handler = Arc::new(Handler::new(
        services.cimom,
        services.auth,
        limits.clone(),
        services.wsman,
        services.endpoints,
    ));
    loop {
        let (stream, peer, scheme) = tokio::select! {
            next = conn_rx.recv() => match next {
                Some(c) => c,
                None => break,
            },
            _ = shutdown.changed() => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            debug!(%peer, "connection refused: limit reached");
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = stream.write_all(BUSY).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, std::convert::Infallible>(handler.handle(req, scheme, peer).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        match (scheme, &acceptor) {
            (Scheme::Https, Some(acceptor)) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                let handshake_timeout = limits.header_read_timeout;
                tokio::spawn(async move {
                    let _permit = permit;
                    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(tls), service);
                    if let Err(e) = watcher.watch(conn).await {
                        debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ => {
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let fut = graceful.watch(conn);
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = fut.await {
                        debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    for t in accept_tasks {
        t.abort();
    }
    info!(
        connections = graceful.count(),
        "stopping: waiting for running requests"
    );
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("requests still running after the grace period were cut off");
    }
    Ok(())
}
