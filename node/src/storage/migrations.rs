//! Versioned schema migrations, applied in order at start; `PRAGMA user_version` records
//! the last one applied. Migrations only ever get appended.

use rusqlite::Connection;

/// Each entry moves the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5_generator.sql"),
    include_str!("schema_v5_writer.sql"),
    include_str!("schema_v5_citizens.sql"),
    include_str!("schema_v5_numbers.sql"),
    include_str!("schema_v6_desk.sql"),
    include_str!("schema_v6_pgops.sql"),
    include_str!("schema_v6_restore.sql"),
    include_str!("schema_v7_hubdata.sql"),
    include_str!("schema_v7_lan.sql"),
    include_str!("schema_v8_kiosk.sql"),
];

/// The schema version this binary writes.
pub const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn run(conn: &mut Connection) -> Result<(), rusqlite::Error> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let txn = conn.transaction()?;
        txn.execute_batch(sql)?;
        txn.pragma_update(None, "user_version", (i + 1) as i64)?;
        txn.commit()?;
        tracing::info!(version = i + 1, "applied schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database made before v3, whose sync task had created `sync_sessions` itself,
    /// upgrades and keeps its rows.
    #[test]
    fn v3_adopts_a_sync_sessions_table_created_before_it() {
        let mut c = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..2] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 2).unwrap();
        c.execute_batch(
            "CREATE TABLE sync_sessions (id INTEGER PRIMARY KEY, started_at TEXT NOT NULL,
               ended_at TEXT NOT NULL, uplink TEXT NOT NULL, metered INTEGER NOT NULL,
               bytes_up INTEGER NOT NULL, bytes_down INTEGER NOT NULL, docs_up INTEGER NOT NULL,
               changes_up INTEGER NOT NULL, docs_down INTEGER NOT NULL,
               changes_down INTEGER NOT NULL, requests INTEGER NOT NULL, result TEXT NOT NULL,
               skew_ms INTEGER, skipped TEXT NOT NULL);
             INSERT INTO sync_sessions VALUES (1, 'a', 'b', 'primary', 0, 1, 2, 0, 0, 0, 0, 1,
               'ok', NULL, '[]');",
        )
        .unwrap();
        run(&mut c).unwrap();
        let (n, session, waiting): (i64, Option<String>, i64) = c
            .query_row(
                "SELECT count(*), max(session_id), max(bulk_waiting) FROM sync_sessions",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((n, session, waiting), (1, None, 0));
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, LATEST_VERSION);
        c.execute(
            "INSERT INTO modem_usage(day, bytes_up) VALUES ('2026-11-29', 5)",
            [],
        )
        .unwrap();
    }

    /// A v3 database with tickets of two days upgrades with the waiting counts of its
    /// existing rows, and the triggers keep them from then on.
    #[test]
    fn v4_counts_the_waiting_tickets_of_a_v3_database() {
        let mut c = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..3] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 3).unwrap();
        let tickets = [
            ("2026-11-28", "civil", "A001", "waiting"),
            ("2026-11-28", "civil", "A002", "done"),
            ("2026-11-29", "civil", "A001", "waiting"),
            ("2026-11-29", "civil", "A002", "waiting"),
            ("2026-11-29", "civil", "A003", "called"),
            ("2026-11-29", "civil", "A004", "no_show"),
            ("2026-11-29", "passports", "B001", "waiting"),
            ("2026-11-29", "passports", "B002", "done"),
        ];
        for (day, group, number, state) in tickets {
            c.execute(
                "INSERT INTO tickets(day, group_id, original_group, number, priority, state, issued_ms)
                 VALUES (?1, ?2, ?2, ?3, 'normal', ?4, 0)",
                rusqlite::params![day, group, number, state],
            )
            .unwrap();
        }
        run(&mut c).unwrap();
        let counts = |c: &Connection| -> Vec<(String, String, i64)> {
            c.prepare(
                "SELECT day, group_id, waiting FROM ticket_waiting WHERE waiting > 0 ORDER BY 1, 2",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        let row = |d: &str, g: &str, n: i64| (d.to_string(), g.to_string(), n);
        assert_eq!(
            counts(&c),
            vec![
                row("2026-11-28", "civil", 1),
                row("2026-11-29", "civil", 2),
                row("2026-11-29", "passports", 1),
            ]
        );
        // The called A003 goes back to waiting in passports; a waiting one is deleted.
        c.execute(
            &format!("UPDATE tickets SET state = '{waiting}', group_id = 'passports' WHERE number = 'A003'", waiting = crate::domain::queue::TicketState::Waiting.as_str()),
            [],
        )
        .unwrap();
        c.execute(
            "DELETE FROM tickets WHERE day = '2026-11-28' AND number = 'A001'",
            [],
        )
        .unwrap();
        assert_eq!(
            counts(&c),
            vec![
                row("2026-11-29", "civil", 2),
                row("2026-11-29", "passports", 2)
            ]
        );
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
    }

    /// v5: a long SMS keeps its concatenation reference and the parts sent; old rows
    /// start with none.
    #[test]
    fn outbox_rows_gain_a_concatenation_reference_and_parts() {
        let mut c = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..4] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 4).unwrap();
        c.execute(
            "INSERT INTO outbox(kind, recipient, body, created_at) VALUES ('k', '+1', 'b', 'x')",
            [],
        )
        .unwrap();
        run(&mut c).unwrap();
        let (r, parts): (Option<i64>, String) = c
            .query_row("SELECT concat_ref, parts_sent FROM outbox", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((r, parts.as_str()), (None, ""));
    }

    /// A database that numbered cases before numbers were confirmed by the hub keeps its
    /// main series (`legacy`); an empty one starts unconfirmed.
    #[test]
    fn numbers_of_an_older_database_count_as_confirmed() {
        let v5 = MIGRATIONS
            .iter()
            .position(|m| m.contains("numbering.confirmed"))
            .expect("the numbers migration");
        let confirmed = |with_cases: bool| {
            let mut c = Connection::open_in_memory().unwrap();
            for sql in &MIGRATIONS[..v5] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", v5 as i64).unwrap();
            if with_cases {
                c.execute(
                    "INSERT INTO sequences(name, value) VALUES ('case:2026', 12)",
                    [],
                )
                .unwrap();
            }
            run(&mut c).unwrap();
            c.query_row(
                "SELECT value FROM meta WHERE key = 'numbering.confirmed'",
                [],
                |r| r.get::<_, String>(0),
            )
            .ok()
        };
        assert_eq!(confirmed(true).as_deref(), Some("legacy"));
        assert_eq!(confirmed(false), None);
    }
}
