//! `GET /console/NAME` with `Upgrade: websocket` (RFC 6455): VM NAME's serial console.
//!
//! Binary frames carry the serial port's bytes, unchanged, both ways; a client's text
//! frames are typed as their UTF-8 bytes too (websocat sends text by default). The server's
//! text frames are notices for the person (input refused, who holds input now, output
//! skipped). On joining, a client gets the recent output first. Users with read rights in
//! root/virt watch; users with write rights may also type, one at a time (see
//! [`crate::vm::console`]). The session ends with a close frame that says why: the VM migrated
//! (naming the destination), was destroyed or its console disabled, the server stops, or
//! the client went silent.

// Refusals travel as `Err(Answer)`: the error is the response itself, moved once to the
// client, so boxing it (as clippy suggests for large errors) would buy nothing.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info};

use cimom::auth::{Access, User};
use cimom::http::body::ResponseBody;
use cimom::http::{plain, Endpoint, HeldConnection};

use super::PREFIX;
use crate::virt::NAMESPACE;
use crate::vm::console::{AttachError, Output, Rights, Session};
use crate::vm::definition::VmDefinition;
use crate::vm::manager::VirtManager;

type Answer = Response<ResponseBody>;

/// The largest message a client may send (input is typed, not uploaded).
const MAX_INPUT_MESSAGE: usize = 64 << 10;
/// How often a quiet connection is pinged.
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long a client may stay silent (no frame, not even a pong) before it is closed.
const SILENCE_LIMIT: Duration = Duration::from_secs(90);
/// How long one frame may take to go out before the client counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// What is typed goes to the VM in pieces of at most this many bytes.
const INPUT_PIECE: usize = 4096;

/// The console endpoint.
pub struct ConsoleEndpoint {
    manager: Arc<VirtManager>,
}

impl ConsoleEndpoint {
    /// The endpoint over `manager`'s VMs.
    pub fn new(manager: Arc<VirtManager>) -> Arc<ConsoleEndpoint> {
        Arc::new(ConsoleEndpoint { manager })
    }

    /// Checks the request, opens the session, and answers 101; the session runs on its own
    /// task once hyper hands the connection over.
    fn open(&self, user: &User, request: &mut Request<Incoming>) -> Result<Answer, Answer> {
        if request.method() != Method::GET {
            let mut refusal = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "the console is opened with GET and Upgrade: websocket",
            );
            refusal
                .headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET"));
            return Err(refusal);
        }
        let name = vm_name(request.uri().path())?;
        let key = handshake_key(request.headers())?;
        let rights = match user.access(NAMESPACE) {
            Some(Access::ReadWrite) => Rights::Type,
            Some(Access::ReadOnly) => Rights::Watch,
            None => {
                return Err(plain(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "user {} has no rights in {NAMESPACE}: a console takes read rights to \
                         watch, write rights to type",
                        user.name
                    ),
                ))
            }
        };
        let definition = self.manager.definition(&name).ok_or_else(|| {
            plain(
                StatusCode::NOT_FOUND,
                &format!("no VM named {name:?} is defined here"),
            )
        })?;
        if !definition.console.enabled {
            return Err(plain(
                StatusCode::CONFLICT,
                &format!(
                    "the console of VM {name} is disabled: RequestStateChange(2) on its \
                     KVM_TextRedirectionSAP enables it"
                ),
            ));
        }
        let session = self
            .manager
            .consoles()
            .attach(
                &name,
                &definition.run_id(),
                &self.manager.console_log(&definition),
                &user.name,
                rights,
            )
            .map_err(|e: AttachError| {
                let mut busy = plain(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
                busy.headers_mut()
                    .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("5"));
                busy
            })?;
        let held = HeldConnection::take(request).ok_or_else(|| {
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the connection cannot be taken over",
            )
        })?;
        let upgrade = hyper::upgrade::on(request);
        let manager = self.manager.clone();
        let who = user.name.clone();
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let config = WebSocketConfig::default()
                        .max_message_size(Some(MAX_INPUT_MESSAGE))
                        .max_frame_size(Some(MAX_INPUT_MESSAGE));
                    let socket = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(config),
                    )
                    .await;
                    info!(
                        vm = definition.name,
                        user = who,
                        session = session.id(),
                        "console session opened"
                    );
                    let why = run(socket, session, held, manager, definition.clone()).await;
                    info!(
                        vm = definition.name,
                        user = who,
                        why,
                        "console session ended"
                    );
                }
                Err(e) => debug!(vm = definition.name, error = %e, "console upgrade failed"),
            }
        });
        let mut answer = Response::new(ResponseBody::empty());
        *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = answer.headers_mut();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(
            SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
                .expect("base64 is a valid header value"),
        );
        Ok(answer)
    }
}

