-- chatsink on PostgreSQL, schema version 1: the same archive as schema.sql (SQLite), in
-- PostgreSQL's types. Applied by `chatsink migrate` and by `serve` at start, under an advisory
-- lock (src/store/postgres/mod.rs); `chatsink_schema` records the version.

-- Every verified webhook delivery, exactly as it arrived. Committed before the sender gets a 2xx;
-- the UNIQUE constraints de-duplicate across instances.
CREATE TABLE inbox (
    id           BIGSERIAL PRIMARY KEY,
    delivery_id  TEXT UNIQUE,
    body_sha256  TEXT NOT NULL UNIQUE,
    scheme       TEXT NOT NULL,
    event        TEXT NOT NULL,
    session_id   TEXT,
    body         BYTEA NOT NULL,
    received_at  TEXT NOT NULL,
    received_ms  BIGINT NOT NULL
);

-- Owners of job leases: every process that claims jobs, with its heartbeat.
CREATE TABLE owners (
    id            TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    host          TEXT NOT NULL,
    boot_id       TEXT NOT NULL,
    pid_namespace TEXT NOT NULL,
    pid           BIGINT NOT NULL,
    start_ticks   BIGINT NOT NULL,
    started_ms    BIGINT NOT NULL,
    heartbeat_ms  BIGINT NOT NULL
);

-- The ingest queue; claimed with FOR UPDATE SKIP LOCKED on the database's clock.
CREATE TABLE jobs (
    id                 BIGSERIAL PRIMARY KEY,
    kind               TEXT NOT NULL CHECK (kind IN ('delivery', 'reprocess')),
    inbox_id           BIGINT UNIQUE REFERENCES inbox (id),
    session_id         TEXT NOT NULL,
    download_url       TEXT,
    download_expiry_ms BIGINT,
    state              TEXT NOT NULL CHECK (state IN ('pending', 'running', 'failed', 'done', 'dead')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms    BIGINT NOT NULL,
    claimed_until_ms   BIGINT,
    lease_token        TEXT,
    owner_id           TEXT,
    last_error         TEXT,
    rows_loaded        BIGINT,
    rows_rejected      BIGINT,
    created_ms         BIGINT NOT NULL,
    updated_ms         BIGINT NOT NULL
);
CREATE INDEX jobs_runnable ON jobs (state, next_attempt_ms);
CREATE INDEX jobs_session ON jobs (session_id);
CREATE UNIQUE INDEX jobs_one_open_reprocess ON jobs (session_id)
    WHERE kind = 'reprocess' AND state IN ('pending', 'running', 'failed');

CREATE TABLE sessions (
    session_key       BIGSERIAL PRIMARY KEY,
    session_id        TEXT NOT NULL UNIQUE,
    meeting_id        TEXT,
    title             TEXT,
    created_at        TEXT,
    started_at        TEXT,
    ended_at          TEXT,
    organizer_id      TEXT,
    organizer_name    TEXT,
    sort_ms           BIGINT NOT NULL,
    status            TEXT NOT NULL,
    message_count     BIGINT NOT NULL DEFAULT 0,
    text_count        BIGINT NOT NULL DEFAULT 0,
    image_count       BIGINT NOT NULL DEFAULT 0,
    file_count        BIGINT NOT NULL DEFAULT 0,
    other_count       BIGINT NOT NULL DEFAULT 0,
    pinned_count      BIGINT NOT NULL DEFAULT 0,
    rejected_count    BIGINT NOT NULL DEFAULT 0,
    first_message_ms  BIGINT,
    last_message_ms   BIGINT,
    dump_path         TEXT,
    dump_sha256       TEXT,
    loaded_ms         BIGINT,
    updated_ms        BIGINT NOT NULL
);
CREATE INDEX sessions_newest ON sessions (sort_ms DESC, session_id DESC);

CREATE TABLE participants (
    user_key    BIGSERIAL PRIMARY KEY,
    user_id     TEXT NOT NULL UNIQUE
);
CREATE TABLE meetings (
    meeting_key BIGSERIAL PRIMARY KEY,
    meeting_id  TEXT NOT NULL UNIQUE
);

-- Chat messages; `seq` is the archive's stable row id (kept across reloads), as in SQLite.
-- `search` holds the words of text (weight A), file name (B) and display name (C), tokenized by
-- chatsink with its FTS5 index's rules (case folded, diacritics removed, split on
-- non-alphanumerics), so a `q` finds the same rows on both backends.
CREATE TABLE messages (
    seq           BIGSERIAL PRIMARY KEY,
    id            TEXT NOT NULL,
    session_key   BIGINT NOT NULL REFERENCES sessions (session_key),
    meeting_key   BIGINT NOT NULL REFERENCES meetings (meeting_key),
    user_key      BIGINT NOT NULL REFERENCES participants (user_key),
    display_name  TEXT NOT NULL,
    kind          TEXT NOT NULL,
    pinned        BOOLEAN NOT NULL,
    edited        BOOLEAN NOT NULL,
    link          TEXT,
    file_name     TEXT,
    file_size     BIGINT,
    payload       TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    search        TSVECTOR NOT NULL,
    UNIQUE (session_key, id)
);
CREATE INDEX messages_time ON messages (created_ms, seq);
CREATE INDEX messages_session_time ON messages (session_key, created_ms, seq);
CREATE INDEX messages_meeting_time ON messages (meeting_key, created_ms, seq);
CREATE INDEX messages_user_time ON messages (user_key, created_ms, seq);
CREATE INDEX messages_kind_time ON messages (kind, created_ms, seq) WHERE kind <> 'text';
CREATE INDEX messages_pinned_time ON messages (created_ms, seq) WHERE pinned;
CREATE INDEX messages_pinned_kind_time ON messages (kind, created_ms, seq) WHERE pinned;
CREATE INDEX messages_edited_time ON messages (created_ms, seq) WHERE edited;
CREATE INDEX messages_search ON messages USING GIN (search);

CREATE TABLE rejected_rows (
    id          BIGSERIAL PRIMARY KEY,
    session_id  TEXT,
    line        BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    raw         BYTEA NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX rejected_rows_session ON rejected_rows (session_id, id);

-- The stable, documented read-only view for analysts' tools (as `message_view` is on SQLite);
-- grant SELECT on it to a read-only role (README, "Running several instances").
CREATE VIEW message_view AS
SELECT m.seq, m.id, s.session_id, mt.meeting_id, p.user_id, m.display_name, m.kind, m.pinned,
       m.edited, CASE WHEN m.kind = 'text' THEN m.payload END AS text, m.link, m.file_name,
       m.file_size, m.payload, m.created_ms,
       to_char(to_timestamp(m.created_ms / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
           AS created_at
FROM messages m
JOIN sessions s ON s.session_key = m.session_key
JOIN meetings mt ON mt.meeting_key = m.meeting_key
JOIN participants p ON p.user_key = m.user_key;
