//! Erasure (the right to be forgotten) and retention. Both end in [`Store::erase`]: an erased
//! id goes on the erasure list every load applies, its rows go in short steps, and the kept
//! dumps that held them go to the trash, which [`empty_trash`] empties into the dump store.

use crate::domain::{AuditEntry, EraseTarget, Erased, ErasureRecord, Scrub, Timestamp};
use crate::ingest::DumpStore;
use crate::store::{ErasedInSteps, Owner, Store, StoreError};
use std::time::Duration;

/// Erases `target` everywhere chatsink keeps it: the database (rows, full-text entries, rejected
/// rows, the session with its jobs and webhook bodies), and the kept dumps that held it.
/// Idempotent: repeating it removes nothing more.
pub async fn erase(
    store: &Store,
    dumps: &DumpStore,
    target: &EraseTarget,
) -> Result<ErasedInSteps, StoreError> {
    let done = store.erase(target, "erased", Scrub::Bytes).await?;
    empty_trash(store, dumps).await?;
    Ok(done)
}

/// Deletes the dumps in the trash from the dump store, and forgets each once it is gone. A
/// dump that cannot be deleted now stays in the trash for the next call (each erasure, each
/// sweep, and `serve` at start-up).
pub async fn empty_trash(store: &Store, dumps: &DumpStore) -> Result<usize, StoreError> {
    let mut deleted = 0;
    loop {
        let keys = store.trash(100).await?;
        if keys.is_empty() {
            return Ok(deleted);
        }
        let mut gone = Vec::new();
        for key in &keys {
            match dumps.remove(key).await {
                Ok(()) => gone.push(key.clone()),
                Err(e) => {
                    tracing::warn!(key, error = %e, "a dump holding erased rows could not be deleted yet; it stays in the trash")
                }
            }
        }
        let stuck = gone.len() < keys.len();
        deleted += gone.len();
        store.forget_trash(gone).await?;
        if stuck {
            return Ok(deleted);
        }
    }
}

/// How long data is kept, from `CHATSINK_RETENTION_DAYS` and `CHATSINK_AUDIT_RETENTION_DAYS`
/// (none: for ever).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionSettings {
    pub sessions: Option<Duration>,
    pub audit: Option<Duration>,
}

/// What a purge removed.
#[derive(Debug, Clone, Default)]
pub struct Purged {
    pub sessions: usize,
    /// What the sessions' erasures removed, in how many transactions, and how long each held
    /// the writer.
    pub removed: ErasedInSteps,
    pub audit_entries: i64,
}

/// What a purge would remove now, found without removing anything: `purge --dry-run`, and the
/// check that asks for `--yes` before a purge that would surprise.
#[derive(Debug, Clone)]
pub struct PurgePlan {
    /// Sessions whose last message (or start) is before this go.
    pub cutoff_ms: i64,
    pub sessions: Vec<String>,
    pub messages: i64,
    /// Sessions among them with a loaded dump (the kept copy, where dumps are kept, goes too).
    pub dumps: usize,
    /// The newest last message (or start) among them.
    pub newest_ms: Option<i64>,
    /// Messages in the whole archive.
    pub archive_messages: i64,
    /// The store's clock when the plan was made.
    pub now_ms: i64,
}

impl PurgePlan {
    /// Why the purge needs `--yes`, if it does: it removes more than half the archive's
    /// messages, or a session with a message from the last day.
    pub fn surprise(&self) -> Option<String> {
        const DAY_MS: i64 = 86_400_000;
        if self.sessions.is_empty() {
            return None;
        }
        if self
            .newest_ms
            .is_some_and(|newest| newest > self.now_ms - DAY_MS)
        {
            return Some("it removes sessions with messages from the last day".into());
        }
        (self.messages * 2 > self.archive_messages).then(|| {
            format!(
                "it removes {} of the archive's {} messages, more than half",
                self.messages, self.archive_messages
            )
        })
    }
}

/// The plan of a purge of sessions older than `age`.
pub async fn purge_plan(store: &Store, age: Duration) -> Result<PurgePlan, StoreError> {
    let now_ms = store.clock_ms().await?;
    let cutoff_ms = now_ms - age.as_millis() as i64;
    let budget = Duration::from_secs(60);
    let sessions = store.expired_sessions(cutoff_ms, u32::MAX).await?;
    let mut plan = PurgePlan {
        cutoff_ms,
        sessions: Vec::new(),
        messages: 0,
        dumps: 0,
        newest_ms: None,
        archive_messages: store
            .stats(&crate::domain::MessageFilter::default(), 1, budget)
            .await?
            .total,
        now_ms,
    };
    for id in sessions {
        if let Some(session) = store.session(&id, None, budget).await? {
            plan.messages += session.message_count;
            let last = session.last_message_ms.unwrap_or(session.sort_ms);
            plan.newest_ms = Some(plan.newest_ms.map_or(last, |n| n.max(last)));
        }
        let loaded = match crate::domain::SessionId::parse(&id) {
            Ok(session) => store.loaded_dump_sha256(&session).await?,
            Err(_) => None,
        };
        if loaded.is_some() {
            plan.dumps += 1;
        }
        plan.sessions.push(id);
    }
    Ok(plan)
}

/// Sessions taken per round of a purge.
const PURGE_ROUND: u32 = 100;
/// Audit entries removed per statement.
const AUDIT_ROUND: u32 = 5_000;

