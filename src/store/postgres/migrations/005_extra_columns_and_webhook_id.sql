-- The dump's columns chatsink has no field for (`extra`, a JSON object of column name to text),
-- a private message's recipients (`target_user_ids`; NULL: everyone), and the webhook
-- configuration that sent a delivery (`rtk-webhook-id`). As SQLite's 011.
ALTER TABLE messages ADD COLUMN extra TEXT, ADD COLUMN target_user_ids TEXT[];
ALTER TABLE inbox ADD COLUMN webhook_id TEXT;
