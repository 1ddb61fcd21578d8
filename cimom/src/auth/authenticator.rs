//! HTTP Basic authentication: remembered credentials first, then one bounded argon2id
//! check for every request that carries the same credentials.
//!
//! What a request can make the server spend is bounded here:
//! - verified credentials are remembered (a SHA-256 of the header, never the password), and
//!   checked again in the background before they expire, so that steady clients never wait
//!   for argon2 and an expiry does not send every request to it at once;
//! - concurrent requests with the same credentials share one check;
//! - rejected credentials are remembered too, so a client repeating them costs nothing;
//! - checks run on a fixed pool of threads with their memory allocated once, behind a
//!   bounded queue, and a check that cannot start in time is answered "busy" (HTTP 503);
//! - each client (address) has a few checks at most waiting or running, and its checks are
//!   delayed more and more as its failures mount.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::bounded::make_room;
use super::password::HashSettings;
use super::pool::WorkerSetup;
use super::pool::{CheckPool, Verdict};
use super::throttle::{Throttle, ThrottleSettings};
use super::users::{list_users, random_password, User, UserError};
use crate::lock;
use crate::peer::ClientKey;
use crate::store::Store;

/// How authentication spends the server's resources.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// How long verified (and rejected) credentials are remembered.
    pub remember: Duration,
    /// Threads checking passwords.
    pub workers: usize,
    /// How long a check may wait for a thread (or for its client's turn) before the request
    /// is answered 503.
    pub max_wait: Duration,
    /// Per-client bounds.
    pub throttle: ThrottleSettings,
    /// The cost of the stand-in hash checked for unknown user names, which should be that
    /// of the users' own hashes.
    pub hashing: HashSettings,
    /// Run on each password-checking thread as it starts (see [`WorkerSetup`]).
    pub worker_setup: Option<WorkerSetup>,
}

/// Checks queued per worker thread at most.
const QUEUE_PER_WORKER: usize = 16;
/// The most remembered credentials, verified or rejected (each kind).
const MAX_REMEMBERED: usize = 10_000;

/// The outcome of an authentication attempt.
#[derive(Clone, Debug)]
pub enum AuthOutcome {
    /// Valid credentials.
    Authenticated(Arc<User>),
    /// No usable Authorization header.
    Missing,
    /// Wrong user or password.
    Rejected,
    /// The credentials could not be checked in time (too many checks waiting).
    Busy,
}

type Digest = [u8; 32];

/// Credentials remembered with the time they were checked, bounded in number.
struct Remembered<V> {
    entries: HashMap<Digest, (V, Instant)>,
}

impl<V: Clone> Remembered<V> {
    fn new() -> Self {
        Remembered {
            entries: HashMap::new(),
        }
    }

    /// The value and its age, if younger than `ttl`.
    fn get(&mut self, key: &Digest, ttl: Duration) -> Option<(V, Duration)> {
        let (value, at) = self.entries.get(key)?;
        let age = at.elapsed();
        if age < ttl {
            return Some((value.clone(), age));
        }
        self.entries.remove(key);
        None
    }

    fn put(&mut self, key: Digest, value: V, ttl: Duration) {
        make_room(
            &mut self.entries,
            &key,
            MAX_REMEMBERED,
            |(_, at)| at.elapsed() >= ttl,
            |(_, at)| *at,
        );
        self.entries.insert(key, (value, Instant::now()));
    }
}

/// A user and the PHC string of its password.
struct Account {
    user: Arc<User>,
    phc: Arc<str>,
}

/// Checks HTTP Basic credentials against the users of the store.
pub struct Authenticator {
    accounts: HashMap<String, Account>,
    /// Checked for unknown names, so that timing does not reveal which names exist.
    stand_in: Arc<str>,
    verified: Mutex<Remembered<Arc<User>>>,
    rejected: Mutex<Remembered<()>>,
    /// Checks in progress, by credentials: later requests wait for the same answer.
    pending: Mutex<HashMap<Digest, watch::Receiver<Option<AuthOutcome>>>>,
    pool: CheckPool,
    throttle: Arc<Throttle>,
    settings: AuthSettings,
}

