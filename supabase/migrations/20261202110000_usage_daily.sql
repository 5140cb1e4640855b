-- The usage ledger (issue 11): what a client's bots did and spent, per UTC day, conversation and model, added to in
-- the same transaction as what it counts (docs/usage.md). Kept when messages are purged; deleting a conversation
-- (erasure) sets its rows' conversation_id to NULL, so the client's totals stay whole.
CREATE TABLE usage_daily (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client             text    NOT NULL,
    day                text    NOT NULL CHECK (day ~ '^\d{4}-\d{2}-\d{2}$'),
    conversation_id    bigint  REFERENCES conversations (id) ON DELETE SET NULL,
    model              text    NOT NULL DEFAULT '',
    conversations      integer NOT NULL DEFAULT 0,
    messages_in        integer NOT NULL DEFAULT 0,
    messages_out       integer NOT NULL DEFAULT 0,
    model_calls        integer NOT NULL DEFAULT 0,
    prompt_tokens      bigint  NOT NULL DEFAULT 0,
    completion_tokens  bigint  NOT NULL DEFAULT 0,
    UNIQUE (client, day, conversation_id, model)
);
CREATE INDEX usage_daily_conversation ON usage_daily (conversation_id);
COMMENT ON TABLE usage_daily IS 'Usage ledger: per client, UTC day, conversation and model; kept when messages are purged';
COMMENT ON COLUMN usage_daily.day IS 'YYYY-MM-DD, the UTC day';
COMMENT ON COLUMN usage_daily.conversation_id IS 'NULL once the conversation was erased (its figures stay in the totals)';
COMMENT ON COLUMN usage_daily.model IS 'empty for messages in and out; else the model called';
COMMENT ON COLUMN usage_daily.conversations IS '1 on the empty-model row: the conversation had a message in or out that day';
COMMENT ON COLUMN usage_daily.messages_out IS 'messages sent (or to the sandbox), counted on the day they were written';
ALTER TABLE usage_daily ENABLE ROW LEVEL SECURITY;
