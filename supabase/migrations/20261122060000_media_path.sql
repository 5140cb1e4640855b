-- Received media are archived (Meta's URLs expire in minutes); the message keeps where.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS media_path text;
COMMENT ON COLUMN messages.media_path IS 'where a received file is archived: a path under MEDIA_ARCHIVE_DIR, or <bucket>/<path> in Supabase Storage';
