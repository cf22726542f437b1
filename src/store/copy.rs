//! `chatsink copy-archive`: moves an SQLite archive into an empty PostgreSQL database, keeping
//! every id (message `seq`, session, meeting and user keys, delivery and job ids), so cursors,
//! links and job numbers stay valid.
//!
//! The SQLite side is read in one read transaction (a consistent snapshot, even while `serve`
//! writes); the PostgreSQL side is written by binary COPY in one transaction that first locks
//! the archive's tables and checks they are empty, so a copy is all or nothing, and two copies
//! (or a copy and a starting instance) cannot interleave. Owners are not copied: they are
//! processes of the old archive; a job one of them held is claimable at once on the new one.
//! Messages get their full-text words built as a load builds them.

use super::location::PostgresUrl;
use super::postgres::{search, text};
use super::StoreError;
use futures_util::pin_mut;
use rusqlite::types::ValueRef;
use std::path::Path;
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

/// A table to copy: its name and its columns with their PostgreSQL types, in the order the
/// foreign keys need.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Type)],
    /// The column (or columns) the rows are read in order of.
    order_by: &'static str,
    /// The serial column whose sequence must continue after the copied ids, if any.
    serial: Option<&'static str>,
}

/// Tables of either schema that `copy-archive` leaves behind on purpose, with why. Every other
/// table is in [`TABLES`]: `tests` hold both schemas against these two lists, so a table added
/// to the schema and forgotten here fails a test instead of being lost in a move.
pub const NOT_COPIED: &[(&str, &str)] = &[
    (
        "owners",
        "the processes of the old archive; their jobs are claimable at once on the new one",
    ),
    (
        "chatsink_schema",
        "PostgreSQL's migration version, set by the migration",
    ),
    ("sqlite_sequence", "SQLite's own bookkeeping"),
    (
        "messages_fts",
        "SQLite's full-text index; PostgreSQL's search words are built from each message",
    ),
];

/// The tables `copy-archive` carries, in the order it writes them.
pub fn copied_tables() -> impl Iterator<Item = &'static str> {
    TABLES.iter().map(|t| t.name)
}

/// Whether a table of either schema is accounted for: copied, or left on purpose (FTS5's
/// shadow tables go with `messages_fts`).
pub fn accounted_for(table: &str) -> bool {
    copied_tables().any(|t| t == table)
        || NOT_COPIED.iter().any(|(t, _)| *t == table)
        || table.starts_with("messages_fts_")
}

