//! `markaz hub migrate-store`: move an existing hub from its SQLite file to PostgreSQL,
//! then check the result without trusting the copy.
//!
//! The copy ([`from_sqlite`]) reads the SQLite file in one read transaction (a consistent
//! snapshot; stop the hub first, or what it writes afterwards stays behind) and writes
//! every hub table into an empty PostgreSQL database in ONE transaction: a failure leaves
//! the target as it was. A table is copied column by column, by name, with each value
//! converted to the PostgreSQL column's type (`COPY … BINARY`); identity sequences are
//! moved past the copied ids; `feed_heads` (PostgreSQL only) is computed from the feeds.
//! Tables or columns of the SQLite file that PostgreSQL does not have are named in the
//! report, never silently dropped.
//!
//! The check ([`verify`]) then compares, reading both databases afresh: the heads of
//! every document, rebuilt from its stored changes and snapshot on each side (automerge
//! itself, not the cached `doc_meta` row); the epoch and the epochs known; every
//! center's feed length, pull cursor and acknowledgements; the sessions and the sync log
//! (counts and sums per center); the counters. Any difference fails the command.

use std::collections::BTreeMap;
use std::path::Path;

use markaz_sync::docs::DocId;
use markaz_sync::store::DocStore;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

use super::{PgHub, PgSettings, schema};
use crate::storage::{StorageError, Transactional};

/// The hub tables copied, in an order that satisfies their references.
pub const TABLES: &[&str] = &[
    "changes",
    "snapshots",
    "doc_meta",
    "incarnation",
    "hub_meta",
    "hub_epochs",
    "centers",
    "routes",
    "feed",
    "feed_floors",
    "push_acks",
    "sync_sessions",
    "sync_log",
    "center_status",
    "hub_counters",
    // Operator accounts, their sessions and API tokens, login limits and the audit log
    // (accounts first: the others refer to them).
    "hub_operators",
    "hub_operator_sessions",
    "hub_api_tokens",
    "hub_login_failures",
    "hub_audit",
];

/// SQLite tables that are bookkeeping of the SQLite engine, not hub data.
const SQLITE_ONLY: &[&str] = &["sync_schema", "peer_cursors", "refused_changes"];

/// What was copied and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Rows copied per table.
    pub rows: BTreeMap<String, u64>,
    /// Documents whose heads were rebuilt and compared on both sides.
    pub docs_checked: u64,
    /// Centers whose feed, cursor and acknowledgements were compared.
    pub centers_checked: u64,
    /// Sessions compared.
    pub sessions_checked: u64,
    /// What the SQLite file has that PostgreSQL does not (`table` or `table.column`),
    /// with its row count.
    pub not_copied: Vec<(String, u64)>,
}

fn invalid(msg: impl Into<String>) -> StorageError {
    StorageError::Invalid(msg.into())
}

/// Open the SQLite file read-only after checking it is an intact hub database.
fn open_source(from: &Path) -> Result<Connection, StorageError> {
    let conn = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(invalid(format!("{} is damaged: {check}", from.display())));
    }
    let epoch: Option<String> = conn
        .query_row("SELECT value FROM hub_meta WHERE key='epoch'", [], |r| {
            r.get(0)
        })
        .ok();
    if epoch.is_none() {
        return Err(invalid(format!(
            "{} is not a hub database (no hub epoch in it)",
            from.display()
        )));
    }
    Ok(conn)
}

fn sqlite_tables(c: &Connection) -> Result<Vec<String>, StorageError> {
    let mut st = c.prepare(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'
         ORDER BY name",
    )?;
    let rows = st
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(rows)
}

