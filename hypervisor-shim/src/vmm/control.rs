//! The VM process's control socket: one thread accepts, one thread per connection reads
//! requests and hands them to the control loop, and subscribers get events.

use crate::protocol::{self, ErrorKind, Event, Notice, Request, Response};
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long an event write may block on a subscriber that does not read before it is dropped.
const SUBSCRIBER_WRITE_TIMEOUT: Duration = Duration::from_millis(500);

/// A request waiting for the control loop, with where its answer goes.
pub struct PendingRequest {
    /// The request.
    pub request: Request,
    /// The files that came with it, in the order [`Request::files`] names them.
    pub files: Vec<std::fs::File>,
    reply_to: UnixStream,
    _answered: Sender<()>,
}

impl PendingRequest {
    /// Writes the response; the connection then reads its next request.
    pub fn reply(mut self, response: &Response) {
        if let Err(e) = protocol::write_message(&mut self.reply_to, response) {
            tracing::debug!("control client went away before its reply: {e}");
        }
    }

    /// Replies with an error.
    pub fn fail(self, kind: ErrorKind, message: impl Into<String>) {
        self.reply(&Response::Error {
            kind,
            message: message.into(),
        });
    }
}

/// The connections that asked for events, and how many events have been sent.
#[derive(Clone, Default)]
pub struct Subscribers(Arc<Mutex<Outlets>>);

#[derive(Default)]
struct Outlets {
    streams: Vec<UnixStream>,
    sent: u64,
}

impl Subscribers {
    fn add(&self, stream: UnixStream) {
        let _ = stream.set_write_timeout(Some(SUBSCRIBER_WRITE_TIMEOUT));
        crate::lock(&self.0).streams.push(stream);
    }

    /// Sends `event`, numbered, to every subscriber, dropping those that cannot take it.
    pub fn broadcast(&self, event: &Event) {
        let mut outlets = crate::lock(&self.0);
        outlets.sent += 1;
        let notice = Notice {
            seq: outlets.sent,
            event,
        };
        let mut frame = Vec::new();
        if protocol::write_message(&mut frame, &notice).is_err() {
            return;
        }
        outlets
            .streams
            .retain_mut(|s| io::Write::write_all(s, &frame).is_ok());
    }

    /// How many events have been broadcast (the last one's number).
    pub fn sent(&self) -> u64 {
        crate::lock(&self.0).sent
    }
}

/// Accepts connections on `listener` for as long as the process lives.
pub fn serve(listener: UnixListener, requests: Sender<PendingRequest>, subscribers: Subscribers) {
    std::thread::Builder::new()
        .name("control-accept".into())
        .spawn(move || {
            // The connection threads started here inherit the filter.
            crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Control)
                .unwrap_or_else(|e| crate::sandbox::abort_unconfined(&e));
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let requests = requests.clone();
                let subscribers = subscribers.clone();
                let spawned = std::thread::Builder::new()
                    .name("control-conn".into())
                    .spawn(move || {
                        crate::sandbox::note_inherited(crate::sandbox::ThreadKind::Control);
                        connection(stream, requests, subscribers)
                    });
                if let Err(e) = spawned {
                    tracing::warn!("cannot serve a control connection: {e}");
                }
            }
        })
        .expect("spawning the control socket thread");
}

fn refuse(stream: &mut UnixStream, message: String) {
    let _ = protocol::write_message(
        stream,
        &Response::Error {
            kind: ErrorKind::BadRequest,
            message,
        },
    );
}

fn connection(mut stream: UnixStream, requests: Sender<PendingRequest>, subscribers: Subscribers) {
    match protocol::read_request(&mut stream).map(|r| r.map(|(request, _)| request)) {
        Ok(Some(Request::Hello { version })) if version == protocol::VERSION => {
            let hello = Response::Hello {
                version: protocol::VERSION,
                pid: std::process::id(),
            };
            if protocol::write_message(&mut stream, &hello).is_err() {
                return;
            }
        }
        Ok(Some(Request::Hello { version })) => {
            return refuse(
                &mut stream,
                format!(
                    "protocol version {version}; this VMM speaks {}",
                    protocol::VERSION
                ),
            )
        }
        Ok(Some(_)) => return refuse(&mut stream, "the first request must be hello".into()),
        Ok(None) => return,
        Err(e) => return refuse(&mut stream, format!("unreadable request: {e}")),
    }
    loop {
        let (request, files) = match protocol::read_request(&mut stream) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => return refuse(&mut stream, format!("unreadable request: {e}")),
        };
        if let Request::Subscribe = request {
            if protocol::write_message(&mut stream, &Response::Ok).is_err() {
                return;
            }
            if let Ok(events) = stream.try_clone() {
                subscribers.add(events);
            }
            // Keep the connection until the client closes it.
            let _ = io::copy(&mut stream, &mut io::sink());
            return;
        }
        let Ok(reply_to) = stream.try_clone() else {
            return;
        };
        let (answered, wait) = mpsc::channel();
        if requests
            .send(PendingRequest {
                request,
                files,
                reply_to,
                _answered: answered,
            })
            .is_err()
        {
            return; // the control loop has finished: the process is exiting
        }
        // The sender side is dropped once the reply is written (or the request abandoned).
        let _ = wait.recv();
    }
}
