-- Schema v5 (numbers): a database that numbered cases and receipts before numbers were
-- confirmed by the hub (app::numbering) keeps numbering in its main series: it is the
-- record its numbers came from. An empty database starts unconfirmed.
INSERT INTO meta(key, value)
    SELECT 'numbering.confirmed', 'legacy'
    WHERE EXISTS (SELECT 1 FROM sequences WHERE name LIKE 'case:%' OR name = 'receipt')
    ON CONFLICT(key) DO NOTHING;
