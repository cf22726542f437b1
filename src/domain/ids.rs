use std::fmt;

/// A RealtimeKit session id (a UUID in practice). Non-empty, at most 200 bytes, printable, no
/// path separators: it names files in the data dir.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionIdError {
    #[error("is empty")]
    Empty,
    #[error("is longer than 200 bytes")]
    TooLong,
    #[error("contains a control character, '/', '\\' or is '.' / '..'")]
    BadCharacter,
}

impl SessionId {
    pub fn parse(raw: &str) -> Result<Self, SessionIdError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(SessionIdError::Empty);
        }
        if raw.len() > 200 {
            return Err(SessionIdError::TooLong);
        }
        if raw == "." || raw == ".." || raw.chars().any(|c| c.is_control() || c == '/' || c == '\\')
        {
            return Err(SessionIdError::BadCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_uuids_and_rejects_path_tricks() {
        assert!(SessionId::parse("05e57591-d89e-45c9-ae44-08dc1eaad0e0").is_ok());
        assert_eq!(SessionId::parse(" "), Err(SessionIdError::Empty));
        assert_eq!(
            SessionId::parse("../etc"),
            Err(SessionIdError::BadCharacter)
        );
        assert_eq!(SessionId::parse(".."), Err(SessionIdError::BadCharacter));
        assert_eq!(
            SessionId::parse(&"a".repeat(201)),
            Err(SessionIdError::TooLong)
        );
    }
}
