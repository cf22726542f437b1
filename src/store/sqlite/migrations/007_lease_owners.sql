-- Owners of job leases (src/store/owner.rs): every process that claims jobs registers here and
-- beats a heartbeat; a running job names its owner, so a job whose owner stopped beating can be
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
ALTER TABLE jobs ADD COLUMN owner_id TEXT;
