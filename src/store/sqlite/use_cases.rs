//! [`SqliteStore`]'s side of each use case of [`crate::store::Store`]: which connection it runs
//! on (a pooled one, a probe one, or one with a read budget) and which table functions it calls.

use super::{
    governance, inbox, jobs, load, messages, now_ms, owners, passes, session_participants,
    sessions, SqliteStore,
};
use crate::domain::{
    After, AuditEntry, AuditQuery, ClaimedJob, DeliveryRecord, EraseStep, EraseTarget,
    ErasureRecord, Job, JobOutcome, JobState, ListedSession, LoadReport, MessageFilter, MessageRow,
    MessageStats, Order, Participant, PullPlan, ReprocessSelector, RowSource, Scrub, SessionDump,
    SessionId, SessionRecord, StoredRejectedRow, Timestamp, TokenRecord, UserRecord,
};
use crate::store::{
    FileLoad, JobLoad, Owner, PassLease, PassState, QueueGauges, Selected, StoreError,
};
use std::time::Duration;

impl SqliteStore {
    pub async fn register_owner(&self, owner: Owner) -> Result<(), StoreError> {
        self.run(move |conn| Ok(owners::register(conn, &owner).map(drop)?))
            .await
    }

    pub async fn heartbeat(&self, owner: Owner) -> Result<(), StoreError> {
        self.run(move |conn| Ok(owners::beat(conn, &owner)?)).await
    }

    pub async fn retire_owner(&self, owner: Owner) -> Result<(), StoreError> {
        self.run(move |conn| Ok(owners::retire(conn, &owner)?))
            .await
    }

    pub async fn claim_job(
        &self,
        owner: Owner,
        lease: Duration,
        stale: Duration,
        only: Option<i64>,
        can_pull: bool,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        self.run(move |conn| {
            Ok(jobs::claim_next_job(
                conn, &owner, lease, stale, only, can_pull,
            )?)
        })
        .await
    }

    pub async fn extend_lease(&self, job: ClaimedJob, lease: Duration) -> Result<bool, StoreError> {
        self.run(move |conn| Ok(jobs::extend_lease(conn, &job, lease)?))
            .await
    }

    pub async fn release_job(&self, job: ClaimedJob) -> Result<bool, StoreError> {
        self.run(move |conn| Ok(jobs::release_job(conn, &job)?))
            .await
    }

    pub async fn fail_job(
        &self,
        job: ClaimedJob,
        error: String,
        retry_in: Option<Duration>,
    ) -> Result<Option<JobState>, StoreError> {
        self.run(move |conn| {
            Ok(jobs::fail_job(
                conn,
                job.id,
                &job.lease_token,
                &error,
                retry_in,
            )?)
        })
        .await
    }

    pub async fn load_job(
        &self,
        job: ClaimedJob,
        rows: impl RowSource + 'static,
        dump: SessionDump,
    ) -> Result<JobLoad, StoreError> {
        self.run(move |conn| Ok(load::load_job(conn, &job, rows, &dump)?))
            .await
    }

    pub async fn load_file(
        &self,
        rows: impl RowSource + 'static,
        session: Option<SessionId>,
        committed: impl FnMut(&SessionId, &LoadReport) + Send + 'static,
    ) -> Result<FileLoad, StoreError> {
        self.run(move |conn| Ok(load::load_file(conn, rows, session.as_ref(), committed)?))
            .await
    }

