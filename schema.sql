-- chatsink schema: the current one, applied as a whole to a new database by `store::migrate`.
--
-- A database made by an earlier version is brought here by the numbered migrations in
-- src/store/sqlite/migrations/ (PRAGMA user_version counts them). Times in webhook tables are kept as
-- RFC 3339 text with milliseconds in UTC (for people) and, where they are queried, as epoch
-- milliseconds; a message's time is kept once, as epoch milliseconds, and formatted when read.

-- Every verified webhook delivery, exactly as it arrived. Committed before the sender gets a 2xx.
CREATE TABLE inbox (
    id           INTEGER PRIMARY KEY,
    delivery_id  TEXT UNIQUE,               -- rtk-uuid / dyte-uuid / webhook-id (NULL when absent)
    body_sha256  TEXT NOT NULL UNIQUE,      -- hex; de-duplicates retries that change the delivery id
    scheme       TEXT NOT NULL,             -- rtk-rsa | dyte-rsa | hmac | insecure
    event        TEXT NOT NULL,
    session_id   TEXT,
    body         BLOB NOT NULL,             -- the raw bytes that were verified
    received_at  TEXT NOT NULL,
    received_ms  INTEGER NOT NULL,
    webhook_id   TEXT                       -- rtk-webhook-id: the webhook configuration that sent it
);

-- The ingest queue. A job is claimed with a lease (lease_token + claimed_until_ms) in a short
-- transaction; it is finished only by the holder of the current lease.
--
-- The allowed states are spelled as ORs, not `IN (...)`: SQLite checks a list of more than two
-- values by building a temporary B-tree each time the statement runs, and every delivery
-- inserts a job (two such trees per delivery were a tenth of the webhook's instructions).
CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind = 'delivery' OR kind = 'reprocess' OR kind = 'pull'),
    inbox_id          INTEGER UNIQUE REFERENCES inbox (id),
    session_id        TEXT NOT NULL,
    download_url      TEXT,
    download_expiry_ms INTEGER,
    state             TEXT NOT NULL CHECK (state = 'pending' OR state = 'running' OR state = 'failed'
                                           OR state = 'done' OR state = 'dead'),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms   INTEGER NOT NULL,
    claimed_until_ms  INTEGER,
    lease_token       TEXT,
    last_error        TEXT,
    rows_loaded       INTEGER,
    rows_rejected     INTEGER,
    created_ms        INTEGER NOT NULL,
    updated_ms        INTEGER NOT NULL,
    owner_id          TEXT,
    outcome           TEXT CHECK (outcome = 'loaded' OR outcome = 'no_chat' OR outcome = 'unchanged'
                                  OR outcome = 'erased')
);
-- `owner_id` is the owner (below) holding a running job's lease; `outcome` says how a done job
-- ended (loaded | no_chat | unchanged | erased: its session is on the erasure list). Both come
-- last, where migrations 007 and 009 put them.
CREATE INDEX jobs_runnable ON jobs (state, next_attempt_ms);
CREATE INDEX jobs_session ON jobs (session_id);
-- At most one open reprocess (and one open pull) job per session, so two `reprocess` or two
-- `backfill` runs at once cannot double up.
CREATE UNIQUE INDEX jobs_one_open_reprocess ON jobs (session_id)
    WHERE kind = 'reprocess' AND (state = 'pending' OR state = 'running' OR state = 'failed');
CREATE UNIQUE INDEX jobs_one_open_pull ON jobs (session_id)
    WHERE kind = 'pull' AND (state = 'pending' OR state = 'running' OR state = 'failed');


-- Owners of job leases (src/store/owner.rs): every process that claims jobs registers here and
-- beats a heartbeat. A running job whose owner stopped beating, or is known to be gone, can be
-- claimed again at once instead of after its lease runs out.
CREATE TABLE owners (
    id            TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    host          TEXT NOT NULL,
    boot_id       TEXT NOT NULL,
    pid_namespace TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    start_ticks   INTEGER NOT NULL,
    started_ms    INTEGER NOT NULL,
    heartbeat_ms  INTEGER NOT NULL
);

