-- When each web console account last saw each conversation (issue 13): the inbox's unread counts.
CREATE TABLE console_reads (
    user_id          bigint      NOT NULL REFERENCES console_users (id) ON DELETE CASCADE,
    conversation_id  bigint      NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seen_at          timestamptz NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);
COMMENT ON TABLE console_reads IS 'Per console account and conversation, the creation time of the newest message it was shown';
ALTER TABLE console_reads ENABLE ROW LEVEL SECURITY;
