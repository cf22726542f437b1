//! The `owners` table: processes holding job leases and their heartbeats (see
//! `store::owner`).

use super::now_ms;
use crate::store::{Owner, ProcessIdentity};
use rusqlite::{params, Connection, TransactionBehavior};

/// Owners silent this long are deleted whatever else is known: nothing of theirs is running.
const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

/// Writes (or rewrites) the owner's row with a fresh heartbeat.
pub fn beat(conn: &Connection, owner: &Owner) -> rusqlite::Result<()> {
    let me = &owner.identity;
    let now = now_ms();
    conn.prepare_cached(
        "INSERT INTO owners (id, role, host, boot_id, pid_namespace, pid, start_ticks, started_ms, heartbeat_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms",
    )?
    .execute(params![
        owner.id,
        owner.role,
        me.host,
        me.boot_id,
        me.pid_namespace,
        me.pid,
        me.start_ticks as i64,
        now
    ])?;
    Ok(())
}

/// Registers `owner` and deletes the owners known to be gone (and those silent for a day), so the
/// jobs they held can be claimed at once. Returns how many were deleted.
pub fn register(conn: &mut Connection, owner: &Owner) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    beat(&tx, owner)?;
    let others: Vec<(String, ProcessIdentity, i64)> = tx
        .prepare(
            "SELECT id, host, boot_id, pid_namespace, pid, start_ticks, heartbeat_ms FROM owners WHERE id <> ?1",
        )?
        .query_map([&owner.id], |r| {
            Ok((
                r.get(0)?,
                ProcessIdentity {
                    host: r.get(1)?,
                    boot_id: r.get(2)?,
                    pid_namespace: r.get(3)?,
                    pid: r.get(4)?,
                    start_ticks: r.get::<_, i64>(5)? as u64,
                },
                r.get(6)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let now = now_ms();
    let mut forgotten = 0;
    for (id, identity, heartbeat_ms) in others {
        if identity.is_gone() || heartbeat_ms < now - FORGET_AFTER_MS {
            tracing::info!(owner = %id, pid = identity.pid, "an earlier owner of job leases is gone; its jobs can be claimed now");
            forgotten += tx.execute("DELETE FROM owners WHERE id = ?1", [&id])?;
        }
    }
    tx.commit()?;
    Ok(forgotten)
}

pub fn retire(conn: &Connection, owner: &Owner) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM owners WHERE id = ?1", [&owner.id])?;
    Ok(())
}
