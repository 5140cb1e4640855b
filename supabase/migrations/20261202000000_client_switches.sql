-- Switches a business changes through its REST API without a deploy (issue 11): its bot on or off.
CREATE TABLE client_switches (
    client       text        PRIMARY KEY,
    bot_enabled  boolean     NOT NULL DEFAULT TRUE,
    updated_at   timestamptz NOT NULL
);
COMMENT ON TABLE client_switches IS 'Per-client switches set through the API; no row means the defaults (the bot on).';
COMMENT ON COLUMN client_switches.bot_enabled IS 'false: new messages are stored handled and the conversation flagged for a person, not answered';
ALTER TABLE client_switches ENABLE ROW LEVEL SECURITY;