/// Purges every session whose last message (or start, without one) is older than `age`: each
/// is erased as a whole, in short steps, and keeps a tombstone (its id, when and why) on the
/// erasure list, so a late re-delivery is recorded and not loaded. With `audit_age`, audit
/// entries older than that go too.
pub async fn purge(
    store: &Store,
    dumps: &DumpStore,
    age: Option<Duration>,
    audit_age: Option<Duration>,
) -> Result<Purged, StoreError> {
    let mut purged = Purged::default();
    if let Some(age) = age {
        let cutoff = store.clock_ms().await? - age.as_millis() as i64;
        let reason = format!(
            "retention: last message before {}",
            Timestamp::from_millis(cutoff)
        );
        loop {
            let sessions = store.expired_sessions(cutoff, PURGE_ROUND).await?;
            if sessions.is_empty() {
                break;
            }
            for session in sessions {
                let done = store
                    .erase(&EraseTarget::Session(session), &reason, Scrub::Rows)
                    .await?;
                purged.sessions += 1;
                purged.removed.add(&done);
                // Lets a test hold a purge between sessions, to overlap it with other work.
                crate::failpoint::hit_async("purge.session").await;
            }
            empty_trash(store, dumps).await?;
        }
    }
    if let Some(age) = audit_age {
        let cutoff = store.clock_ms().await? - age.as_millis() as i64;
        loop {
            let removed = store.purge_audit(cutoff, AUDIT_ROUND).await?;
            purged.audit_entries += removed;
            if removed < AUDIT_ROUND as i64 {
                break;
            }
        }
    }
    Ok(purged)
}

/// The audit entry of a deletion made outside the API (`chatsink erase`, `purge`, the sweep).
pub fn deletion_entry(who: &str, what: &str, named: &str, erased: &Erased) -> AuditEntry {
    AuditEntry::now(who, "DELETE", what, named, Some(erased.rows()), 200)
}

/// How often `serve` sweeps; the first sweep runs a few seconds after start-up.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
const FIRST_SWEEP_AFTER: Duration = Duration::from_secs(2);
/// The sweep's lease: on several instances one sweeps at a time.
const SWEEP_LEASE: Duration = Duration::from_secs(3600);

/// Runs retention in `serve`: a sweep soon after start-up and then every [`SWEEP_EVERY`], one
/// instance at a time. Empties the dump trash at each round even without retention, so a dump
/// an erasure could not delete is retried.
pub fn spawn_sweep(
    store: Store,
    dumps: DumpStore,
    owner: Owner,
    settings: RetentionSettings,
    stale: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut wait = FIRST_SWEEP_AFTER;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopping.changed() => return,
            }
            wait = SWEEP_EVERY;
            if let Err(e) = sweep(&store, &dumps, &owner, &settings, stale).await {
                tracing::warn!(error = %e, "the retention sweep failed; it runs again at the next interval");
            }
        }
    })
}

async fn sweep(
    store: &Store,
    dumps: &DumpStore,
    owner: &Owner,
    settings: &RetentionSettings,
    stale: Duration,
) -> Result<(), StoreError> {
    empty_trash(store, dumps).await?;
    if settings.sessions.is_none() && settings.audit.is_none() {
        return Ok(());
    }
    let Some(lease) = store
        .begin_pass("retention", owner, SWEEP_LEASE, stale)
        .await?
    else {
        tracing::debug!("another instance is sweeping");
        return Ok(());
    };
    let result = purge(store, dumps, settings.sessions, settings.audit).await;
    let ended = match &result {
        Ok(_) => Ok(Timestamp::now()),
        Err(e) => Err(e.to_string()),
    };
    store.end_pass(lease, ended).await?;
    let purged = result?;
    if purged.sessions > 0 || purged.audit_entries > 0 {
        tracing::info!(
            sessions = purged.sessions,
            messages = purged.removed.erased.messages,
            audit_entries = purged.audit_entries,
            "retention sweep removed expired data"
        );
        store
            .record_audit(vec![deletion_entry(
                crate::domain::RETENTION_ACTOR,
                "retention",
                &format!("sessions={}", purged.sessions),
                &purged.removed.erased,
            )])
            .await?;
    }
    Ok(())
}

/// The erasure list as `chatsink erasures export` writes it: one JSON object a line.
pub fn erasures_to_ndjson(records: &[ErasureRecord]) -> String {
    records
        .iter()
        .map(|r| serde_json::to_string(r).expect("an erasure serialises") + "\n")
        .collect()
}

/// Reads an erasure list written by `erasures export` (or `backup`): every line is checked
/// before anything is applied, so a damaged file applies nothing and names its first bad line.
pub fn erasures_from_ndjson(text: &str) -> Result<Vec<(EraseTarget, ErasureRecord)>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let record: ErasureRecord = serde_json::from_str(line)
                .map_err(|e| format!("line {}: not an erasure: {e}", i + 1))?;
            let target = record
                .target()
                .map_err(|e| format!("line {}: {e}", i + 1))?;
            Ok((target, record))
        })
        .collect()
}

/// What `erasures apply` did.
#[derive(Debug, Default)]
pub struct Applied {
    pub entries: usize,
    pub removed: Erased,
}

/// Applies every erasure of `list` through the same steps as `chatsink erase` (a retention
/// tombstone as retention's purge does): idempotent, so a list applied twice, or to an archive
/// that holds some of its erasures already, removes only what is still there.
pub async fn apply_erasures(
    store: &Store,
    dumps: &DumpStore,
    list: &[(EraseTarget, ErasureRecord)],
) -> Result<Applied, StoreError> {
    let mut applied = Applied::default();
    for (target, record) in list {
        let scrub = if record.reason == "erased" {
            Scrub::Bytes
        } else {
            Scrub::Rows
        };
        let done = store.erase(target, &record.reason, scrub).await?;
        applied.removed.add(&done.erased);
        applied.entries += 1;
    }
    empty_trash(store, dumps).await?;
    Ok(applied)
}