impl Authenticator {
    /// An authenticator over the users in `store`; starts the checking threads.
    pub fn new(store: &Store, settings: AuthSettings) -> Result<Arc<Self>, UserError> {
        let accounts = list_users(store)?
            .into_iter()
            .map(|u| {
                let phc = Arc::from(u.password_hash.as_str());
                (
                    u.name.clone(),
                    Account {
                        user: Arc::new(u),
                        phc,
                    },
                )
            })
            .collect();
        let stand_in = settings
            .hashing
            .hash(&random_password())
            .map_err(|e| UserError::Hash(e.to_string()))?;
        let queue = settings.workers.max(1) * QUEUE_PER_WORKER;
        let pool = CheckPool::new(settings.workers, queue, settings.worker_setup)
            .map_err(|e| UserError::Hash(format!("cannot start the checking threads: {e}")))?;
        Ok(Arc::new(Authenticator {
            accounts,
            stand_in: Arc::from(stand_in),
            verified: Mutex::new(Remembered::new()),
            rejected: Mutex::new(Remembered::new()),
            pending: Mutex::new(HashMap::new()),
            pool,
            throttle: Throttle::new(settings.throttle.clone()),
            settings,
        }))
    }

    /// Whether any user exists.
    pub fn has_users(&self) -> bool {
        !self.accounts.is_empty()
    }

    /// The number of password-checking threads.
    pub fn workers(&self) -> usize {
        self.pool.workers()
    }

    fn digest(header: &[u8]) -> Digest {
        ring::digest::digest(&ring::digest::SHA256, header)
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes")
    }

