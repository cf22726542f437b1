//! Passes one process runs at a time (reconcile), under a lease in the `passes` table held like
//! a job's: taken when free, when its holder's lease ran out, or when its owner stopped beating.

use super::now_ms;
use crate::domain::Timestamp;
use crate::store::{Owner, PassLease, PassState};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::time::Duration;

/// [`crate::store::Store::begin_pass`]: takes the pass's lease when nobody holds it, or its
/// holder's lease ran out or its owner stopped beating for `stale`.
pub fn begin_pass(
    conn: &mut Connection,
    name: &str,
    owner: &Owner,
    lease: Duration,
    stale: Duration,
) -> rusqlite::Result<Option<PassLease>> {
    let now = now_ms();
    let token = uuid::Uuid::new_v4().to_string();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO passes (name, updated_ms) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![name, now],
    )?;
    let taken = tx
        .query_row(
            "UPDATE passes SET owner_id = ?2, lease_token = ?3, lease_until_ms = ?4, updated_ms = ?1
             WHERE name = ?5
               AND (lease_token IS NULL OR lease_until_ms < ?1
                    OR NOT EXISTS (SELECT 1 FROM owners WHERE owners.id = passes.owner_id AND owners.heartbeat_ms >= ?6))
             RETURNING watermark_ms",
            params![
                now,
                owner.id,
                token,
                now + lease.as_millis() as i64,
                name,
                now - stale.as_millis() as i64
            ],
            |r| r.get::<_, Option<i64>>(0),
        )
        .optional()?;
    if taken.is_some() {
        super::owners::refresh(&tx, owner)?;
    }
    tx.commit()?;
    Ok(taken.map(|watermark_ms| PassLease {
        name: name.to_owned(),
        token,
        watermark: watermark_ms.map(Timestamp::from_millis),
    }))
}

/// [`crate::store::Store::end_pass`]: gives the lease up, recording the new watermark or the error.
pub fn end_pass(
    conn: &Connection,
    lease: &PassLease,
    result: Result<Timestamp, &str>,
) -> rusqlite::Result<bool> {
    let now = now_ms();
    let changed = match result {
        Ok(watermark) => conn.execute(
            "UPDATE passes SET lease_token = NULL, lease_until_ms = NULL, watermark_ms = ?3, last_success_ms = ?4,
                               last_error = NULL, updated_ms = ?4
             WHERE name = ?1 AND lease_token = ?2",
            params![lease.name, lease.token, watermark.millis(), now],
        )?,
        Err(error) => conn.execute(
            "UPDATE passes SET lease_token = NULL, lease_until_ms = NULL, last_error = ?3, updated_ms = ?4
             WHERE name = ?1 AND lease_token = ?2",
            params![lease.name, lease.token, error, now],
        )?,
    };
    Ok(changed == 1)
}

/// [`crate::store::Store::pass_state`].
pub fn pass_state(conn: &Connection, name: &str) -> rusqlite::Result<Option<PassState>> {
    conn.query_row(
        "SELECT last_success_ms, last_error FROM passes WHERE name = ?1",
        [name],
        |r| {
            Ok(PassState {
                last_success: r.get::<_, Option<i64>>(0)?.map(Timestamp::from_millis),
                last_error: r.get(1)?,
            })
        },
    )
    .optional()
}
