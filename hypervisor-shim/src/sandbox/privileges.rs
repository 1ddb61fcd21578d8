//! The process-wide steps of the sandbox: resource limits, namespaces, an empty root, an
//! unprivileged user, no_new_privs and capabilities.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use super::users::VmUser;
use super::{Jail, SandboxError};

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
    /// Why the process kept the host's root, if it did.
    pub root_skipped: Option<String>,
    /// The user the process runs as now, if it switched.
    pub user: Option<VmUser>,
    /// Why it did not switch users, if it was asked to and did not.
    pub user_skipped: Option<String>,
    /// Why the bounding set was kept, if it was (emptying it needs CAP_SETPCAP, which a
    /// process started without privileges does not have); the process's own capability
    /// sets are emptied all the same.
    pub bounding_set_kept: Option<String>,
}

impl fmt::Display for Confinement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no core dumps, at most 1024 open files, no_new_privs")?;
        match &self.namespaces_skipped {
            None => f.write_str(", new mount, network, IPC and UTS namespaces")?,
            Some(why) => write!(f, ", host namespaces ({why})")?,
        }
        match &self.root_skipped {
            None => f.write_str(", an empty read-only root")?,
            Some(why) => write!(f, ", the host's root ({why})")?,
        }
        match (&self.user, &self.user_skipped) {
            (Some(user), _) => write!(f, ", {user}")?,
            (None, Some(why)) => write!(f, ", the server's user ({why})")?,
            (None, None) => f.write_str(", the server's user")?,
        }
        f.write_str(", no capabilities")?;
        match &self.bounding_set_kept {
            None => Ok(()),
            Some(why) => write!(f, " (bounding set kept: {why})"),
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

/// Applies every process-wide step, in an order where each still has the rights it needs:
/// what is read from the host's files first, the root while the process may mount, the
/// bounding set while it holds CAP_SETPCAP, the user while it holds CAP_SETUID.
pub(super) fn confine(jail: &Jail) -> Result<Confinement, SandboxError> {
    let last_capability = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<libc::c_ulong>().ok())
        .unwrap_or(63);
    limit_resources()?;
    let namespaces_skipped = enter_namespaces()?;
    let root_skipped = match &namespaces_skipped {
        None => {
            enter_empty_root(&jail.empty_root_at)?;
            None
        }
        Some(_) => Some("making one needs a mount namespace of its own".to_owned()),
    };
    // SAFETY: prctl(2) with integer arguments only.
    check("setting no_new_privs", unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    })?;
    let bounding_set_kept = drop_bounding_set(last_capability)?;
    let (user, user_skipped) = match jail.user {
        Some(user) => match become_user(user)? {
            None => (Some(user), None),
            Some(why) => (None, Some(why)),
        },
        None => (None, None),
    };
    // Lowering its own sets needs no privilege: this step never skips.
    drop_capabilities()?;
    // SAFETY: prctl(2) with integer arguments only. Not dumpable: /proc/PID's files belong
    // to root and no process of the same user may trace this one.
    check("making the process non-dumpable", unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0)
    })?;
    Ok(Confinement {
        namespaces_skipped,
        root_skipped,
        user,
        user_skipped,
        bounding_set_kept,
    })
}

fn c_path(path: &Path) -> Result<CString, SandboxError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|e| SandboxError::Os {
        what: "naming the empty root",
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })
}

/// Makes an empty, read-only tmpfs the process's root, mounted over `at` in the process's
/// own mount namespace (the host's `at` is untouched): pivot_root(2) to it and the host's
/// root detached, or, where the root cannot be pivoted (an initramfs root), chroot(2) to
/// it, which the process cannot leave without CAP_SYS_CHROOT.
fn enter_empty_root(at: &Path) -> Result<(), SandboxError> {
    let at = c_path(at)?;
    let hidden = (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) as libc::c_ulong;
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    check("mounting the empty root", unsafe {
        libc::mount(
            c"cimvirt-vm".as_ptr(),
            at.as_ptr(),
            c"tmpfs".as_ptr(),
            hidden,
            c"size=4k,nr_inodes=8,mode=0555".as_ptr().cast(),
        )
    })?;
    // SAFETY: chdir(2) with a NUL-terminated string.
    check("entering the empty root", unsafe {
        libc::chdir(at.as_ptr())
    })?;
    // SAFETY: pivot_root(2) with two NUL-terminated strings: "." onto ".", which stacks the
    // old root over the new one, to be detached next.
    let pivoted = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) } == 0;
    if pivoted {
        // SAFETY: umount2(2) with a NUL-terminated string.
        check("detaching the host's root", unsafe {
            libc::umount2(c".".as_ptr(), libc::MNT_DETACH)
        })?;
    } else {
        // SAFETY: chroot(2) with a NUL-terminated string.
        check("changing the root", unsafe { libc::chroot(c".".as_ptr()) })?;
    }
    // SAFETY: chdir(2) with a NUL-terminated string.
    check("entering the new root", unsafe {
        libc::chdir(c"/".as_ptr())
    })?;
    // SAFETY: mount(2) remounting "/" with flags only.
    check("making the root read-only", unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | hidden,
            std::ptr::null(),
        )
    })
}

/// Switches to `user` with no supplementary groups; `Some(why)` where the process may not.
fn become_user(user: VmUser) -> Result<Option<String>, SandboxError> {
    // SAFETY: setgroups(2) with an empty list.
    if unsafe { libc::setgroups(0, std::ptr::null()) } < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EPERM) {
            return Ok(Some(format!(
                "changing it needs CAP_SETUID and CAP_SETGID: {error}"
            )));
        }
        return Err(os("dropping supplementary groups")(error));
    }
    // EINVAL: the id has no mapping in the user namespace the server runs in (a container).
    let unmapped = |what: &'static str| {
        move |error: SandboxError| match error {
            SandboxError::Os { source, .. } if source.raw_os_error() == Some(libc::EINVAL) => {
                SandboxError::Os {
                    what,
                    source: io::Error::new(
                        source.kind(),
                        format!(
                            "{source}: {user} is not mapped in this user namespace; give \
                             [vmm] users a range it maps"
                        ),
                    ),
                }
            }
            other => other,
        }
    };
    // SAFETY: setresgid(2) with integer arguments; the process has one thread, so glibc
    // changes no other.
    check("changing the group", unsafe {
        libc::setresgid(user.gid, user.gid, user.gid)
    })
    .map_err(unmapped("changing the group"))?;
    // SAFETY: setresuid(2) likewise. Leaving uid 0 empties the permitted and effective
    // capability sets.
    check("changing the user", unsafe {
        libc::setresuid(user.uid, user.uid, user.uid)
    })
    .map_err(unmapped("changing the user"))?;
    Ok(None)
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

/// Empties the bounding set (capabilities `0..=last`); `Some(why)` where the process may
/// not.
fn drop_bounding_set(last: libc::c_ulong) -> Result<Option<String>, SandboxError> {
    for cap in 0..=last {
        // SAFETY: prctl(2) with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } < 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EPERM) {
                return Ok(Some(format!("emptying it needs CAP_SETPCAP: {error}")));
            }
            // EINVAL: a capability this kernel does not know.
            if error.raw_os_error() != Some(libc::EINVAL) {
                return Err(os("dropping the bounding set")(error));
            }
        }
    }
    Ok(None)
}

/// Empties the ambient, effective, permitted and inheritable sets.
fn drop_capabilities() -> Result<(), SandboxError> {
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
    })
}
