//! The inbox: every verified delivery, stored before the sender is answered.

use super::{now_ms, sessions};
use crate::domain::{DeliveryRecord, IntakeOutcome, NewDelivery, Timestamp};
use rusqlite::{params, Connection};

/// Stores one delivery and, for `meeting.chatSynced`, its ingest job and the session's metadata,
/// all in the caller's transaction. De-duplication rests on the UNIQUE constraints, so two
/// copies racing each other cannot both get in.
pub fn insert_delivery(
    tx: &Connection,
    delivery: &NewDelivery,
) -> Result<IntakeOutcome, rusqlite::Error> {
    // Prepared once per connection: the intake thread runs these thousands of times a second.
    // Ids come from last_insert_rowid(), not RETURNING: SQLite runs RETURNING as a trigger,
    // which makes the statement open a statement journal and copy every page it touches into
    // it (with 16 KB pages, a fifth of the intake thread's time).
    let inserted = tx
        .prepare_cached(
            "INSERT INTO inbox (delivery_id, body_sha256, scheme, event, session_id, body, received_at, received_ms,
                                webhook_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            delivery.delivery_id,
            delivery.body_sha256,
            delivery.scheme,
            delivery.event,
            delivery.session_id,
            delivery.body,
            delivery.received.to_rfc3339(),
            delivery.received.millis(),
            delivery.webhook_id,
        ])?;
    if inserted == 0 {
        return Ok(IntakeOutcome::Duplicate);
    }
    let inbox_id = tx.last_insert_rowid();
    let Some(chat) = &delivery.chat_synced else {
        return Ok(IntakeOutcome::Stored {
            inbox_id,
            job_id: None,
        });
    };
    let now = now_ms();
    tx.prepare_cached(
        "INSERT INTO jobs (kind, inbox_id, session_id, download_url, download_expiry_ms, state, next_attempt_ms, created_ms, updated_ms)
         VALUES ('delivery', ?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5)",
    )?
    .execute(params![
        inbox_id,
        chat.session_id.as_str(),
        chat.chat_download_url,
        chat.chat_download_url_expiry.map(Timestamp::millis),
        now
    ])?;
    let job_id = tx.last_insert_rowid();
    sessions::record_delivery(tx, chat, delivery.received, now)?;
    Ok(IntakeOutcome::Stored {
        inbox_id,
        job_id: Some(job_id),
    })
}

/// Stored deliveries, newest first.
pub fn list(conn: &Connection, limit: u32) -> rusqlite::Result<Vec<DeliveryRecord>> {
    conn.prepare(
        "SELECT id, delivery_id, scheme, event, session_id, received_ms, body, body_sha256, webhook_id
         FROM inbox ORDER BY id DESC LIMIT ?1",
    )?
    .query_map([limit], |r| {
        Ok(DeliveryRecord {
            inbox_id: r.get(0)?,
            delivery_id: r.get(1)?,
            scheme: r.get(2)?,
            event: r.get(3)?,
            session_id: r.get(4)?,
            received_ms: r.get(5)?,
            body: r.get(6)?,
            body_sha256: r.get(7)?,
            webhook_id: r.get(8)?,
        })
    })?
    .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::domain::{ChatSynced, SessionId};

    /// A delivery with id `id` (its body and hash derived from it); a `meeting.chatSynced` one
    /// when `chat_synced` is given.
    pub(in crate::store) fn delivery(id: &str, chat_synced: Option<ChatSynced>) -> NewDelivery {
        let event = if chat_synced.is_some() {
            crate::domain::CHAT_SYNCED
        } else {
            "meeting.started"
        };
        NewDelivery {
            delivery_id: Some(id.to_owned()),
            body_sha256: format!("sha-of-{id}"),
            scheme: "hmac",
            event: event.into(),
            session_id: None,
            body: id.as_bytes().to_vec(),
            received: Timestamp::now(),
            chat_synced,
            webhook_id: None,
        }
    }

    fn chat(session: &str) -> ChatSynced {
        ChatSynced {
            session_id: SessionId::parse(session).unwrap(),
            meeting_id: None,
            title: Some("standup".into()),
            chat_download_url: "http://127.0.0.1:9/dump.csv".into(),
            chat_download_url_expiry: None,
            created_at: None,
            started_at: None,
            ended_at: None,
            organizer_id: None,
            organizer_name: None,
        }
    }

    /// The ids handed back (and put in the webhook's answer) are those of the rows just written,
    /// and a duplicate writes nothing.
    #[test]
    fn outcomes_name_the_rows_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        drop(super::super::SqliteStore::open(&path).unwrap());
        let conn = super::super::connect(&path).unwrap();

        assert!(matches!(
            insert_delivery(&conn, &delivery("plain", None)).unwrap(),
            IntakeOutcome::Stored { job_id: None, .. }
        ));
        let IntakeOutcome::Stored {
            inbox_id,
            job_id: Some(job_id),
        } = insert_delivery(&conn, &delivery("synced", Some(chat("s-1")))).unwrap()
        else {
            panic!("a chatSynced delivery enqueues a job");
        };
        let stored: String = conn
            .query_row(
                "SELECT delivery_id FROM inbox WHERE id = ?1",
                [inbox_id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored, "synced");
        let (job_inbox, job_session): (i64, String) = conn
            .query_row(
                "SELECT inbox_id, session_id FROM jobs WHERE id = ?1",
                [job_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((job_inbox, job_session.as_str()), (inbox_id, "s-1"));

        assert_eq!(
            insert_delivery(&conn, &delivery("synced", Some(chat("s-1")))).unwrap(),
            IntakeOutcome::Duplicate
        );
        let counts: (i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM inbox), (SELECT count(*) FROM jobs)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(counts, (2, 1));
    }
}