-- One row per meeting session: metadata from the webhook plus counts from the last load.
-- `session_key` is the session's small integer key in `messages` (see there).
CREATE TABLE sessions (
    session_key       INTEGER PRIMARY KEY,
    session_id        TEXT NOT NULL UNIQUE,
    meeting_id        TEXT,
    title             TEXT,
    created_at        TEXT,
    started_at        TEXT,
    ended_at          TEXT,
    organizer_id      TEXT,
    organizer_name    TEXT,
    sort_ms           INTEGER NOT NULL,     -- start (or creation, or first message) time: list order
    status            TEXT NOT NULL,        -- queued | loaded | failed | dead
    message_count     INTEGER NOT NULL DEFAULT 0,
    text_count        INTEGER NOT NULL DEFAULT 0,
    image_count       INTEGER NOT NULL DEFAULT 0,
    file_count        INTEGER NOT NULL DEFAULT 0,
    other_count       INTEGER NOT NULL DEFAULT 0,
    pinned_count      INTEGER NOT NULL DEFAULT 0,
    rejected_count    INTEGER NOT NULL DEFAULT 0,
    first_message_ms  INTEGER,
    last_message_ms   INTEGER,
    dump_path         TEXT,                 -- the kept raw dump's key in the dump store
    dump_sha256       TEXT,
    loaded_ms         INTEGER,
    updated_ms        INTEGER NOT NULL,
    participants_ms   INTEGER               -- when its participants were last fetched
);
CREATE INDEX sessions_newest ON sessions (sort_ms DESC, session_id DESC);
CREATE INDEX sessions_status ON sessions (status);

-- The participants and meetings seen in messages, each with the small integer key `messages`
-- stores in its place. Keys are handed out in order of first appearance and never change.
CREATE TABLE participants (
    user_key    INTEGER PRIMARY KEY,
    user_id     TEXT NOT NULL UNIQUE
);
CREATE TABLE meetings (
    meeting_key INTEGER PRIMARY KEY,
    meeting_id  TEXT NOT NULL UNIQUE
);

-- Chat messages. `seq` is the archive's own stable row id: a reload updates rows in place, so a
-- message keeps its seq (and its place in keyset pagination) across reloads.
--
-- Session, meeting and participant are stored as integer keys (sessions, meetings,
-- participants), not as their UUIDs: the UUIDs would be repeated in the row and in five index
-- entries per message, and a random UUID puts each new message at a random place in the
-- participant index. Keys are small and new ones come last, so a load appends to its indexes
-- (1M messages: 6.5 s of index inserts with UUIDs, 3.8 s with keys, and half the file size).
-- `message_view` shows the ids.
CREATE TABLE messages (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL,
    session_key   INTEGER NOT NULL,         -- sessions.session_key
    meeting_key   INTEGER NOT NULL,         -- meetings.meeting_key
    user_key      INTEGER NOT NULL,         -- participants.user_key
    display_name  TEXT NOT NULL,
    kind          TEXT NOT NULL,            -- text | image | file | the raw payloadType
    pinned        INTEGER NOT NULL,
    edited        INTEGER NOT NULL,
    link          TEXT,
    file_name     TEXT,
    file_size     INTEGER,
    payload       TEXT NOT NULL,            -- as in the dump (a text message's text, an image's URL...)
    created_ms    INTEGER NOT NULL,
    -- A text message's text is its payload: derived when read, so the archive stores it once.
    text          TEXT GENERATED ALWAYS AS (CASE WHEN kind = 'text' THEN payload END) VIRTUAL,
    -- The dump's columns chatsink has no field for: a JSON object of column name to text.
    extra         TEXT,
    -- A private message's recipients (the dump's `targetUserIds`), a JSON array; NULL: everyone.
    target_user_ids TEXT,
    UNIQUE (session_key, id)
);
-- One index per documented filter, each ending in (created_ms, seq) so a filtered page is read
-- in order straight from the index (seq is the rowid, implicitly last in every index).
CREATE INDEX messages_time ON messages (created_ms);
CREATE INDEX messages_session_time ON messages (session_key, created_ms);
CREATE INDEX messages_meeting_time ON messages (meeting_key, created_ms);
CREATE INDEX messages_user_time ON messages (user_key, created_ms);
-- Text is most messages (85% in a typical archive): a page of `type=text` is found by walking the
-- time index, so the type index holds only the other types and costs the loader little.
CREATE INDEX messages_kind_time ON messages (kind, created_ms) WHERE kind <> 'text';
-- Pinned (2%) and edited (5%) rows are few: partial indexes cost the loader little. The filter
-- writes `pinned = 1` as a literal so the planner can use them.
CREATE INDEX messages_pinned_time ON messages (created_ms) WHERE pinned = 1;
CREATE INDEX messages_pinned_kind_time ON messages (kind, created_ms) WHERE pinned = 1;
CREATE INDEX messages_edited_time ON messages (created_ms) WHERE edited = 1;
-- The few messages with extra columns or recipients, for taking an erased user's id out of them.
CREATE INDEX messages_with_extra ON messages (user_key)
    WHERE target_user_ids IS NOT NULL OR extra IS NOT NULL;

-- Messages with their session, meeting and participant ids, for people querying by hand.
CREATE VIEW message_view AS
SELECT m.seq, m.id, s.session_id, mt.meeting_id, p.user_id, m.display_name, m.kind, m.pinned,
       m.edited, m.text, m.link, m.file_name, m.file_size, m.payload, m.created_ms,
       strftime('%Y-%m-%dT%H:%M:%S', m.created_ms / 1000, 'unixepoch')
           || printf('.%03dZ', m.created_ms % 1000) AS created_at
