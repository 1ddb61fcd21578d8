//! Resource limits of the calling process (the server's, inherited by its VM processes), and
//! the scheduling priority of its threads.

use std::io;

/// The calling process's limit on open files, `(soft, hard)`.
pub fn open_files() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one rlimit into the valid, exclusively borrowed `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Raises the soft limit on open files to the hard limit, as far as `wanted`; returns the
/// soft limit now in force. Shells and service managers often start processes at 1024,
/// fewer than a server's connection limit plus its own files.
pub fn raise_open_files(wanted: u64) -> io::Result<u64> {
    let (soft, hard) = open_files()?;
    let target = wanted.min(hard);
    if target <= soft {
        return Ok(soft);
    }
    let limit = libc::rlimit {
        rlim_cur: target,
        rlim_max: hard,
    };
    // SAFETY: setrlimit(2) reads one rlimit from the valid `limit`.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(target)
}

/// Lowers the calling thread's scheduling priority by `increment` nice levels (Linux
/// schedules threads one by one), so that its work yields to the process's other threads.
pub fn lower_thread_priority(increment: i32) -> io::Result<()> {
    // SAFETY: gettid(2) has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // A thread's nice value starts as its creator's; setpriority(2) on a thread id sets
    // that thread's alone.
    let which = libc::PRIO_PROCESS;
    // SAFETY: getpriority(2) and setpriority(2) take plain integers; errno is cleared first
    // because -1 is a valid priority.
    let current = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(which, tid as libc::id_t)
    };
    if current == -1 && io::Error::last_os_error().raw_os_error() != Some(0) {
        return Err(io::Error::last_os_error());
    }
    let wanted = (current + increment).clamp(-20, 19);
    // SAFETY: as above.
    if unsafe { libc::setpriority(which, tid as libc::id_t, wanted) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_rises_toward_the_hard_one_and_never_falls() {
        let (soft, hard) = open_files().unwrap();
        assert!(soft <= hard);
        assert_eq!(raise_open_files(0).unwrap(), soft, "never lowered");
        let raised = raise_open_files(soft + 1).unwrap();
        assert_eq!(raised, (soft + 1).min(hard));
        assert_eq!(open_files().unwrap().0, raised);
    }

    #[test]
    fn a_thread_lowers_its_own_priority_only() {
        let nice_of = |tid: i32| {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
            // Field 19 (nice), counted after the command name in parentheses.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            after.split(' ').nth(16).unwrap().parse::<i32>().unwrap()
        };
        // SAFETY: gettid(2) has no arguments and cannot fail.
        let main = unsafe { libc::gettid() };
        let before = nice_of(main);
        let lowered = std::thread::spawn(move || {
            lower_thread_priority(5).unwrap();
            // SAFETY: as above.
            nice_of(unsafe { libc::gettid() })
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + 5).min(19));
        assert_eq!(nice_of(main), before, "the other threads keep theirs");
    }
}