const TABLES: &[Table] = &[
    Table {
        name: "inbox",
        columns: &[
            ("id", Type::INT8),
            ("delivery_id", Type::TEXT),
            ("body_sha256", Type::TEXT),
            ("scheme", Type::TEXT),
            ("event", Type::TEXT),
            ("session_id", Type::TEXT),
            ("body", Type::BYTEA),
            ("received_at", Type::TEXT),
            ("received_ms", Type::INT8),
            ("webhook_id", Type::TEXT),
        ],
        order_by: "id",
        serial: Some("id"),
    },
    Table {
        name: "sessions",
        columns: &[
            ("session_key", Type::INT8),
            ("session_id", Type::TEXT),
            ("meeting_id", Type::TEXT),
            ("title", Type::TEXT),
            ("created_at", Type::TEXT),
            ("started_at", Type::TEXT),
            ("ended_at", Type::TEXT),
            ("organizer_id", Type::TEXT),
            ("organizer_name", Type::TEXT),
            ("sort_ms", Type::INT8),
            ("status", Type::TEXT),
            ("message_count", Type::INT8),
            ("text_count", Type::INT8),
            ("image_count", Type::INT8),
            ("file_count", Type::INT8),
            ("other_count", Type::INT8),
            ("pinned_count", Type::INT8),
            ("rejected_count", Type::INT8),
            ("first_message_ms", Type::INT8),
            ("last_message_ms", Type::INT8),
            ("dump_path", Type::TEXT),
            ("dump_sha256", Type::TEXT),
            ("loaded_ms", Type::INT8),
            ("updated_ms", Type::INT8),
            ("participants_ms", Type::INT8),
        ],
        order_by: "session_key",
        serial: Some("session_key"),
    },
    Table {
        name: "participants",
        columns: &[("user_key", Type::INT8), ("user_id", Type::TEXT)],
        order_by: "user_key",
        serial: Some("user_key"),
    },
    Table {
        name: "meetings",
        columns: &[("meeting_key", Type::INT8), ("meeting_id", Type::TEXT)],
        order_by: "meeting_key",
        serial: Some("meeting_key"),
    },
    Table {
        name: "jobs",
        columns: &[
            ("id", Type::INT8),
            ("kind", Type::TEXT),
            ("inbox_id", Type::INT8),
            ("session_id", Type::TEXT),
            ("download_url", Type::TEXT),
            ("download_expiry_ms", Type::INT8),
            ("state", Type::TEXT),
            ("attempts", Type::INT4),
            ("next_attempt_ms", Type::INT8),
            ("claimed_until_ms", Type::INT8),
            ("lease_token", Type::TEXT),
            ("last_error", Type::TEXT),
            ("rows_loaded", Type::INT8),
            ("rows_rejected", Type::INT8),
            ("created_ms", Type::INT8),
            ("updated_ms", Type::INT8),
            ("outcome", Type::TEXT),
        ],
        order_by: "id",
        serial: Some("id"),
    },
    Table {
        name: "messages",
        columns: &[
            ("seq", Type::INT8),
            ("id", Type::TEXT),
            ("session_key", Type::INT8),
            ("meeting_key", Type::INT8),
            ("user_key", Type::INT8),
            ("display_name", Type::TEXT),
            ("kind", Type::TEXT),
            ("pinned", Type::BOOL),
            ("edited", Type::BOOL),
            ("link", Type::TEXT),
            ("file_name", Type::TEXT),
            ("file_size", Type::INT8),
            ("payload", Type::TEXT),
            ("created_ms", Type::INT8),
            ("extra", Type::TEXT),
            ("target_user_ids", Type::TEXT_ARRAY),
        ],
        order_by: "seq",
        serial: Some("seq"),
    },
    Table {
        name: "rejected_rows",
        columns: &[
            ("id", Type::INT8),
            ("session_id", Type::TEXT),
            ("line", Type::INT8),
            ("reason", Type::TEXT),
            ("raw", Type::BYTEA),
            ("created_ms", Type::INT8),
        ],
        order_by: "id",
        serial: Some("id"),
    },
    Table {
        name: "session_participants",
        columns: &[
            ("session_key", Type::INT8),
            ("participant_id", Type::TEXT),
            ("rtk_user_id", Type::TEXT),
            ("custom_participant_id", Type::TEXT),
            ("display_name", Type::TEXT),
            ("preset_name", Type::TEXT),
            ("joined_ms", Type::INT8),
            ("left_ms", Type::INT8),
        ],
        order_by: "session_key, participant_id",
        serial: None,
    },
    Table {
        name: "dump_senders",
        columns: &[("session_key", Type::INT8), ("user_key", Type::INT8)],
        order_by: "session_key, user_key",
        serial: None,
    },
    // The erasure list (users, messages, sessions, and retention's tombstones): without it a
    // re-delivery, a reprocess or a backfill on the new archive would load the erased again.
    Table {
        name: "erasures",
        columns: &[
            ("kind", Type::TEXT),
            ("id", Type::TEXT),
            ("reason", Type::TEXT),
            ("at_ms", Type::INT8),
        ],
        order_by: "kind, id",
        serial: None,
    },
    Table {
        name: "dump_trash",
        columns: &[("key", Type::TEXT), ("at_ms", Type::INT8)],
        order_by: "key",
        serial: None,
    },
    // Tokens keep only their secret's hash; a scope is SQLite's JSON array and PostgreSQL's
    // text[].
    Table {
        name: "tokens",
        columns: &[
            ("name", Type::TEXT),
            ("secret_sha256", Type::TEXT),
            ("admin", Type::BOOL),
            ("meetings", Type::TEXT_ARRAY),
            ("created_ms", Type::INT8),
            ("expires_ms", Type::INT8),
            ("last_used_ms", Type::INT8),
            ("revoked_ms", Type::INT8),
        ],
        order_by: "name",
        serial: None,
    },
    // A pass's watermark and last result, not its lease: the lease's holder is an owner of the
    // old archive.
    Table {
        name: "passes",
        columns: &[
            ("name", Type::TEXT),
            ("watermark_ms", Type::INT8),
            ("last_success_ms", Type::INT8),
            ("last_error", Type::TEXT),
            ("updated_ms", Type::INT8),
        ],
        order_by: "name",
        serial: None,
    },
    Table {
        name: "audit",
        columns: &[
            ("id", Type::INT8),
            ("at_ms", Type::INT8),
            ("token", Type::TEXT),
            ("method", Type::TEXT),
            ("route", Type::TEXT),
            ("filters", Type::TEXT),
            ("rows", Type::INT8),
            ("status", Type::INT4),
        ],
        order_by: "id",
        serial: Some("id"),
    },
];

/// The index of `messages` in [`TABLES`]: its rows are staged, to build their `search` words.
const MESSAGES: usize = 5;

/// Rows per batch from the SQLite reader to the PostgreSQL writer.
const BATCH: usize = 5_000;