FROM messages m
JOIN sessions s ON s.session_key = m.session_key
JOIN meetings mt ON mt.meeting_key = m.meeting_key
JOIN participants p ON p.user_key = m.user_key;

-- Full-text search over message text, file names and display names (external content). Kept
-- by the loader (src/store/load.rs), not by triggers: see LoadBatch for why. Results are ordered
-- by time, never by bm25 rank, so the per-row column sizes only ranking reads are not kept
-- (columnsize = 0); a 32 MB pending-terms hash lets a bulk load write few, large segments.
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    text, file_name, display_name,
    content = 'messages', content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2',
    columnsize = 0
);
INSERT INTO messages_fts (messages_fts, rank) VALUES ('hashsize', 33554432);

-- Who each sender is in the app's own terms: a session's participants as RealtimeKit lists them
-- (src/ingest/walk.rs). A dump's sender (`participantId`) is matched against the peer id or the
-- user id, since which it names is not published. `sessions.participants_ms` says when they were
-- last fetched (NULL: not yet, so the next reprocess or reconcile pass tries again).
CREATE TABLE session_participants (
    session_key           INTEGER NOT NULL,
    participant_id        TEXT NOT NULL,
    rtk_user_id           TEXT,
    custom_participant_id TEXT,
    display_name          TEXT,
    preset_name           TEXT,
    joined_ms             INTEGER,
    left_ms               INTEGER,
    PRIMARY KEY (session_key, participant_id)
) WITHOUT ROWID;
CREATE INDEX session_participants_peer ON session_participants (participant_id);
CREATE INDEX session_participants_user ON session_participants (rtk_user_id);
CREATE INDEX session_participants_custom ON session_participants (custom_participant_id);

-- Every sender each session's last dump named (rows a later row of the same id replaced
-- included): an erasure of any of them finds the kept dump that still holds their rows.
CREATE TABLE dump_senders (
    session_key INTEGER NOT NULL,
    user_key    INTEGER NOT NULL,
    PRIMARY KEY (session_key, user_key)
) WITHOUT ROWID;
CREATE INDEX dump_senders_user ON dump_senders (user_key);

-- Dump rows that could not be parsed, kept with enough to diagnose them. Replaced on each load.
CREATE TABLE rejected_rows (
    id          INTEGER PRIMARY KEY,
    session_id  TEXT,
    line        INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    raw         BLOB NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX rejected_rows_session ON rejected_rows (session_id);

-- Work one instance does at a time (a reconcile pass: src/ingest/pull.rs), under a lease like a
-- job's, with where the last successful pass got to (`watermark_ms`) and the last error.
CREATE TABLE passes (
    name              TEXT PRIMARY KEY,
    owner_id          TEXT,
    lease_token       TEXT,
    lease_until_ms    INTEGER,
    watermark_ms      INTEGER,
    last_success_ms   INTEGER,
    last_error        TEXT,
    updated_ms        INTEGER NOT NULL
);

-- API tokens made by `chatsink token create` (src/governance/tokens.rs). Only a SHA-256 of the
-- secret is kept; `meetings` is a JSON array of the meeting ids the token may read (NULL: all).
CREATE TABLE tokens (
    name          TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL UNIQUE,
    admin         INTEGER NOT NULL,
    meetings      TEXT,
    created_ms    INTEGER NOT NULL,
    expires_ms    INTEGER,
    last_used_ms  INTEGER,
    revoked_ms    INTEGER
);

-- The erasure list: users, messages and sessions erased (reason `erased`) and sessions purged by
-- retention (reason `retention: ...`, the session's tombstone). Every load leaves these out.
CREATE TABLE erasures (
    kind   TEXT NOT NULL CHECK (kind = 'user' OR kind = 'message' OR kind = 'session'),
    id     TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ms  INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;

-- Kept dumps that held erased rows: deleted from the dump store after the commit that erased the
-- rows, and retried (at start-up and by each sweep) until they are gone.
CREATE TABLE dump_trash (
    key   TEXT PRIMARY KEY,
    at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Every `/v1` request and every deletion: who (the token's name, never the token), what, how
-- many rows, and the answer's status. Kept for CHATSINK_AUDIT_RETENTION_DAYS.
CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    at_ms    INTEGER NOT NULL,
    token    TEXT NOT NULL,
    method   TEXT NOT NULL,
    route    TEXT NOT NULL,
    filters  TEXT NOT NULL,
    rows     INTEGER,
    status   INTEGER NOT NULL
);
CREATE INDEX audit_time ON audit (at_ms);
