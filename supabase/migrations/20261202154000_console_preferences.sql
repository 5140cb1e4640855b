-- What each web console account chose for itself (issue 13): its language.
CREATE TABLE console_preferences (
    user_id     bigint      PRIMARY KEY REFERENCES console_users (id) ON DELETE CASCADE,
    language    text        NOT NULL CHECK (language IN ('en', 'es')),
    updated_at  timestamptz NOT NULL
);
COMMENT ON TABLE console_preferences IS 'Per console account, the language it chose for the console (else its browser decides)';
ALTER TABLE console_preferences ENABLE ROW LEVEL SECURITY;
