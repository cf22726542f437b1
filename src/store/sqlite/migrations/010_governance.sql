-- Who may read what, and for how long (issue: scoped tokens, erasure, retention, audit):
-- * `tokens`: API tokens made by `chatsink token create`, kept only as a hash;
-- * `erasures`: ids erased (a user, a message, a session) and sessions purged by retention, which
--   every load applies so the data never comes back;
-- * `dump_trash`: kept dumps that held erased rows, deleted from the dump store after the commit
--   that erased the rows (and retried until they are gone);
-- * `audit`: every `/v1` request and every deletion;
-- * a done job's outcome `erased`: its session is on the erasure list, so nothing was loaded.
-- A CHECK constraint cannot be altered in place, so the jobs table is rebuilt as in 009.

CREATE TABLE jobs_rebuilt (
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
INSERT INTO jobs_rebuilt SELECT * FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_rebuilt RENAME TO jobs;

CREATE INDEX jobs_runnable ON jobs (state, next_attempt_ms);
CREATE INDEX jobs_session ON jobs (session_id);
CREATE UNIQUE INDEX jobs_one_open_reprocess ON jobs (session_id)
    WHERE kind = 'reprocess' AND (state = 'pending' OR state = 'running' OR state = 'failed');
CREATE UNIQUE INDEX jobs_one_open_pull ON jobs (session_id)
    WHERE kind = 'pull' AND (state = 'pending' OR state = 'running' OR state = 'failed');

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

CREATE TABLE erasures (
    kind   TEXT NOT NULL CHECK (kind = 'user' OR kind = 'message' OR kind = 'session'),
    id     TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ms  INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;

CREATE TABLE dump_trash (
    key   TEXT PRIMARY KEY,
    at_ms INTEGER NOT NULL
) WITHOUT ROWID;

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