fn sqlite_columns(c: &Connection, table: &str) -> Result<Vec<String>, StorageError> {
    let mut st = c.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
    let rows = st
        .query_map([table], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(rows)
}

/// (name, type, is identity) of a PostgreSQL table's columns, in order.
fn pg_columns(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
) -> Result<Vec<(String, Type, bool)>, StorageError> {
    let rows = tx.query(
        "SELECT column_name::text, data_type::text, is_identity::text = 'YES'
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        &[&table],
    )?;
    rows.into_iter()
        .map(|r| {
            let name: String = r.get(0);
            let ty = match r.get::<_, String>(1).as_str() {
                "bigint" => Type::INT8,
                "integer" => Type::INT4,
                "smallint" => Type::INT2,
                "boolean" => Type::BOOL,
                "bytea" => Type::BYTEA,
                "text" => Type::TEXT,
                other => {
                    return Err(invalid(format!(
                        "{table}.{name}: no conversion to PostgreSQL type {other}"
                    )));
                }
            };
            Ok((name, ty, r.get(2)))
        })
        .collect()
}

/// One SQLite value as the PostgreSQL column's type.
fn convert(v: Value, ty: &Type, at: &str) -> Result<Box<dyn ToSql + Sync + Send>, StorageError> {
    let bad = |v: &Value| invalid(format!("{at}: {v:?} does not fit {ty}"));
    type Boxed = Box<dyn ToSql + Sync + Send>;
    let int = |i: i64| -> Option<Boxed> {
        if *ty == Type::INT8 {
            Some(Box::new(i))
        } else if *ty == Type::INT4 {
            i32::try_from(i).ok().map(|x| Box::new(x) as Boxed)
        } else if *ty == Type::INT2 {
            i16::try_from(i).ok().map(|x| Box::new(x) as Boxed)
        } else if *ty == Type::BOOL {
            Some(Box::new(i != 0))
        } else if *ty == Type::TEXT {
            Some(Box::new(i.to_string()))
        } else {
            None
        }
    };
    Ok(match v {
        Value::Null if *ty == Type::INT8 => Box::new(None::<i64>),
        Value::Null if *ty == Type::INT4 => Box::new(None::<i32>),
        Value::Null if *ty == Type::INT2 => Box::new(None::<i16>),
        Value::Null if *ty == Type::BOOL => Box::new(None::<bool>),
        Value::Null if *ty == Type::BYTEA => Box::new(None::<Vec<u8>>),
        Value::Null => Box::new(None::<String>),
        Value::Integer(i) => int(i).ok_or_else(|| bad(&v))?,
        Value::Text(s) if *ty == Type::TEXT => Box::new(s),
        Value::Text(s) if *ty == Type::BYTEA => Box::new(s.into_bytes()),
        Value::Blob(b) if *ty == Type::BYTEA => Box::new(b),
        other => return Err(bad(&other)),
    })
}

/// The SELECT expression of a column: its name, or what makes the value valid in
/// PostgreSQL (a sync log row whose session was pruned keeps no dangling reference).
fn source_expr(table: &str, column: &str) -> String {
    match (table, column) {
        ("sync_log", "session_id") => {
            "CASE WHEN session_id IN (SELECT id FROM sync_sessions) THEN session_id END".into()
        }
        _ => format!("\"{column}\""),
    }
}

/// Copy the hub in the SQLite file `from` into the empty PostgreSQL database of `to`,
/// then [`verify`] it. The target must hold no hub data (a new database, or one only
/// migrated); the copy is one transaction.
pub fn from_sqlite(from: &Path, to: &PgSettings) -> Result<MigrateReport, StorageError> {
    let mut src = open_source(from)?;
    let mut client = to.connect()?;
    // No hub process may start on the target meanwhile (they take the same lock).
    client.execute("SELECT pg_advisory_lock($1)", &[&schema::SETUP_LOCK])?;
    schema::migrate(&mut client)?;
    let used: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM changes) + (SELECT count(*) FROM incarnation)
                  + (SELECT count(*) FROM centers) + (SELECT count(*) FROM sync_sessions)",
            &[],
        )?
        .get(0);
    if used > 0 {
        return Err(invalid(format!(
            "the PostgreSQL database {} already holds a hub: migrate into a new, empty database",
            to.url.as_str()
        )));
    }
    let snapshot = src.transaction()?;
    let mut report = MigrateReport::default();
    let mut tx = client.transaction()?;
    // The target's own fresh epoch gives way to the hub's.
    tx.batch_execute("DELETE FROM hub_meta; DELETE FROM hub_epochs;")?;
    let present = sqlite_tables(&snapshot)?;
    for table in TABLES {
        if !present.iter().any(|t| t == table) {
            continue;
        }
        let target = pg_columns(&mut tx, table)?;
        let source = sqlite_columns(&snapshot, table)?;
        let cols: Vec<&(String, Type, bool)> = target
            .iter()
            .filter(|(n, _, _)| source.contains(n))
            .collect();
        for extra in source.iter().filter(|s| !target.iter().any(|t| &t.0 == *s)) {
            let n: i64 = snapshot.query_row(
                &format!("SELECT count(*) FROM \"{table}\" WHERE \"{extra}\" IS NOT NULL"),
                [],
                |r| r.get(0),
            )?;
            report
                .not_copied
                .push((format!("{table}.{extra}"), n as u64));
        }
        let names: Vec<String> = cols.iter().map(|c| format!("\"{}\"", c.0)).collect();
        let types: Vec<Type> = cols.iter().map(|c| c.1.clone()).collect();
        let sink = tx.copy_in(&format!(
            "COPY {table} ({}) FROM STDIN (FORMAT binary)",
            names.join(", ")
        ))?;
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        let exprs: Vec<String> = cols.iter().map(|c| source_expr(table, &c.0)).collect();
        let mut st = snapshot.prepare(&format!("SELECT {} FROM \"{table}\"", exprs.join(", ")))?;
        let mut rows = st.query([])?;
        let mut n = 0u64;
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(cols.len());
            for (i, (name, ty, _)) in cols.iter().enumerate() {
                let v: Value = row.get(i)?;
                values.push(convert(v, ty, &format!("{table}.{name}"))?);
            }
            let refs: Vec<&(dyn ToSql + Sync)> =
                values.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect();
            writer.write(&refs)?;
            n += 1;
        }
        writer.finish()?;
        for (name, _, identity) in &target {
            if *identity {
                tx.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', '{name}'),
                            coalesce((SELECT max(\"{name}\") FROM {table}), 0) + 1, false)"
                    ),
                    &[],
                )?;
            }
        }
        report.rows.insert((*table).to_string(), n);
    }
    for table in present
        .iter()
        .filter(|t| !TABLES.contains(&t.as_str()) && !SQLITE_ONLY.contains(&t.as_str()))
    {
        let n: i64 = snapshot.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
            r.get(0)
        })?;
        report.not_copied.push((table.clone(), n as u64));
    }
    tx.execute(
        "INSERT INTO feed_heads(center, len) SELECT center, max(fseq) FROM feed GROUP BY center",
        &[],
    )?;
    tx.commit()?;
    drop(snapshot);
    client.execute("SELECT pg_advisory_unlock($1)", &[&schema::SETUP_LOCK])?;
    drop(client);
    let checked = verify(from, to)?;
    report.docs_checked = checked.docs_checked;
    report.centers_checked = checked.centers_checked;
    report.sessions_checked = checked.sessions_checked;
    Ok(report)
}

