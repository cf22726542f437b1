//! API tokens made by `chatsink token create`: a random secret shown once, kept only as a hash.

use crate::domain::{reserved_token_name, TokenRecord};
use crate::store::{Store, StoreError};
use sha2::{Digest, Sha256};

/// What the secret of a new token starts with, so secret scanners (and people) can tell a
/// chatsink token in a log or a paste.
pub const PREFIX: &str = "chatsink_";

/// A new, random secret for the database: [`PREFIX`] and [`random_hex`].
pub fn new_secret() -> String {
    format!("{PREFIX}{}", random_hex())
}

/// 32 bytes from the OS's generator, in hex (also the read token `serve` generates on first
/// start when none is configured).
pub fn random_hex() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The hash a token is kept and looked up by: SHA-256, hex.
///
/// A fast hash, not a password hash (argon2, bcrypt), on purpose. A password hash is slow so that
/// guessing a *human-chosen* password from its stolen hash costs years; but these secrets are
/// 32 random bytes (256 bits), which no number of fast guesses finds, so slowness buys nothing.
/// It would cost on every request instead: each `/v1` call hashes its token to look it up, and a
/// 50 ms password hash would be the slowest part of a query page and a free way for anyone to
/// burn the server's CPU with bad tokens. No salt is needed for the same reason (no two random
/// secrets share a hash), and an unsalted hash can be looked up by index.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// What `chatsink token create` asks for.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    /// Meetings it may read; empty: every meeting.
    pub meetings: Vec<String>,
    /// How long it lasts, in milliseconds; none: until revoked.
    pub expires_in_ms: Option<i64>,
    pub admin: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token named '{0}' exists already (names are never reused, revoked or not)")]
    NameTaken(String),
    #[error("--name: {0}")]
    BadName(String),
    #[error("an admin token reads every meeting: --admin and --meeting do not go together")]
    ScopedAdmin,
    #[error("--meeting: give a meeting id (an empty one would read every session that has no meeting id), e.g. --meeting 50c8940e-1b97-402a-97d6-2708b7feca41")]
    EmptyMeeting,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records a new token and returns its secret, the only time it exists outside the caller.
pub async fn create_token(store: &Store, new: &NewToken) -> Result<String, TokenError> {
    let name = new.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(|c| c.is_control()) {
        return Err(TokenError::BadName(
            "give 1 to 100 characters, no control characters".into(),
        ));
    }
    if let Some(why) = reserved_token_name(name) {
        return Err(TokenError::BadName(format!("'{name}' is {why}")));
    }
    if new.admin && !new.meetings.is_empty() {
        return Err(TokenError::ScopedAdmin);
    }
    if new
        .meetings
        .iter()
        .any(|m| m.trim().is_empty() || m.chars().any(char::is_control))
    {
        return Err(TokenError::EmptyMeeting);
    }
    let mut meetings = new.meetings.clone();
    meetings.sort();
    meetings.dedup();
    // The store's clock, which judges the expiry (PostgreSQL's, shared by every instance).
    let created_ms = store.clock_ms().await?;
    let record = TokenRecord {
        name: name.to_owned(),
        admin: new.admin,
        meetings: (!meetings.is_empty()).then_some(meetings),
        created_ms,
        expires_ms: new.expires_in_ms.map(|ms| created_ms + ms),
        last_used_ms: None,
        revoked_ms: None,
        unreadable_scope: None,
    };
    let secret = new_secret();
    if !store.create_token(record, hash_secret(&secret)).await? {
        return Err(TokenError::NameTaken(name.to_owned()));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::{hash_secret, new_secret, PREFIX};

    #[test]
    fn secrets_are_random_prefixed_and_kept_as_a_hash_that_is_not_the_secret() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 64);
        assert_eq!(hash_secret(&a), hash_secret(&a));
        assert_ne!(hash_secret(&a), hash_secret(&b));
        assert!(!hash_secret(&a).contains(&a[PREFIX.len()..]));
        assert_eq!(hash_secret(&a).len(), 64);
    }
}
