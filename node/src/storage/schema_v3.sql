-- Schema v3: the sync client's session log and the modem's daily byte budget. Applied
-- after v2; never edited once released.

-- One row per sync session with the hub. Before v3 the sync task created this table
-- itself, so it may exist already with the first fifteen columns.
CREATE TABLE IF NOT EXISTS sync_sessions (
    id           INTEGER PRIMARY KEY,
    started_at   TEXT NOT NULL,
    ended_at     TEXT NOT NULL,
    uplink       TEXT NOT NULL,          -- primary | modem | offline
    metered      INTEGER NOT NULL,       -- 1: bulk documents were held back
    bytes_up     INTEGER NOT NULL,       -- on the wire, TLS included
    bytes_down   INTEGER NOT NULL,
    docs_up      INTEGER NOT NULL,
    changes_up   INTEGER NOT NULL,
    docs_down    INTEGER NOT NULL,
    changes_down INTEGER NOT NULL,
    requests     INTEGER NOT NULL,
    result       TEXT NOT NULL,          -- ok | modem budget spent | the error
    skew_ms      INTEGER,
    skipped      TEXT NOT NULL           -- JSON [[doc, why], ...]
);
-- The id sent as X-Markaz-Session with every request of the session (the hub keeps
-- one sync-log row per id); NULL when no request was sent.
ALTER TABLE sync_sessions ADD COLUMN session_id TEXT;
-- Bulk changes (statistics, energy) acknowledged in this session, and those left
-- waiting for the primary link.
ALTER TABLE sync_sessions ADD COLUMN bulk_changes_up INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_sessions ADD COLUMN bulk_waiting INTEGER NOT NULL DEFAULT 0;

-- Bytes carried over the modem uplink per local day of the center (its time zone),
-- counted from the sync client's byte counters; [modem] daily_byte_budget bounds
-- bytes_up + bytes_down.
CREATE TABLE modem_usage (
    day        TEXT PRIMARY KEY,         -- YYYY-MM-DD, local
    bytes_up   INTEGER NOT NULL DEFAULT 0,
    bytes_down INTEGER NOT NULL DEFAULT 0,
    sessions   INTEGER NOT NULL DEFAULT 0
);