/// `markaz hub migrate-store --from <sqlite file> --to <hub config>`: [`from_sqlite`]
/// into the PostgreSQL database `to` names.
pub fn migrate_store(
    from: &Path,
    to: &markaz_config::HubConfig,
) -> Result<MigrateReport, StorageError> {
    if to.storage.engine != markaz_config::StorageEngine::Postgres {
        return Err(invalid(
            "the target config must say [storage] engine = \"postgres\"",
        ));
    }
    if !from.is_file() {
        return Err(invalid(format!("{} is not a file", from.display())));
    }
    from_sqlite(from, &PgSettings::from_config(&to.storage)?)
}

/// Rows that should be equal on both sides, as text lines, from one query per side.
fn compare_rows(
    what: &str,
    src: &Connection,
    sqlite_sql: &str,
    pg: &mut postgres::Client,
    pg_sql: &str,
    problems: &mut Vec<String>,
) -> Result<u64, StorageError> {
    let mut st = src.prepare(sqlite_sql)?;
    let ncols = st.column_count();
    let left: Vec<String> = st
        .query_map([], |r| {
            let mut parts = Vec::with_capacity(ncols);
            for i in 0..ncols {
                parts.push(match r.get::<_, Value>(i)? {
                    Value::Null => "∅".to_string(),
                    Value::Integer(i) => i.to_string(),
                    Value::Text(t) => t,
                    Value::Blob(b) => hex::encode(b),
                    Value::Real(f) => f.to_string(),
                });
            }
            Ok(parts.join(" "))
        })?
        .collect::<Result<_, _>>()?;
    let right: Vec<String> = pg
        .query(pg_sql, &[])?
        .into_iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<_, Option<String>>(i).unwrap_or_else(|| "∅".into()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    if left != right {
        let first = left
            .iter()
            .zip(&right)
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("SQLite `{a}`, PostgreSQL `{b}`"))
            .unwrap_or_else(|| {
                format!(
                    "{} rows in SQLite, {} in PostgreSQL",
                    left.len(),
                    right.len()
                )
            });
        problems.push(format!("{what}: {first}"));
    }
    Ok(left.len() as u64)
}

