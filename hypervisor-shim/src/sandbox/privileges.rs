//! The process-wide steps of the sandbox: resource limits, namespaces, no_new_privs and
//! capabilities.

use std::fmt;
use std::io;

use super::SandboxError;

/// Open files a confined VM process may hold: what it opened while building the machine
/// (a few dozen at most), its control connections and a snapshot's files, with room to
/// spare.
const MAX_OPEN_FILES: u64 = 1024;

/// What [`confine_process`](super::confine_process) did, for the VM's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// Why the process stayed in the host's namespaces, if it did (an unprivileged user
    /// cannot create them).
    pub namespaces_skipped: Option<String>,
    /// Why capabilities were not dropped, if they were not (a process without them has none
    /// to drop).
    pub capabilities_skipped: Option<String>,
}

impl fmt::Display for Confinement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no core dumps, at most 1024 open files, no_new_privs")?;
        match &self.namespaces_skipped {
            None => f.write_str(", new mount, network, IPC and UTS namespaces")?,
            Some(why) => write!(f, ", host namespaces ({why})")?,
        }
        match &self.capabilities_skipped {
            None => f.write_str(", no capabilities"),
            Some(why) => write!(f, ", capabilities kept ({why})"),
        }
    }
}

fn os(what: &'static str) -> impl FnOnce(io::Error) -> SandboxError {
    move |source| SandboxError::Os { what, source }
}

fn check(what: &'static str, result: libc::c_int) -> Result<(), SandboxError> {
    if result < 0 {
        Err(os(what)(io::Error::last_os_error()))
    } else {
        Ok(())
    }
}

/// Applies every process-wide step, in an order where each still has the rights it needs.
pub(super) fn confine() -> Result<Confinement, SandboxError> {
    limit_resources()?;
    let namespaces_skipped = enter_namespaces()?;
    // SAFETY: prctl(2) with integer arguments only.
    check("setting no_new_privs", unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    })?;
    let capabilities_skipped = drop_capabilities()?;
    Ok(Confinement {
        namespaces_skipped,
        capabilities_skipped,
    })
}

fn set_limit(
    what: &'static str,
    resource: libc::__rlimit_resource_t,
    value: u64,
) -> Result<(), SandboxError> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit(2) reads one rlimit from the valid `limit`.
    check(what, unsafe { libc::setrlimit(resource, &limit) })
}

fn limit_resources() -> Result<(), SandboxError> {
    set_limit("turning core dumps off", libc::RLIMIT_CORE, 0)?;
    let (_, hard) = crate::rlimits::open_files().map_err(os("reading the open-file limit"))?;
    set_limit(
        "limiting open files",
        libc::RLIMIT_NOFILE,
        MAX_OPEN_FILES.min(hard),
    )
}

/// New mount, network, IPC and UTS namespaces; `Some(why)` where the process may not create
/// them. The mount namespace is made private, so that nothing mounted in it reaches the host.
fn enter_namespaces() -> Result<Option<String>, SandboxError> {
    let flags = libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    // SAFETY: unshare(2) with flags only; the caller has not started other threads.
    if unsafe { libc::unshare(flags) } < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EPERM) {
            return Ok(Some(format!("creating them needs CAP_SYS_ADMIN: {error}")));
        }
        return Err(os("entering new namespaces")(error));
    }
    // SAFETY: mount(2) with a static path and null optional arguments: only a change of
    // propagation, which reads no data.
    check("making the mount namespace private", unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    })?;
    let hostname = b"cimvirt-vm";
    // SAFETY: sethostname(2) reads `hostname.len()` bytes of a static array.
    check("naming the UTS namespace", unsafe {
        libc::sethostname(hostname.as_ptr().cast(), hostname.len())
    })?;
    Ok(None)
}

/// The capability sets as capset(2) takes them (version 3: two 32-bit words per set).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Empties the bounding, ambient, effective, permitted and inheritable sets; `Some(why)`
/// where the process had none to drop.
fn drop_capabilities() -> Result<Option<String>, SandboxError> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<libc::c_ulong>().ok())
        .unwrap_or(63);
    for cap in 0..=last {
        // SAFETY: prctl(2) with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } < 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EPERM) {
                return Ok(Some(format!("dropping them needs CAP_SETPCAP: {error}")));
            }
            // EINVAL: a capability this kernel does not know.
            if error.raw_os_error() != Some(libc::EINVAL) {
                return Err(os("dropping the bounding set")(error));
            }
        }
    }
    // SAFETY: prctl(2) with integer arguments only.
    check("clearing ambient capabilities", unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    })?;
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset(2) reads one header and two data structs, laid out as the kernel's
    // `__user_cap_header_struct` and `__user_cap_data_struct`, from live values.
    check("dropping capabilities", unsafe {
        libc::syscall(libc::SYS_capset, &header, data.as_ptr()) as libc::c_int
    })?;
    Ok(None)
}
