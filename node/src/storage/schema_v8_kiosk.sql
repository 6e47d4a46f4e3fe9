-- Schema v8 (kiosk): the public status link of a ticket (issue #15.7). The token is the
-- only key a citizen's phone holds (from the QR code on the ticket): 128 random bits,
-- never the sequential ticket id, so links cannot be enumerated. It opens a read-only
-- page with the ticket's number, state, place in line and later its case's state —
-- nothing about the citizen.
CREATE TABLE ticket_links (
    token      TEXT PRIMARY KEY,
    ticket_id  INTEGER NOT NULL UNIQUE REFERENCES tickets(id),
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
