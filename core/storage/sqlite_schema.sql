-- The embedded default's schema; the Postgres one keeps the same tables, columns and meanings.
-- Times are ISO 8601 UTC text with microseconds, so text order is time order.

CREATE TABLE IF NOT EXISTS conversations (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    client            TEXT    NOT NULL,               -- client folder name
    phone_number_id   TEXT    NOT NULL,               -- the business number the person wrote to
    user_key          TEXT    NOT NULL,               -- wa_id when Meta gives one, else the business-scoped user_id
    wa_id             TEXT,
    user_id           TEXT,
    contact_name      TEXT,
    mode              TEXT    NOT NULL DEFAULT 'bot' CHECK (mode IN ('bot', 'human')),
    due_at            TEXT,                           -- when the pending batch should be answered; NULL when none
    pending_since     TEXT,                           -- arrival of the oldest unanswered message (caps the debounce)
    lease_owner       TEXT,                           -- processor holding the conversation
    lease_until       TEXT,
    last_inbound_at   TEXT,                           -- opens the 24 h customer-service window
    human_since       TEXT,                           -- set while an operator holds the conversation (mode human)
    last_operator_at  TEXT,                           -- the operator's last action; idle takeovers go back to the bot
    needs_attention   INTEGER NOT NULL DEFAULT 0,     -- 1 when a person should look (fallback sent, send refused...)
    attention_reason  TEXT,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL,
    turn_failures     INTEGER NOT NULL DEFAULT 0,     -- failed attempts at the pending batch (poison after a few)
    UNIQUE (client, phone_number_id, user_key)
);
CREATE INDEX IF NOT EXISTS conversations_due ON conversations (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS conversations_client ON conversations (client, updated_at);

CREATE TABLE IF NOT EXISTS messages (
    id                INTEGER PRIMARY KEY AUTOINCREMENT, -- arrival order
    conversation_id   INTEGER NOT NULL REFERENCES conversations (id),
    wamid             TEXT    UNIQUE,                 -- Meta's message id; redelivery of the same wamid is a no-op
    direction         TEXT    NOT NULL CHECK (direction IN ('in', 'out', 'internal')),
    role              TEXT    NOT NULL CHECK (role IN ('user', 'assistant', 'tool', 'system', 'operator')),
    type              TEXT    NOT NULL,
    text              TEXT,
    payload           TEXT,                           -- JSON: Meta's message, or the tool calls / result
    status            TEXT,                           -- outbound: pending, sandbox, sent, delivered, read, failed
    error             TEXT,                           -- JSON: Meta's error for a failed message
    wa_timestamp      TEXT,                           -- Meta's timestamp of an inbound message
    batch_id          TEXT,                           -- the turn that answered (inbound) or produced (outbound) it
    category          TEXT,                           -- classified instructions: the category that answered
    processed_at      TEXT,                           -- when the turn completed; NULL for an unanswered inbound message
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT    NOT NULL,
    media_path        TEXT                            -- where a received file is archived (folder or Supabase bucket)
);
CREATE INDEX IF NOT EXISTS messages_pending ON messages (conversation_id) WHERE processed_at IS NULL;
CREATE INDEX IF NOT EXISTS messages_timeline ON messages (conversation_id, processed_at);
CREATE INDEX IF NOT EXISTS messages_unsent ON messages (conversation_id) WHERE status = 'pending';

-- Every status report, kept even when it arrives before the message it names is stored.
-- Keyed by client too: a delivery routed to one client can never touch another client's messages.
CREATE TABLE IF NOT EXISTS message_statuses (
    client       TEXT NOT NULL,
    wamid        TEXT NOT NULL,
    status       TEXT NOT NULL,
    timestamp    TEXT,
    payload      TEXT NOT NULL,
    recorded_at  TEXT NOT NULL,
    PRIMARY KEY (client, wamid, status)
);

-- A client's own data, for its tools and extra endpoints: one JSON document per key (e.g. a course catalogue) ...
CREATE TABLE IF NOT EXISTS client_documents (
    client      TEXT NOT NULL,
    key         TEXT NOT NULL,
    data        TEXT NOT NULL,                        -- JSON
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (client, key)
);

-- ... and records its tools collect (e.g. leads), kept in order.
CREATE TABLE IF NOT EXISTS client_records (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    client           TEXT    NOT NULL,
    kind             TEXT    NOT NULL,                -- e.g. "lead"
    conversation_id  INTEGER REFERENCES conversations (id),
    data             TEXT    NOT NULL,                -- JSON
    created_at       TEXT    NOT NULL,
    ref              TEXT                             -- the reference the tool gave the user (e.g. L-3F9A2C)
);
CREATE INDEX IF NOT EXISTS client_records_kind ON client_records (client, kind, id);

-- The effects outbox: what a turn decided that leaves the service (staff emails...), stored in the turn's own
-- transaction and carried out after it, once per (batch, key), retried with backoff, claimed under a lease.
CREATE TABLE IF NOT EXISTS effects (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    client           TEXT    NOT NULL,
    conversation_id  INTEGER REFERENCES conversations (id),
    batch_id         TEXT    NOT NULL,                -- the turn that decided it
    key              TEXT    NOT NULL,                -- <tool call id>:<n>, unique within the batch
    kind             TEXT    NOT NULL,                -- email
    data             TEXT    NOT NULL,                -- JSON: what to do (subject, body, reply_to...)
    status           TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    due_at           TEXT,                            -- when to try (again); NULL once done or failed
    lease_owner      TEXT,
    lease_until      TEXT,
    created_at       TEXT    NOT NULL,
    done_at          TEXT,
    UNIQUE (batch_id, key)
);
CREATE INDEX IF NOT EXISTS effects_due ON effects (due_at) WHERE due_at IS NOT NULL;

-- Switches a business changes through its REST API without a deploy; no row means the defaults (the bot on).
CREATE TABLE IF NOT EXISTS client_switches (
    client       TEXT    PRIMARY KEY,
    bot_enabled  INTEGER NOT NULL DEFAULT 1,        -- 0: new messages are stored handled and flagged, not answered
    updated_at   TEXT    NOT NULL
);

-- The usage ledger: what a client's bots did and spent, per UTC day, conversation and model, added to in the same
-- transaction as what it counts. Kept when messages are purged; erasing a person's conversation leaves its rows
-- anonymous (conversation_id NULL), so the client's totals stay whole.
CREATE TABLE IF NOT EXISTS usage_daily (
    id                 INTEGER PRIMARY KEY,
    client             TEXT    NOT NULL,
    day                TEXT    NOT NULL,              -- YYYY-MM-DD, UTC
    conversation_id    INTEGER REFERENCES conversations (id) ON DELETE SET NULL,
    model              TEXT    NOT NULL DEFAULT '',   -- '' for messages in and out; else the model called
    conversations      INTEGER NOT NULL DEFAULT 0,    -- 1 on the '' row: the conversation had a message that day
    messages_in        INTEGER NOT NULL DEFAULT 0,
    messages_out       INTEGER NOT NULL DEFAULT 0,    -- sent (or to the sandbox), counted on the day written
    model_calls        INTEGER NOT NULL DEFAULT 0,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    UNIQUE (client, day, conversation_id, model)
);
CREATE INDEX IF NOT EXISTS usage_daily_conversation ON usage_daily (conversation_id);
-- Retention (issue 11): periodic jobs run by one process at a time; a run is claimed by moving started_at.
CREATE TABLE IF NOT EXISTS scheduled_jobs (
    name         TEXT PRIMARY KEY,                  -- e.g. retention
    owner        TEXT NOT NULL,                     -- the process that claimed the last run
    started_at   TEXT NOT NULL,
    finished_at  TEXT                               -- NULL while running, or when the run died
);
-- What retention still has to empty, oldest first; rows it has emptied leave these indexes.
CREATE INDEX IF NOT EXISTS messages_content ON messages (created_at, id)
    WHERE text IS NOT NULL OR payload IS NOT NULL OR error IS NOT NULL OR media_path IS NOT NULL;
CREATE INDEX IF NOT EXISTS message_statuses_content ON message_statuses (client, recorded_at) WHERE payload <> '{}';
-- Accounts of the web console (/console): platform admins (client NULL) and one client's operators or viewers.
CREATE TABLE IF NOT EXISTS console_users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    email          TEXT    NOT NULL UNIQUE,         -- lower case
    password_hash  TEXT    NOT NULL,                -- argon2id, with its parameters and salt
    role           TEXT    NOT NULL,                -- admin, operator, viewer
    client         TEXT,                            -- the one client staff see; NULL for admins
    disabled       INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT    NOT NULL
);

