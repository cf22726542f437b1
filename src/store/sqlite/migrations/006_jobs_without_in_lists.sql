-- The jobs table's state check and its open-reprocess index spell their states as ORs instead
-- of `IN (...)` lists (see schema.sql: SQLite built two temporary B-trees per delivery to check
-- them). A CHECK constraint cannot be altered in place, so the table is rebuilt with the same
-- columns and ids, and its indexes are made again.

CREATE TABLE jobs_rebuilt (
    id                INTEGER PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('delivery', 'reprocess')),
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
    updated_ms        INTEGER NOT NULL
);
INSERT INTO jobs_rebuilt (id, kind, inbox_id, session_id, download_url, download_expiry_ms, state,
                          attempts, next_attempt_ms, claimed_until_ms, lease_token, last_error,
                          rows_loaded, rows_rejected, created_ms, updated_ms)
SELECT id, kind, inbox_id, session_id, download_url, download_expiry_ms, state, attempts,
       next_attempt_ms, claimed_until_ms, lease_token, last_error, rows_loaded, rows_rejected,
       created_ms, updated_ms
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_rebuilt RENAME TO jobs;

CREATE INDEX jobs_runnable ON jobs (state, next_attempt_ms);
CREATE INDEX jobs_session ON jobs (session_id);
CREATE UNIQUE INDEX jobs_one_open_reprocess ON jobs (session_id)
    WHERE kind = 'reprocess' AND (state = 'pending' OR state = 'running' OR state = 'failed');
