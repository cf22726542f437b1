//! The bulk path and the storage layout it relies on: `ingest` loading many sessions per
//! transaction (LoadBatch), a read error that cuts a batch, and a database made by the first
//! schema brought to the current one by the migrations.

use crate::helpers::*;
use chatsink::domain::SessionId;
use chatsink::store::Store;
use rusqlite::Connection;
use std::path::Path;

fn fts_count(conn: &Connection, query: &str) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?1",
        [query],
        |r| r.get(0),
    )
    .unwrap()
}

/// FTS5's own check of the index against the messages table (external content, rank 1).
fn assert_index_matches_messages(conn: &Connection) {
    conn.execute(
        "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)",
        [],
    )
    .expect("the full-text index matches the messages");
}

fn dump_of(rows: &[[&str; 4]]) -> String {
    // id, session, text, time offset in seconds
    let mut out = format!("{DUMP_HEADER}\r\n");
    for [id, session, text, secs] in rows {
        let time = chatsink::domain::Timestamp::from_millis(
            1_780_480_800_000 + secs.parse::<i64>().unwrap() * 1000,
        )
        .to_rfc3339();
        out.push_str(&csv_row(&[
            id,
            "user-1",
            session,
            "meeting-1",
            "Ann",
            "false",
            "false",
            "TEXT_MESSAGE",
            text,
            &time,
        ]));
    }
    out
}

fn ingest(db: &Store, dir: &Path, name: &str, csv: &str) -> Vec<(SessionId, i64)> {
    let path = dir.join(name);
    std::fs::write(&path, csv).unwrap();
    block_on(chatsink::ingest::ingest_file(db, &path, None, |_, _| {}))
        .unwrap()
        .into_iter()
        .map(|(s, r)| (s, r.rows_loaded))
        .collect()
}

