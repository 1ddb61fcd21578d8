//! Users, their rights per namespace, and HTTP Basic authentication against argon2id
//! password hashes kept in the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::cimom::operation::Operation;
use crate::error::{CimError, CimResult, StatusCode};
use crate::store::{Store, StoreError};

/// What a user may do in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Read operations only.
    ReadOnly,
    /// Everything, including writes and method calls.
    ReadWrite,
}

/// A right: an access level in one namespace, or in all (`*`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Right {
    /// The namespace, or `*` for all.
    pub namespace: String,
    /// The access level.
    pub access: Access,
}

/// A user record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The login name.
    pub name: String,
    /// The argon2id hash in PHC string form.
    pub password_hash: String,
    /// Rights per namespace; the most specific one applies.
    pub rights: Vec<Right>,
}

impl User {
    /// The user's access to `namespace`, if any.
    pub fn access(&self, namespace: &str) -> Option<Access> {
        let ns = namespace.trim_matches('/');
        self.rights
            .iter()
            .find(|r| r.namespace.trim_matches('/').eq_ignore_ascii_case(ns))
            .or_else(|| self.rights.iter().find(|r| r.namespace == "*"))
            .map(|r| r.access)
    }

    /// Whether the user may perform `op` (named `what` in the refusal) in `namespace`.
    pub fn authorize(&self, namespace: &str, op: &Operation, what: &str) -> CimResult<()> {
        match self.access(namespace) {
            None => Err(CimError::new(
                StatusCode::AccessDenied,
                format!("user {} has no access to namespace {namespace}", self.name),
            )),
            Some(Access::ReadOnly) if op.is_write() => Err(CimError::new(
                StatusCode::AccessDenied,
                format!(
                    "user {} may only read in namespace {namespace}; {what} changes state",
                    self.name
                ),
            )),
            Some(_) => Ok(()),
        }
    }
}

/// Errors of user management.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// A stored record is unreadable.
    #[error("user record of '{0}' is corrupt: {1}")]
    Corrupt(String, String),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// A bad name or password.
    #[error("{0}")]
    Invalid(String),
}

