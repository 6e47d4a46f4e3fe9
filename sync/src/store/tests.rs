//! Tests of the document store.

use automerge::{ActorId, AutoCommit};
use rusqlite::Connection;

use super::schema::SCHEMA_V1;
use super::*;
use crate::docs::{self, DocId};

pub fn db() -> Connection {
    let mut c = Connection::open_in_memory().unwrap();
    let tx = c.transaction().unwrap();
    migrate(&tx).unwrap();
    migrate(&tx).unwrap();
    tx.commit().unwrap();
    c
}

#[test]
fn schema_1_database_upgrades_with_its_changes_in_the_essential_lane() {
    let c = Connection::open_in_memory().unwrap();
    c.execute_batch("CREATE TABLE sync_schema(version INTEGER NOT NULL);")
        .unwrap();
    c.execute_batch(SCHEMA_V1).unwrap();
    c.execute(
        "INSERT INTO changes(doc_id, hash, actor, local, bytes) VALUES ('stats:midan:2026-01-01', x'01', x'02', 1, x'03')",
        [],
    )
    .unwrap();
    c.execute(
        "INSERT INTO peer_cursors(peer, epoch, push_acked) VALUES ('hub', 'e1', 1)",
        [],
    )
    .unwrap();
    migrate(&c).unwrap();
    assert_eq!(max_lane_seq(&c, Lane::Essential).unwrap(), 1);
    assert_eq!(max_lane_seq(&c, Lane::Bulk).unwrap(), 0);
    let cur = peer_cursor(&c, "hub").unwrap();
    assert_eq!((cur.push_acked, cur.bulk_acked), (1, 0));
    assert_eq!(cur.bulk_epoch.as_deref(), Some("e1"));
    assert_eq!(lane_backlog(&c, "hub", Lane::Essential).unwrap(), (0, 0));
    // A newer schema than ours is refused.
    c.execute("INSERT INTO sync_schema(version) VALUES (99)", [])
        .unwrap();
    assert!(matches!(migrate(&c), Err(StoreError::SchemaTooNew { .. })));
}

#[test]
fn local_changes_are_laned_by_document_kind() {
    let c = db();
    let center: crate::model::ids::CenterId = "midan".parse().unwrap();
    let day = jiff::civil::date(2026, 1, 1);
    let mut s = DocStore::new(incarnation(&c, "midan", 0).unwrap(), 4);
    let e = DocId::energy(&center, day);
    s.edit(&c, &e, |d| {
        docs::create_metrics(d, docs::DocKind::Energy, &center, day)
    })
    .unwrap();
    let nc = docs::tests::new_case("midan", 1);
    let id = DocId::case(nc.center.as_ref(), &nc.case_no);
    s.create(&c, &id, |d| docs::create_case(d, &nc)).unwrap();
    let bulk = lane_changes_after(&c, Lane::Bulk, 0, usize::MAX).unwrap();
    let ess = lane_changes_after(&c, Lane::Essential, 0, usize::MAX).unwrap();
    assert_eq!((bulk.len(), ess.len()), (1, 1));
    assert_eq!(bulk[0].1.doc_id, e);
    assert_eq!(ess[0].1.doc_id, id);
    assert_eq!(lane_backlog(&c, "hub", Lane::Bulk).unwrap(), (1, 1));
    assert_eq!(Lane::Bulk.ack_key(b"midan/x"), b"midan/x#bulk".to_vec());
    assert_eq!(Lane::Essential.ack_key(b"midan/x"), b"midan/x".to_vec());
}

#[test]
fn incarnation_is_stable_and_fresh_per_database() {
    let a = db();
    let b = db();
    let x = incarnation(&a, "midan", 1).unwrap();
    assert_eq!(incarnation(&a, "midan", 2).unwrap(), x);
    assert_ne!(incarnation(&b, "midan", 1).unwrap(), x);
    assert!(x.to_bytes().starts_with(b"midan/"));
}

