//! Loading sessions into PostgreSQL: each session's rows are streamed with binary COPY into a
//! temporary staging table, then merged into `messages` in a few set statements (insert new,
//! update changed, keep the `seq` of the unchanged, delete the missing), in the transaction that
//! also finishes the job, fenced by the job's row lock and lease token.

use super::{governance, search, text, PgStore};
use crate::domain::{
    ClaimedJob, ErasedLast, ErasureList, JobKind, JobOutcome, LoadReport, LoadRow, RejectedRow,
    RowSource, SessionDump, SessionId,
};
use crate::store::{FileLoad, JobLoad, StoreError};
use deadpool_postgres::Transaction;
use futures_util::pin_mut;
use std::collections::HashSet;
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Rows handed from the parser's thread to the loader at a time.
const CHUNK: usize = 1024;

/// What the parser's thread sends the loader.
enum Piece {
    /// A run of one session's rows starts; `replace` when it is the session's first run.
    Start {
        session: SessionId,
        replace: bool,
    },
    Rows(Vec<LoadRow>),
    /// The run is whole.
    End,
    /// The input failed: the run in progress is cut short and must not be kept.
    Failed(String),
}

/// Reads `rows` on a blocking thread and sends them as chunks.
fn stream_rows<R: RowSource + 'static>(
    mut rows: R,
) -> (
    mpsc::Receiver<Vec<LoadRow>>,
    tokio::task::JoinHandle<Option<String>>,
) {
    let (send, receive) = mpsc::channel(4);
    let producer = tokio::task::spawn_blocking(move || {
        loop {
            let chunk: Vec<LoadRow> = rows.by_ref().take(CHUNK).collect();
            let last = chunk.len() < CHUNK;
            if (!chunk.is_empty() && send.blocking_send(chunk).is_err()) || last {
                break;
            }
        }
        rows.failure()
    });
    (receive, producer)
}

/// Splits a multi-session file's rows into runs of one session (see `Store::load_file`):
/// rejected rows that name no readable session go with the session they follow, or with the
/// next one when none came before; those left at the end are orphans, counted in the result.
fn stream_runs<R: RowSource + 'static>(
    mut rows: R,
    only: Option<SessionId>,
) -> (mpsc::Receiver<Piece>, tokio::task::JoinHandle<usize>) {
    let (send, receive) = mpsc::channel(4);
    let producer = tokio::task::spawn_blocking(move || {
        let mut loaded: HashSet<SessionId> = HashSet::new();
        let mut orphans: Vec<LoadRow> = Vec::new();
        let mut current: Option<SessionId> = only.clone();
        let mut active: Option<SessionId> = None;
        let mut buffer: Vec<LoadRow> = Vec::new();
        let send = |piece: Piece| send.blocking_send(piece).is_ok();
        for row in rows.by_ref() {
            let session = match &only {
                Some(s) => Some(s.clone()),
                None => row.session().or_else(|| current.clone()),
            };
            let Some(session) = session else {
                orphans.push(row);
                continue;
            };
            if active.as_ref() != Some(&session) {
                if active.is_some()
                    && !(send(Piece::Rows(std::mem::take(&mut buffer))) && send(Piece::End))
                {
                    return 0;
                }
                let replace = loaded.insert(session.clone());
                if !send(Piece::Start {
                    session: session.clone(),
                    replace,
                }) {
                    return 0;
                }
                active = Some(session.clone());
                buffer.append(&mut orphans);
            }
            current = Some(session);
            buffer.push(row);
            if buffer.len() >= CHUNK && !send(Piece::Rows(std::mem::take(&mut buffer))) {
                return 0;
            }
        }
        if let Some(reason) = rows.failure() {
            send(Piece::Failed(reason));
            return orphans.len();
        }
        if active.is_some() {
            send(Piece::Rows(buffer));
            send(Piece::End);
        } else if only.is_some() {
            // A session's own dump with no rows at all: still loaded, as empty.
            let session = only.expect("checked");
            send(Piece::Start {
                session,
                replace: true,
            });
            send(Piece::End);
        }
        orphans.len()
    });
    (receive, producer)
}