/// Hashes `password` with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC `hash`.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A random password of 24 URL-safe characters (144 bits).
pub fn random_password() -> String {
    let mut bytes = [0u8; 18];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn check_name(name: &str) -> Result<(), UserError> {
    if name.is_empty()
        || name.len() > 64
        || name.contains(':')
        || name.chars().any(char::is_control)
    {
        return Err(UserError::Invalid(format!(
            "'{name}' is not a valid user name: 1 to 64 characters, no ':' or control characters"
        )));
    }
    Ok(())
}

/// Adds or replaces a user.
pub fn put_user(
    store: &Store,
    name: &str,
    password: &str,
    rights: Vec<Right>,
) -> Result<User, UserError> {
    check_name(name)?;
    if password.is_empty() {
        return Err(UserError::Invalid("the password must not be empty".into()));
    }
    let user = User {
        name: name.to_string(),
        password_hash: hash_password(password)?,
        rights,
    };
    let record = serde_json::to_vec(&user).map_err(|e| UserError::Hash(e.to_string()))?;
    store.put_user(name, &record)?;
    Ok(user)
}

/// Every user.
pub fn list_users(store: &Store) -> Result<Vec<User>, UserError> {
    store
        .users()?
        .into_iter()
        .map(|(name, record)| {
            serde_json::from_slice(&record).map_err(|e| UserError::Corrupt(name, e.to_string()))
        })
        .collect()
}

/// Credentials verified recently: SHA-256 of the Authorization header, user, when.
type VerifiedCache = HashMap<[u8; 32], (Arc<User>, Instant)>;

/// Checks HTTP Basic credentials. Verified credentials are remembered for a short time
/// (keyed by a hash of the header), because argon2 is deliberately slow and clients
/// such as wbemcli send the same credentials on a new connection for every request.
pub struct Authenticator {
    users: HashMap<String, Arc<User>>,
    verified: Mutex<VerifiedCache>,
    remember: Duration,
}

/// The outcome of an authentication attempt.
#[derive(Debug)]
pub enum AuthOutcome {
    /// Valid credentials.
    Authenticated(Arc<User>),
    /// No usable Authorization header.
    Missing,
    /// Wrong user or password.
    Rejected,
}

impl Authenticator {
    /// An authenticator over the users in `store`, remembering good credentials for
    /// `remember`.
    pub fn new(store: &Store, remember: Duration) -> Result<Self, UserError> {
        let users = list_users(store)?
            .into_iter()
            .map(|u| (u.name.clone(), Arc::new(u)))
            .collect();
        Ok(Authenticator {
            users,
            verified: Mutex::new(HashMap::new()),
            remember,
        })
    }

    /// Whether any user exists.
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    fn digest(header: &[u8]) -> [u8; 32] {
        ring::digest::digest(&ring::digest::SHA256, header)
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes")
    }

    /// The user of recently verified credentials: cheap, so callers try it before
    /// [`Authenticator::authenticate`].
    pub fn remembered(&self, header: &[u8]) -> Option<Arc<User>> {
        let digest = Self::digest(header);
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        match cache.get(&digest) {
            Some((user, at)) if at.elapsed() < self.remember => Some(user.clone()),
            Some(_) => {
                cache.remove(&digest);
                None
            }
            None => None,
        }
    }

    /// Checks an `Authorization` header value. Blocking (argon2): call from a blocking
    /// context.
    pub fn authenticate(&self, header: Option<&[u8]>) -> AuthOutcome {
        let Some(header) = header else {
            return AuthOutcome::Missing;
        };
        if let Some(user) = self.remembered(header) {
            return AuthOutcome::Authenticated(user);
        }
        let digest = Self::digest(header);
        let Some((user, password)) = parse_basic(header) else {
            return AuthOutcome::Missing;
        };
        let Some(record) = self.users.get(&user) else {
            // Spend the same effort as for a real user, so timing does not reveal names.
            let _ = verify_password(DUMMY_HASH, &password);
            return AuthOutcome::Rejected;
        };
        if !verify_password(&record.password_hash, &password) {
            return AuthOutcome::Rejected;
        }
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(digest, (record.clone(), Instant::now()));
        AuthOutcome::Authenticated(record.clone())
    }
}

/// argon2id hash of a random string, verified against when the user does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0mTtRqHVJzjRDZQF2bWQf3Q8XHh1a0m2mJ5eH2Wv4qM";

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

    #[test]
    fn basic_credentials_verify_against_argon2_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let rights = vec![Right {
            namespace: "*".into(),
            access: Access::ReadOnly,
        }];
        let user = put_user(&store, "ro", "s3cret", rights).unwrap();
        assert!(user.password_hash.starts_with("$argon2id$"));
        assert_eq!(user.access("root/virt"), Some(Access::ReadOnly));
        let auth = Authenticator::new(&store, Duration::from_secs(60)).unwrap();
        let header = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(matches!(
            auth.authenticate(Some(header("ro:s3cret").as_bytes())),
            AuthOutcome::Authenticated(u) if u.name == "ro"
        ));
        // Remembered credentials answer the same.
        assert!(matches!(
            auth.authenticate(Some(header("ro:s3cret").as_bytes())),
            AuthOutcome::Authenticated(_)
        ));
        assert!(matches!(
            auth.authenticate(Some(header("ro:bad").as_bytes())),
            AuthOutcome::Rejected
        ));
        assert!(matches!(
            auth.authenticate(Some(header("x:y").as_bytes())),
            AuthOutcome::Rejected
        ));
        assert!(matches!(
            auth.authenticate(Some(b"Bearer x")),
            AuthOutcome::Missing
        ));
        assert!(matches!(auth.authenticate(None), AuthOutcome::Missing));
        assert!(put_user(&store, "a:b", "x", vec![]).is_err());
        // The stand-in hash for unknown users must be a real argon2id hash with the
        // default cost, or unknown names would be rejected measurably faster.
        let dummy = PasswordHash::new(DUMMY_HASH).expect("DUMMY_HASH parses");
        let real = PasswordHash::new(&user.password_hash).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.params, real.params);
    }
}
