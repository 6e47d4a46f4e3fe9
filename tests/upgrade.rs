//! Upgrading a center: a database written by the previous release
//! (`tests/fixtures/node-05e8209.db`, schema version 4) is opened by this build's
//! `markaz node`, which migrates it; every row of every table of the old file is still
//! there afterwards, and the center's cases answer through the API.
//!
//! The fixture was made by that release's own binary — commit 05e8209 (main of
//! 2026-12-03 08:30, schema v4) built in a scratch worktree — driven by the example
//! `tests/examples/write_upgrade_fixture.rs`:
//!
//! ```text
//! git worktree add --detach /tmp/old 05e8209
//! (cd /tmp/old && cargo build -p markaz --bin markaz)
//! MARKAZ_E2E_BIN=/tmp/old/target/debug/markaz \
//!   cargo run -p markaz-e2e --example write_upgrade_fixture -- tests/fixtures/node-05e8209.db
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use markaz_e2e::{ADMIN_PASSWORD, Api};
use rusqlite::types::Value;
use serde_json::json;

const FIXTURE: &str = "tests/fixtures/node-05e8209.db";
/// The schema version of the fixture.
const FIXTURE_VERSION: i64 = 4;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)
}

/// This build's schema version: the number of migrations in its list.
fn latest_version() -> i64 {
    include_str!("../node/src/storage/migrations.rs")
        .split("pub const MIGRATIONS")
        .nth(1)
        .and_then(|rest| rest.split("];").next())
        .map(|list| list.matches("include_str!(").count() as i64)
        .expect("the MIGRATIONS list")
}

/// A `markaz node` process on `data`, with a config every release since v4 accepts.
struct Node {
    child: tokio::process::Child,
    base: String,
    log: PathBuf,
}

impl Node {
    async fn start(dir: &Path) -> Result<Self> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let config = dir.join("node.toml");
        std::fs::write(
            &config,
            format!(
                "[center]\nid = \"midan\"\nname_ar = \"مركز الميدان\"\nname_en = \"Midan\"\n\
                 receipt_prefix = \"MID\"\n[server]\nlisten = \"127.0.0.1:0\"\n\
                 [storage]\ndata_dir = \"{}\"\n[auth]\ninitial_admin_password = \"{ADMIN_PASSWORD}\"\n",
                data.display()
            ),
        )?;
        let log = dir.join("node.log");
        let out = std::fs::File::create(&log)?;
        let _ = std::fs::remove_file(data.join("listen.addr"));
        let child = tokio::process::Command::new(markaz_e2e::markaz_bin()?)
            .args(["node", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()?;
        let mut node = Self {
            child,
            base: String::new(),
            log,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(a) = std::fs::read_to_string(data.join("listen.addr"))
                && !a.trim().is_empty()
            {
                node.base = format!("http://{}", a.trim());
                if reqwest::get(format!("{}/healthz", node.base))
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    return Ok(node);
                }
            }
            if let Some(status) = node.child.try_wait()? {
                bail!("the node exited with {status}:\n{}", node.log());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the node did not serve:\n{}", node.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn stop(mut self) -> Result<()> {
        let pid = self.child.id().context("no pid")? as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await??;
        ensure!(status.success(), "{status}:\n{}", self.log());
        Ok(())
    }
}

/// Every table of `db`: its columns and its rows (in rowid order), by table name.
type Tables = BTreeMap<String, (Vec<String>, Vec<Vec<Value>>)>;

fn read_tables(db: &Path) -> Result<Tables> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut tables = Tables::new();
    for name in names {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{name}\""))?;
        let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let n = columns.len();
        let rows = stmt
            .query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())?
            .collect::<Result<Vec<Vec<Value>>, _>>()?;
        tables.insert(name, (columns, rows));
    }
    Ok(tables)
}

fn user_version(db: &Path) -> Result<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Rows the node itself rewrites at start or while it runs, and why; every other row of
/// the old file must come back unchanged.
const REWRITTEN: &[(&str, &str)] = &[
    (
        "writer_probe",
        "the storage writer's one-row liveness probe: its time is rewritten by every probe",
    ),
    (
        "sessions",
        "login sessions: the node drops idle and expired ones (the fixture's are hours old), \
         and an upgrade may end them; nobody holds them on paper",
    ),
];

/// Single rows (table, first column's value) the node rewrites, and why.
const REWRITTEN_ROWS: &[(&str, &str, &str)] = &[
    (
        "meta",
        "hlc",
        "the hybrid logical clock's last stamp: it moves forward with every change",
    ),
    (
        "meta",
        "daily_docs.stats_final_through",
        "the last day whose statistics are final: it moves forward to yesterday every day \
         the node runs (checked below: never backwards)",
    ),
    (
        "meta",
        "daily_docs.energy_final_through",
        "the last day whose energy figures are final: it moves forward like the statistics \
         mark (checked below: never backwards)",
    ),
    (
        "sequences",
        "case:2026",
        "the case this test opens after the upgrade takes the next number (checked above: \
         it is none of the old ones)",
    ),
];

