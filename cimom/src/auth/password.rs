//! Password hashing with argon2id, and verification into memory the caller owns, so that
//! checking a password never allocates (the bounded worker pool reuses one buffer per
//! thread; see the `pool` module).

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher as _, Version};
use rand_core::OsRng;
use serde::Deserialize;

/// The argon2id cost of new password hashes.
///
/// The defaults are OWASP's first recommended argon2id setting (19 MiB of memory, 2
/// passes, 1 lane), the argon2 crate's own defaults: about 50 ms of one core here, so that a
/// stolen database costs an attacker the same per guess, while the server bounds how many
/// checks run at once (`[auth] workers`) so that online guessing cannot exhaust it.
/// Stored hashes keep the parameters they were made with; changing these affects only
/// passwords set afterwards.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HashSettings {
    /// Memory per check, KiB (`m`).
    pub memory_kib: u32,
    /// Passes over the memory (`t`).
    pub iterations: u32,
    /// Lanes (`p`).
    pub parallelism: u32,
}

impl Default for HashSettings {
    fn default() -> Self {
        HashSettings {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("argon2id: {0}")]
pub struct HashError(String);

impl HashSettings {
    fn params(&self) -> Result<Params, HashError> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| HashError(format!("invalid [auth] argon2 settings: {e}")))
    }

    /// Checks that argon2 accepts these settings.
    pub fn validate(&self) -> Result<(), HashError> {
        self.params().map(|_| ())
    }

    /// Hashes `password` with argon2id, these costs and a random salt, in PHC string form.
    pub fn hash(&self, password: &str) -> Result<String, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params()?)
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    }
}

/// The memory blocks a stored hash needs to be checked (its `m` in KiB), or `None` if it
/// is not a PHC string argon2 can check.
pub fn blocks_needed(phc: &str) -> Option<usize> {
    let hash = PasswordHash::new(phc).ok()?;
    Params::try_from(&hash).ok().map(|p| p.block_count())
}

/// Whether `password` matches the PHC string `phc`, computed in `memory`, which grows to
/// what the hash needs and is kept for the next check. Compares in constant time.
pub fn verify_in(memory: &mut Vec<Block>, phc: &str, password: &[u8]) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let mut out = [0u8; Output::MAX_LENGTH];
    let out = &mut out[..expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    if argon2
        .hash_password_into_with_memory(password, salt, out, &mut memory[..])
        .is_err()
    {
        return false;
    }
    // Output's equality is constant-time.
    Output::new(out).is_ok_and(|computed| computed == expected)
}

/// The cheapest argon2id cost argon2 accepts, for tests that hash and check passwords by
/// the dozen.
#[cfg(test)]
pub(crate) fn cheap_for_tests() -> HashSettings {
    HashSettings {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> HashSettings {
        cheap_for_tests()
    }

    #[test]
    fn a_hash_verifies_its_password_only_and_reuses_the_memory() {
        let phc = cheap().hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_eq!(blocks_needed(&phc), Some(64));
        let mut memory = Vec::new();
        assert!(verify_in(&mut memory, &phc, b"correct horse"));
        assert_eq!(memory.len(), 64);
        let base = memory.as_ptr();
        assert!(!verify_in(&mut memory, &phc, b"correct horsf"));
        assert_eq!(
            memory.as_ptr(),
            base,
            "the memory is reused, not reallocated"
        );
        assert!(!verify_in(&mut memory, "not a hash", b"x"));
    }

    #[test]
    fn hashes_made_by_the_argon2_crate_verify_too() {
        use argon2::PasswordHasher as _;
        let salt = SaltString::generate(&mut OsRng);
        let phc = Argon2::default()
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert!(verify_in(&mut Vec::new(), &phc, b"pw"));
        let defaults = HashSettings::default();
        assert_eq!(
            (
                defaults.memory_kib,
                defaults.iterations,
                defaults.parallelism
            ),
            (19 * 1024, 2, 1)
        );
    }

    #[test]
    fn unusable_settings_are_refused() {
        let bad = HashSettings {
            memory_kib: 1,
            ..HashSettings::default()
        };
        assert!(bad.validate().is_err());
        assert!(bad.hash("x").is_err());
    }
}
