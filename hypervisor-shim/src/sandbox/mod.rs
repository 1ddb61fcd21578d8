//! The VM process's sandbox, in the manner of Firecracker's jailer: the process opens
//! everything the VM needs first (KVM, guest memory, disk images, taps, its control socket,
//! its console log), then gives up what it no longer needs before any guest code runs.
//!
//! - [`confine_process`], while the process is still single-threaded: a report for a
//!   forbidden system call is readied, core dumps are off and open files bounded, the
//!   process enters new mount, network, IPC and UTS namespaces, sets no_new_privs and drops
//!   every capability.
//! - [`confine_thread`], first thing in each thread: the seccomp filter of its
//!   [`ThreadKind`] (see [`filters`]). A denied system call ends the VM, and only the VM:
//!   the process writes which call, from which thread, to its log, its console log and its
//!   exit record, where the server reads it.
//!
//! Not yet done: an unprivileged uid/gid per VM and an empty root; both need the requests
//! that name files after start-up (save, snapshot, memory copies) to hand over descriptors
//! instead.

pub mod filters;
mod privileges;
mod report;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub use filters::ThreadKind;
pub use privileges::Confinement;

/// Whether [`confine_process`] ran, so that each thread installs its filter.
static CONFINED: AtomicBool = AtomicBool::new(false);

/// Why the sandbox could not be set up (the VM does not start).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A system call that sets the sandbox up failed.
    #[error("sandbox: {what}: {source}")]
    Os {
        /// The step.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The seccomp filter could not be built or installed.
    #[error("sandbox: seccomp filter for {kind} threads: {message}")]
    Seccomp {
        /// The thread kind.
        kind: ThreadKind,
        /// What went wrong.
        message: String,
    },
}

/// Where a VM process writes what ended it when its sandbox stops it: beside its control
/// socket, read by the supervisor when there is no exit record.
pub fn fault_record_path(socket: &Path) -> PathBuf {
    socket.with_extension("fault")
}

/// Confines the calling process, which must not have started other threads yet.
/// `fault_record` is where a denied system call is reported (see [`fault_record_path`]).
pub fn confine_process(fault_record: &Path) -> Result<Confinement, SandboxError> {
    report::prepare(fault_record)?;
    let confinement = privileges::confine()?;
    CONFINED.store(true, Ordering::Release);
    Ok(confinement)
}

/// Installs the seccomp filter of `kind` on the calling thread, if the process is confined.
/// Threads the caller starts afterwards inherit it.
pub fn confine_thread(kind: ThreadKind) -> Result<(), SandboxError> {
    if !CONFINED.load(Ordering::Acquire) {
        return Ok(());
    }
    report::set_thread_kind(kind);
    filters::install(kind)
}

/// Names the calling thread's kind for a report from it, in a thread that inherited its
/// filter from the thread that started it (a control connection's).
pub fn note_inherited(kind: ThreadKind) {
    if CONFINED.load(Ordering::Acquire) {
        report::set_thread_kind(kind);
    }
}

/// Tells the report where the VM's console log is now (the console calls it whenever it
/// opens the file), so that a denied system call is reported there too.
pub fn note_console_log(file: &std::fs::File) {
    report::set_console_log(std::os::fd::AsRawFd::as_raw_fd(file));
}

/// Ends the process after a failure to confine a thread: a VM that runs unconfined is not
/// allowed to go on.
pub fn abort_unconfined(error: &SandboxError) -> ! {
    report::abort(&error.to_string())
}
