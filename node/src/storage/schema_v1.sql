-- Markaz center node, schema v1. Times are RFC 3339 UTC text unless named *_ms (unix ms).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Sequences numbered per center without coordination: receipts, case numbers, ticket
-- series per (group, local day).
CREATE TABLE sequences (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

CREATE TABLE staff (
    username      TEXT PRIMARY KEY,
    full_name     TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL,          -- JSON array of roles
    active        INTEGER NOT NULL DEFAULT 1,
    language      TEXT NOT NULL DEFAULT 'ar',
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE staff_permissions (
    username   TEXT NOT NULL REFERENCES staff(username) ON DELETE CASCADE,
    authority  TEXT NOT NULL,
    expires_on TEXT NOT NULL,            -- civil date, inclusive
    granted_by TEXT,
    granted_at TEXT NOT NULL,
    PRIMARY KEY (username, authority)
);

CREATE TABLE sessions (
    token_hash    TEXT PRIMARY KEY,      -- blake3 of the bearer token; the token itself is never stored
    username      TEXT NOT NULL REFERENCES staff(username) ON DELETE CASCADE,
    csrf          TEXT NOT NULL,
    terminal      TEXT,
    created_ms    INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    expires_ms    INTEGER NOT NULL
);

CREATE TABLE login_failures (
    key   TEXT NOT NULL,                 -- username or client address
    at_ms INTEGER NOT NULL
);
CREATE INDEX login_failures_key ON login_failures(key, at_ms);

CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY,
    at       TEXT NOT NULL,
    actor    TEXT,
    terminal TEXT,
    action   TEXT NOT NULL,
    subject  TEXT,
    detail   TEXT                        -- JSON
);

-- Catalog and fee schedule as documents (JSON) until the sync layer projects them.
CREATE TABLE catalog (
    name       TEXT PRIMARY KEY,         -- 'services' | 'fees'
    json       TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE citizens (
    national_id TEXT PRIMARY KEY,
    full_name   TEXT NOT NULL,
    father_name TEXT NOT NULL,
    mother_name TEXT NOT NULL,
    birth_date  TEXT NOT NULL,
    birth_place TEXT NOT NULL,
    phone       TEXT,
    address     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX citizens_phone ON citizens(phone);

CREATE TABLE cases (
    case_no      TEXT PRIMARY KEY,
    national_id  TEXT NOT NULL,
    service_code TEXT NOT NULL,
    authority    TEXT NOT NULL,
    fields       TEXT NOT NULL,          -- JSON object
    delivery     TEXT NOT NULL,          -- JSON
    fee          TEXT NOT NULL,          -- JSON, frozen at intake
    fee_total    INTEGER NOT NULL,       -- piastres
    status       TEXT NOT NULL,
    conflict     TEXT,                   -- JSON when a true conflict is flagged
    payment      TEXT,                   -- JSON
    ticket_id    INTEGER,
    target_at    TEXT NOT NULL,          -- when the case should be finished
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX cases_national_id ON cases(national_id);
CREATE INDEX cases_status ON cases(status, created_at);

CREATE TABLE case_events (
    case_no TEXT NOT NULL REFERENCES cases(case_no),
    idx     INTEGER NOT NULL,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    desk    TEXT,
    kind    TEXT NOT NULL,
    json    TEXT NOT NULL,               -- the whole event
    PRIMARY KEY (case_no, idx)
);

CREATE TABLE tickets (
    id             INTEGER PRIMARY KEY,
    day            TEXT NOT NULL,        -- local civil date of the center
    group_id       TEXT NOT NULL,        -- current group (changes on transfer)
    original_group TEXT NOT NULL,
    number         TEXT NOT NULL,        -- e.g. A001
    priority       TEXT NOT NULL,
    state          TEXT NOT NULL,
    national_id    TEXT,
    counter        INTEGER,
    case_no        TEXT,
    recalls        INTEGER NOT NULL DEFAULT 0,
    issued_ms      INTEGER NOT NULL,
    called_ms      INTEGER,
    done_ms        INTEGER,
    UNIQUE (day, number)
);
CREATE INDEX tickets_waiting ON tickets(day, state, group_id, issued_ms);

CREATE TABLE ticket_events (
    id        INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    at_ms     INTEGER NOT NULL,
    action    TEXT NOT NULL,
    counter   INTEGER,
    actor     TEXT,
    detail    TEXT
);
CREATE INDEX ticket_events_ticket ON ticket_events(ticket_id);

-- The priority ratio's running state per counter and day.
CREATE TABLE queue_ratio (
    day     TEXT NOT NULL,
    counter INTEGER NOT NULL,
    state   TEXT NOT NULL,               -- JSON
    PRIMARY KEY (day, counter)
);

-- Notifications to send, written in the transaction of the event that causes them.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    body         TEXT NOT NULL,
    subject      TEXT,                   -- e.g. the case number
    state        TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    last_attempt TEXT,
    last_error   TEXT,
    message_ref  TEXT
);
CREATE INDEX outbox_pending ON outbox(state, id);

-- The node's own event log, shown to the technician.
CREATE TABLE node_log (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    level   TEXT NOT NULL,
    source  TEXT NOT NULL,
    message TEXT NOT NULL
);
