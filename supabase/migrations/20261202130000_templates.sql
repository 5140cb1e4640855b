-- Each client's WhatsApp message templates (issue 12), synced from GET /{waba-id}/message_templates and kept
-- current by the message_template_status_update and message_template_quality_update webhooks.
CREATE TABLE templates (
    client            text        NOT NULL,
    name              text        NOT NULL,
    language          text        NOT NULL,
    template_id       text,
    category          text        NOT NULL,
    status            text        NOT NULL,
    quality           text,
    parameter_format  text        NOT NULL DEFAULT 'POSITIONAL',
    components        jsonb       NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (client, name, language)
);
COMMENT ON TABLE templates IS 'A client''s WhatsApp message templates as Meta last described them (sync and template webhooks).';
COMMENT ON COLUMN templates.status IS 'APPROVED, PENDING, REJECTED, PAUSED, DISABLED...: only APPROVED ones can be sent';
COMMENT ON COLUMN templates.quality IS 'GREEN, YELLOW, RED or UNKNOWN, from the list or the quality webhook';
COMMENT ON COLUMN templates.parameter_format IS 'POSITIONAL ({{1}}) or NAMED ({{first_name}}) placeholders';
COMMENT ON COLUMN templates.components IS 'Meta''s components (HEADER, BODY, FOOTER, BUTTONS) as listed by the Graph API';
ALTER TABLE templates ENABLE ROW LEVEL SECURITY;
