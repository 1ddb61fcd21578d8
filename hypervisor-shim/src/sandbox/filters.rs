//! The seccomp filter of each kind of VM-process thread: the system calls it makes, and for
//! `ioctl` the requests. Anything else traps, and the VM ends with a report of the call
//! (see `report.rs`).
//!
//! The lists were taken from what the threads do (strace of the test suite's VMs, test
//! guest and Linux, snapshots, migration, disks and taps); a call added to the VMM must be
//! added here, and the tests that run VMs fail until it is.

use std::collections::BTreeMap;
use std::fmt;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::SandboxError;

/// The kinds of threads in a VM process, each with its own filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main thread: the control loop that carries requests out (pause, snapshots,
    /// memory copies for migration, reset) and ends the process.
    Vmm,
    /// The control socket's threads: accepting connections, reading requests, writing
    /// answers and events.
    Control,
    /// A vCPU: KVM_RUN and the device emulation its exits lead to (device registers, the
    /// console).
    Vcpu,
    /// A virtio device's I/O thread: disk and network requests.
    Device,
}

impl ThreadKind {
    /// The kind's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadKind::Vmm => "vmm",
            ThreadKind::Control => "control",
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::Device => "device",
        }
    }

    /// Every kind.
    pub const ALL: [ThreadKind; 4] = [
        ThreadKind::Vmm,
        ThreadKind::Control,
        ThreadKind::Vcpu,
        ThreadKind::Device,
    ];
}

impl fmt::Display for ThreadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a filter: a system call, allowed with any arguments, or only where every
/// condition holds (entries for the same call are alternatives).
enum Allow {
    Call(libc::c_long),
    Where(libc::c_long, &'static [Cond]),
}

/// A condition on one argument (a 32-bit comparison: every value checked fits).
enum Cond {
    /// The argument equals the value.
    Is(u8, u64),
    /// The argument has none of these bits.
    Lacks(u8, u64),
    /// The argument is the process's own id (known when the filter is built).
    OwnPid(u8),
}

use Allow::{Call, Where};
use Cond::{Is, Lacks, OwnPid};

/// `ioctl` with one request (argument 1).
macro_rules! ioctl {
    ($request:expr) => {
        Where(libc::SYS_ioctl, &[Is(1, $request)])
    };
}

// KVM's ioctl requests on x86-64 (linux/kvm.h: _IO/_IOR/_IOW/_IOWR of KVMIO 0xAE with the
// size of each argument struct), as strace names them.
const KVM_RUN: u64 = 0xae80;
const KVM_GET_REGS: u64 = 0x8090_ae81;
const KVM_SET_REGS: u64 = 0x4090_ae82;
const KVM_GET_SREGS: u64 = 0x8138_ae83;
const KVM_SET_SREGS: u64 = 0x4138_ae84;
const KVM_TRANSLATE: u64 = 0xc018_ae85;
const KVM_GET_MSRS: u64 = 0xc008_ae88;
const KVM_SET_MSRS: u64 = 0x4008_ae89;
const KVM_GET_LAPIC: u64 = 0x8400_ae8e;
const KVM_SET_LAPIC: u64 = 0x4400_ae8f;
const KVM_SET_CPUID2: u64 = 0x4008_ae90;
const KVM_GET_CPUID2: u64 = 0xc008_ae91;
const KVM_GET_MP_STATE: u64 = 0x8004_ae98;
const KVM_SET_MP_STATE: u64 = 0x4004_ae99;
const KVM_GET_VCPU_EVENTS: u64 = 0x8040_ae9f;
const KVM_SET_VCPU_EVENTS: u64 = 0x4040_aea0;
const KVM_GET_DEBUGREGS: u64 = 0x8080_aea1;
const KVM_SET_DEBUGREGS: u64 = 0x4080_aea2;
const KVM_GET_XSAVE: u64 = 0x9000_aea4;
const KVM_SET_XSAVE: u64 = 0x5000_aea5;
const KVM_GET_XCRS: u64 = 0x8188_aea6;
const KVM_SET_XCRS: u64 = 0x4188_aea7;
const KVM_GET_DIRTY_LOG: u64 = 0x4010_ae42;
const KVM_SET_USER_MEMORY_REGION: u64 = 0x4020_ae46;
const KVM_SET_CLOCK: u64 = 0x4030_ae7b;
const KVM_GET_CLOCK: u64 = 0x8030_ae7c;
const KVM_GET_PIT2: u64 = 0x8070_ae9f;
const KVM_SET_PIT2: u64 = 0x4070_aea0;
const KVM_GET_IRQCHIP: u64 = 0xc208_ae62;
const KVM_SET_IRQCHIP: u64 = 0x8208_ae63;

/// What glibc's pthread_create passes clone(2): a thread of this process, nothing else.
const THREAD_CLONE_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID) as u64;

