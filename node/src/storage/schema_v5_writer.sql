-- Schema v5 (writer): one row the storage writer rewrites to find out whether a write can
-- commit (`/healthz` while writes are failing: a full disk freed again turns healthy
-- without waiting for a clerk's write). Applied after v4; never edited once released.
CREATE TABLE writer_probe (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    at_ms INTEGER NOT NULL
);