#[async_trait::async_trait]
impl Endpoint for ConsoleEndpoint {
    fn prefix(&self) -> &'static str {
        PREFIX
    }

    /// Anyone with rights in root/virt: the endpoint decides between watching and typing.
    fn administrators_only(&self) -> Option<&'static str> {
        None
    }

    async fn serve(&self, user: Arc<User>, mut request: Request<Incoming>) -> Answer {
        match self.open(&user, &mut request) {
            Ok(answer) | Err(answer) => answer,
        }
    }
}

/// The VM name of a console path, percent-decoded.
fn vm_name(path: &str) -> Result<String, Answer> {
    let segment = path.strip_prefix(PREFIX).unwrap_or_default();
    let name = percent_decode_str(segment).decode_utf8().map_err(|_| {
        plain(
            StatusCode::BAD_REQUEST,
            "the VM name in the path is not UTF-8 once percent-decoded",
        )
    })?;
    if name.is_empty() || name.contains('/') {
        return Err(plain(
            StatusCode::NOT_FOUND,
            "a console is at /console/NAME, NAME a VM's name (percent-encoded)",
        ));
    }
    Ok(name.into_owned())
}

/// The client's `Sec-WebSocket-Key`, once the request is a WebSocket handshake (RFC 6455
/// 4.2.1): 426 for a request that is not one, or that speaks another version.
fn handshake_key(headers: &HeaderMap) -> Result<String, Answer> {
    let has_token = |name: hyper::header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let upgrade_required = |text: &str| {
        let mut r = plain(StatusCode::UPGRADE_REQUIRED, text);
        let h = r.headers_mut();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(
            hyper::header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        r
    };
    if !has_token(UPGRADE, "websocket") || !has_token(CONNECTION, "upgrade") {
        return Err(upgrade_required(
            "this is a WebSocket endpoint: connect with Upgrade: websocket (RFC 6455)",
        ));
    }
    if headers
        .get(hyper::header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        return Err(upgrade_required("only WebSocket version 13 is spoken"));
    }
    headers
        .get(hyper::header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.trim().is_empty())
        .map(|k| k.trim().to_owned())
        .ok_or_else(|| {
            plain(
                StatusCode::BAD_REQUEST,
                "a WebSocket handshake needs Sec-WebSocket-Key",
            )
        })
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// How a session ends: the close frame's code and reason, for the client and the log.
struct Ending {
    code: CloseCode,
    reason: String,
}

impl Ending {
    fn new(code: CloseCode, reason: impl Into<String>) -> Ending {
        Ending {
            code,
            reason: reason.into(),
        }
    }
}

/// Runs one session until either side ends it; returns why, for the log.
async fn run(
    mut socket: Socket,
    mut session: Session,
    mut held: HeldConnection,
    manager: Arc<VirtManager>,
    definition: VmDefinition,
) -> String {
    let ending = serve_session(&mut socket, &mut session, &mut held, &manager, &definition).await;
    // A close reason is at most 123 bytes (RFC 6455 5.5); the full text went before it as
    // a notice.
    let mut reason = ending.reason.clone();
    while reason.len() > 123 {
        reason.pop();
    }
    let frame = CloseFrame {
        code: ending.code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.close(Some(frame))).await;
    ending.reason
}

async fn serve_session(
    socket: &mut Socket,
    session: &mut Session,
    held: &mut HeldConnection,
    manager: &Arc<VirtManager>,
    definition: &VmDefinition,
) -> Ending {
    let gone = |_| Ending::new(CloseCode::Away, "the client stopped reading");
    let scrollback = std::mem::take(&mut session.scrollback);
    if !scrollback.is_empty() {
        if let Err(e) = send(socket, Message::binary(scrollback)).await {
            return gone(e);
        }
    }
    if !session.held_input_at_start() {
        if let Err(why) = session.may_type() {
            if let Err(e) = send(socket, Message::text(why)).await {
                return gone(e);
            }
        }
    }
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            incoming = socket.next() => {
                last_heard = tokio::time::Instant::now();
                let bytes = match incoming {
                    None => return Ending::new(CloseCode::Normal, "the client left"),
                    Some(Err(e)) => return Ending::new(CloseCode::Protocol, format!("the client's frames: {e}")),
                    Some(Ok(Message::Close(_))) => return Ending::new(CloseCode::Normal, "the client closed the console"),
                    Some(Ok(Message::Binary(b))) => b.to_vec(),
                    Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                    Some(Ok(_)) => continue,
                };
                if let Err(why) = type_in(session, manager, definition, bytes).await {
                    if let Err(e) = send(socket, Message::text(why)).await {
                        return gone(e);
                    }
                }
            }
            output = session.output.recv() => {
                let message = match output {
                    Ok(Output::Bytes(b)) => Message::Binary(b),
                    Ok(Output::Notice { to, text }) if to.is_none_or(|id| id == session.id()) => Message::text(text),
                    Ok(Output::Notice { .. }) => continue,
                    Ok(Output::Closed(why)) => {
                        let _ = send(socket, Message::text(why.clone())).await;
                        return Ending::new(CloseCode::Away, why);
                    }
                    Err(RecvError::Lagged(skipped)) => Message::text(format!(
                        "{skipped} pieces of output were skipped: this client reads slower than \
                         the guest writes (the console log on the server has everything)"
                    )),
                    Err(RecvError::Closed) => return Ending::new(CloseCode::Away, "the console closed"),
                };
                if let Err(e) = send(socket, message).await {
                    return gone(e);
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    return Ending::new(CloseCode::Away, "the client was silent too long");
                }
                if let Err(e) = send(socket, Message::Ping(Default::default())).await {
                    return gone(e);
                }
            }
            _ = held.stopping() => return Ending::new(CloseCode::Restart, "the server is stopping"),
        }
    }
}

