//! Users and their rights, and HTTP Basic authentication against argon2id password hashes
//! kept in the store, with what checking them may cost the server bounded.

mod authenticator;
mod bounded;
pub mod password;
mod pool;
mod throttle;
mod users;

pub use authenticator::{AuthOutcome, AuthSettings, Authenticator};
pub use password::HashSettings;
pub use pool::WorkerSetup;
pub use throttle::ThrottleSettings;
pub use users::{
    list_users, put_user, random_password, Access, Right, User, UserError, MAX_PASSWORD_BYTES,
    MIN_PASSWORD_CHARS,
};
