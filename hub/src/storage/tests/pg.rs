//! The storage tests on PostgreSQL (a throwaway cluster per test binary, a fresh database
//! per test; skipped with a printed reason when PostgreSQL is not installed and CI is not
//! set), and what several hub processes on one database need: each test opens the
//! database more than once, as separate processes would (own connections, own document
//! stores), and makes them race.

use std::sync::{Arc, Barrier, mpsc};
use std::time::Duration;

use super::super::pg::{self as engine, PgHub, PgSettings, schema};
use super::super::*;
use super::MemCenter;
use markaz_sync::protocol::contract::{RequestKind, SessionResult};

/// A fresh database on the test cluster, or `None` (skipped).
pub(crate) fn fresh(test: &str) -> Option<PgSettings> {
    let cluster = markaz_e2e::pg::cluster_or_skip(test)?;
    let url = cluster.fresh_db().expect("createdb");
    Some(PgSettings {
        url: url.try_into().expect("url"),
        password: None,
        pool_size: 2,
        tls: engine::PgTls::Off,
    })
}

fn open(test: &str) -> Option<(Box<dyn HubEngine>, ())> {
    let s = fresh(test)?;
    Some((Box::new(PgHub::open(&s).expect("open")), ()))
}

super::engine_tests!(open;
    counters_count_and_status_keeps_the_cursor,
    sync_log_keeps_its_days_and_nothing_new_is_one_row,
    requests_group_by_header_or_by_hello,
    hub_documents_route_to_the_centers_that_need_them,
    operators_sessions_tokens_limits_and_audit,
    oversight_figures_per_day_from_the_case_documents,
);

