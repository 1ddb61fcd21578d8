//! The control protocol between the server (the supervisor) and a VM process, on the VM's
//! Unix socket: JSON messages, each preceded by its length as a little-endian u32.
//!
//! A connection starts with [`Request::Hello`], which must name [`VERSION`]. After that
//! each [`Request`] gets one [`Response`], in order. A connection that sends
//! [`Request::Subscribe`] gets `Response::Ok` and then only [`Event`]s, as they happen.
//!
//! A request that has the VM write files (a snapshot, a memory copy) carries them as open
//! descriptors (`SCM_RIGHTS` on the message's first bytes, see [`Request::files`]): the VM
//! process, confined to an empty root as an unprivileged user, can name no file itself. The
//! sender creates them and, once the VM has answered, puts them in place.

use crate::lifecycle::State;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// The largest message either side accepts.
pub const MAX_MESSAGE: u32 = 16 << 20;

/// A request to the VM process.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Opens the conversation.
    Hello {
        /// The client's protocol version.
        version: u32,
    },
    /// The VM's state, counters and timings.
    Status,
    /// Begins running a VM process started with `--paused-at-start`.
    Start,
    /// Stops every vCPU.
    Pause,
    /// Runs the vCPUs again.
    Resume,
    /// Asks the guest to power off (Ctrl-Alt-Del until ACPI) and waits for it.
    Shutdown {
        /// How long to wait before giving up (the VM keeps running).
        timeout_ms: u64,
    },
    /// Stops waiting for a graceful shutdown: the `shutdown` request fails as cancelled and
    /// the VM goes on running (a guest that powers off anyway is then off).
    CancelShutdown,
    /// Powers off at once; the process exits.
    Stop,
    /// Hardware reset: devices and vCPUs to power-on state, the boot image reloaded.
    Reset,
    /// A reboot: as a reset, reported as a reboot.
    Reboot,
    /// Writes memory and state into the two files that come with it (see
    /// [`Request::files`]), for the snapshot directory `dir`; the process then exits.
    Save {
        /// The snapshot directory, for messages: the sender places the files there.
        dir: PathBuf,
    },
    /// Writes memory and state into the two files that come with it, for the snapshot
    /// directory `dir`, and goes on in the state it was in.
    Snapshot {
        /// The snapshot directory, for messages: the sender places the files there.
        dir: PathBuf,
    },
    /// Types bytes into COM1. What its FIFO cannot take at once waits in the VM process,
    /// in order, and is offered again every few milliseconds; a request that would leave
    /// more than 64 KiB waiting fails.
    SendConsole {
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Guest pages written since the previous `dirty_pages` (the first turns KVM's dirty
    /// logging on).
    DirtyPages,
    /// Copies guest memory into the sparse file that comes with it (the layout of a
    /// snapshot's memory file) while the VM runs, for a pre-copy migration: without
    /// `dirty_only`, every page that holds data, after dirty logging is turned on (the
    /// sender gives an empty file); with it, the pages written since the previous copy (or
    /// `dirty_pages`) are written over the file's. Answers `copied`.
    CopyMemory {
        /// The file's path, for messages.
        path: PathBuf,
        /// Only the pages written since the last copy.
        dirty_only: bool,
    },
    /// Writes the paused VM's registers and device state, without its memory, into the
    /// file that comes with it, for `dir/state.json`: with the memory a pre-copy migration
    /// sent, a snapshot.
    SaveState {
        /// The snapshot directory, for messages: the sender places the file there.
        dir: PathBuf,
    },
    /// Turns this connection into an event stream.
    Subscribe,
    /// For the sandbox's tests: the thread that carries requests out makes a system call
    /// that no filter allows, so that the test sees the sandbox stop the VM and report it.
    /// Refused unless the VM process has `CIMVIRT_VMM_TEST_REQUESTS=1` in its environment.
    #[doc(hidden)]
    TestForbiddenSyscall,
}

/// The environment variable that lets a VM process carry out requests meant for tests.
pub const TEST_REQUESTS_ENV: &str = "CIMVIRT_VMM_TEST_REQUESTS";

/// The most descriptors a request carries.
pub const MAX_FILES: usize = 2;

impl Request {
    /// The files that come with the request, in order: what the VM writes.
    pub fn files(&self) -> &'static [&'static str] {
        match self {
            Request::Save { .. } | Request::Snapshot { .. } => &["memory", "state"],
            Request::CopyMemory { .. } => &["memory"],
            Request::SaveState { .. } => &["state"],
            _ => &[],
        }
    }

    /// Whether carrying the request out may change the VM's lifecycle state.
    pub fn may_change_state(&self) -> bool {
        matches!(
            self,
            Request::Start
                | Request::Pause
                | Request::Resume
                | Request::Shutdown { .. }
                | Request::CancelShutdown
                | Request::Stop
                | Request::Reset
                | Request::Reboot
                | Request::Save { .. }
                | Request::Snapshot { .. }
        )
    }
}