-- Failed console logins, per email and per address, counted over a window (every web process shares them).
CREATE TABLE IF NOT EXISTS console_login_failures (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    scope      TEXT NOT NULL,                        -- email or ip
    key        TEXT NOT NULL,
    failed_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS console_login_failures_key ON console_login_failures (scope, key, failed_at);
-- Each client's WhatsApp message templates, as the last sync from the Graph API and the template webhooks left them.
CREATE TABLE IF NOT EXISTS templates (
    client            TEXT NOT NULL,
    name              TEXT NOT NULL,
    language          TEXT NOT NULL,                  -- e.g. es_AR
    template_id       TEXT,                           -- Meta's id
    category          TEXT NOT NULL,                  -- MARKETING, UTILITY, AUTHENTICATION
    status            TEXT NOT NULL,                  -- APPROVED, PENDING, REJECTED, PAUSED, DISABLED...
    quality           TEXT,                           -- GREEN, YELLOW, RED, UNKNOWN (quality webhook or the list)
    parameter_format  TEXT NOT NULL DEFAULT 'POSITIONAL', -- POSITIONAL ({{1}}) or NAMED ({{first_name}})
    components        TEXT NOT NULL,                  -- JSON: Meta's components (header, body, footer, buttons)
    updated_at        TEXT NOT NULL,
    PRIMARY KEY (client, name, language)
);
-- /metrics counts the conversations flagged for a person at every scrape: the index holds only those.
CREATE INDEX IF NOT EXISTS conversations_attention ON conversations (client) WHERE needs_attention = TRUE;
-- Contacts (issue 12): what staff keep about a person who wrote to a client; created when first edited (or on
-- opt-out), read beside the person's conversations (name and number come from there).
CREATE TABLE IF NOT EXISTS contacts (
    client        TEXT    NOT NULL,
    user_key      TEXT    NOT NULL,                 -- as conversations.user_key (wa_id, else the business-scoped id)
    name          TEXT,                             -- set by staff; NULL: the WhatsApp profile name
    email         TEXT,
    notes         TEXT,
    opted_out     INTEGER NOT NULL DEFAULT 0,       -- no broadcasts (an opt-out keyword, or staff)
    opted_out_at  TEXT,
    updated_at    TEXT    NOT NULL,
    PRIMARY KEY (client, user_key)
);
CREATE TABLE IF NOT EXISTS contact_tags (
    client    TEXT NOT NULL,
    user_key  TEXT NOT NULL,
    tag       TEXT NOT NULL,                        -- lower case
    PRIMARY KEY (client, tag, user_key)
);
CREATE INDEX IF NOT EXISTS contact_tags_person ON contact_tags (client, user_key);
-- Broadcasts (issue 12): an approved template sent to an audience, worked by the scheduler's processes.
CREATE TABLE IF NOT EXISTS broadcasts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    client           TEXT    NOT NULL,
    phone_number_id  TEXT    NOT NULL,
    template         TEXT    NOT NULL,
    language         TEXT    NOT NULL,
    parameters       TEXT    NOT NULL,              -- JSON: a list or an object; values may name {{contact.*}}
    audience         TEXT    NOT NULL,              -- JSON: {"tags": [...]} or {"user_keys": [...]}
    status           TEXT    NOT NULL,              -- scheduled, running, paused, done, cancelled
    due_at           TEXT,                          -- when it may be worked next (its "at", the end of a pause)
    pauses           INTEGER NOT NULL DEFAULT 0,    -- pauses in a row (rate or spam errors), for the backoff
    last_error       TEXT,
    total            INTEGER NOT NULL DEFAULT 0,    -- recipients
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    finished_at      TEXT
);
CREATE INDEX IF NOT EXISTS broadcasts_client ON broadcasts (client, id);
CREATE INDEX IF NOT EXISTS broadcasts_due ON broadcasts (due_at) WHERE due_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS broadcast_recipients (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    broadcast_id     INTEGER NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    client           TEXT    NOT NULL,
    user_key         TEXT    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'queued', -- queued, sending, sent, failed, skipped, cancelled
    conversation_id  INTEGER REFERENCES conversations (id) ON DELETE SET NULL,
    message_id       INTEGER REFERENCES messages (id) ON DELETE SET NULL, -- the outbound message, stored before the send
    wamid            TEXT,
    error_code       INTEGER,
    error            TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_until      TEXT,
    updated_at       TEXT    NOT NULL,
    UNIQUE (broadcast_id, user_key)
);
CREATE INDEX IF NOT EXISTS broadcast_recipients_work ON broadcast_recipients (broadcast_id, state, id);
CREATE INDEX IF NOT EXISTS broadcast_recipients_person ON broadcast_recipients (client, user_key);
CREATE INDEX IF NOT EXISTS broadcast_recipients_message ON broadcast_recipients (message_id);
-- Send slots (issue 12): one row per business number; the next free broadcast send time, handed out by claims so
-- several processes share the number's throughput.
CREATE TABLE IF NOT EXISTS send_slots (
    phone_number_id  TEXT PRIMARY KEY,
    next_at          TEXT NOT NULL                  -- the earliest time the next broadcast send may go out
);
-- Edited system prompts tried in the console's playground (never a client's prompt), per tester conversation.
CREATE TABLE IF NOT EXISTS playground_prompts (
    client        TEXT NOT NULL,
    user_key      TEXT NOT NULL,                      -- the tester's user key on the client's sandbox number
    instructions  TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (client, user_key)
);
-- When each console account last saw each conversation (the newest message shown): the inbox's unread counts.
CREATE TABLE IF NOT EXISTS console_reads (
    user_id          INTEGER NOT NULL,
    conversation_id  INTEGER NOT NULL,
    seen_at          TEXT    NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);
-- What each console account chose for itself: its language (en, es).
CREATE TABLE IF NOT EXISTS console_preferences (
    user_id     INTEGER PRIMARY KEY,
    language    TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