impl PgStore {
    pub async fn load_job(
        &self,
        job: ClaimedJob,
        rows: impl RowSource + 'static,
        dump: SessionDump,
    ) -> Result<JobLoad, StoreError> {
        let (mut chunks, producer) = stream_rows(rows);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The job's row stays locked to the commit: a claim by another instance waits for it,
        // and a lease that already passed to another attempt is refused here.
        let holds = tx
            .query_opt(
                "SELECT 1 FROM jobs WHERE id = $1 AND lease_token = $2 AND state = 'running' FOR UPDATE",
                &[&job.id, &job.lease_token],
            )
            .await?
            .is_some();
        if !holds {
            return Ok(JobLoad::LeaseLost);
        }
        governance::hold_erasures(&tx).await?;
        if governance::session_erased(&*tx, job.session_id.as_str()).await? {
            governance::trash_key(&tx, dump.key.as_deref()).await?;
            if !complete_job(&tx, &job, &LoadReport::default(), JobOutcome::Erased).await? {
                return Ok(JobLoad::LeaseLost);
            }
            tx.commit().await?;
            return Ok(JobLoad::Erased);
        }
        let mut session = SessionLoad::begin(&tx, &job.session_id, true).await?;
        while let Some(chunk) = chunks.recv().await {
            session.stage(&tx, chunk).await?;
            // Rows are staged in the open transaction and more may come: the middle of a load.
            crate::failpoint::hit_async("load.mid").await;
        }
        if let Some(reason) = producer.await.map_err(StoreError::from_join)? {
            return Ok(JobLoad::InputFailed(reason));
        }
        let report = session.finish(&tx).await?;
        // A dump holding erased rows is not kept (its sha256 is, to know it again).
        let kept = if report.rows_erased > 0 {
            governance::trash_key(&tx, dump.key.as_deref()).await?;
            None
        } else {
            dump.key.clone()
        };
        // The dump it replaces goes to the trash: a superseded dump may hold rows erased later,
        // and nothing reads it again.
        tx.execute(
            &format!(
                "INSERT INTO dump_trash (key, at_ms)
                 SELECT dump_path, {NOW_MS} FROM sessions
                 WHERE session_id = $1 AND dump_path IS NOT NULL AND dump_path IS DISTINCT FROM $2
                 ON CONFLICT DO NOTHING"
            ),
            &[&job.session_id.as_str(), &kept],
        )
        .await?;
        tx.execute(
            &format!(
                "UPDATE sessions SET dump_path = $2, dump_sha256 = $3, updated_ms = {NOW_MS} WHERE session_id = $1"
            ),
            &[&job.session_id.as_str(), &kept, &dump.sha256],
        )
        .await?;
        if !complete_job(&tx, &job, &report, JobOutcome::Loaded).await? {
            return Ok(JobLoad::LeaseLost);
        }
        crate::failpoint::hit_async("load.before_commit").await;
        tx.commit().await?;
        crate::failpoint::hit_async("load.after_commit").await;
        Ok(JobLoad::Loaded(report))
    }