/// The answer to one request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    /// Done.
    Ok,
    /// The answer to `Hello`.
    Hello {
        /// The server's protocol version.
        version: u32,
        /// The VM process's pid.
        pid: u32,
    },
    /// The answer to `Status`.
    Status(Box<Status>),
    /// The answer to `DirtyPages`: guest page frame numbers (address / 4096), ascending.
    DirtyPages {
        /// The pages.
        pages: Vec<u64>,
    },
    /// The answer to `CopyMemory`: the file ranges written (offset, end), merged.
    Copied {
        /// The ranges.
        ranges: Vec<(u64, u64)>,
    },
    /// The request failed.
    Error {
        /// What kind of failure.
        kind: ErrorKind,
        /// What happened, for a person.
        message: String,
    },
}

/// Kinds of failure a client can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The VM's state does not allow the request.
    InvalidState,
    /// The guest did not do what was asked in time.
    Timeout,
    /// The request itself is wrong.
    BadRequest,
    /// The VMM failed.
    Failed,
    /// A client withdrew the request.
    Cancelled,
}

/// Something that happened to the VM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The lifecycle state changed.
    State {
        /// The new state.
        state: State,
    },
    /// The guest powered itself off.
    GuestPowerOff,
    /// The machine was reset, by the guest or on request.
    Reset {
        /// Who asked: "guest", "reset" or "reboot".
        cause: String,
    },
    /// The guest crashed or the VMM failed; the process exits.
    Crashed {
        /// Why, for a person (the failing instruction's bytes for an emulation failure).
        reason: String,
    },
    /// COM1 output.
    Console {
        /// The bytes the guest wrote.
        bytes: Vec<u8>,
    },
}

/// An event as a subscriber receives it, numbered so that it can be ordered against a
/// [`Status`]: the event with number `seq` was sent before any status whose `events_sent` is
/// at least `seq`. (On the wire the number is one more field beside the event's own.) The
/// VM process writes a `Notice<&Event>`, borrowing the event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice<E = Event> {
    /// The event's number: 1 for the process's first, then one more each (0 from a process
    /// that does not number its events).
    #[serde(default)]
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: E,
}

/// A VM's status.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// The VM's name.
    pub name: String,
    /// The VM process.
    pub pid: u32,
    /// The lifecycle state.
    pub state: State,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest RAM in bytes.
    pub memory_bytes: u64,
    /// The test guest's heartbeat counters, one per vCPU (empty for other guests).
    pub heartbeats: Vec<u64>,
    /// Host thread ids of the vCPU threads.
    pub vcpu_threads: Vec<i32>,
    /// Nanoseconds since the Unix epoch when the process started.
    pub process_start_ns: u64,
    /// Nanoseconds since the Unix epoch when the machine was built and the vCPUs ready.
    pub machine_ready_ns: u64,
    /// Nanoseconds since the Unix epoch when the guest's first instruction ran (it wrote the
    /// POST port), if it has.
    pub first_instruction_ns: Option<u64>,
    /// Why the last reset happened, if one did.
    pub last_reset: Option<String>,
    /// Where COM1's output is logged.
    pub console_log: Option<PathBuf>,
    /// How many events the process had sent its subscribers when it took this status: the
    /// state here is newer than that of any [`Notice`] numbered up to this.
    #[serde(default)]
    pub events_sent: u64,
}

/// Writes one message.
pub fn write_message<T: Serialize, W: Write>(out: &mut W, message: &T) -> io::Result<()> {
    let body = serde_json::to_vec(message).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&n| n <= MAX_MESSAGE)
        .ok_or_else(|| io::Error::other("message too large"))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    out.write_all(&frame)
}

/// Writes one request with its files (as many as [`Request::files`] names).
pub fn send_request(stream: &mut UnixStream, request: &Request, files: &[&File]) -> io::Result<()> {
    if files.len() != request.files().len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "this request comes with {} files, not {}",
                request.files().len(),
                files.len()
            ),
        ));
    }
    if files.is_empty() {
        return write_message(stream, request);
    }
    let mut frame = Vec::new();
    write_message(&mut frame, request)?;
    let fds: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
    // The descriptors ride on the first bytes; the rest of a long frame follows plainly.
    let sent = stream
        .send_with_fds(&[&frame[..]], &fds)
        .map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
    stream.write_all(&frame[sent..])
}