/// What was copied: rows per table, in copy order.
#[derive(Debug)]
pub struct Copied {
    pub tables: Vec<(&'static str, u64)>,
}

/// One SQLite value.
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

enum Read {
    Rows(usize, Vec<Vec<Cell>>),
    /// All of table `.0` was sent: `.1` rows.
    Done(usize, u64),
}

/// Copies the SQLite archive at `from` into the PostgreSQL database at `to`, which must hold no
/// archive yet (it is migrated first).
pub async fn copy_archive(from: &Path, to: &PostgresUrl) -> Result<Copied, StoreError> {
    // The source is brought to this build's schema (and must exist) before it is read.
    drop(super::sqlite::SqliteStore::open_existing(from)?);
    let pool = super::postgres::connect(to, 2)?;
    super::postgres::migrate(&pool, &to.to_string()).await?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    // Held to the commit: no instance writes, and no second copy starts, meanwhile.
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        names.join(", ")
    ))
    .await?;
    let holds = names
        .iter()
        .map(|n| format!("EXISTS (SELECT 1 FROM {n})"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let occupied: bool = tx.query_one(&format!("SELECT {holds}"), &[]).await?.get(0);
    if occupied {
        return Err(StoreError::NotEmpty(to.to_string()));
    }
    tx.batch_execute(
        "CREATE TEMP TABLE copy_messages (LIKE messages INCLUDING DEFAULTS) ON COMMIT DROP;
         ALTER TABLE copy_messages DROP COLUMN search, ADD COLUMN search text;",
    )
    .await?;

    let (sender, mut receiver) = mpsc::channel::<Read>(4);
    let source = from.to_owned();
    let reader = tokio::task::spawn_blocking(move || read_all(&source, sender));
    let mut copied = Vec::with_capacity(TABLES.len());
    for (index, table) in TABLES.iter().enumerate() {
        let target = if index == MESSAGES {
            "copy_messages"
        } else {
            table.name
        };
        let mut columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        let mut types: Vec<Type> = table.columns.iter().map(|(_, t)| t.clone()).collect();
        if index == MESSAGES {
            columns.push("search");
            types.push(Type::TEXT);
        }
        let sink = tx
            .copy_in(&format!(
                "COPY {target} ({}) FROM STDIN BINARY",
                columns.join(", ")
            ))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        let mut written = 0u64;
        let sent = loop {
            let Some(read) = receiver.recv().await else {
                // The reader stopped early: its error says why.
                reader.await.map_err(StoreError::from_join)??;
                return Err(StoreError::Copy("the SQLite reader stopped early".into()));
            };
            match read {
                Read::Rows(at, rows) if at == index => {
                    for row in rows {
                        let mut values = row
                            .iter()
                            .zip(table.columns)
                            .map(|(cell, (column, ty))| value(cell, ty, table.name, column))
                            .collect::<Result<Vec<_>, _>>()?;
                        if index == MESSAGES {
                            values.push(Box::new(message_search(&row)));
                        }
                        let refs: Vec<&(dyn ToSql + Sync)> = values
                            .iter()
                            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                            .collect();
                        writer.as_mut().write(&refs).await?;
                        written += 1;
                    }
                }
                Read::Done(at, count) if at == index => break count,
                _ => {
                    return Err(StoreError::Copy(
                        "the SQLite reader sent tables out of order".into(),
                    ))
                }
            }
        };
        let finished = writer.finish().await?;
        if finished != sent || written != sent {
            return Err(StoreError::Copy(format!(
                "{}: {sent} rows read, {finished} written",
                table.name
            )));
        }
        if index == MESSAGES {
            let all: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
            let all = all.join(", ");
            tx.execute(
                &format!(
                    "INSERT INTO messages ({all}, search) SELECT {all}, search::tsvector FROM copy_messages"
                ),
                &[],
            )
            .await?;
        }
        if let Some(serial) = table.serial {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{0}', '{1}'),
                                   coalesce((SELECT max({1}) FROM {0}), 0) + 1, false)",
                    table.name, serial
                ),
                &[],
            )
            .await?;
        }
        copied.push((table.name, sent));
    }
    reader.await.map_err(StoreError::from_join)??;
    tx.commit().await?;
    Ok(Copied { tables: copied })
}