    pub async fn load_file(
        &self,
        rows: impl RowSource + 'static,
        session: Option<SessionId>,
        mut committed: impl FnMut(&SessionId, &LoadReport) + Send + 'static,
    ) -> Result<FileLoad, StoreError> {
        let (mut pieces, producer) = stream_runs(rows, session);
        let mut client = self.pool.get().await?;
        let mut out = FileLoad::default();
        // One transaction per run of a session: whole or not at all.
        while let Some(piece) = pieces.recv().await {
            match piece {
                Piece::Start { session, replace } => {
                    let tx = client.transaction().await?;
                    let mut load = SessionLoad::begin(&tx, &session, replace).await?;
                    loop {
                        match pieces.recv().await {
                            Some(Piece::Rows(rows)) => load.stage(&tx, rows).await?,
                            Some(Piece::End) => {
                                let report = load.finish(&tx).await?;
                                tx.commit().await?;
                                committed(&session, &report);
                                out.sessions.push((session, report));
                                break;
                            }
                            // Dropping the transaction rolls the cut run back.
                            Some(Piece::Failed(reason)) => {
                                out.input_failed = Some(reason);
                                break;
                            }
                            Some(Piece::Start { .. }) | None => {
                                out.input_failed =
                                    Some("the dump parser stopped unexpectedly".into());
                                break;
                            }
                        }
                    }
                }
                Piece::Failed(reason) => out.input_failed = Some(reason),
                Piece::Rows(_) | Piece::End => {}
            }
        }
        out.orphans = producer.await.map_err(StoreError::from_join)?;
        Ok(out)
    }
}

/// One session's load in progress: staged rows, rejected rows, and the counts so far.
struct SessionLoad {
    session: SessionId,
    key: i64,
    new_session: bool,
    replace: bool,
    report: LoadReport,
    /// The erasure list as this transaction sees it (under [`governance::hold_erasures`]).
    erased: ErasureList,
    /// The session itself is erased: nothing of it is stored, not even its row.
    skip: bool,
    /// Staging order, so new rows take their seqs in dump order.
    staged: i64,
    /// Ids whose last row so far may not be stored.
    erased_last: ErasedLast,
}