/// What every thread does: memory (never executable), locks, signals, time, logging,
/// ending; and what the SIGSYS report needs (write, _exit).
const COMMON: &[Allow] = &[
    Call(libc::SYS_brk),
    Where(libc::SYS_mmap, &[Lacks(2, libc::PROT_EXEC as u64)]),
    Where(libc::SYS_mprotect, &[Lacks(2, libc::PROT_EXEC as u64)]),
    Call(libc::SYS_munmap),
    Call(libc::SYS_mremap),
    Call(libc::SYS_madvise),
    Call(libc::SYS_futex),
    Call(libc::SYS_sched_yield),
    Call(libc::SYS_sched_getaffinity),
    Call(libc::SYS_nanosleep),
    Call(libc::SYS_clock_nanosleep),
    Call(libc::SYS_clock_gettime),
    Call(libc::SYS_gettimeofday),
    Call(libc::SYS_rt_sigreturn),
    Call(libc::SYS_rt_sigprocmask),
    Call(libc::SYS_sigaltstack),
    Call(libc::SYS_getpid),
    Call(libc::SYS_gettid),
    Call(libc::SYS_getrandom),
    Call(libc::SYS_write),
    Call(libc::SYS_writev),
    Call(libc::SYS_close),
    Call(libc::SYS_exit),
    Call(libc::SYS_exit_group),
    Call(libc::SYS_restart_syscall),
];

/// What a thread that starts threads needs, including what the new thread does under this
/// filter before it installs its own (naming itself, registering with glibc, and the
/// installation itself). clone3(2) answers ENOSYS (see [`clone3_unsupported`]) so that glibc
/// falls back to clone(2), whose flags a filter can check.
const STARTS_THREADS: &[Allow] = &[
    Where(libc::SYS_clone, &[Is(0, THREAD_CLONE_FLAGS)]),
    Call(libc::SYS_clone3),
    Call(libc::SYS_set_robust_list),
    Call(libc::SYS_rseq),
    Where(libc::SYS_prctl, &[Is(0, libc::PR_SET_NAME as u64)]),
    Where(libc::SYS_prctl, &[Is(0, libc::PR_SET_NO_NEW_PRIVS as u64)]),
    Where(
        libc::SYS_seccomp,
        &[Is(0, libc::SECCOMP_SET_MODE_FILTER as u64)],
    ),
];

/// What a device's I/O thread does: wait on its eventfds and tap, move requests between
/// guest memory and disk images or the tap. A vCPU or the main thread starts it, so their
/// filters (which it also runs under) include all of this.
const DEVICE: &[Allow] = &[
    Call(libc::SYS_epoll_wait),
    Call(libc::SYS_epoll_pwait),
    Call(libc::SYS_read),
    Call(libc::SYS_readv),
    Call(libc::SYS_pread64),
    Call(libc::SYS_preadv),
    Call(libc::SYS_pwrite64),
    Call(libc::SYS_pwritev),
    Call(libc::SYS_fsync),
    Call(libc::SYS_fdatasync),
];

/// Starting a device's I/O thread: its epoll set, stop eventfd and eventfd copies.
const STARTS_DEVICES: &[Allow] = &[
    Call(libc::SYS_epoll_create1),
    Call(libc::SYS_epoll_ctl),
    Call(libc::SYS_eventfd2),
    Where(libc::SYS_fcntl, &[Is(1, libc::F_DUPFD_CLOEXEC as u64)]),
];

/// The main thread: VM-wide KVM state (dirty log, clock, PIT, interrupt controller), kicks
/// to its own vCPU threads, snapshots, memory copies and the exit record (into files it was
/// handed or opened at the start: it opens, creates, renames and removes none), reloading a
/// Linux boot image on reset (kept open), answers to requests.
const VMM: &[Allow] = &[
    ioctl!(KVM_GET_DIRTY_LOG),
    ioctl!(KVM_SET_USER_MEMORY_REGION),
    ioctl!(KVM_GET_CLOCK),
    ioctl!(KVM_SET_CLOCK),
    ioctl!(KVM_GET_PIT2),
    ioctl!(KVM_SET_PIT2),
    ioctl!(KVM_GET_IRQCHIP),
    ioctl!(KVM_SET_IRQCHIP),
    Where(libc::SYS_tgkill, &[OwnPid(0)]),
    Call(libc::SYS_lseek),
    Call(libc::SYS_ftruncate),
    Call(libc::SYS_fallocate),
    Call(libc::SYS_statx),
    Call(libc::SYS_newfstatat),
    Call(libc::SYS_fstat),
    Call(libc::SYS_mincore),
    Call(libc::SYS_sendto),
    Call(libc::SYS_recvfrom),
];

