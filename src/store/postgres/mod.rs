//! The PostgreSQL backend: connecting (a pool, TLS through rustls, `synchronous_commit=on` on
//! every connection) and the schema (numbered migrations beside SQLite's, applied under an
//! advisory lock so instances starting together are safe).
//!
//! The use cases of [`super::Store`] are in `queue.rs` (inbox, owners, jobs), `load.rs` (loads
//! by binary COPY), `pull.rs` (pull jobs and the lease on a reconcile pass) and `reads.rs` (the
//! query API); `search.rs` builds and queries the full-text words with SQLite's rules.

mod governance;
mod load;
mod pull;
mod queue;
mod reads;
mod retry;
pub(in crate::store) mod search;
mod session_participants;
pub(in crate::store) mod text;

pub use queue::PgIntake;

use super::location::PostgresUrl;
use super::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::str::FromStr;

/// The schema, one file per version: entry `i` takes the database to version `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/001_schema.sql"),
    include_str!("migrations/002_dump_keys.sql"),
    include_str!("migrations/003_pull_jobs.sql"),
    include_str!("migrations/004_governance.sql"),
    include_str!("migrations/005_extra_columns_and_webhook_id.sql"),
];

/// The schema version this build knows and every migrated database ends at.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock every migration runs under (an arbitrary constant: "chatsink" in ASCII).
const MIGRATION_LOCK: i64 = 0x63_68_61_74_73_69_6e_6b;

/// The PostgreSQL backend's handle: a pool, and the URL to show (password redacted).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    shown: String,
    /// For the connection outside the pool that listens for new jobs.
    listener: std::sync::Arc<(
        tokio_postgres::Config,
        tokio_postgres_rustls::MakeRustlsConnect,
    )>,
}

impl PgStore {
    /// A server setting as chatsink's own connections see it (`synchronous_commit`, ...).
    pub async fn server_setting(&self, name: &str) -> Result<String, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query_one("SELECT current_setting($1)", &[&name])
            .await?
            .get(0))
    }

    /// Connects to and migrates the database at `url`.
    pub async fn open(url: &PostgresUrl, pool_size: usize) -> Result<Self, StoreError> {
        let config = driver_config(url)?;
        let pool = pool(config.clone(), pool_size)?;
        let shown = url.to_string();
        migrate(&pool, &shown).await?;
        Ok(Self {
            pool,
            shown,
            listener: std::sync::Arc::new((config, tls())),
        })
    }

    /// Where the database is, password redacted.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Closes the pool at a clean stop: idle connections end, new checkouts fail.
    pub fn close(&self) {
        self.pool.close();
    }
}

/// A pool of connections to the database at `url`.
pub fn connect(url: &PostgresUrl, pool_size: usize) -> Result<Pool, StoreError> {
    pool(driver_config(url)?, pool_size)
}

/// The driver's settings for `url`, with chatsink's on every connection.
fn driver_config(url: &PostgresUrl) -> Result<tokio_postgres::Config, StoreError> {
    let mut config = tokio_postgres::Config::from_str(&driver_url(url.expose()))
        .map_err(|e| StoreError::Config(format!("{url}: {e}")))?;
    // Every commit is durable before it returns (a server default may say otherwise).
    config.options("-c synchronous_commit=on");
    if config.get_application_name().is_none() {
        config.application_name("chatsink");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    Ok(config)
}

fn pool(config: tokio_postgres::Config, pool_size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        tls(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(pool_size.max(1))
        .wait_timeout(Some(std::time::Duration::from_secs(15)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Config(e.to_string()))
}

/// The URL as tokio-postgres reads it. libpq's `sslmode=verify-ca` and `verify-full` are taken
/// as `require`: with rustls every TLS connection verifies the server's certificate and name
/// against the web PKI roots, which is what those modes ask for.
fn driver_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return raw.to_owned();
    };
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = match (k.as_ref(), v.as_ref()) {
                ("sslmode", "verify-ca" | "verify-full") => "require".to_owned(),
                _ => v.into_owned(),
            };
            (k.into_owned(), v)
        })
        .collect();
    if pairs.is_empty() {
        return raw.to_owned();
    }
    url.query_pairs_mut().clear().extend_pairs(pairs);
    url.to_string()
}

/// TLS through rustls with the web PKI roots (the same rustls reqwest uses).
fn tls() -> tokio_postgres_rustls::MakeRustlsConnect {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

/// Brings the database to [`SCHEMA_VERSION`], under an advisory lock held for the transaction:
/// instances starting together take turns, and each finds the work done by the one before.
/// Refuses a database a newer chatsink has migrated. Returns the version it was at.
pub async fn migrate(pool: &Pool, shown: &str) -> Result<i64, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    // `IF NOT EXISTS` on a migrated database is no news: without this, every command would
    // print PostgreSQL's NOTICE that the relation exists.
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning;
         CREATE TABLE IF NOT EXISTS chatsink_schema (version BIGINT NOT NULL)",
    )
    .await?;
    let found: i64 = tx
        .query_opt("SELECT max(version) FROM chatsink_schema", &[])
        .await?
        .and_then(|row| row.get::<_, Option<i64>>(0))
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            location: shown.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let to = index as i64 + 1;
        tracing::info!(database = shown, to, "migrating the PostgreSQL database");
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO chatsink_schema (version) VALUES ($1)", &[&to])
            .await?;
    }
    tx.commit().await?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_verify_modes_are_taken_as_require_and_other_urls_pass_unchanged() {
        assert_eq!(
            driver_url("postgres://u@h/db?sslmode=verify-full&application_name=x"),
            "postgres://u@h/db?sslmode=require&application_name=x"
        );
        assert_eq!(
            driver_url("postgres://u:p@h:5432/db"),
            "postgres://u:p@h:5432/db"
        );
        assert!(tokio_postgres::Config::from_str(&driver_url(
            "postgresql://u@h/db?sslmode=verify-ca"
        ))
        .is_ok());
    }
}
