-- Schema v7 (hubdata): staff accounts are synced documents (docs/PROTOCOL.md, "Staff
-- accounts"). `active` stays the center's own switch; `hub_active` is the hub's
-- deactivation, which the center cannot lift: an account acts only when both are 1.
-- Applied after the v6 files; never edited once released.
ALTER TABLE staff ADD COLUMN hub_active INTEGER NOT NULL DEFAULT 1;
