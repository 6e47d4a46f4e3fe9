//! Tests of the storage interface. Each body takes an engine, so the same test runs on
//! every engine (see the `engine_tests!` lists).

use super::*;

fn req(kind: &str, session: Option<&str>, uplink: &str, t: i64, up: i64) -> SyncLogEntry {
    SyncLogEntry {
        center: "midan".into(),
        session: session.map(str::to_string),
        uplink: uplink.into(),
        kind: kind.into(),
        started_ms: t,
        ended_ms: t + 10,
        bytes_up: up,
        bytes_down: 2 * up,
        changes_up: 1,
        result: "ok".into(),
        ..SyncLogEntry::default()
    }
}

/// Record a request; the id of the session it joined.
fn record(e: &mut dyn HubEngine, entry: &SyncLogEntry) -> Result<i64, StorageError> {
    e.record_sync(entry)?;
    let row = e.sync_log(Some(&entry.center), None, 1)?;
    Ok(row[0].session_id.expect("a session"))
}

fn list(
    e: &mut dyn HubEngine,
    center: Option<&str>,
    now_ms: i64,
    limit: u32,
) -> Result<Vec<crate::sessions::SyncSession>, StorageError> {
    e.sessions(center, now_ms, limit)
}

pub(crate) fn counters_count_and_status_keeps_the_cursor(e: &mut dyn HubEngine) {
    let a = e.next_counter("web-2026").expect("a");
    let b = e.next_counter("web-2026").expect("b");
    assert_eq!((a, b), (1, 2));
    let entry = SyncLogEntry {
        center: "midan".into(),
        uplink: "primary".into(),
        kind: "pull".into(),
        result: "ok".into(),
        cursor: Some(7),
        ..SyncLogEntry::default()
    };
    e.record_sync(&entry).expect("record");
    let facts = e.center_facts().expect("facts");
    let midan = facts.iter().find(|f| f.center == "midan").expect("midan");
    assert_eq!(midan.cursor, 7);
}

pub(crate) fn requests_group_by_header_or_by_hello(e: &mut dyn HubEngine) {
    let c = e;
    let a = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
    let b = "9f0c2a4e-7d1b-4c3e-a5f6-112233445566";
    let s1 = record(c, &req("hello", Some(a), "primary", 0, 10)).unwrap();
    assert_eq!(
        record(c, &req("push", Some(a), "modem", 20, 100)).unwrap(),
        s1
    );
    let s2 = record(c, &req("hello", Some(b), "modem", 40, 10)).unwrap();
    assert_ne!(s1, s2);
    // Without the header: each Hello opens a session, the rest join the latest.
    let f1 = record(c, &req("hello", None, "primary", 60, 5)).unwrap();
    assert_eq!(record(c, &req("pull", None, "primary", 70, 5)).unwrap(), f1);
    let f2 = record(c, &req("hello", None, "primary", 80, 5)).unwrap();
    assert_ne!(f1, f2);
    let mut failing = req("pull", None, "primary", 90, 5);
    failing.result = "error".into();
    failing.error = Some("hub_error: commit failed".into());
    assert_eq!(record(c, &failing).unwrap(), f2);

    let rows = list(c, Some("midan"), 100, 50).unwrap();
    assert_eq!(rows.len(), 4);
    let by_id = |id| rows.iter().find(|r| r.id == id).unwrap();
    let first = by_id(s1);
    assert_eq!(first.uplink, "primary→modem");
    assert_eq!(
        (first.requests, first.bytes_up, first.bytes_down),
        (2, 110, 220)
    );
    assert_eq!(first.changes_up, 2);
    assert_eq!((first.started_ms, first.last_ms), (0, 30));
    assert_eq!(first.result, "ok", "a newer session ended it");
    let last = by_id(f2);
    assert_eq!(last.result, "error");
    assert_eq!(last.error.as_deref(), Some("hub_error: commit failed"));
    assert_eq!(last.errors, 1);
    // A retry that succeeds inside the same session reopens it.
    record(c, &req("pull", None, "primary", 95, 5)).unwrap();
    let rows = list(c, Some("midan"), 200, 1).unwrap();
    assert_eq!(
        (rows[0].id, rows[0].result.as_str(), rows[0].ended_ms),
        (f2, "open", None)
    );
    assert!(list(c, Some("qanawat"), 0, 10).unwrap().is_empty());
    // A last pull that caught the center up ends the session at once.
    let mut last_pull = req("pull", None, "primary", 96, 5);
    last_pull.ends_session = true;
    record(c, &last_pull).unwrap();
    let rows = list(c, Some("midan"), 200, 1).unwrap();
    assert_eq!(
        (rows[0].result.as_str(), rows[0].ended_ms),
        ("ok", Some(106))
    );
}

/// One `#[test]` per body for an engine made by `$open` (a function giving a boxed
/// engine and whatever must live as long as it).
macro_rules! engine_tests {
    ($open:path; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (mut e, _keep) = $open();
                super::$name(&mut *e);
            }
        )*
    };
}
pub(crate) use engine_tests;

mod sqlite {
    fn open() -> (Box<dyn super::HubEngine>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = super::HubDb::open(dir.path()).expect("open");
        (Box::new(db), dir)
    }

    super::engine_tests!(open;
        counters_count_and_status_keeps_the_cursor,
        requests_group_by_header_or_by_hello,
    );
}
