-- Messages store their session, meeting and participant as small integer keys instead of UUIDs
-- (see schema.sql): sessions gain `session_key`, participants and meetings get tables of their
-- own, and messages are rewritten once with the same seqs, so cursors and the full-text index
-- (keyed by seq, over columns that do not change) stay valid.

CREATE TABLE sessions_keyed (
    session_key       INTEGER PRIMARY KEY,
    session_id        TEXT NOT NULL UNIQUE,
    meeting_id        TEXT,
    title             TEXT,
    created_at        TEXT,
    started_at        TEXT,
    ended_at          TEXT,
    organizer_id      TEXT,
    organizer_name    TEXT,
    sort_ms           INTEGER NOT NULL,
    status            TEXT NOT NULL,
    message_count     INTEGER NOT NULL DEFAULT 0,
    text_count        INTEGER NOT NULL DEFAULT 0,
    image_count       INTEGER NOT NULL DEFAULT 0,
    file_count        INTEGER NOT NULL DEFAULT 0,
    other_count       INTEGER NOT NULL DEFAULT 0,
    pinned_count      INTEGER NOT NULL DEFAULT 0,
    rejected_count    INTEGER NOT NULL DEFAULT 0,
    first_message_ms  INTEGER,
    last_message_ms   INTEGER,
    dump_path         TEXT,
    dump_sha256       TEXT,
    loaded_ms         INTEGER,
    updated_ms        INTEGER NOT NULL
);
INSERT INTO sessions_keyed (session_id, meeting_id, title, created_at, started_at, ended_at,
                            organizer_id, organizer_name, sort_ms, status, message_count,
                            text_count, image_count, file_count, other_count, pinned_count,
                            rejected_count, first_message_ms, last_message_ms, dump_path,
                            dump_sha256, loaded_ms, updated_ms)
SELECT session_id, meeting_id, title, created_at, started_at, ended_at, organizer_id,
       organizer_name, sort_ms, status, message_count, text_count, image_count, file_count,
       other_count, pinned_count, rejected_count, first_message_ms, last_message_ms, dump_path,
       dump_sha256, loaded_ms, updated_ms
FROM sessions ORDER BY sort_ms, session_id;
-- Every load writes its session's row, so none should be missing; a message is never dropped
-- for want of one.
INSERT INTO sessions_keyed (session_id, sort_ms, status, message_count, first_message_ms,
                            last_message_ms, updated_ms)
SELECT session_id, min(created_ms), 'loaded', count(*), min(created_ms), max(created_ms),
       max(created_ms)
FROM messages WHERE session_id NOT IN (SELECT session_id FROM sessions_keyed)
GROUP BY session_id;
DROP TABLE sessions;
ALTER TABLE sessions_keyed RENAME TO sessions;
CREATE INDEX sessions_newest ON sessions (sort_ms DESC, session_id DESC);
CREATE INDEX sessions_status ON sessions (status);

CREATE TABLE participants (
    user_key    INTEGER PRIMARY KEY,
    user_id     TEXT NOT NULL UNIQUE
);
CREATE TABLE meetings (
    meeting_key INTEGER PRIMARY KEY,
    meeting_id  TEXT NOT NULL UNIQUE
);
INSERT OR IGNORE INTO participants (user_id) SELECT user_id FROM messages ORDER BY seq;
INSERT OR IGNORE INTO meetings (meeting_id) SELECT meeting_id FROM messages ORDER BY seq;

CREATE TABLE messages_keyed (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL,
    session_key   INTEGER NOT NULL,
    meeting_key   INTEGER NOT NULL,
    user_key      INTEGER NOT NULL,
    display_name  TEXT NOT NULL,
    kind          TEXT NOT NULL,
    pinned        INTEGER NOT NULL,
    edited        INTEGER NOT NULL,
    link          TEXT,
    file_name     TEXT,
    file_size     INTEGER,
    payload       TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    text          TEXT GENERATED ALWAYS AS (CASE WHEN kind = 'text' THEN payload END) VIRTUAL,
    UNIQUE (session_key, id)
);
INSERT INTO messages_keyed (seq, id, session_key, meeting_key, user_key, display_name, kind,
                            pinned, edited, link, file_name, file_size, payload, created_ms)
SELECT m.seq, m.id, s.session_key, mt.meeting_key, p.user_key, m.display_name, m.kind, m.pinned,
       m.edited, m.link, m.file_name, m.file_size, m.payload, m.created_ms
FROM messages m
JOIN sessions s ON s.session_id = m.session_id
JOIN meetings mt ON mt.meeting_id = m.meeting_id
JOIN participants p ON p.user_id = m.user_id
ORDER BY m.seq;
DROP TABLE messages;
ALTER TABLE messages_keyed RENAME TO messages;
CREATE INDEX messages_time ON messages (created_ms);
CREATE INDEX messages_session_time ON messages (session_key, created_ms);
CREATE INDEX messages_meeting_time ON messages (meeting_key, created_ms);
CREATE INDEX messages_user_time ON messages (user_key, created_ms);
CREATE INDEX messages_kind_time ON messages (kind, created_ms) WHERE kind <> 'text';
CREATE INDEX messages_pinned_time ON messages (created_ms) WHERE pinned = 1;
CREATE INDEX messages_pinned_kind_time ON messages (kind, created_ms) WHERE pinned = 1;
CREATE INDEX messages_edited_time ON messages (created_ms) WHERE edited = 1;

CREATE VIEW message_view AS
SELECT m.seq, m.id, s.session_id, mt.meeting_id, p.user_id, m.display_name, m.kind, m.pinned,
       m.edited, m.text, m.link, m.file_name, m.file_size, m.payload, m.created_ms,
       strftime('%Y-%m-%dT%H:%M:%S', m.created_ms / 1000, 'unixepoch')
           || printf('.%03dZ', m.created_ms % 1000) AS created_at
FROM messages m
JOIN sessions s ON s.session_key = m.session_key
JOIN meetings mt ON mt.meeting_key = m.meeting_key
JOIN participants p ON p.user_key = m.user_key;