    /// Checks the `Authorization` header `header` of a request from `client`.
    pub async fn authenticate(
        self: &Arc<Self>,
        header: Option<&[u8]>,
        client: IpAddr,
    ) -> AuthOutcome {
        let Some(header) = header else {
            return AuthOutcome::Missing;
        };
        let client = ClientKey::from(client);
        let digest = Self::digest(header);
        let remember = self.settings.remember;
        let hit = lock(&self.verified).get(&digest, remember);
        if let Some((user, age)) = hit {
            // Check again before the entry expires, while it keeps answering.
            if age > remember / 4 * 3 {
                if let Some((name, password)) = parse_basic(header) {
                    drop(self.start_check(digest, name, password, client));
                }
            }
            return AuthOutcome::Authenticated(user);
        }
        let Some((name, password)) = parse_basic(header) else {
            return AuthOutcome::Missing;
        };
        if lock(&self.rejected).get(&digest, remember).is_some() {
            self.throttle.record_failure(client);
            return AuthOutcome::Rejected;
        }
        let mut answer = self.start_check(digest, name, password, client);
        let outcome = match answer.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(AuthOutcome::Busy),
            Err(_) => AuthOutcome::Busy,
        };
        outcome
    }

    /// The check of these credentials: the one in progress, or a new one.
    fn start_check(
        self: &Arc<Self>,
        digest: Digest,
        name: String,
        password: String,
        client: ClientKey,
    ) -> watch::Receiver<Option<AuthOutcome>> {
        let mut pending = lock(&self.pending);
        if let Some(answer) = pending.get(&digest) {
            return answer.clone();
        }
        let (tx, rx) = watch::channel(None);
        pending.insert(digest, rx.clone());
        drop(pending);
        let this = self.clone();
        // A task of its own: the check goes on if the client that started it hangs up,
        // since others may be waiting for it.
        tokio::spawn(async move {
            let outcome = this.check(&name, password, client).await;
            match &outcome {
                AuthOutcome::Authenticated(user) => {
                    lock(&this.verified).put(digest, user.clone(), this.settings.remember)
                }
                AuthOutcome::Rejected => {
                    lock(&this.rejected).put(digest, (), this.settings.remember)
                }
                AuthOutcome::Busy | AuthOutcome::Missing => {}
            }
            lock(&this.pending).remove(&digest);
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    async fn check(&self, name: &str, password: String, client: ClientKey) -> AuthOutcome {
        let wait = self.settings.max_wait;
        let Some(_slot) = self.throttle.admit(client, Instant::now() + wait).await else {
            debug!(%client, "too many password checks of this client waiting");
            return AuthOutcome::Busy;
        };
        let delay = self.throttle.delay(client);
        if !delay.is_zero() {
            debug!(%client, delay_ms = delay.as_millis() as u64, "delaying a client with repeated failures");
            tokio::time::sleep(delay).await;
        }
        let account = self.accounts.get(name);
        let phc = account.map_or_else(|| self.stand_in.clone(), |a| a.phc.clone());
        let verdict = self
            .pool
            .check(phc, password.into_bytes(), Instant::now() + wait)
            .await;
        match (verdict, account) {
            (Verdict::Match, Some(account)) => AuthOutcome::Authenticated(account.user.clone()),
            (Verdict::Busy, _) => {
                warn!(%client, "a password check could not start in time: the server is busy checking others");
                AuthOutcome::Busy
            }
            _ => {
                self.throttle.record_failure(client);
                AuthOutcome::Rejected
            }
        }
    }
}

/// Splits `Basic base64(user:password)`.
fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    let header = std::str::from_utf8(header).ok()?.trim();
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::cheap_for_tests as cheap;
    use crate::auth::users::{put_user, Access, Right};

    fn settings(remember: Duration) -> AuthSettings {
        AuthSettings {
            remember,
            workers: 1,
            max_wait: Duration::from_secs(5),
            throttle: ThrottleSettings {
                concurrent_per_client: 2,
                free_failures: 2,
                first_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(200),
                forget_after: Duration::from_secs(600),
            },
            hashing: cheap(),
            worker_setup: None,
        }
    }

    fn header(s: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
        .into_bytes()
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    /// An authenticator over a store with the read-only user `ro`; the store goes once the
    /// users are read.
    fn authenticator(remember: Duration) -> Arc<Authenticator> {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let rights = vec![Right {
            namespace: "*".into(),
            access: Access::ReadOnly,
        }];
        put_user(&store, "ro", "a long s3cret", rights, &cheap()).unwrap();
        Authenticator::new(&store, settings(remember)).unwrap()
    }

    #[tokio::test]
    async fn basic_credentials_are_checked_and_remembered() {
        let auth = authenticator(Duration::from_secs(60));
        let good = header("ro:a long s3cret");
        assert!(matches!(
            auth.authenticate(Some(&good), CLIENT).await,
            AuthOutcome::Authenticated(u) if u.name == "ro"
        ));
        assert!(lock(&auth.verified)
            .get(&Authenticator::digest(&good), Duration::from_secs(60))
            .is_some());
        assert!(matches!(
            auth.authenticate(Some(&good), CLIENT).await,
            AuthOutcome::Authenticated(_)
        ));
        assert!(matches!(
            auth.authenticate(Some(&header("ro:bad")), CLIENT).await,
            AuthOutcome::Rejected
        ));
        assert!(matches!(
            auth.authenticate(Some(&header("x:y")), CLIENT).await,
            AuthOutcome::Rejected
        ));
        assert!(matches!(
            auth.authenticate(Some(b"Bearer x"), CLIENT).await,
            AuthOutcome::Missing
        ));
        assert!(matches!(
            auth.authenticate(None, CLIENT).await,
            AuthOutcome::Missing
        ));
        // The stand-in for unknown names costs what the configured hashes cost.
        assert!(auth.stand_in.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
    }

    #[tokio::test]
    async fn concurrent_requests_with_the_same_credentials_share_one_check() {
        let auth = authenticator(Duration::from_secs(60));
        let good = header("ro:a long s3cret");
        // Many clients at once: with one worker, a queue of 16 and a share of 2 checks per
        // client, separate checks would have answered some of them Busy.
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let (auth, good) = (auth.clone(), good.clone());
                tokio::spawn(async move {
                    let client = IpAddr::from([198, 51, 100, (i % 4) as u8]);
                    auth.authenticate(Some(&good), client).await
                })
            })
            .collect();
        for t in tasks {
            assert!(matches!(t.await.unwrap(), AuthOutcome::Authenticated(_)));
        }
        assert!(lock(&auth.pending).is_empty());
    }

    #[tokio::test]
    async fn remembered_credentials_are_checked_again_before_they_expire() {
        let remember = Duration::from_millis(400);
        let auth = authenticator(remember);
        let good = header("ro:a long s3cret");
        let digest = Authenticator::digest(&good);
        assert!(matches!(
            auth.authenticate(Some(&good), CLIENT).await,
            AuthOutcome::Authenticated(_)
        ));
        let first = lock(&auth.verified).entries[&digest].1;
        tokio::time::sleep(remember / 4 * 3 + Duration::from_millis(20)).await;
        // Answered from memory, and a fresh check starts behind it.
        assert!(matches!(
            auth.authenticate(Some(&good), CLIENT).await,
            AuthOutcome::Authenticated(_)
        ));
        let deadline = Instant::now() + Duration::from_secs(5);
        while lock(&auth.verified).entries[&digest].1 == first {
            assert!(Instant::now() < deadline, "the entry was never renewed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn repeated_failures_of_a_client_are_remembered_and_slowed() {
        let auth = authenticator(Duration::from_secs(60));
        for i in 0..5 {
            let h = header(&format!("ro:guess{i}"));
            assert!(matches!(
                auth.authenticate(Some(&h), CLIENT).await,
                AuthOutcome::Rejected
            ));
        }
        let client = ClientKey::from(CLIENT);
        assert_eq!(auth.throttle.delay(client), Duration::from_millis(200));
        // A guess already rejected is answered from memory.
        assert!(lock(&auth.rejected)
            .get(
                &Authenticator::digest(&header("ro:guess0")),
                Duration::from_secs(60)
            )
            .is_some());
        // Another client is not slowed.
        let other = ClientKey::from(IpAddr::from([203, 0, 113, 9]));
        assert_eq!(auth.throttle.delay(other), Duration::ZERO);
    }
}