/// Run `f` on `n` threads at once, each with its own engine ("process") on the database;
/// their results in thread order.
fn race<R: Send + 'static>(
    s: &PgSettings,
    n: usize,
    f: impl Fn(usize, &mut PgHub) -> R + Send + Sync + 'static,
) -> Vec<R> {
    let f = Arc::new(f);
    let start = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (f, start) = (f.clone(), start.clone());
            let mut e = PgHub::open(s).expect("open");
            std::thread::spawn(move || {
                start.wait();
                f(i, &mut e)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect()
}

#[test]
fn two_processes_editing_one_document_lose_nothing() {
    let Some(s) = fresh("two_processes_editing_one_document_lose_nothing") else {
        return;
    };
    let doc = DocId::staff(&"midan".parse().expect("center"), "clerk1").expect("id");
    const EDITS: usize = 25;
    let d = doc.clone();
    race(&s, 3, move |i, e| {
        for k in 0..EDITS {
            e.hub_edit(&d, &mut |doc| {
                automerge::transaction::Transactable::put(
                    doc,
                    automerge::ROOT,
                    format!("p{i}-{k}"),
                    k as i64,
                )
                .map_err(DocError::from)
            })
            .expect("edit");
        }
    });
    // A process that never saw the document builds it from the stored changes.
    let mut fresh = PgHub::open(&s).expect("open");
    let keys = super::root_keys(&mut fresh, &doc);
    assert_eq!(
        keys.len(),
        3 * EDITS,
        "every edit of every process is in the document"
    );
    // And the writers' cached copies agree with it.
    let heads = |e: &mut PgHub| {
        e.in_tx(&mut |t, docs, _| (docs.heads(t, &doc).expect("heads"), true))
            .expect("tx")
    };
    let mut other = PgHub::open(&s).expect("open");
    assert_eq!(heads(&mut fresh), heads(&mut other));
}

#[test]
fn a_center_push_and_a_hub_edit_of_one_case_converge() {
    let Some(s) = fresh("a_center_push_and_a_hub_edit_of_one_case_converge") else {
        return;
    };
    let mut first = PgHub::open(&s).expect("open");
    let mut midan = MemCenter::new("midan");
    let case = midan.new_case(1, "midan");
    midan.sync(&mut first);
    // The center edits and pushes through one process while the hub edits the same case
    // through another, many times over.
    let (tx, rx) = mpsc::channel::<()>();
    let c = case.clone();
    let s2 = s.clone();
    let hub_side = std::thread::spawn(move || {
        let mut e = PgHub::open(&s2).expect("open");
        let mut k = 0;
        while rx.try_recv().is_err() {
            e.hub_edit(&c, &mut |d| {
                automerge::transaction::Transactable::put(
                    d,
                    automerge::ROOT,
                    format!("hub{k}"),
                    k as i64,
                )
                .map_err(DocError::from)
            })
            .expect("hub edit");
            k += 1;
        }
        k
    });
    for k in 0..15 {
        midan
            .docs
            .edit(&midan.conn, &case, |d| {
                automerge::transaction::Transactable::put(
                    d,
                    automerge::ROOT,
                    format!("center{k}"),
                    k as i64,
                )
                .map_err(DocError::from)
            })
            .expect("center edit");
        midan.sync(&mut first);
    }
    tx.send(()).expect("stop");
    let hub_edits = hub_side.join().expect("hub thread");
    midan.sync(&mut first);
    let mut fresh = PgHub::open(&s).expect("open");
    let keys = super::root_keys(&mut fresh, &case);
    for k in 0..15 {
        assert!(
            keys.contains(&format!("center{k}")),
            "center{k} in {keys:?}"
        );
    }
    for k in 0..hub_edits {
        assert!(keys.contains(&format!("hub{k}")), "hub{k} in {keys:?}");
    }
    let at_hub = fresh
        .in_tx(&mut |t, docs, _| (docs.heads(t, &case).expect("heads"), true))
        .expect("tx");
    assert_eq!(midan.heads(&case), at_hub, "the center has every hub edit");
}

#[test]
fn a_pull_never_skips_a_feed_position_committed_late() {
    let Some(s) = fresh("a_pull_never_skips_a_feed_position_committed_late") else {
        return;
    };
    let mut a = PgHub::open(&s).expect("open");
    let mut b = PgHub::open(&s).expect("open");
    let midan: CenterId = "midan".parse().expect("center");
    // Some stored change to point the entries at.
    let change = a
        .hub_edit(&DocId::catalog(), &mut |d| {
            automerge::transaction::Transactable::put(d, automerge::ROOT, "x", 1)
                .map_err(DocError::from)
        })
        .expect("edit")
        .expect("a change")
        .seq;
    let entry = feed_entry(&midan, change);
    let len_before = a
        .in_tx(&mut |t, _, _| (t.feed_len(&midan).expect("len"), true))
        .expect("tx");

    // Process A appends to midan's feed and holds its transaction open.
    let (appended_tx, appended) = mpsc::channel();
    let e = entry.clone();
    let holder = std::thread::spawn(move || {
        a.in_tx(&mut |t, _, _| {
            t.append_feed(std::slice::from_ref(&e)).expect("append");
            appended_tx.send(()).expect("signal");
            std::thread::sleep(Duration::from_millis(700));
            ((), true)
        })
        .expect("tx a");
    });
    appended.recv().expect("A appended");
    // Process B appends and commits meanwhile, then midan pulls from B.
    b.in_tx(&mut |t, _, _| {
        t.append_feed(std::slice::from_ref(&entry)).expect("append");
        ((), true)
    })
    .expect("tx b");
    let mut cursor = len_before;
    let mut seen = Vec::new();
    let pull = |b: &mut PgHub, cursor: &mut u64, seen: &mut Vec<u64>| {
        let rows = b
            .in_tx(&mut |t, _, _| (t.feed_after(&midan, *cursor, 100).expect("feed"), true))
            .expect("tx");
        for r in rows {
            seen.push(r.fseq);
            *cursor = r.fseq;
        }
    };
    pull(&mut b, &mut cursor, &mut seen);
    holder.join().expect("holder");
    pull(&mut b, &mut cursor, &mut seen);
    assert_eq!(
        seen,
        vec![len_before + 1, len_before + 2],
        "the pull saw every position, in order"
    );
}

fn feed_entry(center: &CenterId, change_seq: u64) -> markaz_sync::protocol::FeedEntry {
    markaz_sync::protocol::FeedEntry {
        center: center.to_string(),
        change_seq,
        snapshot_doc: None,
    }
}

#[test]
fn counters_never_repeat_across_processes() {
    let Some(s) = fresh("counters_never_repeat_across_processes") else {
        return;
    };
    let got = race(&s, 3, |_, e| {
        (0..30)
            .map(|_| e.next_counter("web-2026").expect("counter"))
            .collect::<Vec<_>>()
    });
    let mut all: Vec<u32> = got.into_iter().flatten().collect();
    all.sort();
    assert_eq!(all, (1..=90).collect::<Vec<u32>>());
}

#[test]
fn one_session_is_one_row_whichever_process_logs_it() {
    let Some(s) = fresh("one_session_is_one_row_whichever_process_logs_it") else {
        return;
    };
    const EACH: usize = 20;
    race(&s, 3, |i, e| {
        for k in 0..EACH {
            let entry = SyncLogEntry {
                center: "midan".into(),
                session: Some("1b4e28ba-2fa1-41d2-883f-0016d3cca427".into()),
                uplink: if i == 0 { "primary" } else { "modem" }.into(),
                kind: if k == 0 {
                    RequestKind::Hello
                } else {
                    RequestKind::Push
                },
                started_ms: (k * 10) as i64,
                ended_ms: (k * 10 + 5) as i64,
                bytes_up: 1,
                result: SessionResult::Ok,
                ..SyncLogEntry::default()
            };
            e.record_sync(&entry).expect("record");
        }
    });
    let mut e = PgHub::open(&s).expect("open");
    let sessions = e.sessions(Some("midan"), 0, 10).expect("sessions");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].requests, (3 * EACH) as i64);
    assert_eq!(sessions[0].bytes_up, (3 * EACH) as i64);
    assert_eq!(
        e.sync_log(Some("midan"), None, 1000).expect("log").len(),
        3 * EACH
    );
}

