-- /metrics counts the conversations flagged for a person at every scrape: the index holds only those.
CREATE INDEX IF NOT EXISTS conversations_attention ON conversations (client) WHERE needs_attention = TRUE;
