-- Contacts (issue 12): what staff keep about a person who wrote to a client (name, email, notes, tags) and the
-- opt-out from broadcasts. A row is created when staff first edit the person or they opt out; name and number
-- otherwise come from their conversations.
CREATE TABLE contacts (
    client        text        NOT NULL,
    user_key      text        NOT NULL,
    name          text,
    email         text,
    notes         text,
    opted_out     boolean     NOT NULL DEFAULT FALSE,
    opted_out_at  timestamptz,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (client, user_key)
);
COMMENT ON TABLE contacts IS 'What staff keep about a person (created on first edit or opt-out); the rest is in conversations';
COMMENT ON COLUMN contacts.user_key IS 'as conversations.user_key: the wa_id, else the business-scoped user id';
COMMENT ON COLUMN contacts.name IS 'set by staff; NULL: the WhatsApp profile name of the conversations';
COMMENT ON COLUMN contacts.opted_out IS 'no broadcasts: the person wrote an opt-out keyword, or staff set it';
ALTER TABLE contacts ENABLE ROW LEVEL SECURITY;
CREATE TABLE contact_tags (
    client    text NOT NULL,
    user_key  text NOT NULL,
    tag       text NOT NULL,
    PRIMARY KEY (client, tag, user_key)
);
CREATE INDEX contact_tags_person ON contact_tags (client, user_key);
COMMENT ON TABLE contact_tags IS 'A contact''s tags (lower case), one row each: broadcasts pick their audience by tag';
ALTER TABLE contact_tags ENABLE ROW LEVEL SECURITY;
