//! The VM process's sandbox, in the manner of Firecracker's jailer: the process opens
//! everything the VM needs first (KVM, guest memory, disk images, taps, its control socket,
//! its console log), then gives up what it no longer needs before any guest code runs.
//!
//! - [`confine_process`], while the process is still single-threaded: a report for a
//!   forbidden system call is readied, core dumps are off and open files bounded, the
//!   process enters new mount, network, IPC and UTS namespaces with an empty read-only root,
//!   sets no_new_privs, becomes its own unprivileged user (see [`users`]) and drops every
//!   capability.
//! - [`confine_thread`], first thing in each thread: the seccomp filter of its
//!   [`ThreadKind`] (see [`filters`]). A denied system call ends the VM, and only the VM:
//!   the process writes which call, from which thread, to its log, its console log and its
//!   exit record, where the server reads it.
//!
//! The process names no file once confined: what it writes later (snapshots, memory copies,
//! its exit record, the console log's rotation) is opened before, or handed over as a
//! descriptor with the request (see [`crate::protocol`]).

pub mod filters;
mod privileges;
mod report;
pub mod users;

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

/// Where a VM process confines itself to.
#[derive(Clone, Debug)]
pub struct Jail {
    /// Where a denied system call is reported (see [`fault_record_path`]).
    pub fault_record: PathBuf,
    /// A directory of the host that the empty root is mounted over, in the process's own
    /// mount namespace (the host's directory is untouched): the VM's run directory.
    pub empty_root_at: PathBuf,
    /// The user to become, if any.
    pub user: Option<users::VmUser>,
}

/// Confines the calling process, which must not have started other threads yet.
pub fn confine_process(jail: &Jail) -> Result<Confinement, SandboxError> {
    report::prepare(&jail.fault_record)?;
    let confinement = privileges::confine(jail)?;
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
