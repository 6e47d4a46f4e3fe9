-- Schema v2: device supervisors (power samples and daily summaries) and the SMS
-- outbox's bookkeeping. Applied after v1; never edited once released.

-- The outbox worker's extra bookkeeping. `resends` counts sends repeated because an
-- earlier attempt may or may not have reached the network (interrupted between send and
-- mark, or no answer in time); it never exceeds 1, so a citizen gets a message at most
-- twice, never a flood. `sent_at` is when the modem confirmed.
ALTER TABLE outbox ADD COLUMN resends INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN sent_at TEXT;

-- One row per power sample (every power.sample_interval_secs), pruned after
-- power.retention_days. `at_ms` is the node clock in milliseconds since the epoch.
CREATE TABLE power_samples (
    id                INTEGER PRIMARY KEY,
    at_ms             INTEGER NOT NULL,
    at                TEXT NOT NULL,
    source            TEXT NOT NULL,          -- grid | solar | battery | generator
    soc_percent       INTEGER,
    battery_mv        INTEGER,
    pv_w              INTEGER,
    load_w            INTEGER,
    generator_running INTEGER NOT NULL,
    fuel_percent      INTEGER,
    grid_available    INTEGER,                -- 1 / 0 / NULL (no device can tell)
    level             TEXT NOT NULL           -- the policy's level after this sample
);
CREATE INDEX power_samples_at ON power_samples(at_ms);

-- The energy figures of one local day, recomputed from the samples while the day runs
-- and once more after it ends. `summary` is the full JSON (outages included).
CREATE TABLE power_daily (
    date                  TEXT PRIMARY KEY,   -- local date, YYYY-MM-DD
    grid_seconds          INTEGER NOT NULL,
    solar_seconds         INTEGER NOT NULL,
    battery_seconds       INTEGER NOT NULL,
    generator_seconds     INTEGER NOT NULL,
    unknown_seconds       INTEGER NOT NULL,
    generator_run_seconds INTEGER NOT NULL,
    generator_starts      INTEGER NOT NULL,
    pv_wh                 INTEGER NOT NULL,
    min_soc               INTEGER,
    outages               INTEGER NOT NULL,
    outage_seconds        INTEGER NOT NULL,
    summary               TEXT NOT NULL,
    computed_at           TEXT NOT NULL
);