#[test]
fn edit_store_reload_and_remote_apply_dedupes() {
    let a = db();
    let b = db();
    let mut sa = DocStore::new(incarnation(&a, "midan", 0).unwrap(), 4);
    let mut sb = DocStore::new(incarnation(&b, "qanawat", 0).unwrap(), 4);
    let nc = docs::tests::new_case("midan", 1);
    let id = DocId::case(nc.center.as_ref(), &nc.case_no);
    sa.create(&a, &id, |d| docs::create_case(d, &nc)).unwrap();
    assert!(matches!(
        sa.create(&a, &id, |d| docs::create_case(d, &nc)),
        Err(StoreError::Exists(_))
    ));
    let (_, ch) = sa
        .edit(&a, &id, |d| {
            docs::append_case_event(
                d,
                &docs::tests::event(
                    crate::model::case::CaseEventKind::Started,
                    "x",
                    "0000000000009.00000.a",
                ),
            )
        })
        .unwrap();
    assert!(ch.is_some());
    let local = local_changes_after(&a, 0, 1 << 20).unwrap();
    assert_eq!(local.len(), 2);
    let wire: Vec<WireChange> = local.into_iter().map(|(_, w)| w).collect();
    // Reversed order: the second waits for the first, both end up applied.
    let rev: Vec<WireChange> = wire.iter().rev().cloned().collect();
    let r = sb.apply_remote(&b, &rev).unwrap();
    assert_eq!(r.stored.len(), 2);
    assert_eq!(
        r.pending, 0,
        "the first change's dependency came in the same batch"
    );
    // The second alone waits for the first.
    let c = db();
    let mut sc = DocStore::new(incarnation(&c, "c", 0).unwrap(), 4);
    assert_eq!(sc.apply_remote(&c, &rev[..1]).unwrap().pending, 1);
    assert!(sc.heads(&c, &id).unwrap().is_empty());
    assert_eq!(sc.apply_remote(&c, &rev[1..]).unwrap().pending, 0);
    assert_eq!(sc.heads(&c, &id).unwrap(), sa.heads(&a, &id).unwrap());
    let again = sb.apply_remote(&b, &wire).unwrap();
    assert_eq!(again.duplicates, 2);
    assert!(again.stored.is_empty());
    assert_eq!(sa.heads(&a, &id).unwrap(), sb.heads(&b, &id).unwrap());
    let va = sa.read(&a, &id, docs::read_case).unwrap().unwrap().unwrap();
    let vb = sb.read(&b, &id, docs::read_case).unwrap().unwrap().unwrap();
    assert_eq!(va, vb);
    // A fresh store (cold cache) over the same database, after compaction.
    sb.compact(&b, &id).unwrap();
    let mut cold = DocStore::new(incarnation(&b, "qanawat", 0).unwrap(), 1);
    assert_eq!(cold.heads(&b, &id).unwrap(), sa.heads(&a, &id).unwrap());
    // Garbage is rejected, not stored, and does not wedge the rest.
    let junk = WireChange {
        doc_id: id.clone(),
        bytes: vec![1, 2, 3],
    };
    let r = sb.apply_remote(&b, &[junk]).unwrap();
    assert_eq!(r.rejected.len(), 1);
}

#[test]
fn rolled_back_edit_does_not_linger_in_the_cache() {
    let mut c = db();
    let mut s = DocStore::new(incarnation(&c, "midan", 0).unwrap(), 4);
    let id = DocId::stats(&"midan".parse().unwrap(), jiff::civil::date(2026, 1, 1));
    s.edit(&c, &id, |d| {
        docs::create_metrics(
            d,
            docs::DocKind::Stats,
            &"midan".parse().unwrap(),
            jiff::civil::date(2026, 1, 1),
        )?;
        docs::set_metric(d, "tickets", 1)
    })
    .unwrap();
    {
        let tx = c.transaction().unwrap();
        s.edit(&tx, &id, |d| docs::set_metric(d, "tickets", 99))
            .unwrap();
        tx.rollback().unwrap();
    }
    let v = s
        .read(&c, &id, docs::read_metrics)
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(v.metrics["tickets"], 1);
}

#[test]
fn compaction_snapshot_loads_the_same_document() {
    let c = db();
    let center: crate::model::ids::CenterId = "midan".parse().unwrap();
    let day = jiff::civil::date(2026, 1, 1);
    let id = DocId::stats(&center, day);
    let mut s = DocStore::new(incarnation(&c, "midan", 0).unwrap(), 2);
    s.edit(&c, &id, |d| {
        docs::create_metrics(d, docs::DocKind::Stats, &center, day)
    })
    .unwrap();
    for i in 0..20 {
        s.edit(&c, &id, |d| docs::set_metric(d, "tickets", i))
            .unwrap();
    }
    assert_eq!(s.compact_due(&c, 10, 100).unwrap(), 1);
    assert_eq!(s.compact_due(&c, 10, 100).unwrap(), 0);
    s.edit(&c, &id, |d| docs::set_metric(d, "tickets", 100))
        .unwrap();
    let heads = s.heads(&c, &id).unwrap();
    let mut cold = DocStore::new(incarnation(&c, "midan", 0).unwrap(), 2);
    assert_eq!(cold.heads(&c, &id).unwrap(), heads);
    let v = cold
        .read(&c, &id, docs::read_metrics)
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(v.metrics["tickets"], 100);
    // Changes are kept for shipping after compaction.
    assert_eq!(local_changes_after(&c, 0, usize::MAX).unwrap().len(), 22);
}