fn rewritten_row(table: &str, row: &[Value]) -> bool {
    REWRITTEN_ROWS
        .iter()
        .any(|(t, key, _)| *t == table && row.first() == Some(&Value::Text((*key).to_string())))
}

#[tokio::test]
async fn a_database_of_the_previous_release_upgrades_with_every_row() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("data").join("markaz-node.db");
    std::fs::create_dir_all(db.parent().unwrap())?;
    std::fs::copy(fixture(), &db).context("copying the fixture")?;
    assert_eq!(user_version(&db)?, FIXTURE_VERSION);
    let before = read_tables(&db)?;
    let cases = &before.get("cases").context("a cases table")?.1;
    assert!(cases.len() >= 5, "the fixture holds cases: {}", cases.len());

    let node = Node::start(dir.path()).await?;
    // The old data answers through the new API: the admin of the old file logs in, and
    // each old case is found with its status.
    let api = Api::login(&node.base, "admin", ADMIN_PASSWORD).await?;
    let (cols, rows) = &before["cases"];
    let no = cols
        .iter()
        .position(|c| c == "case_no")
        .context("case_no")?;
    let status = cols.iter().position(|c| c == "status").context("status")?;
    for row in rows {
        let (Value::Text(case_no), Value::Text(old_status)) = (&row[no], &row[status]) else {
            bail!("a case row without case_no/status: {row:?}");
        };
        let (s, c) = api.get(&format!("/cases/{case_no}")).await?;
        ensure!(s == 200, "GET /cases/{case_no} after the upgrade: {s} {c}");
        let shown = c["status"].as_str().or(c["case"]["status"].as_str());
        ensure!(
            shown == Some(old_status.as_str()),
            "{case_no}: {old_status} became {c}"
        );
    }
    // And the upgraded center goes on working: the clerk of the old file logs in with
    // their old password, and a new case for an old citizen gets a new number.
    let clerk = Api::login(&node.base, "clerk1", "clerk1-password").await?;
    let (s, c) = clerk
        .post(
            "/cases",
            json!({"national_id": "01000000100", "service": "criminal_record"}),
        )
        .await?;
    ensure!(s == 201, "a new case after the upgrade: {s} {c}");
    let new_no = c["case_no"].as_str().context("case_no")?.to_string();
    ensure!(
        rows.iter().all(|r| r[no] != Value::Text(new_no.clone())),
        "the new case reuses the number {new_no}"
    );
    node.stop().await?;

    assert_eq!(user_version(&db)?, latest_version(), "every migration ran");
    let after = read_tables(&db)?;
    let mut checked = 0usize;
    for (table, (cols, rows)) in &before {
        if REWRITTEN.iter().any(|(t, _)| t == table) {
            continue;
        }
        let (new_cols, new_rows) = after
            .get(table)
            .with_context(|| format!("table {table} is gone after the upgrade"))?;
        // The old columns, by name, in the new table (migrations may add columns).
        let idx: Vec<usize> = cols
            .iter()
            .map(|c| {
                new_cols
                    .iter()
                    .position(|n| n == c)
                    .with_context(|| format!("column {table}.{c} is gone after the upgrade"))
            })
            .collect::<Result<_>>()?;
        let mut remaining: Vec<Vec<Value>> = new_rows
            .iter()
            .map(|r| idx.iter().map(|&i| r[i].clone()).collect())
            .collect();
        for row in rows {
            if rewritten_row(table, row) {
                checked += 1;
                continue;
            }
            let Some(at) = remaining.iter().position(|r| r == row) else {
                bail!("a row of {table} changed or vanished in the upgrade: {cols:?} = {row:?}");
            };
            remaining.swap_remove(at);
            checked += 1;
        }
    }
    // The day marks move forward with the calendar, never back.
    for key in [
        "daily_docs.stats_final_through",
        "daily_docs.energy_final_through",
    ] {
        let mark = |tables: &Tables| -> Option<String> {
            let (_, rows) = tables.get("meta")?;
            rows.iter().find_map(|r| match (r.first(), r.get(1)) {
                (Some(Value::Text(k)), Some(Value::Text(v))) if k == key => Some(v.clone()),
                _ => None,
            })
        };
        if let Some(old) = mark(&before) {
            let new = mark(&after).with_context(|| format!("meta {key} is gone"))?;
            ensure!(new >= old, "meta {key} went back from {old} to {new}");
        }
    }
    let total: usize = before
        .iter()
        .filter(|(t, _)| !REWRITTEN.iter().any(|(r, _)| r == *t))
        .map(|(_, (_, rows))| rows.len())
        .sum();
    assert_eq!(checked, total);
    assert!(checked > 100, "only {checked} rows checked");
    Ok(())
}