/// Reads every table of [`TABLES`] from the SQLite file in one read transaction, in batches.
fn read_all(path: &Path, sender: mpsc::Sender<Read>) -> Result<(), StoreError> {
    let mut conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    let tx = conn.transaction()?;
    for (index, table) in TABLES.iter().enumerate() {
        let columns: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        let mut statement = tx.prepare(&format!(
            "SELECT {} FROM {} ORDER BY {}",
            columns.join(", "),
            table.name,
            table.order_by
        ))?;
        let mut rows = statement.query([])?;
        let mut batch = Vec::with_capacity(BATCH);
        let mut count = 0u64;
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                cells.push(match row.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(n) => Cell::Int(n),
                    ValueRef::Real(x) => Cell::Real(x),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                });
            }
            batch.push(cells);
            count += 1;
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if sender.blocking_send(Read::Rows(index, full)).is_err() {
                    return Ok(()); // the writer stopped; its error is the one to report
                }
            }
        }
        if !batch.is_empty() && sender.blocking_send(Read::Rows(index, batch)).is_err() {
            return Ok(());
        }
        if sender.blocking_send(Read::Done(index, count)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// A copied message's full-text words, as a load builds them.
fn message_search(row: &[Cell]) -> String {
    let text_of = |cell: &Cell| match cell {
        Cell::Text(t) => Some(t.clone()),
        _ => None,
    };
    // Columns as in TABLES[MESSAGES]: 5 display_name, 6 kind, 10 file_name, 12 payload.
    let kind = text_of(&row[6]);
    let payload = text_of(&row[12]);
    let text = (kind.as_deref() == Some("text"))
        .then_some(payload.as_deref())
        .flatten();
    let file_name = text_of(&row[10]);
    let display_name = text_of(&row[5]).unwrap_or_default();
    search::document(text, file_name.as_deref(), &display_name)
}

/// A cell as the PostgreSQL column's type takes it; a value of another type is an error naming
/// where it is (a file written by hand, say).
fn value(
    cell: &Cell,
    ty: &Type,
    table: &str,
    column: &str,
) -> Result<Box<dyn ToSql + Sync + Send>, StoreError> {
    let wrong = |what: &str| {
        StoreError::Copy(format!(
            "{table}.{column} holds {what}, which a {ty} column cannot take"
        ))
    };
    Ok(match (cell, ty) {
        (Cell::Null, &Type::INT8) => Box::new(None::<i64>),
        (Cell::Null, &Type::INT4) => Box::new(None::<i32>),
        (Cell::Null, &Type::BOOL) => Box::new(None::<bool>),
        (Cell::Null, &Type::TEXT) => Box::new(None::<String>),
        (Cell::Null, &Type::BYTEA) => Box::new(None::<Vec<u8>>),
        (Cell::Int(n), &Type::INT8) => Box::new(*n),
        (Cell::Int(n), &Type::INT4) => {
            Box::new(i32::try_from(*n).map_err(|_| wrong("an integer out of range"))?)
        }
        (Cell::Int(n), &Type::BOOL) => Box::new(*n != 0),
        (Cell::Null, &Type::TEXT_ARRAY) => Box::new(None::<Vec<String>>),
        (Cell::Text(t), &Type::TEXT) => Box::new(text::put(t).into_owned()),
        // A token's scope: refused rather than widened when it cannot be read.
        (Cell::Text(t), &Type::TEXT_ARRAY) => {
            let list: Vec<String> = serde_json::from_str(t)
                .map_err(|_| wrong("a list that is not a JSON array of strings"))?;
            Box::new(Some(
                list.iter()
                    .map(|m| text::put(m).into_owned())
                    .collect::<Vec<_>>(),
            ))
        }
        (Cell::Blob(b), &Type::BYTEA) => Box::new(b.clone()),
        // SQLite keeps what it is given: a body stored as text is still its bytes.
        (Cell::Text(t), &Type::BYTEA) => Box::new(t.clone().into_bytes()),
        (Cell::Null, _) => return Err(wrong("NULL")),
        (Cell::Int(_), _) => return Err(wrong("an integer")),
        (Cell::Real(x), _) => return Err(wrong(&format!("the real number {x}"))),
        (Cell::Text(_), _) => return Err(wrong("text")),
        (Cell::Blob(_), _) => return Err(wrong("a blob")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table of the SQLite schema is copied or left on purpose (PostgreSQL's tables are
    /// held against the same lists in `tests/suite/postgres.rs`).
    #[test]
    fn every_sqlite_table_is_copied_or_left_on_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tables.db");
        drop(crate::store::sqlite::SqliteStore::open(&path).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(tables.iter().any(|t| t == "erasures"), "{tables:?}");
        let forgotten: Vec<&String> = tables.iter().filter(|t| !accounted_for(t)).collect();
        assert!(
            forgotten.is_empty(),
            "tables copy-archive neither copies nor leaves on purpose: {forgotten:?}"
        );
        for table in copied_tables() {
            assert!(tables.iter().any(|t| t == table), "{table} is not a table");
        }
    }
}
