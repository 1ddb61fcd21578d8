//! A fixed set of threads that check passwords, fed by a bounded queue.
//!
//! An argon2id check needs its full memory cost (19 MiB by default) for tens of
//! milliseconds. Run on a blocking thread per request, a flood of wrong passwords makes as
//! many threads and buffers as it has requests, and the allocator keeps the memory. Here
//! each worker allocates its buffer once and reuses it, the queue is bounded, and a check
//! that cannot start before its deadline is answered "busy" instead of waiting on.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

use argon2::Block;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::warn;

use super::password::verify_in;

/// The answer to one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The password matches the hash.
    Match,
    /// It does not.
    Mismatch,
    /// The check could not start in time: the queue was full or its deadline passed.
    Busy,
}

/// A password, wiped when dropped so that no copy is left in freed memory.
struct Secret(Vec<u8>);

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(|b| *b = 0);
    }
}

struct Job {
    phc: Arc<str>,
    password: Secret,
    deadline: Instant,
    reply: oneshot::Sender<Verdict>,
}

/// The password-checking threads.
pub struct CheckPool {
    queue: SyncSender<Job>,
    workers: usize,
}

impl CheckPool {
    /// Starts `workers` threads (at least one) behind a queue of `queue` checks; each runs
    /// `setup` first.
    pub fn new(
        workers: usize,
        queue: usize,
        setup: Option<WorkerSetup>,
    ) -> std::io::Result<CheckPool> {
        let workers = workers.max(1);
        let (tx, rx) = sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..workers {
            let rx = rx.clone();
            thread::Builder::new()
                .name(format!("auth-check-{n}"))
                .spawn(move || work(&rx, setup))?;
        }
        Ok(CheckPool { queue: tx, workers })
    }

    /// The number of threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Checks `password` against the PHC string `phc`, if a worker takes it up before
    /// `deadline`.
    pub async fn check(&self, phc: Arc<str>, password: Vec<u8>, deadline: Instant) -> Verdict {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            phc,
            password: Secret(password),
            deadline,
            reply,
        };
        match self.queue.try_send(job) {
            Ok(()) => answer.await.unwrap_or(Verdict::Busy),
            Err(TrySendError::Full(_)) => Verdict::Busy,
            Err(TrySendError::Disconnected(_)) => {
                warn!("the password-checking threads are gone");
                Verdict::Busy
            }
        }
    }
}

/// What each checking thread runs as it starts. The server lowers the thread's scheduling
/// priority with it, so that a check (tens of milliseconds of CPU) yields to the requests
/// being served instead of delaying them; this library makes no such system call itself.
pub type WorkerSetup = fn() -> std::io::Result<()>;

fn work(queue: &Mutex<Receiver<Job>>, setup: Option<WorkerSetup>) {
    if let Some(Err(e)) = setup.map(|setup| setup()) {
        tracing::debug!("the password-checking thread's setup failed: {e}");
    }
    // Grown to the largest hash seen, then kept: the pool's memory is workers x m_cost.
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = {
            let rx = queue.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let verdict = if Instant::now() > job.deadline {
            Verdict::Busy
        } else if verify_in(&mut memory, &job.phc, &job.password.0) {
            Verdict::Match
        } else {
            Verdict::Mismatch
        };
        // The caller may have gone (its client hung up); nothing to tell then.
        let _ = job.reply.send(verdict);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::{cheap_for_tests, HashSettings};
    use std::time::Duration;

    fn cheap_hash(password: &str) -> Arc<str> {
        Arc::from(cheap_for_tests().hash(password).unwrap())
    }

    #[tokio::test]
    async fn checks_answer_match_mismatch_or_busy() {
        let pool = CheckPool::new(1, 4, None).unwrap();
        let phc = cheap_hash("right password");
        let soon = Instant::now() + Duration::from_secs(10);
        assert_eq!(
            pool.check(phc.clone(), b"right password".to_vec(), soon)
                .await,
            Verdict::Match
        );
        assert_eq!(
            pool.check(phc.clone(), b"wrong".to_vec(), soon).await,
            Verdict::Mismatch
        );
        let past = Instant::now() - Duration::from_millis(1);
        assert_eq!(
            pool.check(phc, b"right password".to_vec(), past).await,
            Verdict::Busy
        );
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        // One worker, a queue of one: of many checks sent at once, some must be refused.
        let pool = Arc::new(CheckPool::new(1, 1, None).unwrap());
        let phc = Arc::from(HashSettings::default().hash("pw").unwrap());
        let soon = Instant::now() + Duration::from_secs(30);
        let checks: Vec<_> = (0..8)
            .map(|_| {
                let (pool, phc) = (pool.clone(), Arc::clone(&phc));
                tokio::spawn(async move { pool.check(phc, b"pw".to_vec(), soon).await })
            })
            .collect();
        let mut verdicts = Vec::new();
        for c in checks {
            verdicts.push(c.await.unwrap());
        }
        assert!(verdicts.contains(&Verdict::Busy), "{verdicts:?}");
        assert!(verdicts.contains(&Verdict::Match), "{verdicts:?}");
    }
}
