//! The `owners` table: processes holding job leases and their heartbeats (see
//! `store::owner`).

use super::now_ms;
use crate::store::{Owner, ProcessIdentity};
use rusqlite::{params, Connection, TransactionBehavior};

/// How often an owner that holds nothing (no running job, no pass) beats: an idle `serve` so
/// writes one page a minute, not one a second. Its liveness matters only for what it holds, and
/// taking a job or a pass refreshes it in the same transaction ([`refresh`]).
pub const IDLE_BEAT_MS: i64 = 60_000;

/// The owner's heartbeat: written when it holds a running job or a pass, or when the last one
/// is [`IDLE_BEAT_MS`] old; otherwise nothing is written (an idle SQLite file stays quiet).
pub fn beat(conn: &Connection, owner: &Owner) -> rusqlite::Result<()> {
    write_beat(
        conn,
        owner,
        "ON CONFLICT (id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms
         WHERE owners.heartbeat_ms < excluded.heartbeat_ms - ?9
            OR EXISTS (SELECT 1 FROM jobs WHERE jobs.owner_id = owners.id AND jobs.state = 'running')
            OR EXISTS (SELECT 1 FROM passes WHERE passes.owner_id = owners.id AND passes.lease_token IS NOT NULL)",
    )
}

/// A fresh heartbeat now, whatever the owner holds: on taking a job or a pass, so no other
/// process finds the new holder stale.
pub fn refresh(conn: &Connection, owner: &Owner) -> rusqlite::Result<()> {
    write_beat(
        conn,
        owner,
        "ON CONFLICT (id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms WHERE ?9 IS NOT NULL",
    )
}

fn write_beat(conn: &Connection, owner: &Owner, on_conflict: &str) -> rusqlite::Result<()> {
    let me = &owner.identity;
    let now = now_ms();
    conn.prepare_cached(&format!(
        "INSERT INTO owners (id, role, host, boot_id, pid_namespace, pid, start_ticks, started_ms, heartbeat_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         {on_conflict}"
    ))?
    .execute(params![
        owner.id,
        owner.role,
        me.host,
        me.boot_id,
        me.pid_namespace,
        me.pid,
        me.start_ticks as i64,
        now,
        IDLE_BEAT_MS
    ])?;
    Ok(())
}

/// Registers `owner` and deletes the owners known to be gone (and those silent for a day), so the
/// jobs they held can be claimed at once. Returns how many were deleted.
pub fn register(conn: &mut Connection, owner: &Owner) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    refresh(&tx, owner)?;
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
        if identity.is_gone() || heartbeat_ms < now - crate::store::owner::FORGET_AFTER_MS {
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

#[cfg(test)]
mod tests {
    use super::super::{connect, jobs, SqliteStore};
    use super::*;
    use std::time::Duration;

    fn owner_elsewhere(role: &str) -> Owner {
        let mut owner = Owner::new(role);
        // Another host's process: nothing here can tell whether it runs.
        owner.identity.boot_id = "another-boot".into();
        owner
    }

    #[test]
    fn a_silent_owners_job_is_claimed_after_the_stale_time_and_a_gone_owners_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owners.db");
        drop(SqliteStore::open(&path).unwrap());
        let mut conn = connect(&path).unwrap();
        jobs::enqueue_reprocess(&mut conn, &["s-1".into(), "s-2".into()]).unwrap();
        let (lease, stale) = (Duration::from_secs(60), Duration::from_secs(5));

        // s-1 is held by an owner on another host that then falls silent.
        let far = owner_elsewhere("serve");
        register(&mut conn, &far).unwrap();
        let held = jobs::claim_next_job(&mut conn, &far, lease, stale, None, true)
            .unwrap()
            .unwrap();
        let near = Owner::new("serve");
        register(&mut conn, &near).unwrap();
        // s-2 is free; after it nothing: s-1's owner beat just now.
        let other = jobs::claim_next_job(&mut conn, &near, lease, stale, None, true)
            .unwrap()
            .unwrap();
        assert_ne!(other.id, held.id);
        assert!(
            jobs::claim_next_job(&mut conn, &near, lease, stale, None, true)
                .unwrap()
                .is_none()
        );
        // Silent for longer than `stale`: its job is taken, with a new token.
        conn.execute(
            "UPDATE owners SET heartbeat_ms = heartbeat_ms - 6000 WHERE id = ?1",
            [&far.id],
        )
        .unwrap();
        let taken = jobs::claim_next_job(&mut conn, &near, lease, stale, None, true)
            .unwrap()
            .unwrap();
        assert_eq!(taken.id, held.id);
        assert_ne!(taken.lease_token, held.lease_token);
        assert!(!jobs::holds_lease(&conn, held.id, &held.lease_token).unwrap());

        // An owner that is certainly gone (an exited process here) is cleared when the next
        // owner registers; its job is claimable although its heartbeat is fresh.
        jobs::fail_job(
            &mut conn,
            taken.id,
            &taken.lease_token,
            "again",
            Some(lease),
        )
        .unwrap();
        conn.execute("UPDATE jobs SET next_attempt_ms = 0", [])
            .unwrap();
        let mut exited = Owner::new("reprocess");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        exited.identity.pid = child.id();
        child.wait().unwrap();
        register(&mut conn, &exited).unwrap();
        let orphaned = jobs::claim_next_job(&mut conn, &exited, lease, stale, None, true)
            .unwrap()
            .unwrap();
        assert!(
            jobs::claim_next_job(&mut conn, &near, lease, stale, None, true)
                .unwrap()
                .is_none()
        );
        let successor = Owner::new("serve");
        assert_eq!(register(&mut conn, &successor).unwrap(), 1);
        let reclaimed = jobs::claim_next_job(&mut conn, &successor, lease, stale, None, true)
            .unwrap()
            .unwrap();
        assert_eq!(reclaimed.id, orphaned.id);

        // A beat rewrites a row another process deleted; retiring removes it.
        conn.execute("DELETE FROM owners WHERE id = ?1", [&near.id])
            .unwrap();
        beat(&conn, &near).unwrap();
        retire(&conn, &successor).unwrap();
        let ids: Vec<String> = conn
            .prepare("SELECT id FROM owners ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut expected = vec![far.id.clone(), near.id.clone()];
        expected.sort();
        assert_eq!(ids, expected);
    }
}
