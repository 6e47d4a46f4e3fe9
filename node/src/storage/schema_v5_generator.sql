-- A long SMS whose part failed keeps the parts that went out: the concatenation
-- reference chosen at its first attempt (reused by every later one, so the phone joins
-- the resent parts with the ones it has) and the parts accepted so far, as
-- "<part>:<message reference>" comma-separated. Never edited once released.
ALTER TABLE outbox ADD COLUMN concat_ref INTEGER;
ALTER TABLE outbox ADD COLUMN parts_sent TEXT NOT NULL DEFAULT '';
