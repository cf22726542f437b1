-- Pulling as well as being pushed (`chatsink backfill`, reconcile in `serve`): jobs of kind
-- `pull` (one open per session), a done job's `outcome`, and `passes`, a lease for work one
-- instance does at a time with where the last successful pass got to. As SQLite's 009.

ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('delivery', 'reprocess', 'pull'));
ALTER TABLE jobs ADD COLUMN outcome TEXT CHECK (outcome IN ('loaded', 'no_chat', 'unchanged'));
UPDATE jobs SET outcome = 'loaded' WHERE state = 'done';
CREATE UNIQUE INDEX jobs_one_open_pull ON jobs (session_id)
    WHERE kind = 'pull' AND state IN ('pending', 'running', 'failed');

CREATE TABLE passes (
    name              TEXT PRIMARY KEY,
    owner_id          TEXT,
    lease_token       TEXT,
    lease_until_ms    BIGINT,
    watermark_ms      BIGINT,
    last_success_ms   BIGINT,
    last_error        TEXT,
    updated_ms        BIGINT NOT NULL
);
