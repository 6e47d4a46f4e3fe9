-- Schema v4: per-(day, group) counts of waiting tickets, kept by triggers on `tickets`.
-- Applied after v3; never edited once released.
--
-- Issuing a ticket reports how many are ahead of it, and a counter shows how many wait
-- for its groups. Counting them with `count(*)` walks every waiting ticket of the day,
-- on the writer thread for each ticket issued; this table answers with one row. The
-- triggers below keep it equal to
--   SELECT day, group_id, count(*) FROM tickets WHERE state = 'waiting' GROUP BY 1, 2
-- for every insert, delete and update of state, group or day, so no use case maintains
-- it by hand. Rows may drop to 0 and stay.
CREATE TABLE ticket_waiting (
    day      TEXT NOT NULL,
    group_id TEXT NOT NULL,
    waiting  INTEGER NOT NULL CHECK (waiting >= 0),
    PRIMARY KEY (day, group_id)
) WITHOUT ROWID;

-- A database of an older version starts with the counts of its existing tickets.
INSERT INTO ticket_waiting(day, group_id, waiting)
    SELECT day, group_id, count(*) FROM tickets WHERE state = 'waiting' GROUP BY day, group_id;

CREATE TRIGGER ticket_waiting_on_insert AFTER INSERT ON tickets
WHEN NEW.state = 'waiting'
BEGIN
    INSERT INTO ticket_waiting(day, group_id, waiting) VALUES (NEW.day, NEW.group_id, 1)
        ON CONFLICT(day, group_id) DO UPDATE SET waiting = waiting + 1;
END;

CREATE TRIGGER ticket_waiting_on_delete AFTER DELETE ON tickets
WHEN OLD.state = 'waiting'
BEGIN
    UPDATE ticket_waiting SET waiting = waiting - 1
        WHERE day = OLD.day AND group_id = OLD.group_id;
END;

-- Leaving the queue, joining it, or moving within it (transfer to another group, a
-- change of day): the old key loses one, the new key gains one.
CREATE TRIGGER ticket_waiting_on_update AFTER UPDATE OF state, group_id, day ON tickets
WHEN OLD.state = 'waiting' OR NEW.state = 'waiting'
BEGIN
    UPDATE ticket_waiting SET waiting = waiting - 1
        WHERE OLD.state = 'waiting' AND day = OLD.day AND group_id = OLD.group_id;
    INSERT INTO ticket_waiting(day, group_id, waiting)
        SELECT NEW.day, NEW.group_id, 1 WHERE NEW.state = 'waiting'
        ON CONFLICT(day, group_id) DO UPDATE SET waiting = waiting + 1;
END;
