//! Resource limits of the calling process (the server's, inherited by its VM processes).

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
}