    pub async fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        self.run(move |conn| Ok(jobs::get_job(conn, id)?)).await
    }

    pub async fn jobs(&self, state: Option<JobState>, limit: u32) -> Result<Vec<Job>, StoreError> {
        self.run(move |conn| Ok(jobs::list_jobs(conn, state, limit)?))
            .await
    }

    pub async fn stored_dump(&self, session: SessionId) -> Result<Option<SessionDump>, StoreError> {
        self.run(move |conn| Ok(sessions::session_dump(conn, &session)?))
            .await
    }

    pub async fn delivery_link(
        &self,
        session: SessionId,
    ) -> Result<Option<(String, Option<i64>)>, StoreError> {
        self.run(move |conn| Ok(jobs::delivery_link(conn, session.as_str())?))
            .await
    }

    pub async fn select_for_reprocess(
        &self,
        selector: ReprocessSelector,
    ) -> Result<Selected, StoreError> {
        self.run(move |conn| {
            let sessions = jobs::select_sessions(conn, &selector)?;
            let unknown = match selector {
                ReprocessSelector::Sessions(_) => jobs::unknown_sessions(conn, &sessions)?,
                _ => Vec::new(),
            };
            Ok(Selected { sessions, unknown })
        })
        .await
    }

    pub async fn enqueue_reprocess(
        &self,
        sessions: Vec<String>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.run(move |conn| Ok(jobs::enqueue_reprocess(conn, &sessions)?))
            .await
    }

    pub async fn enqueue_pulls(
        &self,
        listed: Vec<ListedSession>,
    ) -> Result<Vec<PullPlan>, StoreError> {
        self.run(move |conn| Ok(jobs::enqueue_pulls(conn, &listed)?))
            .await
    }

    pub async fn finish_unloaded(
        &self,
        job: ClaimedJob,
        outcome: JobOutcome,
    ) -> Result<bool, StoreError> {
        self.run(move |conn| Ok(jobs::finish_unloaded(conn, &job, outcome)?))
            .await
    }

    pub async fn loaded_dump_sha256(
        &self,
        session: SessionId,
    ) -> Result<Option<String>, StoreError> {
        self.run(move |conn| Ok(jobs::loaded_dump_sha256(conn, session.as_str())?))
            .await
    }

    pub async fn begin_pass(
        &self,
        name: &'static str,
        owner: Owner,
        lease: Duration,
        stale: Duration,
    ) -> Result<Option<PassLease>, StoreError> {
        self.run(move |conn| Ok(passes::begin_pass(conn, name, &owner, lease, stale)?))
            .await
    }

    pub async fn end_pass(
        &self,
        lease: PassLease,
        result: Result<Timestamp, String>,
    ) -> Result<bool, StoreError> {
        self.run(move |conn| {
            let result = result.as_ref().copied().map_err(String::as_str);
            Ok(passes::end_pass(conn, &lease, result)?)
        })
        .await
    }

    pub async fn pass_state(&self, name: &'static str) -> Result<Option<PassState>, StoreError> {
        self.run(move |conn| Ok(passes::pass_state(conn, name)?))
            .await
    }

    pub async fn message_page(
        &self,
        filter: MessageFilter,
        order: Order,
        after: Option<After>,
        limit: u32,
        budget: Duration,
    ) -> Result<Vec<MessageRow>, StoreError> {
        self.read(budget, move |conn| {
            Ok(messages::message_page(conn, &filter, order, after, limit)?)
        })
        .await
    }

    pub async fn stats(
        &self,
        filter: MessageFilter,
        top: u32,
        budget: Duration,
    ) -> Result<MessageStats, StoreError> {
        self.read(budget, move |conn| {
            Ok(messages::message_stats(conn, &filter, top)?)
        })
        .await
    }

    pub async fn session(
        &self,
        id: String,
        budget: Duration,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.read(budget, move |conn| Ok(sessions::get_session(conn, &id)?))
            .await
    }

    pub async fn session_page(
        &self,
        after: Option<(i64, String)>,
        visible: Option<Vec<String>>,
        limit: u32,
        budget: Duration,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.read(budget, move |conn| {
            Ok(messages::session_page(
                conn,
                after,
                visible.as_deref(),
                limit,
            )?)
        })
        .await
    }

    pub async fn user_exists(
        &self,
        id: String,
        visible: Option<Vec<String>>,
        budget: Duration,
    ) -> Result<bool, StoreError> {
        self.read(budget, move |conn| {
            Ok(messages::user_exists(conn, &id, visible.as_deref())?)
        })
        .await
    }

    pub async fn user_page(
        &self,
        session: Option<String>,
        visible: Option<Vec<String>>,
        after: Option<String>,
        limit: u32,
        budget: Duration,
    ) -> Result<Vec<UserRecord>, StoreError> {
        self.read(budget, move |conn| {
            Ok(messages::user_page(
                conn,
                session.as_deref(),
                visible.as_deref(),
                after.as_deref(),
                limit,
            )?)
        })
        .await
    }

    pub async fn rejected_page(
        &self,
        session: String,
        after: Option<i64>,
        limit: u32,
        budget: Duration,
    ) -> Result<Vec<StoredRejectedRow>, StoreError> {
        self.read(budget, move |conn| {
            Ok(load::rejected_page(conn, &session, after, limit)?)
        })
        .await
    }

    pub async fn deliveries(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.run(move |conn| Ok(inbox::list(conn, limit)?)).await
    }

    pub async fn backlog(&self) -> Result<i64, StoreError> {
        self.probe(|conn| Ok(jobs::backlog(conn)?)).await
    }

    pub async fn queue_gauges(&self) -> Result<QueueGauges, StoreError> {
        self.probe(|conn| {
            Ok(QueueGauges {
                by_state: jobs::count_jobs_by_state(conn)?,
                lag_ms: jobs::oldest_pending_age_ms(conn)?,
            })
        })
        .await
    }

    /// Folds the WAL into the database file, so a stopped service leaves one file.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.run(|conn| {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    // --- governance: tokens, erasure, the dump trash, the audit log ---

    pub async fn create_token(
        &self,
        token: TokenRecord,
        secret_sha256: String,
    ) -> Result<bool, StoreError> {
        self.run(move |conn| Ok(governance::create_token(conn, &token, &secret_sha256)?))
            .await
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.run(|conn| Ok(governance::tokens(conn)?)).await
    }

    pub async fn revoke_token(&self, name: String) -> Result<bool, StoreError> {
        self.run(move |conn| Ok(governance::revoke_token(conn, &name, now_ms())?))
            .await
    }

    pub async fn token_by_hash(
        &self,
        sha256: String,
    ) -> Result<Option<(TokenRecord, i64)>, StoreError> {
        self.run(move |conn| {
            Ok(governance::token_by_hash(conn, &sha256)?.map(|token| (token, now_ms())))
        })
        .await
    }

    pub async fn erasures(&self) -> Result<Vec<ErasureRecord>, StoreError> {
        self.run(|conn| Ok(governance::erasures(conn)?)).await
    }

    pub async fn store_participants(
        &self,
        session: SessionId,
        participants: Vec<Participant>,
    ) -> Result<bool, StoreError> {
        self.run(move |conn| {
            Ok(session_participants::store(
                conn,
                &session,
                &participants,
                now_ms(),
            )?)
        })
        .await
    }

    pub async fn sessions_without_participants(
        &self,
        sessions: Vec<SessionId>,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.run(move |conn| Ok(session_participants::without_participants(conn, &sessions)?))
            .await
    }

    pub async fn session_erased(&self, session: SessionId) -> Result<bool, StoreError> {
        self.run(move |conn| Ok(governance::session_erased(conn, session.as_str())?))
            .await
    }

    pub async fn list_erasure(
        &self,
        target: EraseTarget,
        reason: String,
    ) -> Result<Vec<i64>, StoreError> {
        self.run(move |conn| {
            governance::list_erasure(conn, &target, &reason, now_ms())?;
            Ok(match &target {
                EraseTarget::Message(id) => governance::sessions_holding_message(conn, id)?,
                _ => Vec::new(),
            })
        })
        .await
    }

    pub async fn erase_step(
        &self,
        target: EraseTarget,
        holding: Vec<i64>,
        max_rows: usize,
        scrub: Scrub,
    ) -> Result<EraseStep, StoreError> {
        self.run(move |conn| {
            Ok(governance::erase_step(
                conn,
                &target,
                &holding,
                max_rows,
                now_ms(),
                scrub,
            )?)
        })
        .await
    }

    /// Checkpoints the WAL into the database file and truncates it, without waiting: whether it
    /// finished, and how long it held the lock.
    pub async fn truncate_wal(&self) -> Result<(bool, Duration), StoreError> {
        self.run(|conn| Ok(governance::truncate_wal(conn)?)).await
    }

    /// One bounded step of merging the full-text index ([`governance::MERGE_STEP_PAGES`]):
    /// whether it did work, and how long it held the writer.
    pub async fn merge_search_index(&self) -> Result<(bool, Duration), StoreError> {
        self.run(|conn| Ok(governance::merge_step(conn, governance::MERGE_STEP_PAGES)?))
            .await
    }

    pub async fn trash(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        self.run(move |conn| Ok(governance::trash(conn, limit)?))
            .await
    }

    pub async fn forget_trash(&self, keys: Vec<String>) -> Result<(), StoreError> {
        self.run(move |conn| Ok(governance::forget_trash(conn, &keys)?))
            .await
    }

    pub async fn expired_sessions(
        &self,
        cutoff_ms: i64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        self.run(move |conn| Ok(governance::expired_sessions(conn, cutoff_ms, limit)?))
            .await
    }

    pub async fn record_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        self.run(move |conn| Ok(governance::record_audit(conn, &entries)?))
            .await
    }

    pub async fn audit_page(
        &self,
        query: AuditQuery,
        budget: Duration,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(budget, move |conn| {
            Ok(governance::audit_page(conn, &query)?)
        })
        .await
    }

    pub async fn purge_audit(&self, cutoff_ms: i64, max_rows: u32) -> Result<i64, StoreError> {
        self.run(move |conn| Ok(governance::purge_audit(conn, cutoff_ms, max_rows)?))
            .await
    }
}
