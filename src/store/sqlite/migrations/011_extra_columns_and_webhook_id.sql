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
