-- Pinned and edited rows are few: partial indexes instead of full ones (databases created by an
-- earlier schema.sql; new ones get these from schema.sql and this is a no-op for them).
DROP INDEX IF EXISTS messages_pinned_time;
DROP INDEX IF EXISTS messages_edited_time;
CREATE INDEX IF NOT EXISTS messages_pinned_time ON messages (created_ms) WHERE pinned = 1;
CREATE INDEX IF NOT EXISTS messages_pinned_kind_time ON messages (kind, created_ms) WHERE pinned = 1;
CREATE INDEX IF NOT EXISTS messages_edited_time ON messages (created_ms) WHERE edited = 1;
