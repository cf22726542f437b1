-- The dump's columns chatsink has no field for (`extra`, a JSON object of column name to text),
-- a private message's recipients (`target_user_ids`; NULL: everyone), and the webhook
-- configuration that sent a delivery (`rtk-webhook-id`). As SQLite's 011.
ALTER TABLE messages ADD COLUMN extra TEXT, ADD COLUMN target_user_ids TEXT[];
ALTER TABLE inbox ADD COLUMN webhook_id TEXT;
-- A session's participants (who each sender is in the app's own terms), and when they were last
-- fetched. As SQLite's 011.
CREATE TABLE session_participants (
    session_key           BIGINT NOT NULL,
    participant_id        TEXT NOT NULL,
    rtk_user_id           TEXT,
    custom_participant_id TEXT,
    display_name          TEXT,
    preset_name           TEXT,
    joined_ms             BIGINT,
    left_ms               BIGINT,
    PRIMARY KEY (session_key, participant_id)
);
CREATE INDEX session_participants_peer ON session_participants (participant_id);
CREATE INDEX session_participants_user ON session_participants (rtk_user_id);
CREATE INDEX session_participants_custom ON session_participants (custom_participant_id);
ALTER TABLE sessions ADD COLUMN participants_ms BIGINT;
-- Every sender each session's last dump named (rows a later row of the same id replaced
-- included), so an erasure of any of them finds the kept dump. As SQLite's 011.
CREATE TABLE dump_senders (
    session_key BIGINT NOT NULL,
    user_key    BIGINT NOT NULL,
    PRIMARY KEY (session_key, user_key)
);
CREATE INDEX dump_senders_user ON dump_senders (user_key);
INSERT INTO dump_senders (session_key, user_key)
    SELECT DISTINCT session_key, user_key FROM messages ON CONFLICT DO NOTHING;