#[test]
fn processes_starting_together_migrate_and_seed_once() {
    let Some(s) = fresh("processes_starting_together_migrate_and_seed_once") else {
        return;
    };
    let start = Arc::new(Barrier::new(4));
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let (s, start) = (s.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                engine::open_pool(&s).map(|p| p.len())
            })
        })
        .collect();
    for t in opened {
        assert_eq!(t.join().expect("thread").expect("open"), 2);
    }
    let mut e = PgHub::open(&s).expect("open");
    let catalog_changes = e
        .in_tx(&mut |t, _, _| {
            (
                t.history(&DocId::catalog(), &"nobody".parse().expect("c")),
                true,
            )
        })
        .expect("tx")
        .expect("history");
    assert_eq!(catalog_changes.len(), 1, "the catalog was seeded once");
}

#[test]
fn a_schema_newer_than_the_program_is_refused_untouched() {
    let Some(s) = fresh("a_schema_newer_than_the_program_is_refused_untouched") else {
        return;
    };
    drop(PgHub::open(&s).expect("open"));
    let cluster = markaz_e2e::pg::cluster_or_skip("schema").expect("cluster");
    let db = s.url.dbname();
    let newer = schema::schema_version() + 1;
    cluster
        .psql(
            db,
            &format!("INSERT INTO hub_schema(version) VALUES ({newer})"),
        )
        .expect("bump");
    let snapshot = |c: &markaz_e2e::pg::PgCluster| {
        c.psql(
            db,
            "SELECT (SELECT count(*) FROM hub_schema), (SELECT count(*) FROM incarnation),
                    (SELECT count(*) FROM changes), (SELECT value FROM hub_meta)",
        )
        .expect("snapshot")
    };
    let before = snapshot(cluster);
    match PgHub::open(&s) {
        Err(StorageError::SchemaTooNew { found, ours }) => {
            assert_eq!((found, ours), (newer, schema::schema_version()));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert_eq!(snapshot(cluster), before, "the database is untouched");
}

#[test]
fn a_lost_connection_is_opened_again() {
    let Some(s) = fresh("a_lost_connection_is_opened_again") else {
        return;
    };
    let mut e = PgHub::open(&s).expect("open");
    assert_eq!(e.next_counter("c").expect("counter"), 1);
    let cluster = markaz_e2e::pg::cluster_or_skip("reconnect").expect("cluster");
    cluster
        .psql(
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname='{}' AND pid <> pg_backend_pid()",
                s.url.dbname()
            ),
        )
        .expect("terminate");
    // The request that finds the connection dead fails (the center retries); the next
    // one reconnects.
    let mut got = None;
    for _ in 0..3 {
        if let Ok(v) = e.next_counter("c") {
            got = Some(v);
            break;
        }
    }
    assert_eq!(got, Some(2));
}
