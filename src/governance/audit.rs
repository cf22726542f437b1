//! The audit log's writer: entries are queued by the request that made them and written in
//! batches, one commit per batch, so a query page pays for a channel send, not a commit.

use crate::domain::AuditEntry;
use crate::store::Store;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Entries the writer may fall behind by before a request waits to queue its own.
const QUEUE: usize = 10_000;
/// Entries per commit at most.
const BATCH: usize = 1_000;
/// How long the writer gathers entries before a commit. One commit per request cost a page a
/// tenth more (an fsync beside every page on a two-core host: `benches/system`, figure 9); a
/// few commits a second cost nothing measurable. An entry is on disk this long after its
/// request was answered (a crash in between loses at most that much of the log).
const GATHER: std::time::Duration = std::time::Duration::from_millis(200);

enum Message {
    Entry(AuditEntry),
    /// Answered once every entry queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// A handle for queueing audit entries. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<Message>,
}

impl AuditLog {
    /// Starts the writer. It writes until every handle is dropped.
    pub fn start(store: Store) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, received) = mpsc::channel(QUEUE);
        (Self { queue }, tokio::spawn(write(store, received)))
    }

    /// Queues an entry; waits only while the writer is [`QUEUE`] entries behind, so no entry is
    /// ever dropped.
    pub async fn record(&self, entry: AuditEntry) {
        if self.queue.send(Message::Entry(entry)).await.is_err() {
            tracing::error!("the audit writer has stopped; an audit entry was not recorded");
        }
    }

    /// Waits until every entry queued so far is written (at shutdown, and for `chatsink` commands
    /// that record their own).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

async fn write(store: Store, mut received: mpsc::Receiver<Message>) {
    let mut batch: Vec<AuditEntry> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = received.recv().await {
        let deadline = tokio::time::Instant::now() + GATHER;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Entry(entry) => batch.push(entry),
                // Written now: someone waits for it.
                Message::Flush(done) => {
                    waiting.push(done);
                    break;
                }
            }
            if batch.len() < BATCH {
                next = tokio::time::timeout_at(deadline, received.recv())
                    .await
                    .ok()
                    .flatten();
            }
        }
        if !batch.is_empty() {
            store_batch(&store, std::mem::take(&mut batch)).await;
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Writes a batch, retrying with a growing pause while the database fails: an audit entry is
/// kept until it is written.
async fn store_batch(store: &Store, batch: Vec<AuditEntry>) {
    let mut pause = Duration::from_millis(100);
    loop {
        match store.record_audit(batch.clone()).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, entries = batch.len(), "writing the audit log failed; retrying");
                metrics::counter!("chatsink_audit_write_failures_total").increment(1);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}
