-- What a dump or a delivery carries beyond the fields chatsink names:
-- * `messages.extra`: the dump's columns chatsink has no field for, a JSON object of column name
--   to text (NULL when the dump had none), so the archive keeps every column it was given;
-- * `messages.target_user_ids`: a private message's recipients (the dump's `targetUserIds`), a
--   JSON array; NULL for a message to everyone;
-- * `inbox.webhook_id`: `rtk-webhook-id`, the webhook configuration that sent the delivery.
ALTER TABLE messages ADD COLUMN extra TEXT;
ALTER TABLE messages ADD COLUMN target_user_ids TEXT;
ALTER TABLE inbox ADD COLUMN webhook_id TEXT;
-- The few messages with either, for taking an erased user's id out of them.
CREATE INDEX messages_with_extra ON messages (user_key)
    WHERE target_user_ids IS NOT NULL OR extra IS NOT NULL;
-- Who each sender is in the app's own terms: a session's participants as RealtimeKit lists them
-- (src/ingest/walk.rs), and when they were last fetched (`sessions.participants_ms`; NULL: not
-- yet, so the next reprocess or reconcile pass tries again). A dump's sender (`participantId`)
-- is matched against the peer id or the user id, since which it names is not published.
CREATE TABLE session_participants (
    session_key           INTEGER NOT NULL,
    participant_id        TEXT NOT NULL,
    rtk_user_id           TEXT,
    custom_participant_id TEXT,
    display_name          TEXT,
    preset_name           TEXT,
    joined_ms             INTEGER,
    left_ms               INTEGER,
    PRIMARY KEY (session_key, participant_id)
) WITHOUT ROWID;
CREATE INDEX session_participants_peer ON session_participants (participant_id);
CREATE INDEX session_participants_user ON session_participants (rtk_user_id);
CREATE INDEX session_participants_custom ON session_participants (custom_participant_id);
ALTER TABLE sessions ADD COLUMN participants_ms INTEGER;
-- Every sender each session's last dump named (rows a later row of the same id replaced
-- included): an erasure of any of them finds the kept dump that still holds their rows.
CREATE TABLE dump_senders (
    session_key INTEGER NOT NULL,
    user_key    INTEGER NOT NULL,
    PRIMARY KEY (session_key, user_key)
) WITHOUT ROWID;
CREATE INDEX dump_senders_user ON dump_senders (user_key);
INSERT OR IGNORE INTO dump_senders (session_key, user_key)
    SELECT DISTINCT session_key, user_key FROM messages;
