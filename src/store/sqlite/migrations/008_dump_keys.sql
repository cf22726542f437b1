-- A session's dump_path becomes its key in the dump store (CHATSINK_DUMP_STORE, by default
-- `dumps` under the data dir): `<session>/<sha256>.csv` instead of `dumps/<session>/<sha256>.csv`
-- relative to the data dir. The same file, named from the store's root.

UPDATE sessions SET dump_path = substr(dump_path, 7) WHERE dump_path LIKE 'dumps/%';
