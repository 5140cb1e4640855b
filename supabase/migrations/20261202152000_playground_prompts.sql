-- Edited system prompts tried in the web console's playground (issue 13). Only conversations on a client's
-- sandbox number read them; a client's own prompt lives in its folder and is never changed by these.
CREATE TABLE playground_prompts (
    client        text        NOT NULL,
    user_key      text        NOT NULL,
    instructions  text        NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (client, user_key)
);
COMMENT ON TABLE playground_prompts IS 'System prompts under trial in the console playground, per tester conversation on a sandbox number';
ALTER TABLE playground_prompts ENABLE ROW LEVEL SECURITY;
