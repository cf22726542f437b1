//! Group commit for webhook intake.
//!
//! One dedicated thread owns a connection and turns every delivery that arrived while the
//! previous commit was on its way to disk into one `BEGIN IMMEDIATE ... COMMIT`. Each caller is
//! answered only after the commit that holds its delivery returned, so nothing is acknowledged
//! before it is durable, and throughput is not capped at one fsync per delivery.

use super::inbox::insert_delivery;
use super::{connect, FileId, StoreError};
use crate::domain::{IntakeOutcome, NewDelivery};
use rusqlite::{Connection, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use tokio::sync::oneshot;

/// Deliveries written in one transaction at most.
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<IntakeOutcome, Arc<StoreError>>>;

/// A handle to the intake thread; cheap to clone.
#[derive(Clone)]
pub struct IntakeWriter {
    queue: mpsc::SyncSender<(NewDelivery, Reply)>,
}

/// The file the writer's connection was opened on, to notice it being deleted or replaced:
/// SQLite would otherwise keep writing to an unlinked inode and acknowledge lost data.
struct OpenFile {
    conn: Connection,
    file: FileId,
}

impl IntakeWriter {
    /// Starts the intake thread on `path`. The database must already be migrated.
    pub fn start(path: &Path) -> Result<Self, StoreError> {
        let first = open_file(path)?;
        let (queue, receiver) = mpsc::sync_channel::<(NewDelivery, Reply)>(4 * MAX_BATCH);
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("chatsink-intake".into())
            .spawn(move || run_writer(path, Some(first), receiver))
            .expect("spawn intake thread");
        Ok(Self { queue })
    }

    /// Stores a delivery durably; returns once its transaction has committed (or failed).
    pub async fn store(&self, delivery: NewDelivery) -> Result<IntakeOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        // The channel is bounded. Usually there is room and the hand-over is immediate; only a
        // full queue waits, and then on the blocking pool, not on an async worker.
        match self.queue.try_send((delivery, reply)) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(StoreError::WriterGone),
            Err(mpsc::TrySendError::Full(item)) => {
                let queue = self.queue.clone();
                tokio::task::spawn_blocking(move || queue.send(item).map_err(drop))
                    .await
                    .map_err(|_| StoreError::WriterGone)?
                    .map_err(|_| StoreError::WriterGone)?;
            }
        }
        match answer.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(cause)) => Err(StoreError::Intake(cause)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }
}

fn open_file(path: &Path) -> Result<OpenFile, StoreError> {
    let conn = connect(path)?;
    // Opening creates a missing file; a database that vanished must not come back empty here.
    let file = FileId::of(path).ok_or_else(|| StoreError::FileReplaced(path.to_owned()))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 0 {
        return Err(StoreError::FileReplaced(path.to_owned()));
    }
    Ok(OpenFile { conn, file })
}

fn still_same_file(path: &Path, open: &OpenFile) -> bool {
    FileId::of(path) == Some(open.file)
}

fn run_writer(
    path: PathBuf,
    mut open: Option<OpenFile>,
    receiver: mpsc::Receiver<(NewDelivery, Reply)>,
) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        if open.as_ref().is_some_and(|o| !still_same_file(&path, o)) {
            tracing::error!(path = %path.display(), "database file was deleted or replaced; refusing writes until it is back");
            open = None;
        }
        if open.is_none() {
            open = match path.exists().then(|| open_file(&path)) {
                Some(Ok(file)) => Some(file),
                Some(Err(e)) => {
                    fail_all(batch, e);
                    continue;
                }
                None => {
                    fail_all(batch, StoreError::FileReplaced(path.clone()));
                    continue;
                }
            };
        }
        let file = open.as_mut().expect("opened above");
        match write_batch(&mut file.conn, &batch) {
            Ok(outcomes) => {
                crate::failpoint::hit("intake.after_commit");
                for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, deliveries = batch.len(), "intake commit failed; answering 503");
                // A fresh connection next time: the fault may have left this one unusable.
                open = None;
                fail_all(batch, e.into());
            }
        }
    }
}

fn fail_all(batch: Vec<(NewDelivery, Reply)>, cause: StoreError) {
    let cause = Arc::new(cause);
    for (_, reply) in batch {
        let _ = reply.send(Err(cause.clone()));
    }
}

/// Writes a batch in one transaction. Deliveries almost never fail alone (a duplicate is an
/// outcome, not an error), so the batch is first written straight through; only when one of
/// them errs is it rolled back and written again with each delivery in its own savepoint, so the
/// bad one fails alone. (A savepoint per delivery on the common path copied every page it touched
/// into the statement journal: a quarter of the intake thread's time with 16 KB pages.) An error
/// from the commit itself fails the whole batch.
fn write_batch(
    conn: &mut Connection,
    batch: &[(NewDelivery, Reply)],
) -> Result<Vec<Result<IntakeOutcome, Arc<StoreError>>>, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcomes: Result<Vec<_>, _> = batch
        .iter()
        .map(|(delivery, _)| insert_delivery(&tx, delivery))
        .collect();
    match outcomes {
        Ok(outcomes) => {
            tx.commit()?;
            Ok(outcomes.into_iter().map(Ok).collect())
        }
        Err(e) => {
            tracing::warn!(error = %e, "a delivery failed in a batch; writing them one savepoint each");
            drop(tx);
            write_batch_isolated(conn, batch)
        }
    }
}

/// [`write_batch`] with each delivery in its own savepoint.
fn write_batch_isolated(
    conn: &mut Connection,
    batch: &[(NewDelivery, Reply)],
) -> Result<Vec<Result<IntakeOutcome, Arc<StoreError>>>, rusqlite::Error> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for (delivery, _) in batch {
        let mut savepoint = tx.savepoint()?;
        match insert_delivery(&savepoint, delivery) {
            Ok(outcome) => {
                savepoint.commit()?;
                outcomes.push(Ok(outcome));
            }
            Err(e) => {
                savepoint.rollback()?;
                drop(savepoint);
                outcomes.push(Err(Arc::new(e.into())));
            }
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str) -> (NewDelivery, Reply) {
        let (reply, _answer) = oneshot::channel();
        (super::super::inbox::tests::delivery(id, None), reply)
    }

    fn stored(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT delivery_id FROM inbox ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn a_batch_is_written_whole_and_a_failing_delivery_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        drop(super::super::SqliteStore::open(&path).unwrap());
        let mut conn = connect(&path).unwrap();

        let batch = vec![delivery("a"), delivery("b"), delivery("a")];
        let outcomes = write_batch(&mut conn, &batch).unwrap();
        assert!(matches!(outcomes[0], Ok(IntakeOutcome::Stored { .. })));
        assert!(matches!(outcomes[1], Ok(IntakeOutcome::Stored { .. })));
        assert!(matches!(outcomes[2], Ok(IntakeOutcome::Duplicate)));

        // A delivery the database refuses (here by a trigger) fails; the others are stored.
        conn.execute_batch(
            "CREATE TEMP TRIGGER refuse_bad BEFORE INSERT ON inbox WHEN new.delivery_id = 'bad'
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
        let batch = vec![delivery("c"), delivery("bad"), delivery("d")];
        let outcomes = write_batch(&mut conn, &batch).unwrap();
        assert!(matches!(outcomes[0], Ok(IntakeOutcome::Stored { .. })));
        assert!(
            matches!(&outcomes[1], Err(e) if e.to_string().contains("refused")),
            "{outcomes:?}"
        );
        assert!(matches!(outcomes[2], Ok(IntakeOutcome::Stored { .. })));
        assert_eq!(stored(&conn), ["a", "b", "c", "d"]);
    }
}
