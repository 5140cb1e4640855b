-- Broadcasts (issue 12): an approved template sent to an audience, a durable job worked by the processes that answer
-- conversations. Each recipient is a row; its outbound message is stored (messages) before it is sent.
CREATE TABLE broadcasts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client           text        NOT NULL,
    phone_number_id  text        NOT NULL,
    template         text        NOT NULL,
    language         text        NOT NULL,
    parameters       jsonb       NOT NULL,
    audience         jsonb       NOT NULL,
    status           text        NOT NULL,
    due_at           timestamptz,
    pauses           integer     NOT NULL DEFAULT 0,
    last_error       text,
    total            integer     NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    finished_at      timestamptz
);
CREATE INDEX broadcasts_client ON broadcasts (client, id);
CREATE INDEX broadcasts_due ON broadcasts (due_at) WHERE due_at IS NOT NULL;
COMMENT ON TABLE broadcasts IS 'A template sent to an audience (tags or user keys), worked by the scheduler''s processes';
COMMENT ON COLUMN broadcasts.parameters IS 'the template''s parameters (list or object); values may name {{contact.name}}, {{contact.email}}, {{contact.user_key}}';
COMMENT ON COLUMN broadcasts.status IS 'scheduled, running, paused (rate or spam error: until due_at), done, cancelled';
COMMENT ON COLUMN broadcasts.due_at IS 'when it may be worked next (its "at", the end of a pause); NULL once done or cancelled';
ALTER TABLE broadcasts ENABLE ROW LEVEL SECURITY;
CREATE TABLE broadcast_recipients (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    broadcast_id     bigint      NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    client           text        NOT NULL,
    user_key         text        NOT NULL,
    state            text        NOT NULL DEFAULT 'queued',
    conversation_id  bigint      REFERENCES conversations (id) ON DELETE SET NULL,
    message_id       bigint      REFERENCES messages (id) ON DELETE SET NULL,
    wamid            text,
    error_code       integer,
    error            text,
    attempts         integer     NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_until      timestamptz,
    updated_at       timestamptz NOT NULL,
    UNIQUE (broadcast_id, user_key)
);
CREATE INDEX broadcast_recipients_work ON broadcast_recipients (broadcast_id, state, id);
CREATE INDEX broadcast_recipients_person ON broadcast_recipients (client, user_key);
CREATE INDEX broadcast_recipients_message ON broadcast_recipients (message_id);
COMMENT ON TABLE broadcast_recipients IS 'One row per person of a broadcast; claimed in batches under a lease';
COMMENT ON COLUMN broadcast_recipients.state IS 'queued, sending (claimed; its message stored), sent, failed, skipped (opted out), cancelled';
COMMENT ON COLUMN broadcast_recipients.message_id IS 'the outbound message in the person''s conversation, stored before the send; its status follows the webhooks';
ALTER TABLE broadcast_recipients ENABLE ROW LEVEL SECURITY;