/// Sends one frame, giving up after [`SEND_TIMEOUT`].
async fn send(socket: &mut Socket, message: Message) -> Result<(), String> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Types what a client sent, if its session holds input; otherwise (or if the VM does not
/// take it) says why, for the person.
async fn type_in(
    session: &Session,
    manager: &Arc<VirtManager>,
    definition: &VmDefinition,
    bytes: Vec<u8>,
) -> Result<(), String> {
    session.may_type()?;
    let manager = manager.clone();
    let definition = definition.clone();
    tokio::task::spawn_blocking(move || {
        bytes
            .chunks(INPUT_PIECE)
            .try_for_each(|piece| manager.type_into_console(&definition, piece))
    })
    .await
    .map_err(|e| format!("typing failed: {e}"))?
    .map_err(|e| format!("input not delivered: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vm_name_is_the_decoded_path_segment() {
        assert_eq!(vm_name("/console/web%201").ok().as_deref(), Some("web 1"));
        assert_eq!(
            vm_name("/console/a/b").unwrap_err().status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            vm_name("/console/").unwrap_err().status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            vm_name("/console/%ff").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn only_a_version_13_websocket_handshake_is_taken() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            handshake_key(&headers).unwrap_err().status(),
            StatusCode::UPGRADE_REQUIRED
        );
        headers.insert(UPGRADE, HeaderValue::from_static("WebSocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert(
            hyper::header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("8"),
        );
        assert_eq!(
            handshake_key(&headers).unwrap_err().status(),
            StatusCode::UPGRADE_REQUIRED
        );
        headers.insert(
            hyper::header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        assert_eq!(
            handshake_key(&headers).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        headers.insert(
            hyper::header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert_eq!(
            handshake_key(&headers).ok().as_deref(),
            Some("dGhlIHNhbXBsZSBub25jZQ==")
        );
        // RFC 6455's example.
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