/// Reads one request with the files that come with it; `Ok(None)` at a clean end of stream.
/// A request with more or fewer files than it names is refused (and the files closed).
pub fn read_request(stream: &mut UnixStream) -> io::Result<Option<(Request, Vec<File>)>> {
    let mut len = [0u8; 4];
    let mut fds: [RawFd; MAX_FILES + 1] = [-1; MAX_FILES + 1];
    let mut iov = [libc::iovec {
        iov_base: len.as_mut_ptr().cast(),
        iov_len: len.len(),
    }];
    // SAFETY: the one iovec points at `len`, which lives through the call and takes any
    // bytes.
    let (read, received) = unsafe { stream.recv_with_fds(&mut iov, &mut fds) }
        .map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
    let files: Vec<File> = fds[..received]
        .iter()
        // SAFETY: recvmsg(2) has just made these descriptors for this process; each is
        // owned once, here.
        .map(|&fd| unsafe { File::from_raw_fd(fd) })
        .collect();
    if read == 0 {
        return Ok(None);
    }
    stream.read_exact(&mut len[read..])?;
    let request: Request = read_body(stream, len)?;
    if files.len() != request.files().len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the request comes with {} files, not {}",
                files.len(),
                request.files().len()
            ),
        ));
    }
    Ok(Some((request, files)))
}

/// Reads one message; `Ok(None)` at a clean end of stream.
pub fn read_message<T: DeserializeOwned, R: Read>(input: &mut R) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    read_body(input, len).map(Some)
}

/// Reads and decodes the body of a message whose length prefix was `len`.
fn read_body<T: DeserializeOwned, R: Read>(input: &mut R, len: [u8; 4]) -> io::Result<T> {
    let len = u32::from_le_bytes(len);
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    input.read_exact(&mut body)?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_oversized_ones_are_refused() {
        let mut buf = Vec::new();
        write_message(&mut buf, &Request::Shutdown { timeout_ms: 5000 }).unwrap();
        write_message(&mut buf, &Request::Status).unwrap();
        let mut input = &buf[..];
        assert!(matches!(
            read_message::<Request, _>(&mut input).unwrap(),
            Some(Request::Shutdown { timeout_ms: 5000 })
        ));
        assert!(matches!(
            read_message::<Request, _>(&mut input).unwrap(),
            Some(Request::Status)
        ));
        assert!(read_message::<Request, _>(&mut input).unwrap().is_none());

        let huge = (MAX_MESSAGE + 1).to_le_bytes();
        let err = read_message::<Request, _>(&mut &huge[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let garbage = [3, 0, 0, 0, b'{', b'x', b'}'];
        assert!(read_message::<Request, _>(&mut &garbage[..]).is_err());
    }

    #[test]
    fn requests_carry_their_files_and_a_wrong_count_is_refused() {
        use std::io::{Seek as _, SeekFrom};
        let (mut client, mut vm) = UnixStream::pair().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let memory = File::create(dir.path().join("m")).unwrap();
        let state = File::create(dir.path().join("s")).unwrap();
        let save = Request::Save {
            dir: dir.path().to_path_buf(),
        };
        send_request(&mut client, &save, &[&memory, &state]).unwrap();
        send_request(&mut client, &Request::Status, &[]).unwrap();
        let (request, files) = read_request(&mut vm).unwrap().unwrap();
        assert!(matches!(request, Request::Save { .. }));
        assert_eq!(files.len(), 2);
        // The descriptors are the files: what the VM writes lands in them.
        (&files[1]).write_all(b"{\"x\":1}").unwrap();
        let mut written = String::new();
        let mut reread = File::open(dir.path().join("s")).unwrap();
        reread.seek(SeekFrom::Start(0)).unwrap();
        reread.read_to_string(&mut written).unwrap();
        assert_eq!(written, "{\"x\":1}");
        let (request, files) = read_request(&mut vm).unwrap().unwrap();
        assert!(matches!(request, Request::Status) && files.is_empty());

        // A sender that gets the count wrong is stopped before anything is sent, and a
        // request that arrives without its files is refused.
        let err = send_request(&mut client, &save, &[&memory]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        write_message(&mut client, &save).unwrap();
        let err = read_request(&mut vm).unwrap_err();
        assert!(
            err.to_string().contains("comes with 0 files, not 2"),
            "{err}"
        );
        drop(client);
        assert!(read_request(&mut vm).unwrap().is_none());
    }

    #[test]
    fn notices_carry_their_number_beside_the_event_and_unnumbered_ones_read_as_zero() {
        let notice = Notice {
            seq: 7,
            event: Event::State {
                state: State::Paused,
            },
        };
        let json = serde_json::to_string(&notice).unwrap();
        assert_eq!(json, r#"{"seq":7,"event":"state","state":"paused"}"#);
        assert_eq!(serde_json::from_str::<Notice>(&json).unwrap(), notice);
        // A process that does not number its events, and a reader that does not care.
        let plain = r#"{"event":"reset","cause":"guest"}"#;
        let read: Notice = serde_json::from_str(plain).unwrap();
        assert_eq!(read.seq, 0);
        assert_eq!(
            serde_json::from_str::<Event>(&json).unwrap(),
            Event::State {
                state: State::Paused
            }
        );
    }
}