impl SessionLoad {
    async fn begin(
        tx: &Transaction<'_>,
        session: &SessionId,
        replace: bool,
    ) -> Result<Self, StoreError> {
        governance::hold_erasures(tx).await?;
        if governance::session_erased(&**tx, session.as_str()).await? {
            return Ok(Self {
                session: session.clone(),
                key: 0,
                new_session: false,
                replace,
                report: LoadReport::default(),
                erased: ErasureList::default(),
                skip: true,
                staged: 0,
                erased_last: ErasedLast::default(),
            });
        }
        let erased = governance::erasure_list(tx).await?;
        let inserted = tx
            .query_opt(
                &format!(
                    "INSERT INTO sessions (session_id, sort_ms, status, updated_ms) VALUES ($1, {NOW_MS}, 'loaded', {NOW_MS})
                     ON CONFLICT (session_id) DO NOTHING RETURNING session_key"
                ),
                &[&session.as_str()],
            )
            .await?;
        let (key, new_session) = match inserted {
            Some(row) => (row.get(0), true),
            None => (
                tx.query_one(
                    "SELECT session_key FROM sessions WHERE session_id = $1",
                    &[&session.as_str()],
                )
                .await?
                .get(0),
                false,
            ),
        };
        if replace {
            tx.execute(
                "DELETE FROM rejected_rows WHERE session_id = $1",
                &[&session.as_str()],
            )
            .await?;
        }
        tx.batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS load_stage (
                 n bigint, id text, meeting_id text, user_id text, display_name text, kind text,
                 pinned boolean, edited boolean, link text, file_name text, file_size bigint,
                 payload text, created_ms bigint, search text, extra text,
                 target_user_ids text[]) ON COMMIT DROP;
             TRUNCATE load_stage;",
        )
        .await?;
        Ok(Self {
            session: session.clone(),
            key,
            new_session,
            replace,
            report: LoadReport::default(),
            erased,
            skip: false,
            staged: 0,
            erased_last: ErasedLast::default(),
        })
    }

    /// Stages a chunk: the session's messages by binary COPY, everything else as rejected.
    async fn stage(
        &mut self,
        tx: &Transaction<'_>,
        mut rows: Vec<LoadRow>,
    ) -> Result<(), StoreError> {
        let before = rows.len();
        if self.skip {
            rows.clear();
        } else {
            let (erased, session, last) = (&self.erased, &self.session, &mut self.erased_last);
            rows.retain(|row| {
                let kept = erased.keeps(row);
                if let LoadRow::Message(m) = row {
                    if &m.session_id == session {
                        last.note(&m.id, kept);
                    }
                }
                kept
            });
        }
        self.report.rows_erased += (before - rows.len()) as i64;
        if rows.is_empty() {
            return Ok(());
        }
        let mut rejected: Vec<(i64, String, Vec<u8>)> = Vec::new();
        {
            let sink = tx
                .copy_in(
                    "COPY load_stage (n, id, meeting_id, user_id, display_name, kind, pinned, edited, link,
                                      file_name, file_size, payload, created_ms, search, extra,
                                      target_user_ids) FROM STDIN BINARY",
                )
                .await?;
            let writer = BinaryCopyInWriter::new(
                sink,
                &[
                    Type::INT8,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT,
                    Type::BOOL,
                    Type::BOOL,
                    Type::TEXT,
                    Type::TEXT,
                    Type::INT8,
                    Type::TEXT,
                    Type::INT8,
                    Type::TEXT,
                    Type::TEXT,
                    Type::TEXT_ARRAY,
                ],
            );
            pin_mut!(writer);
            for row in rows {
                match row {
                    LoadRow::Message(mut m) if m.session_id == self.session => {
                        if self.erased.scrub(&mut m) {
                            self.report.rows_erased += 1;
                        }
                        self.staged += 1;
                        let targets: Option<Vec<String>> = m
                            .target_user_ids
                            .as_ref()
                            .map(|t| t.iter().map(|t| text::put(t).into_owned()).collect());
                        let text = (m.kind.as_str() == "text").then_some(m.payload.as_str());
                        let search =
                            search::document(text, m.file_name.as_deref(), &m.display_name);
                        writer
                            .as_mut()
                            .write(&[
                                &self.staged,
                                &text::put(&m.id),
                                &text::put(&m.meeting_id),
                                &text::put(&m.user_id),
                                &text::put(&m.display_name),
                                &text::put(m.kind.as_str()),
                                &m.pinned,
                                &m.edited,
                                &text::put_opt(&m.link),
                                &text::put_opt(&m.file_name),
                                &m.file_size,
                                &text::put(&m.payload),
                                &m.created.millis(),
                                &search,
                                &text::put_opt(&m.extra),
                                &targets,
                            ])
                            .await?;
                        self.report.rows_loaded += 1;
                    }
                    LoadRow::Message(m) => {
                        let reason =
                            RejectedRow::other_session_reason(m.session_id.as_str(), &self.session);
                        rejected.push((0, reason, m.id.into_bytes()));
                    }
                    LoadRow::Rejected(r) => rejected.push((r.line as i64, r.reason, r.raw)),
                }
            }
            writer.finish().await?;
        }
        if !rejected.is_empty() {
            let insert = tx
                .prepare(&format!(
                    "INSERT INTO rejected_rows (session_id, line, reason, raw, created_ms)
                     VALUES ($1, $2, $3, $4, {NOW_MS})"
                ))
                .await?;
            for (line, reason, raw) in &rejected {
                tx.execute(
                    &insert,
                    &[&self.session.as_str(), line, &text::put(reason), raw],
                )
                .await?;
            }
            self.report.rows_rejected += rejected.len() as i64;
        }
        Ok(())
    }

    /// Merges the staged rows into `messages` and recomputes the session's counts.
    async fn finish(mut self, tx: &Transaction<'_>) -> Result<LoadReport, StoreError> {
        if self.skip {
            return Ok(self.report);
        }
        tx.batch_execute(
            "INSERT INTO meetings (meeting_id) SELECT DISTINCT meeting_id FROM load_stage ORDER BY 1
                 ON CONFLICT DO NOTHING;
             INSERT INTO participants (user_id) SELECT DISTINCT user_id FROM load_stage ORDER BY 1
                 ON CONFLICT DO NOTHING;",
        )
        .await?;
        // A message that appears twice ends as its last appearance, in its first one's place.
        tx.execute(
            "INSERT INTO messages (id, session_key, meeting_key, user_key, display_name, kind, pinned, edited,
                                   link, file_name, file_size, payload, created_ms, search, extra, target_user_ids)
             SELECT s.id, $1, mt.meeting_key, p.user_key, s.display_name, s.kind, s.pinned, s.edited,
                    s.link, s.file_name, s.file_size, s.payload, s.created_ms, s.search::tsvector,
                    s.extra, s.target_user_ids
             FROM (SELECT DISTINCT ON (id) *, min(n) OVER (PARTITION BY id) AS first_n
                   FROM load_stage ORDER BY id, n DESC) s
             JOIN meetings mt ON mt.meeting_id = s.meeting_id
             JOIN participants p ON p.user_id = s.user_id
             ORDER BY s.first_n
             ON CONFLICT (session_key, id) DO UPDATE SET
                meeting_key = EXCLUDED.meeting_key, user_key = EXCLUDED.user_key,
                display_name = EXCLUDED.display_name, kind = EXCLUDED.kind, pinned = EXCLUDED.pinned,
                edited = EXCLUDED.edited, link = EXCLUDED.link, file_name = EXCLUDED.file_name,
                file_size = EXCLUDED.file_size, payload = EXCLUDED.payload, created_ms = EXCLUDED.created_ms,
                search = EXCLUDED.search, extra = EXCLUDED.extra, target_user_ids = EXCLUDED.target_user_ids
             WHERE (messages.meeting_key, messages.user_key, messages.display_name, messages.kind,
                    messages.pinned, messages.edited, messages.link, messages.file_name, messages.file_size,
                    messages.payload, messages.created_ms, messages.extra, messages.target_user_ids)
                IS DISTINCT FROM (EXCLUDED.meeting_key, EXCLUDED.user_key, EXCLUDED.display_name,
                    EXCLUDED.kind, EXCLUDED.pinned, EXCLUDED.edited, EXCLUDED.link, EXCLUDED.file_name,
                    EXCLUDED.file_size, EXCLUDED.payload, EXCLUDED.created_ms, EXCLUDED.extra,
                    EXCLUDED.target_user_ids)",
            &[&self.key],
        )
        .await?;
        if !self.erased_last.is_empty() {
            // An id whose last row is erased: an earlier row of it (another sender's) was
            // merged above, or is kept from a previous load; neither may stay.
            let ids: Vec<String> = self
                .erased_last
                .ids()
                .map(|id| text::put(id).into_owned())
                .collect();
            tx.execute(
                "DELETE FROM messages WHERE session_key = $1 AND id = ANY($2)",
                &[&self.key, &ids],
            )
            .await?;
        }
        if self.replace && !self.new_session {
            tx.execute(
                "DELETE FROM messages WHERE session_key = $1
                   AND NOT EXISTS (SELECT 1 FROM load_stage s WHERE s.id = messages.id)",
                &[&self.key],
            )
            .await?;
            tx.execute(
                "DELETE FROM dump_senders WHERE session_key = $1",
                &[&self.key],
            )
            .await?;
        }
        // Every sender of the dump, rows a later one with the same id replaced included: an
        // erasure of any of them must find this session's kept dump.
        tx.execute(
            "INSERT INTO dump_senders (session_key, user_key)
             SELECT DISTINCT $1::bigint, p.user_key FROM load_stage s JOIN participants p ON p.user_id = s.user_id
             ON CONFLICT DO NOTHING",
            &[&self.key],
        )
        .await?;
        tx.batch_execute("TRUNCATE load_stage").await?;
        tx.execute(
            &format!(
                "UPDATE sessions SET status = 'loaded', loaded_ms = {NOW_MS}, updated_ms = {NOW_MS}
                 WHERE session_key = $1"
            ),
            &[&self.key],
        )
        .await?;
        self.report.messages = recount(tx, self.key).await?;
        if self.new_session {
            tx.execute(
                "UPDATE sessions SET sort_ms = coalesce(first_message_ms, sort_ms) WHERE session_key = $1",
                &[&self.key],
            )
            .await?;
        }
        Ok(self.report)
    }
}

