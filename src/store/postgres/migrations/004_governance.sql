-- Scoped tokens, the erasure list, the dump trash and the audit log, and a done job's outcome
-- `erased`. As SQLite's 010.

ALTER TABLE jobs DROP CONSTRAINT jobs_outcome_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_outcome_check
    CHECK (outcome IN ('loaded', 'no_chat', 'unchanged', 'erased'));

CREATE TABLE tokens (
    name          TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL UNIQUE,
    admin         BOOLEAN NOT NULL,
    meetings      TEXT[],
    created_ms    BIGINT NOT NULL,
    expires_ms    BIGINT,
    last_used_ms  BIGINT,
    revoked_ms    BIGINT
);

CREATE TABLE erasures (
    kind   TEXT NOT NULL CHECK (kind IN ('user', 'message', 'session')),
    id     TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ms  BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);

CREATE TABLE dump_trash (
    key   TEXT PRIMARY KEY,
    at_ms BIGINT NOT NULL
);

CREATE TABLE audit (
    id       BIGSERIAL PRIMARY KEY,
    at_ms    BIGINT NOT NULL,
    token    TEXT NOT NULL,
    method   TEXT NOT NULL,
    route    TEXT NOT NULL,
    filters  TEXT NOT NULL,
    rows     BIGINT,
    status   INTEGER NOT NULL
);
CREATE INDEX audit_time ON audit (at_ms);
