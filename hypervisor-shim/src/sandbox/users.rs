//! The unprivileged users VM processes run as: one uid per running VM (with the gid of the
//! same number), from a range the operator chooses, so that no VM process can signal or
//! trace another, nor touch a file another host user owns. No entry in /etc/passwd is
//! needed: a confined process only ever runs as the number.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

/// The user and group a VM process switches to once its machine is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmUser {
    /// The user id.
    pub uid: libc::uid_t,
    /// The group id.
    pub gid: libc::gid_t,
}

impl fmt::Display for VmUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {} gid {}", self.uid, self.gid)
    }
}

/// An inclusive range of ids, written `FIRST-LAST`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct IdRange {
    first: u32,
    last: u32,
}

/// The default range: far above the ids distributions give people and services (below
/// 60000) and those systemd hands to containers, so that no host account shares one.
pub const DEFAULT_RANGE: IdRange = IdRange {
    first: 1_900_000_000,
    last: 1_900_065_535,
};

impl IdRange {
    /// The range `first..=last`; refused where it is empty, holds root or ends at the id
    /// that means "none" to the kernel.
    pub fn new(first: u32, last: u32) -> Result<IdRange, String> {
        if first == 0 {
            return Err("the range may not hold 0 (root)".into());
        }
        if last == u32::MAX {
            return Err(format!("{last} is not a usable id (it means \"none\")"));
        }
        if first > last {
            return Err(format!("{first}-{last} is empty"));
        }
        Ok(IdRange { first, last })
    }

    /// Whether `id` is in the range.
    pub fn contains(&self, id: u32) -> bool {
        (self.first..=self.last).contains(&id)
    }

    /// How many ids it holds.
    pub fn len(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    /// Never: a range holds one id at least. (For clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for IdRange {
    type Err = String;

    fn from_str(text: &str) -> Result<IdRange, String> {
        let (first, last) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not FIRST-LAST"))?;
        let id = |part: &str| {
            part.trim()
                .parse::<u32>()
                .map_err(|e| format!("{part:?} in {text:?}: {e}"))
        };
        IdRange::new(id(first)?, id(last)?)
    }
}

impl TryFrom<String> for IdRange {
    type Error = String;

    fn try_from(text: String) -> Result<IdRange, String> {
        text.parse()
    }
}

/// Hands out the ids of a range, one per running VM.
#[derive(Debug)]
pub struct UserPool {
    range: IdRange,
    taken: Mutex<BTreeSet<u32>>,
}

impl UserPool {
    /// A pool over `range`, none taken.
    pub fn new(range: IdRange) -> UserPool {
        UserPool {
            range,
            taken: Mutex::default(),
        }
    }

    /// The range.
    pub fn range(&self) -> IdRange {
        self.range
    }

    /// The lowest free id, now taken; `None` when every one is.
    pub fn take(&self) -> Option<VmUser> {
        let mut taken = crate::lock(&self.taken);
        let free = (self.range.first..=self.range.last).find(|id| !taken.contains(id))?;
        taken.insert(free);
        Some(VmUser {
            uid: free,
            gid: free,
        })
    }

    /// Marks the id of a VM process found running (after a server restart) as taken; ids
    /// outside the range are not the pool's.
    pub fn mark_taken(&self, uid: libc::uid_t) {
        if self.range.contains(uid) {
            crate::lock(&self.taken).insert(uid);
        }
    }

    /// Gives an id back once its VM process has ended.
    pub fn give_back(&self, user: VmUser) {
        crate::lock(&self.taken).remove(&user.uid);
    }
}

/// The real uid of process `pid`, from /proc.
pub fn uid_of(pid: u32) -> Option<libc::uid_t> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_refuse_root_none_and_empty() {
        let range: IdRange = "1000-1002".parse().unwrap();
        assert_eq!(range.len(), 3);
        assert_eq!(range.to_string(), "1000-1002");
        assert!("0-10".parse::<IdRange>().unwrap_err().contains("root"));
        assert!("5-4294967295".parse::<IdRange>().is_err());
        assert!("9-3".parse::<IdRange>().unwrap_err().contains("empty"));
        assert!("12".parse::<IdRange>().is_err());
        assert!("a-b".parse::<IdRange>().is_err());
    }

    #[test]
    fn the_pool_hands_out_distinct_ids_reuses_freed_ones_and_runs_out() {
        let pool = UserPool::new("100-102".parse().unwrap());
        pool.mark_taken(101);
        pool.mark_taken(7); // not the pool's
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert_eq!((a.uid, a.gid, b.uid), (100, 100, 102));
        assert_eq!(pool.take(), None);
        pool.give_back(a);
        assert_eq!(pool.take(), Some(a));
    }

    #[test]
    fn this_process_uid_is_read_from_proc() {
        // SAFETY: getuid(2) takes nothing and cannot fail.
        let uid = unsafe { libc::getuid() };
        assert_eq!(uid_of(std::process::id()), Some(uid));
    }
}