/// Recomputes the session's counts from its stored rows (after a load, or an erasure that took
/// some of them); a loaded session left without a row has no chat. Returns its message count.
pub(super) async fn recount(tx: &Transaction<'_>, key: i64) -> Result<i64, StoreError> {
    let counted = tx
        .query_one(
            &format!(
                "UPDATE sessions SET
                    meeting_id = coalesce(meeting_id,
                        (SELECT mt.meeting_id FROM messages m JOIN meetings mt ON mt.meeting_key = m.meeting_key
                         WHERE m.session_key = $1 LIMIT 1)),
                    (message_count, text_count, image_count, file_count, other_count, pinned_count,
                     first_message_ms, last_message_ms) =
                        (SELECT count(*), count(*) FILTER (WHERE kind = 'text'),
                                count(*) FILTER (WHERE kind = 'image'), count(*) FILTER (WHERE kind = 'file'),
                                count(*) FILTER (WHERE kind NOT IN ('text', 'image', 'file')),
                                count(*) FILTER (WHERE pinned), min(created_ms), max(created_ms)
                         FROM messages WHERE session_key = $1),
                    rejected_count = (SELECT count(*) FROM rejected_rows r WHERE r.session_id = sessions.session_id),
                    updated_ms = {NOW_MS}
                 WHERE session_key = $1
                 RETURNING message_count"
            ),
            &[&key],
        )
        .await?;
    // A dump without a row: the session has no chat.
    tx.execute(
        "UPDATE sessions SET status = 'no_chat'
         WHERE session_key = $1 AND status = 'loaded' AND message_count = 0 AND rejected_count = 0",
        &[&key],
    )
    .await?;
    Ok(counted.get(0))
}

