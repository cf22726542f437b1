//! Streaming exports (CSV, NDJSON): the whole result, page by page from the database into a
//! bounded channel, so memory stays flat whatever the size.
//!
//! CSV cells that begin with `=`, `+`, `-`, `@`, a tab or a carriage return are prefixed with a
//! single quote, so a spreadsheet shows them as text instead of running them as formulas
//! (chat text is written by meeting participants: `=HYPERLINK(...)`).

use super::params::{Format, MessageQuery};
use super::views::MessageView;
use crate::domain::{After, AuditEntry};
use crate::governance::AuditLog;
use crate::store::Store;
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

const PAGE: u32 = 1000;
const FLUSH_AT: usize = 64 * 1024;

pub const CSV_COLUMNS: [&str; 18] = [
    "id",
    "sessionId",
    "meetingId",
    "userId",
    "displayName",
    "type",
    "time",
    "pinned",
    "isEdited",
    "message",
    "link",
    "name",
    "size",
    "payload",
    "private",
    "targetUserIds",
    "extra",
    "customParticipantId",
];

/// Neutralises a cell a spreadsheet would treat as a formula.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn csv_record(view: &MessageView) -> [String; 18] {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        view.id.clone(),
        view.session_id.clone(),
        view.meeting_id.clone(),
        view.user_id.clone(),
        view.display_name.clone(),
        view.kind.clone(),
        view.time.clone(),
        view.pinned.to_string(),
        view.is_edited.to_string(),
        opt(&view.message),
        opt(&view.link),
        opt(&view.name),
        view.size.map(|s| s.to_string()).unwrap_or_default(),
        opt(&view.payload),
        view.private.to_string(),
        view.target_user_ids
            .as_ref()
            .map(|t| serde_json::to_string(t).expect("strings serialise"))
            .unwrap_or_default(),
        view.extra
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default(),
        opt(&view.custom_participant_id),
    ]
}

/// Streams the export; each page is one read within `budget`. `permit` (a full-text search's
/// place) is held until the export ends. The request's audit entry is recorded when the stream
/// ends, with the rows it sent (all of them, or as many as went before it was cut short), and
/// written before the body's end is sent.
pub fn stream(
    store: Store,
    query: MessageQuery,
    budget: Duration,
    permit: Option<OwnedSemaphorePermit>,
    audit: (AuditLog, AuditEntry),
) -> HttpResponse {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
    let format = query.format;
    // Encoding runs on the blocking pool, off the async workers; each page is fetched through
    // the store from there.
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut sent = 0;
        if let Err(e) = produce(&runtime, &store, &query, budget, &sender, &mut sent) {
            // The status line is already sent; a cut-short body is all that can signal it.
            tracing::error!(error = %e, "export stopped early");
        }
        let (log, mut entry) = audit;
        entry.rows = Some(sent);
        // The body ends (`sender` drops) only once the entry is on disk: a crash can lose no
        // record of an export its reader received whole. (A page's entry may lag by a batch.)
        runtime.block_on(async {
            log.record(entry).await;
            log.flush().await;
        });
        drop(sender);
    });
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|chunk| (Ok::<_, actix_web::Error>(chunk), receiver))
    });
    let content_type = match format {
        Format::Csv => "text/csv; charset=utf-8",
        _ => "application/x-ndjson",
    };
    let mut response = HttpResponse::Ok();
    response.content_type(content_type);
    if format == Format::Csv {
        response.insert_header((
            "Content-Disposition",
            "attachment; filename=\"messages.csv\"",
        ));
    }
    response.streaming(body)
}

/// Where export bytes go: accumulated into chunks and handed to the response stream. A client
/// that went away shows up as a write error, which ends the export.
struct ChunkSink {
    buffer: Vec<u8>,
    sender: tokio::sync::mpsc::Sender<Bytes>,
}

impl ChunkSink {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(FLUSH_AT * 2),
        ));
        self.sender
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl std::io::Write for ChunkSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= FLUSH_AT {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The export's encoder, writing into the chunk sink.
enum Encoder {
    Csv(Box<csv::Writer<ChunkSink>>),
    Ndjson(ChunkSink),
}

impl Encoder {
    fn write(&mut self, view: &MessageView) -> anyhow::Result<()> {
        use std::io::Write;
        match self {
            Self::Csv(writer) => writer.write_record(
                csv_record(view)
                    .iter()
                    .map(|c| spreadsheet_safe(c).into_owned()),
            )?,
            Self::Ndjson(sink) => {
                serde_json::to_writer(&mut *sink, view)?;
                sink.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        use std::io::Write;
        let mut sink = match self {
            Self::Csv(writer) => writer
                .into_inner()
                .map_err(|e| anyhow::anyhow!("finishing the export: {}", e.error()))?,
            Self::Ndjson(sink) => sink,
        };
        sink.flush()?;
        Ok(())
    }
}

fn produce(
    runtime: &tokio::runtime::Handle,
    store: &Store,
    query: &MessageQuery,
    budget: Duration,
    sender: &tokio::sync::mpsc::Sender<Bytes>,
    sent: &mut i64,
) -> anyhow::Result<()> {
    let sink = ChunkSink {
        buffer: Vec::with_capacity(FLUSH_AT * 2),
        sender: sender.clone(),
    };
    let mut encoder = if query.format == Format::Csv {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(sink);
        writer.write_record(CSV_COLUMNS)?;
        Encoder::Csv(Box::new(writer))
    } else {
        Encoder::Ndjson(sink)
    };
    let mut after = query.after;
    let mut remaining = query.limit.map(u64::from);
    loop {
        let want = remaining.map_or(PAGE, |r| r.min(u64::from(PAGE)) as u32);
        if want == 0 {
            break;
        }
        let rows = runtime.block_on(store.message_page(
            &query.filter,
            query.order,
            after,
            want,
            budget,
        ))?;
        let fetched = rows.len();
        if let Some(last) = rows.last() {
            after = Some(After {
                created_ms: last.created_ms,
                seq: last.seq,
            });
        }
        for row in rows {
            encoder.write(&MessageView::from(row))?;
            *sent += 1;
        }
        if let Some(r) = remaining.as_mut() {
            *r -= fetched as u64;
        }
        if fetched < want as usize {
            break;
        }
    }
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::spreadsheet_safe;

    #[test]
    fn formula_cells_are_neutralised() {
        for cell in ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(spreadsheet_safe(cell).starts_with('\''), "{cell:?}");
        }
        for cell in ["hello", "", "1+1", " =x"] {
            assert_eq!(spreadsheet_safe(cell), cell);
        }
    }
}
