//! Running a transaction again when the database rolled it back to keep transactions apart.
//!
//! PostgreSQL at its default READ COMMITTED raises these rarely (a deadlock between two loads of
//! overlapping sessions, say); CockroachDB and YugabyteDB run SERIALIZABLE and raise 40001 as a
//! matter of course. Either way the transaction did nothing and may simply run again: a few
//! attempts with a short, jittered backoff, then the error as it came.

use super::StoreError;
use rand::Rng;
use std::future::Future;
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// Attempts in all, the first included.
const ATTEMPTS: u32 = 6;

/// The first backoff; it doubles each time (10, 20, 40, 80, 160 ms, each up to half again).
const FIRST_BACKOFF: Duration = Duration::from_millis(10);

impl StoreError {
    /// The database rolled the transaction back to keep it apart from another (SQLSTATE 40001,
    /// serialization_failure; 40P01, deadlock_detected): it did nothing and may run again.
    /// 40003 (statement completion unknown) is not: the commit may have happened.
    pub fn is_transient_conflict(&self) -> bool {
        match self {
            Self::Postgres(e) => e.code().is_some_and(|code| {
                *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED
            }),
            Self::Intake(inner) => inner.is_transient_conflict(),
            _ => false,
        }
    }
}

/// Runs `attempt` until it ends other than in a transient conflict, at most [`ATTEMPTS`] times.
/// Each attempt must be a whole transaction (or one statement), so running it again is safe.
pub(super) async fn retrying<T, F, Fut>(what: &'static str, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut tried = 1;
    loop {
        match attempt().await {
            Err(e) if e.is_transient_conflict() && tried < ATTEMPTS => {
                metrics::counter!("chatsink_store_conflict_retries_total").increment(1);
                let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 2);
                let pause = backoff + Duration::from_millis(jitter);
                tracing::debug!(what, attempt = tried, error = %e, ?pause, "the database rolled a transaction back to keep it apart from another; running it again");
                tokio::time::sleep(pause).await;
                backoff *= 2;
                tried += 1;
            }
            Err(e) if e.is_transient_conflict() => {
                tracing::warn!(what, attempts = tried, error = %e, "a transaction kept conflicting with others; giving up");
                return Err(e);
            }
            other => return other,
        }
    }
}