/// Marks the job done in the transaction that loaded its rows (or found nothing to load): a dump
/// without a row is a session with no chat. A reprocess or pull supersedes older failed or dead
/// jobs of the same session. False when the lease was lost.
pub(super) async fn complete_job(
    tx: &Transaction<'_>,
    job: &ClaimedJob,
    report: &LoadReport,
    outcome: JobOutcome,
) -> Result<bool, StoreError> {
    let outcome = match outcome {
        JobOutcome::Loaded if report.rows_loaded == 0 && report.rows_rejected == 0 => {
            JobOutcome::NoChat
        }
        other => other,
    };
    let done = tx
        .execute(
            &format!(
                "UPDATE jobs SET state = 'done', claimed_until_ms = NULL, last_error = NULL, rows_loaded = $3,
                                 rows_rejected = $4, outcome = $5, updated_ms = {NOW_MS}
                 WHERE id = $1 AND lease_token = $2 AND state = 'running'"
            ),
            &[
                &job.id,
                &job.lease_token,
                &report.rows_loaded,
                &report.rows_rejected,
                &outcome.as_str(),
            ],
        )
        .await?;
    if done != 1 {
        return Ok(false);
    }
    if job.kind != JobKind::Delivery {
        tx.execute(
            &format!(
                "UPDATE jobs SET state = 'done',
                                 last_error = 'superseded by job ' || $2 || ': ' || coalesce(last_error, ''),
                                 updated_ms = {NOW_MS}
                 WHERE session_id = $1 AND id < $2 AND state IN ('failed', 'dead')"
            ),
            &[&job.session_id.as_str(), &job.id],
        )
        .await?;
    }
    Ok(true)
}
