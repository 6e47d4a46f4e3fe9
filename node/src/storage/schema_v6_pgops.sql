-- The hub address each sync session used (`[sync] hub_urls`: several hub processes).
ALTER TABLE sync_sessions ADD COLUMN hub TEXT NOT NULL DEFAULT '';
