-- Pulling as well as being pushed (`chatsink backfill`, reconcile in `serve`):
-- * jobs of kind `pull`, at most one open per session, as for `reprocess`;
-- * a done job's `outcome` (loaded | no_chat | unchanged), so the jobs listing says when a
--   session had no chat or a late webhook brought the dump already loaded;
-- * `passes`: a lease for work one instance does at a time (a reconcile pass), with where the
--   last successful pass got to.
-- A CHECK constraint cannot be altered in place, so the jobs table is rebuilt with the same ids,
-- as migration 006 did, and its indexes are made again.

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
    outcome           TEXT CHECK (outcome = 'loaded' OR outcome = 'no_chat' OR outcome = 'unchanged')
);
INSERT INTO jobs_rebuilt (id, kind, inbox_id, session_id, download_url, download_expiry_ms, state,
                          attempts, next_attempt_ms, claimed_until_ms, lease_token, last_error,
                          rows_loaded, rows_rejected, created_ms, updated_ms, owner_id, outcome)
SELECT id, kind, inbox_id, session_id, download_url, download_expiry_ms, state, attempts,
       next_attempt_ms, claimed_until_ms, lease_token, last_error, rows_loaded, rows_rejected,
       created_ms, updated_ms, owner_id, CASE WHEN state = 'done' THEN 'loaded' END
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_rebuilt RENAME TO jobs;

CREATE INDEX jobs_runnable ON jobs (state, next_attempt_ms);
CREATE INDEX jobs_session ON jobs (session_id);
CREATE UNIQUE INDEX jobs_one_open_reprocess ON jobs (session_id)
    WHERE kind = 'reprocess' AND (state = 'pending' OR state = 'running' OR state = 'failed');
CREATE UNIQUE INDEX jobs_one_open_pull ON jobs (session_id)
    WHERE kind = 'pull' AND (state = 'pending' OR state = 'running' OR state = 'failed');

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