/// The control socket's threads: accept connections, read requests (with the descriptors
/// that come with some), answer, stream events.
const CONTROL: &[Allow] = &[
    Call(libc::SYS_accept4),
    Call(libc::SYS_read),
    Call(libc::SYS_recvmsg),
    Call(libc::SYS_recvfrom),
    Call(libc::SYS_sendto),
    Call(libc::SYS_setsockopt),
    Call(libc::SYS_shutdown),
    Where(libc::SYS_fcntl, &[Is(1, libc::F_DUPFD_CLOEXEC as u64)]),
];

/// A vCPU: KVM_RUN and its own registers (saved and loaded for snapshots and resets), the
/// console (its log, rotated by copying into the previous one and emptying it, and its
/// listeners), and starting devices' I/O threads when the driver activates them.
const VCPU: &[Allow] = &[
    ioctl!(KVM_RUN),
    ioctl!(KVM_GET_REGS),
    ioctl!(KVM_SET_REGS),
    ioctl!(KVM_GET_SREGS),
    ioctl!(KVM_SET_SREGS),
    ioctl!(KVM_TRANSLATE),
    ioctl!(KVM_GET_MSRS),
    ioctl!(KVM_SET_MSRS),
    ioctl!(KVM_GET_CPUID2),
    ioctl!(KVM_SET_CPUID2),
    ioctl!(KVM_GET_LAPIC),
    ioctl!(KVM_SET_LAPIC),
    ioctl!(KVM_GET_MP_STATE),
    ioctl!(KVM_SET_MP_STATE),
    ioctl!(KVM_GET_VCPU_EVENTS),
    ioctl!(KVM_SET_VCPU_EVENTS),
    ioctl!(KVM_GET_DEBUGREGS),
    ioctl!(KVM_SET_DEBUGREGS),
    ioctl!(KVM_GET_XSAVE),
    ioctl!(KVM_SET_XSAVE),
    ioctl!(KVM_GET_XCRS),
    ioctl!(KVM_SET_XCRS),
    Call(libc::SYS_ftruncate),
    Call(libc::SYS_sendto),
];

fn entries(kind: ThreadKind) -> Vec<&'static Allow> {
    let parts: &[&[Allow]] = match kind {
        ThreadKind::Vmm => &[COMMON, STARTS_THREADS, STARTS_DEVICES, DEVICE, VMM],
        ThreadKind::Control => &[COMMON, STARTS_THREADS, CONTROL],
        ThreadKind::Vcpu => &[COMMON, STARTS_THREADS, STARTS_DEVICES, DEVICE, VCPU],
        ThreadKind::Device => &[COMMON, DEVICE],
    };
    parts.iter().flat_map(|part| part.iter()).collect()
}

fn condition(cond: &Cond) -> Result<SeccompCondition, seccompiler::BackendError> {
    let (arg, op, value) = match *cond {
        Is(arg, value) => (arg, SeccompCmpOp::Eq, value),
        Lacks(arg, bits) => (arg, SeccompCmpOp::MaskedEq(bits), 0),
        OwnPid(arg) => (arg, SeccompCmpOp::Eq, u64::from(std::process::id())),
    };
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
}

/// The filter of `kind`, compiled to BPF: the allowed calls, anything else trapped.
pub fn program(kind: ThreadKind) -> Result<BpfProgram, SandboxError> {
    let fail = |message: String| SandboxError::Seccomp { kind, message };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for entry in entries(kind) {
        match entry {
            Call(nr) => {
                rules.entry(*nr).or_default();
            }
            Where(nr, conditions) => {
                let conditions = conditions
                    .iter()
                    .map(condition)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| fail(e.to_string()))?;
                let rule = SeccompRule::new(conditions).map_err(|e| fail(e.to_string()))?;
                rules.entry(*nr).or_default().push(rule);
            }
        }
    }
    compile(kind, rules, SeccompAction::Trap, SeccompAction::Allow)
}

/// The second filter of every thread: clone3(2) fails with ENOSYS, as on kernels before it,
/// so that glibc starts threads with clone(2), whose flags the first filter checks (clone3
/// takes them in memory, out of a filter's reach). Stacked filters apply the strictest
/// answer, so the first filter's allowing clone3 lets this one decide.
fn clone3_unsupported(kind: ThreadKind) -> Result<BpfProgram, SandboxError> {
    let rules = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    compile(
        kind,
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
    )
}

fn compile(
    kind: ThreadKind,
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, SandboxError> {
    let fail = |message: String| SandboxError::Seccomp { kind, message };
    let filter = SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64)
        .map_err(|e| fail(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| fail(e.to_string()))
}

/// Installs the filters of `kind` on the calling thread.
pub(super) fn install(kind: ThreadKind) -> Result<(), SandboxError> {
    for program in [clone3_unsupported(kind)?, program(kind)?] {
        seccompiler::apply_filter(&program).map_err(|e| SandboxError::Seccomp {
            kind,
            message: e.to_string(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_compiles_to_a_filter() {
        for kind in ThreadKind::ALL {
            let program = program(kind).unwrap();
            assert!(!program.is_empty(), "{kind}");
        }
    }
}
