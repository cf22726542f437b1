//! Where the archive is: `CHATSINK_DATABASE` / `--database`. A `postgres://` or `postgresql://`
//! URL names a PostgreSQL database; anything else is an SQLite file path. The URL may carry a
//! password, so it is kept as a secret and shown only with the password replaced.

use secrecy::{ExposeSecret, SecretString};
use std::path::PathBuf;

#[derive(Clone)]
pub enum DatabaseLocation {
    Sqlite(PathBuf),
    Postgres(PostgresUrl),
}

/// A PostgreSQL connection URL: the whole of it secret, a redacted form to show.
#[derive(Clone)]
pub struct PostgresUrl {
    url: SecretString,
    shown: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("is empty")]
    Empty,
    #[error("is not a valid PostgreSQL URL: {0}")]
    BadUrl(String),
    #[error("names no host")]
    NoHost,
    #[error("looks like a PostgreSQL URL with its `://` mistyped; write postgres://USER:PASSWORD@HOST:PORT/DATABASE")]
    MistypedScheme,
    #[error("names a scheme chatsink does not speak; a PostgreSQL database is postgres://USER:PASSWORD@HOST/DATABASE, an SQLite file a plain path such as ./chatsink.db")]
    OtherScheme,
    #[error("holds `@` or `//` like a URL, so it is not taken as an SQLite path; a PostgreSQL URL starts postgres://, an SQLite file is a plain path such as ./chatsink.db")]
    LooksLikeUrl,
}

impl DatabaseLocation {
    pub fn parse(raw: &str) -> Result<Self, LocationError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(LocationError::Empty);
        }
        let lower = trimmed.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return PostgresUrl::parse(trimmed).map(Self::Postgres);
        }
        // A URL one character off must not become a file named after it (password and all).
        if lower.starts_with("postgres") && (lower.contains(':') || lower.contains('/')) {
            return Err(LocationError::MistypedScheme);
        }
        if lower.contains("://") {
            return Err(LocationError::OtherScheme);
        }
        if trimmed.contains('@') || trimmed.contains("//") {
            return Err(LocationError::LooksLikeUrl);
        }
        Ok(Self::Sqlite(PathBuf::from(raw)))
    }

    /// The SQLite file, if this is one.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match self {
            Self::Sqlite(path) => Some(path),
            Self::Postgres(_) => None,
        }
    }
}

impl PostgresUrl {
    fn parse(raw: &str) -> Result<Self, LocationError> {
        // Parsed only to check it and to redact it; the driver parses the text itself.
        let mut url = url::Url::parse(raw).map_err(|e| LocationError::BadUrl(e.to_string()))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(LocationError::NoHost);
        }
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        // A password can also come as a query parameter.
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("password") {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        Ok(Self {
            url: SecretString::from(raw),
            shown: url.to_string(),
        })
    }

    /// The URL itself, password and all: for the driver only.
    pub fn expose(&self) -> &str {
        self.url.expose_secret()
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({})", self.shown)
    }
}

impl std::fmt::Display for DatabaseLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => write!(f, "{url}"),
        }
    }
}

impl std::fmt::Debug for DatabaseLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
            Self::Postgres(url) => write!(f, "Postgres({url})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_postgres_everything_else_is_a_path_and_passwords_never_show() {
        for raw in [
            "postgres://chatsink:s3cret-pw@db.example.com:5432/archive?sslmode=require",
            "POSTGRESQL://chatsink:s3cret-pw@db.example.com/archive",
            "postgresql://chatsink@db.example.com/archive?password=s3cret-pw&sslmode=verify-full",
        ] {
            let location = DatabaseLocation::parse(raw).unwrap();
            let DatabaseLocation::Postgres(url) = &location else {
                panic!("{raw} is a PostgreSQL URL");
            };
            assert_eq!(url.expose(), raw);
            for shown in [location.to_string(), format!("{location:?}")] {
                assert!(!shown.contains("s3cret-pw"), "{shown}");
                assert!(shown.contains("db.example.com"), "{shown}");
            }
        }
        for raw in [
            "./chatsink.db",
            "/var/lib/chatsink/chatsink.db",
            "postgres.db",
        ] {
            assert!(matches!(
                DatabaseLocation::parse(raw),
                Ok(DatabaseLocation::Sqlite(_))
            ));
        }
        assert_eq!(
            DatabaseLocation::parse(" ").err(),
            Some(LocationError::Empty)
        );
        assert!(DatabaseLocation::parse("postgres://").is_err());
        assert!(DatabaseLocation::parse("postgres://:5432/x").is_err());
    }

    /// A URL one character off is refused, naming the likely mistake, and never becomes a
    /// file whose name holds a password; the error does not repeat the value.
    #[test]
    fn almost_urls_are_refused_not_taken_for_paths() {
        for (raw, want) in [
            (
                "postgresql//chatsink:pw@127.0.0.1:55432/chatsink",
                LocationError::MistypedScheme,
            ),
            (
                "postgres:/chatsink:pw@host/db",
                LocationError::MistypedScheme,
            ),
            ("Postgres:chatsink@host", LocationError::MistypedScheme),
            ("mysql://chatsink:pw@host/db", LocationError::OtherScheme),
            ("sqlite:///var/lib/chatsink.db", LocationError::OtherScheme),
            ("chatsink:pw@host/db", LocationError::LooksLikeUrl),
            ("//host/share/chatsink.db", LocationError::LooksLikeUrl),
        ] {
            let refused = DatabaseLocation::parse(raw).err();
            assert_eq!(refused, Some(want.clone()), "{raw}");
            assert!(!want.to_string().contains("pw"), "{want}");
        }
    }
}