#[test]
fn a_reload_larger_than_one_staged_chunk_changes_each_row_once_and_keeps_the_index_exact() {
    // The loader writes rows a chunk (2,048) at a time: edits, repeats and deletions that fall
    // in different chunks of one load must end as if the rows were written one by one.
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("chunks.db");
    let db = Store::open(&db_path).unwrap();
    let first: Vec<[String; 4]> = (0..5000)
        .map(|i| {
            [
                format!("m{i}"),
                "s-big".into(),
                format!("original{i} words"),
                i.to_string(),
            ]
        })
        .collect();
    let as_refs = |rows: &[[String; 4]]| -> String {
        let refs: Vec<[&str; 4]> = rows
            .iter()
            .map(|[a, b, c, d]| [a.as_str(), b.as_str(), c.as_str(), d.as_str()])
            .collect();
        dump_of(&refs)
    };
    ingest(&db, dir.path(), "first.csv", &as_refs(&first));
    let conn = Connection::open(&db_path).unwrap();
    let seq_of = |id: &str| -> i64 {
        conn.query_row("SELECT seq FROM messages WHERE id = ?1", [id], |r| r.get(0))
            .unwrap()
    };
    let (seq10, seq4000) = (seq_of("m10"), seq_of("m4000"));

    // The reload: m10 edited in the first chunk and again in the third; m4000 edited; m20..m29
    // gone; a new message n1 in the first chunk and repeated, edited, in the third.
    let mut second: Vec<[String; 4]> = first
        .iter()
        .filter(|[id, ..]| !(20..30).any(|i| *id == format!("m{i}")))
        .cloned()
        .collect();
    second[10][2] = "edited once".into();
    second.insert(
        11,
        [
            "n1".into(),
            "s-big".into(),
            "newcomer early".into(),
            "11".into(),
        ],
    );
    let m4000 = second.iter().position(|[id, ..]| id == "m4000").unwrap();
    second[m4000][2] = "edited too".into();
    second.push([
        "m10".into(),
        "s-big".into(),
        "edited twice".into(),
        "10".into(),
    ]);
    second.push([
        "n1".into(),
        "s-big".into(),
        "newcomer late".into(),
        "11".into(),
    ]);
    ingest(&db, dir.path(), "second.csv", &as_refs(&second));

    assert_index_matches_messages(&conn);
    let text_of = |id: &str| -> String {
        conn.query_row("SELECT text FROM messages WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert_eq!(text_of("m10"), "edited twice");
    assert_eq!(text_of("m4000"), "edited too");
    assert_eq!(text_of("n1"), "newcomer late");
    // Edited rows keep their seq, so a cursor holding them stays valid.
    assert_eq!((seq_of("m10"), seq_of("m4000")), (seq10, seq4000));
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM messages"), 5000 - 10 + 1);
    assert_eq!(count("SELECT count(*) FROM messages WHERE id = 'n1'"), 1);
    for (word, hits) in [
        ("original10", 0),
        ("once", 0),
        ("twice", 1),
        ("original4000", 0),
        ("too", 1),
        ("original25", 0),
        ("early", 0),
        ("late", 1),
        ("original4999", 1),
        ("words", 5000 - 10 - 2),
    ] {
        assert_eq!(fts_count(&conn, word), hits, "{word}");
    }
}

#[test]
fn one_batch_of_many_sessions_keeps_the_full_text_index_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("c.db");
    let db = Store::open(&db_path).unwrap();
    ingest(
        &db,
        dir.path(),
        "first.csv",
        &dump_of(&[
            ["a1", "s-a", "apple orchard", "1"],
            ["a2", "s-a", "banana split", "2"],
            ["a3", "s-a", "cherry tree", "3"],
        ]),
    );
    // One file, one batch: s-a again (a1 edited, a2 gone, a4 new), then s-b, then s-a once more,
    // changing a1 a second time and a4 once. The index must end with the last words only.
    let loaded = ingest(
        &db,
        dir.path(),
        "second.csv",
        &dump_of(&[
            ["a1", "s-a", "apricot jam", "1"],
            ["a3", "s-a", "cherry tree", "3"],
            ["a4", "s-a", "durian smell", "4"],
            ["b1", "s-b", "elderberry wine", "5"],
            ["b2", "s-b", "apple pie", "6"],
            ["a1", "s-a", "avocado toast", "1"],
            ["a4", "s-a", "dragonfruit bowl", "4"],
        ]),
    );
    assert_eq!(loaded.len(), 3, "{loaded:?}");
    let conn = Connection::open(&db_path).unwrap();
    assert_index_matches_messages(&conn);
    for (word, hits) in [
        ("apple", 1),       // a1's first text is gone; b2 has it
        ("apricot", 0),     // a1's text in the middle of the batch
        ("avocado", 1),     // a1's last text
        ("banana", 0),      // a2 was deleted by the replacing load
        ("cherry", 1),      // unchanged
        ("durian", 0),      // a4's first text, inserted and changed in the same batch
        ("dragonfruit", 1), // a4's last text
        ("elderberry", 1),
    ] {
        assert_eq!(fts_count(&conn, word), hits, "{word}");
    }
    let texts: Vec<(String, Option<String>)> = conn
        .prepare("SELECT id, text FROM message_view ORDER BY session_id, id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expect = |id: &str, text: &str| (id.to_owned(), Some(text.to_owned()));
    assert_eq!(
        texts,
        vec![
            expect("a1", "avocado toast"),
            expect("a3", "cherry tree"),
            expect("a4", "dragonfruit bowl"),
            expect("b1", "elderberry wine"),
            expect("b2", "apple pie"),
        ]
    );
}

/// A reader that gives the first `good` bytes of a dump and then fails like a broken disk.
struct FailsAfter {
    data: Vec<u8>,
    pos: usize,
    good: usize,
}

impl std::io::Read for FailsAfter {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.good {
            return Err(std::io::Error::other("the disk went away"));
        }
        let n = buf.len().min(self.good - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn a_read_error_rolls_back_the_batch_it_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("c.db");
    let db = Store::open(&db_path).unwrap();
    let mut csv = String::from_utf8(simple_dump("s-one", 50)).unwrap();
    let second = String::from_utf8(simple_dump("s-two", 50)).unwrap();
    csv.push_str(second.split_once("\r\n").unwrap().1);
    // Cut in the middle of s-two: s-one is complete, s-two is not.
    let good = csv.len() * 3 / 4;
    let reader = FailsAfter {
        data: csv.into_bytes(),
        pos: 0,
        good,
    };
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let hears = heard.clone();
    let result = block_on(chatsink::ingest::ingest_reader(
        &db,
        reader,
        Path::new("cut.csv"),
        None,
        move |session, _| hears.lock().unwrap().push(session.clone()),
    ));
    let heard = heard.lock().unwrap().clone();
    let error = result
        .expect_err("a read error fails the ingest")
        .to_string();
    assert!(error.contains("stopped early"), "{error}");
    assert!(error.contains("the disk went away"), "{error}");
    // Both sessions were in the one batch the error cut: nothing of it was committed or reported.
    let conn = Connection::open(&db_path).unwrap();
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!((stored, heard.len()), (0, 0));
    assert_index_matches_messages(&conn);
}

#[test]
fn a_database_made_by_the_first_schema_is_migrated_with_its_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../fixtures/schema-v1.sql"))
            .unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO sessions (session_id, sort_ms, status, updated_ms, dump_path, dump_sha256)
             VALUES ('s-old', 0, 'loaded', 0, 'dumps/s-old/ab12.csv', 'ab12');
             INSERT INTO messages (id, session_id, meeting_id, user_id, display_name, kind, pinned, edited,
                                   text, link, file_name, file_size, payload, created_at, created_ms)
             VALUES
              ('m1', 's-old', 'mt', 'u1', 'Ann', 'text', 0, 0, 'hello old world', NULL, NULL, NULL,
               'hello old world', '2026-06-03T10:00:00.000Z', 1780480800000),
              ('m2', 's-old', 'mt', 'u1', 'Ann', 'image', 1, 0, NULL, 'https://x/p.png', NULL, NULL,
               'https://x/p.png', '2026-06-03T10:00:01.000Z', 1780480801000),
              -- A message whose session has no row: it must not be lost when keys come in.
              ('m3', 's-orphan', 'mt2', 'u2', 'Bo', 'text', 0, 0, 'orphan text', NULL, NULL, NULL,
               'orphan text', '2026-06-03T10:00:02.000Z', 1780480802000);
             INSERT INTO inbox (id, delivery_id, body_sha256, scheme, event, session_id, body,
                                received_at, received_ms)
             VALUES (7, 'd-old', 'sha-old', 'hmac', 'meeting.chatSynced', 's-old', X'7B7D',
                     '2026-06-03T11:00:00.000Z', 1780484400000);
             INSERT INTO jobs (id, kind, inbox_id, session_id, download_url, state, attempts,
                               next_attempt_ms, rows_loaded, created_ms, updated_ms)
             VALUES (3, 'delivery', 7, 's-old', 'https://s3/old.csv', 'done', 1, 0, 2, 5, 6),
                    (4, 'reprocess', NULL, 's-old', NULL, 'failed', 2, 99, NULL, 7, 8);",
        )
        .unwrap();
        // The first schema's triggers indexed the text.
        assert_eq!(fts_count(&conn, "hello"), 1);
    }

    let db = Store::open(&path).unwrap();
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, chatsink::store::sqlite::SCHEMA_VERSION);
    // The kept dump is named from the dump store's root now (the same file, by default).
    let dump_path: String = conn
        .query_row(
            "SELECT dump_path FROM sessions WHERE session_id = 's-old'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dump_path, "s-old/ab12.csv");
    // The queue comes through its rebuild whole, with the schema a new database gets.
    let jobs: Vec<(i64, String, Option<i64>, String, i64, i64)> = conn
        .prepare(
            "SELECT id, kind, inbox_id, state, attempts, next_attempt_ms FROM jobs ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        jobs,
        [
            (3, "delivery".into(), Some(7), "done".into(), 1, 0),
            (4, "reprocess".into(), None, "failed".into(), 2, 99)
        ]
    );
    let jobs_schema = |c: &Connection| -> Vec<String> {
        c.prepare("SELECT replace(sql, '\"', '') FROM sqlite_schema WHERE tbl_name = 'jobs' AND sql IS NOT NULL ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let fresh = dir.path().join("fresh.db");
    drop(Store::open(&fresh).unwrap());
    assert_eq!(
        jobs_schema(&conn),
        jobs_schema(&Connection::open(&fresh).unwrap())
    );
    assert!(conn
        .execute("UPDATE jobs SET state = 'lost' WHERE id = 4", [])
        .is_err());
    // Jobs done before outcomes were kept read as loaded; the new kind is accepted, once open.
    let outcome: Option<String> = conn
        .query_row("SELECT outcome FROM jobs WHERE id = 3", [], |r| r.get(0))
        .unwrap();
    assert_eq!(outcome.as_deref(), Some("loaded"));
    let pull = "INSERT INTO jobs (kind, session_id, state, next_attempt_ms, created_ms, updated_ms)
                VALUES ('pull', 's-new', 'pending', 0, 0, 0)";
    conn.execute(pull, []).unwrap();
    assert!(
        conn.execute(pull, []).is_err(),
        "one open pull job per session"
    );
    conn.execute("DELETE FROM jobs WHERE session_id = 's-new'", [])
        .unwrap();
    // Session s-old already has an open (failed) reprocess job: a second one is refused.
    assert!(conn
        .execute(
            "INSERT INTO jobs (kind, session_id, state, next_attempt_ms, created_ms, updated_ms)
             VALUES ('reprocess', 's-old', 'pending', 0, 0, 0)",
            [],
        )
        .is_err());
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_xinfo('messages')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(columns.contains(&"text".to_owned()), "{columns:?}");
    assert!(!columns.contains(&"created_at".to_owned()), "{columns:?}");
    for (key, id) in [
        ("session_key", "session_id"),
        ("meeting_key", "meeting_id"),
        ("user_key", "user_id"),
    ] {
        assert!(columns.contains(&key.to_owned()), "{columns:?}");
        assert!(!columns.contains(&id.to_owned()), "{columns:?}");
    }
    type Row = (
        i64,
        String,
        String,
        String,
        String,
        Option<String>,
        String,
        String,
    );
    let rows: Vec<Row> = conn
        .prepare(
            "SELECT seq, id, session_id, meeting_id, user_id, text, payload, created_at
             FROM message_view ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let row = |seq: i64,
               id: &str,
               session: &str,
               meeting: &str,
               user: &str,
               text: Option<&str>,
               payload: &str,
               at: &str|
     -> Row {
        (
            seq,
            id.into(),
            session.into(),
            meeting.into(),
            user.into(),
            text.map(Into::into),
            payload.into(),
            at.into(),
        )
    };
    assert_eq!(
        rows,
        vec![
            row(
                1,
                "m1",
                "s-old",
                "mt",
                "u1",
                Some("hello old world"),
                "hello old world",
                "2026-06-03T10:00:00.000Z"
            ),
            row(
                2,
                "m2",
                "s-old",
                "mt",
                "u1",
                None,
                "https://x/p.png",
                "2026-06-03T10:00:01.000Z"
            ),
            row(
                3,
                "m3",
                "s-orphan",
                "mt2",
                "u2",
                Some("orphan text"),
                "orphan text",
                "2026-06-03T10:00:02.000Z"
            ),
        ]
    );
    let orphan: (String, i64) = conn
        .query_row(
            "SELECT status, message_count FROM sessions WHERE session_id = 's-orphan'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(orphan, ("loaded".into(), 1));
    // The rebuilt index finds the old rows, and new loads keep it exact.
    assert_eq!(fts_count(&conn, "hello"), 1);
    assert_index_matches_messages(&conn);
    ingest(
        &db,
        dir.path(),
        "new.csv",
        &dump_of(&[["n1", "s-new", "hello new world", "9"]]),
    );
    assert_eq!(fts_count(&conn, "hello"), 2);
    assert_index_matches_messages(&conn);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    // The old file keeps its page size; a new database gets the larger pages.
    let page_size =
        |c: &Connection| -> i64 { c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap() };
    assert_eq!(page_size(&conn), 4096);
    assert_eq!(page_size(&Connection::open(&fresh).unwrap()), 16384);
}
