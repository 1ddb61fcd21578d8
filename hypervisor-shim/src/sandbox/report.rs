//! Reporting a system call the seccomp filter denied. The filter traps (SIGSYS) instead of
//! killing the process, so that the handler can say which call, from which thread: in the
//! VM log (standard error), in the console log, and in the fault record the supervisor
//! reads when the process has left no exit record. The handler uses only async-signal-safe
//! steps: bytes formatted on the stack, write(2) to descriptors opened beforehand, _exit(2).

use std::cell::Cell;
use std::ffi::c_void;
use std::os::fd::{IntoRawFd as _, RawFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::{SandboxError, ThreadKind};

/// The process's exit status after the sandbox stopped it (as for a guest crash).
const STOPPED_EXIT_CODE: i32 = 2;
/// Where `si_syscall` is in the `siginfo_t` of a SIGSYS (`_sigsys._syscall`, after the three
/// `int` header fields, their padding and `_call_addr`), on 64-bit Linux.
const SI_SYSCALL_OFFSET: usize = 24;

static FAULT_RECORD: AtomicI32 = AtomicI32::new(-1);
static CONSOLE_LOG: AtomicI32 = AtomicI32::new(-1);
static REPORTED: AtomicBool = AtomicBool::new(false);

thread_local! {
    // Const-initialized and without destructors: readable from a signal handler.
    static KIND: Cell<Option<ThreadKind>> = const { Cell::new(None) };
    static NAME: Cell<[u8; 16]> = const { Cell::new([0; 16]) };
}

/// Opens the fault record and installs the SIGSYS handler.
pub(super) fn prepare(fault_record: &Path) -> Result<(), SandboxError> {
    let os = |what| move |source| SandboxError::Os { what, source };
    let record = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(fault_record)
        .map_err(os("opening the fault record"))?;
    FAULT_RECORD.store(record.into_raw_fd(), Ordering::Release);
    vmm_sys_util::signal::register_signal_handler(libc::SIGSYS, on_sigsys)
        .map_err(|e| os("installing the SIGSYS handler")(e.into()))
}

/// Where the console log is now (`-1`: none).
pub(super) fn set_console_log(fd: RawFd) {
    CONSOLE_LOG.store(fd, Ordering::Release);
}

/// Remembers the calling thread's kind and name for a report from it.
pub(super) fn set_thread_kind(kind: ThreadKind) {
    let mut name = [0u8; 16];
    let current = std::thread::current();
    let given = current.name().unwrap_or("main").as_bytes();
    let len = given.len().min(name.len());
    name[..len].copy_from_slice(&given[..len]);
    KIND.set(Some(kind));
    NAME.set(name);
}

/// Reports `message` as what ended the VM and exits.
pub(super) fn abort(message: &str) -> ! {
    let mut line = Line::new();
    line.push(message.as_bytes());
    finish(&line)
}

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut c_void) {
    // SAFETY: the kernel hands a SIGSYS handler installed with SA_SIGINFO a valid siginfo_t,
    // whose `_sigsys._syscall` int lies at SI_SYSCALL_OFFSET.
    let number = unsafe {
        info.cast::<u8>()
            .add(SI_SYSCALL_OFFSET)
            .cast::<i32>()
            .read()
    };
    let mut line = Line::new();
    line.push(b"the sandbox stopped the VM: thread ");
    let name = NAME.get();
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    line.push(if len == 0 { b"?" } else { &name[..len] });
    if let Some(kind) = KIND.get() {
        line.push(b" (");
        line.push(kind.as_str().as_bytes());
        line.push(b" filter)");
    }
    line.push(b" made the forbidden system call ");
    let syscall = usize::try_from(number)
        .ok()
        .and_then(syscalls::Sysno::new)
        .map_or("unknown", |s| s.name());
    line.push(syscall.as_bytes());
    line.push(b" (");
    line.push_number(number.unsigned_abs());
    line.push(b")");
    finish(&line)
}

/// Writes the report everywhere it goes, once, and ends the process.
fn finish(line: &Line) -> ! {
    if REPORTED.swap(true, Ordering::AcqRel) {
        // Another thread is reporting its own call and ends the process when done; exiting
        // here would cut its report short.
        loop {
            // SAFETY: sched_yield(2) has no arguments and every filter allows it.
            unsafe { libc::sched_yield() };
        }
    }
    let text = line.bytes();
    write_all(2, &[b"cimvirt-vmm: ", text, b"\n"]);
    write_all(
        CONSOLE_LOG.load(Ordering::Acquire),
        &[b"\r\n[cimvirt] ", text, b"\r\n"],
    );
    // ExitRecord's JSON; the text holds no quote or backslash (names and numbers).
    write_all(
        FAULT_RECORD.load(Ordering::Acquire),
        &[br#"{"state":"crashed","reason":""#, text, br#""}"#],
    );
    // SAFETY: _exit(2) ends the process at once, without running anything else.
    unsafe { libc::_exit(STOPPED_EXIT_CODE) }
}

fn write_all(fd: RawFd, parts: &[&[u8]]) {
    if fd < 0 {
        return;
    }
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            // SAFETY: write(2) reads `rest.len()` bytes from a live slice.
            let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
            if n <= 0 {
                return;
            }
            rest = &rest[n as usize..];
        }
    }
}

/// A line formatted without allocating.
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; 256],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len == self.buf.len() {
                return;
            }
            // Keeps the JSON record valid whatever a message holds.
            self.buf[self.len] = if b == b'"' || b == b'\\' || b < 0x20 {
                b'\''
            } else {
                b
            };
            self.len += 1;
        }
    }

    fn push_number(&mut self, mut n: u32) {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}
