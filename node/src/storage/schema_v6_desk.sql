-- The desk's working day (issue #15.11, #15.12).

-- A waiting ticket's place in line, in microseconds: NULL means its issue time
-- (issued_ms * 1000); "serve later" sets it to put the ticket at a chosen position.
ALTER TABLE tickets ADD COLUMN turn INTEGER;

-- Voiding a cash receipt: asked for with a reason, approved by a supervisor; the
-- receipt itself is never deleted (the case keeps its payment event; the case document
-- records the void under the root key `void:<receipt>`).
CREATE TABLE receipt_voids (
    receipt_no     TEXT PRIMARY KEY,
    case_no        TEXT NOT NULL,
    reason         TEXT NOT NULL,
    requested_by   TEXT NOT NULL,          -- username
    requested_name TEXT NOT NULL,          -- full name at the time
    requested_at   TEXT NOT NULL,
    approved_by    TEXT,
    approved_name  TEXT,
    approved_at    TEXT                    -- NULL while the request waits for a supervisor
);
CREATE INDEX receipt_voids_pending ON receipt_voids(approved_at);
