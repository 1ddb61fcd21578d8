//! Users, their rights per namespace, and their records in the store.

use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use super::password::HashSettings;

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

    /// Whether the user is an administrator: read-write in every namespace (`*`).
    pub fn is_administrator(&self) -> bool {
        self.rights
            .iter()
            .any(|r| r.namespace == "*" && r.access == Access::ReadWrite)
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

/// The shortest password accepted, in characters (NIST SP 800-63B asks for at least 8,
/// OWASP ASVS 4.0, requirement 2.1.1, for at least 12).
pub const MIN_PASSWORD_CHARS: usize = 12;

/// The longest password accepted, in bytes: longer ones serve no purpose and would only make
/// hashing them cost more.
pub const MAX_PASSWORD_BYTES: usize = 1024;

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

fn check_password(password: &str) -> Result<(), UserError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserError::Invalid(format!(
            "the password is too short: at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(UserError::Invalid(format!(
            "the password is too long: at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Adds or replaces a user, its password hashed with `hashing`.
pub fn put_user(
    store: &Store,
    name: &str,
    password: &str,
    rights: Vec<Right>,
    hashing: &HashSettings,
) -> Result<User, UserError> {
    check_name(name)?;
    check_password(password)?;
    let user = User {
        name: name.to_string(),
        password_hash: hashing
            .hash(password)
            .map_err(|e| UserError::Hash(e.to_string()))?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::cheap_for_tests as cheap;

    #[test]
    fn users_are_stored_with_argon2id_hashes_and_rights() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let rights = vec![Right {
            namespace: "root/virt".into(),
            access: Access::ReadOnly,
        }];
        let user = put_user(&store, "ro", "twelve chars", rights, &cheap()).unwrap();
        assert!(user.password_hash.starts_with("$argon2id$"));
        assert_eq!(user.access("/root/virt/"), Some(Access::ReadOnly));
        assert_eq!(user.access("interop"), None);
        assert_eq!(list_users(&store).unwrap(), vec![user]);
    }

    #[test]
    fn bad_names_and_passwords_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let put = |name: &str, password: &str| put_user(&store, name, password, vec![], &cheap());
        assert!(put("a:b", "long enough pw").is_err());
        assert!(put("", "long enough pw").is_err());
        let short = put("short", "elevenchars").unwrap_err().to_string();
        assert!(short.contains("at least 12 characters"), "{short}");
        // Characters, not bytes: twelve two-byte characters are enough.
        assert!(put("umlauts", "ääääääääääää").is_ok());
        assert!(put("long", &"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        assert!(list_users(&store)
            .unwrap()
            .iter()
            .all(|u| u.name == "umlauts"));
    }
}
