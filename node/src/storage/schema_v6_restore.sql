-- Schema v6 (restore): a login session's lifetime is measured on the monotonic clock of
-- the boot that issued it (auth::find_session), so a wall clock that jumps (two years
-- ahead, or back to 1970) neither extends nor shortens it. `boot` is the system's boot
-- id; the two readings are milliseconds of that boot's monotonic clock. Sessions made
-- before v6 have none and are judged by the wall clock, bounded by their lifetime.
ALTER TABLE sessions ADD COLUMN boot TEXT;
ALTER TABLE sessions ADD COLUMN issued_mono_ms INTEGER;
ALTER TABLE sessions ADD COLUMN seen_mono_ms INTEGER;

-- The identity of the file this database was last opened from (storage::identity): a
-- database opened from another file (a backup put back) is a new incarnation.
CREATE TABLE db_file (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    identity  TEXT NOT NULL
);