#[test]
fn an_interleaved_batch_applies_as_change_by_change_does() {
    // Two documents edited in turn, pushed as one batch with one change ahead of its
    // dependency: every change is stored in order, the early one waits, and the
    // heads (in memory, in doc_meta, and after a reload) are the source's.
    let src_actor = ActorId::from(b"midan/1".to_vec());
    let c: crate::model::ids::CenterId = "midan".parse().unwrap();
    let ids = [
        DocId::stats(&c, jiff::civil::date(2026, 1, 1)),
        DocId::stats(&c, jiff::civil::date(2026, 1, 2)),
    ];
    let mut srcs: Vec<AutoCommit> = Vec::new();
    let mut wire: Vec<WireChange> = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let mut d = AutoCommit::new().with_actor(src_actor.clone());
        docs::create_metrics(
            &mut d,
            docs::DocKind::Stats,
            &c,
            jiff::civil::date(2026, 1, 1 + k as i8),
        )
        .unwrap();
        d.commit();
        wire.push(WireChange {
            doc_id: id.clone(),
            bytes: d.get_last_local_change().unwrap().raw_bytes().to_vec(),
        });
        srcs.push(d);
    }
    for round in 0..3 {
        for (k, id) in ids.iter().enumerate() {
            docs::set_metric(&mut srcs[k], "tickets", round).unwrap();
            srcs[k].commit();
            wire.push(WireChange {
                doc_id: id.clone(),
                bytes: srcs[k]
                    .get_last_local_change()
                    .unwrap()
                    .raw_bytes()
                    .to_vec(),
            });
        }
    }
    // The second document's last change first: its dependencies come later.
    let last = wire.pop().unwrap();
    wire.insert(0, last);
    let a = db();
    let mut s = DocStore::new(incarnation(&a, "hub", 0).unwrap(), 1);
    let r = s.apply_remote(&a, &wire).unwrap();
    assert_eq!(r.stored.len(), wire.len());
    // The early change's dependencies arrive later in the same batch.
    assert_eq!(r.pending, 0);
    assert!(r.rejected.is_empty());
    let seqs: Vec<u64> = r.stored.iter().map(|x| x.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "stored in batch order"
    );
    assert_eq!(r.touched, vec![ids[1].clone(), ids[0].clone()]);
    for (k, id) in ids.iter().enumerate() {
        let want = srcs[k].get_heads();
        assert_eq!(s.heads(&a, id).unwrap(), want);
        let meta: Vec<u8> = a
            .query_row(
                "SELECT heads FROM doc_meta WHERE doc_id=?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(decode_heads(&meta).unwrap(), want);
    }
    s.clear_cache();
    for (k, id) in ids.iter().enumerate() {
        assert_eq!(s.heads(&a, id).unwrap(), srcs[k].get_heads());
    }
    // The same batch again: all duplicates, nothing stored.
    let again = s.apply_remote(&a, &wire).unwrap();
    assert_eq!(again.duplicates, wire.len());
    assert!(again.stored.is_empty());
}

#[test]
fn duplicate_actor_seq_batch_does_not_wedge() {
    // Two different changes with the same (actor, seq): an old database restored
    // with its old actor id. The second is refused alone; the rest still applies.
    let a = db();
    let actor = ActorId::from(b"midan/restored".to_vec());
    let id = DocId::stats(&"midan".parse().unwrap(), jiff::civil::date(2026, 1, 1));
    let mk = |v: i64| {
        let mut d = AutoCommit::new().with_actor(actor.clone());
        docs::create_metrics(
            &mut d,
            docs::DocKind::Stats,
            &"midan".parse().unwrap(),
            jiff::civil::date(2026, 1, 1),
        )
        .unwrap();
        docs::set_metric(&mut d, "tickets", v).unwrap();
        d.commit();
        WireChange {
            doc_id: id.clone(),
            bytes: d.get_last_local_change().unwrap().raw_bytes().to_vec(),
        }
    };
    let mut other = AutoCommit::new();
    docs::create_metrics(
        &mut other,
        docs::DocKind::Energy,
        &"midan".parse().unwrap(),
        jiff::civil::date(2026, 1, 1),
    )
    .unwrap();
    other.commit();
    let eid = DocId::energy(&"midan".parse().unwrap(), jiff::civil::date(2026, 1, 1));
    let ok = WireChange {
        doc_id: eid.clone(),
        bytes: other.get_last_local_change().unwrap().raw_bytes().to_vec(),
    };
    let mut s = DocStore::new(incarnation(&a, "hub", 0).unwrap(), 4);
    let r = s.apply_remote(&a, &[mk(1), mk(2), ok]).unwrap();
    assert_eq!(r.stored.len(), 2);
    assert_eq!(r.rejected.len(), 1);
    assert!(s.read(&a, &eid, |_| ()).unwrap().is_some());
}