/// Check the PostgreSQL database of `to` against the SQLite file `from` (see the module
/// docs); fails with every difference found.
pub fn verify(from: &Path, to: &PgSettings) -> Result<MigrateReport, StorageError> {
    let mut src = open_source(from)?;
    let snapshot = src.transaction()?;
    let mut pg = to.connect()?;
    let mut problems = Vec::new();
    let mut report = MigrateReport::default();

    compare_rows(
        "epoch",
        &snapshot,
        "SELECT value FROM hub_meta WHERE key='epoch'",
        &mut pg,
        "SELECT value FROM hub_meta WHERE key='epoch'",
        &mut problems,
    )?;
    compare_rows(
        "epochs known",
        &snapshot,
        "SELECT epoch FROM hub_epochs ORDER BY epoch",
        &mut pg,
        "SELECT epoch FROM hub_epochs ORDER BY epoch",
        &mut problems,
    )?;
    report.centers_checked = compare_rows(
        "feeds (center, length, entries)",
        &snapshot,
        "SELECT center, max(fseq), count(*) FROM feed GROUP BY center ORDER BY center",
        &mut pg,
        "SELECT f.center::text, h.len::text, count(*)::text FROM feed f
           JOIN feed_heads h ON h.center = f.center
         GROUP BY f.center, h.len ORDER BY f.center",
        &mut problems,
    )?;
    compare_rows(
        "pull cursors",
        &snapshot,
        "SELECT center, cursor FROM center_status ORDER BY center",
        &mut pg,
        "SELECT center::text, cursor::text FROM center_status ORDER BY center",
        &mut problems,
    )?;
    compare_rows(
        "acknowledgements",
        &snapshot,
        "SELECT center, hex(actor), acked FROM push_acks ORDER BY center, hex(actor)",
        &mut pg,
        "SELECT center::text, upper(encode(actor, 'hex')), acked::text FROM push_acks
         ORDER BY center, upper(encode(actor, 'hex'))",
        &mut problems,
    )?;
    report.sessions_checked = compare_rows(
        "sessions",
        &snapshot,
        "SELECT id, center, session, requests, bytes_up, bytes_down, changes_up, changes_down,
                last_result FROM sync_sessions ORDER BY id",
        &mut pg,
        "SELECT id::text, center::text, session, requests::text, bytes_up::text,
                bytes_down::text, changes_up::text, changes_down::text, last_result
         FROM sync_sessions ORDER BY id",
        &mut problems,
    )?;
    compare_rows(
        "sync log (rows, bytes per center)",
        &snapshot,
        "SELECT center, count(*), sum(bytes_up), sum(bytes_down) FROM sync_log
         GROUP BY center ORDER BY center",
        &mut pg,
        "SELECT center::text, count(*)::text, sum(bytes_up)::text, sum(bytes_down)::text
         FROM sync_log GROUP BY center ORDER BY center",
        &mut problems,
    )?;
    compare_rows(
        "counters",
        &snapshot,
        "SELECT name, value FROM hub_counters ORDER BY name",
        &mut pg,
        "SELECT name::text, value::text FROM hub_counters ORDER BY name",
        &mut problems,
    )?;
    compare_rows(
        "routes",
        &snapshot,
        "SELECT count(*) FROM routes",
        &mut pg,
        "SELECT count(*)::text FROM routes",
        &mut problems,
    )?;
    drop(pg);

    // Every document rebuilt from its changes on both sides.
    let ids: Vec<String> = {
        let mut st = snapshot.prepare("SELECT doc_id FROM doc_meta ORDER BY doc_id")?;
        st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    let mut src_docs = DocStore::new(automerge::ActorId::random(), 64);
    let mut hub = PgHub::connect(to, automerge::ActorId::random())?;
    let pg_count: i64 = hub
        .client
        .query_one("SELECT count(*) FROM doc_meta", &[])?
        .get(0);
    if pg_count as usize != ids.len() {
        problems.push(format!(
            "documents: {} in SQLite, {pg_count} in PostgreSQL",
            ids.len()
        ));
    }
    let mut differ = Vec::new();
    for chunk in ids.chunks(256) {
        let parsed: Vec<DocId> = chunk
            .iter()
            .map(|id| {
                id.parse()
                    .map_err(|e| invalid(format!("document id {id}: {e:?}")))
            })
            .collect::<Result<_, _>>()?;
        let mut left = Vec::with_capacity(parsed.len());
        for id in &parsed {
            left.push(src_docs.heads(&*snapshot, id)?);
        }
        // Each chunk in a read-only transaction; nothing is written.
        let right = hub.in_tx(&mut |tables, docs, _| {
            let r: Result<Vec<_>, StorageError> = parsed
                .iter()
                .map(|id| docs.heads(tables, id).map_err(StorageError::from))
                .collect();
            (r, false)
        })??;
        for ((id, l), r) in parsed.iter().zip(&left).zip(&right) {
            let (mut l, mut r) = (l.clone(), r.clone());
            l.sort();
            r.sort();
            if l != r {
                differ.push(id.to_string());
            }
        }
        report.docs_checked += parsed.len() as u64;
        src_docs.clear_cache();
    }
    if !differ.is_empty() {
        problems.push(format!(
            "{} document(s) with other heads in PostgreSQL, first: {}",
            differ.len(),
            differ[..differ.len().min(5)].join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(invalid(format!(
            "the PostgreSQL copy differs from {}: {}",
            from.display(),
            problems.join("; ")
        )))
    }
}
