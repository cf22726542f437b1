-- A text message's text was stored twice (as `text` and as `payload`) and every message's time
-- twice (as `created_at` text and `created_ms`): `text` becomes a virtual column derived from the
-- payload, and the time is formatted from created_ms when read. Dropping a column rewrites the
-- table, once.
ALTER TABLE messages DROP COLUMN text;
ALTER TABLE messages DROP COLUMN created_at;
ALTER TABLE messages ADD COLUMN
    text TEXT GENERATED ALWAYS AS (CASE WHEN kind = 'text' THEN payload END) VIRTUAL;
-- The full-text index without per-row column sizes (only bm25 ranking reads them) and with a
-- larger pending-terms hash, rebuilt from the messages.
DROP TABLE messages_fts;
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    text, file_name, display_name,
    content = 'messages', content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2',
    columnsize = 0
);
INSERT INTO messages_fts (messages_fts, rank) VALUES ('hashsize', 33554432);
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
