-- The loader keeps messages_fts itself (one statement per load instead of one per row), so the
-- triggers that did it in databases created by the first schema go.
DROP TRIGGER IF EXISTS messages_fts_insert;
DROP TRIGGER IF EXISTS messages_fts_delete;
DROP TRIGGER IF EXISTS messages_fts_update;
