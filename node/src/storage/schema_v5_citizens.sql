-- Citizen records kept safe (issue #15.1): a case keeps its citizen as at intake, a
-- profile's explicit edits are kept with who, when and the old and new values, and
-- likely duplicates (same name and birth date, other id) are found by birth date.

-- JSON of the citizen's profile when the case was opened (as the case document keeps
-- it); NULL for cases opened before this version and for portal cases.
ALTER TABLE cases ADD COLUMN citizen TEXT;

-- Projection of the citizen documents' `edit:<hlc>` entries.
CREATE TABLE citizen_edits (
    national_id TEXT NOT NULL,
    hlc         TEXT NOT NULL,           -- orders the edits; unique per node
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,           -- username
    actor_name  TEXT NOT NULL,           -- full name at the time
    desk        TEXT,
    changes     TEXT NOT NULL,           -- JSON [{field, old, new}]
    PRIMARY KEY (national_id, hlc)
);

CREATE INDEX citizens_birth_date ON citizens(birth_date);
