//! In-process hub and centers over an in-memory transport (no HTTP): convergence,
//! partial replication, authority, cut transfers, hub restore, node replacement, and the
//! delivered-vs-cancelled conflict.

use std::collections::BTreeMap;
use std::path::PathBuf;

use automerge::ChangeHash;
use proptest::prelude::*;
use rusqlite::Connection;

use super::*;
use crate::docs::{self, DocId, DocKind, NewCase};
use crate::hlc::HlcClock;
use crate::model::case::{CaseEvent, CaseEventKind, CaseStatus, Delivery};
use crate::model::citizen::CitizenInput;
use crate::model::ids::{CaseNo, CenterId};
use crate::model::staff::{Role, StaffMember};
use crate::protocol::client::HUB_PEER;
use crate::store::{self, DocStore, StoredChange};

const NOW: u64 = 1_764_400_000_000;

struct Hub {
    conn: Connection,
    docs: DocStore,
    clock: HlcClock,
    path: PathBuf,
}

impl Hub {
    fn open(path: PathBuf) -> Hub {
        let conn = Connection::open(&path).unwrap();
        store::migrate(&conn).unwrap();
        migrate_hub(&conn).unwrap();
        let actor = store::incarnation(&conn, "hub", 0).unwrap();
        // As the hub process does at each start.
        super::restore::start_feeds(&conn, start_ms()).unwrap();
        Hub {
            conn,
            docs: DocStore::new(actor, 16),
            clock: HlcClock::new("hub"),
            path,
        }
    }

    fn handle(&mut self, center: &CenterId, body: &[u8]) -> Vec<u8> {
        let tx = self.conn.transaction().unwrap();
        let (resp, log) = {
            let mut h = SqliteHub::new(&tx, &mut self.docs);
            handle_request(&mut h, center, &mut self.clock, NOW, body)
        };
        if log.error.is_none() {
            tx.commit().unwrap();
        }
        resp
    }

    /// A hub-side edit (catalog, staff, portal case), routed like any change.
    fn edit(
        &mut self,
        id: &DocId,
        f: impl FnOnce(&mut automerge::AutoCommit) -> Result<(), docs::DocError>,
    ) {
        let tx = self.conn.transaction().unwrap();
        let (_, stored) = self.docs.edit(&tx, id, f).unwrap();
        let stored: Vec<StoredChange> = stored.into_iter().collect();
        SqliteHub::new(&tx, &mut self.docs)
            .route_stored(&stored, None)
            .unwrap();
        tx.commit().unwrap();
    }

    fn heads(&mut self, id: &DocId) -> Vec<ChangeHash> {
        self.docs.heads(&self.conn, id).unwrap()
    }
}

struct Node {
    center: CenterId,
    conn: Connection,
    docs: DocStore,
    clock: HlcClock,
    last_error: Option<String>,
}

impl Node {
    fn new(center: &str) -> Node {
        let conn = Connection::open_in_memory().unwrap();
        store::migrate(&conn).unwrap();
        let actor = store::incarnation(&conn, center, 0).unwrap();
        Node {
            center: center.parse().unwrap(),
            conn,
            docs: DocStore::new(actor, 8),
            clock: HlcClock::new(center),
            last_error: None,
        }
    }

    fn edit(
        &mut self,
        id: &DocId,
        f: impl FnOnce(&mut automerge::AutoCommit) -> Result<(), docs::DocError>,
    ) {
        self.docs.edit(&self.conn, id, f).unwrap();
    }

    fn doc_ids(&self) -> Vec<DocId> {
        let mut stmt = self
            .conn
            .prepare("SELECT doc_id FROM doc_meta ORDER BY doc_id")
            .unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|s| s.unwrap().parse().unwrap())
            .collect()
    }

    fn heads(&mut self, id: &DocId) -> Vec<ChangeHash> {
        self.docs.heads(&self.conn, id).unwrap()
    }

    fn case(&mut self, id: &DocId) -> docs::CaseView {
        self.docs
            .read(&self.conn, id, docs::read_case)
            .unwrap()
            .unwrap()
            .unwrap()
    }

    fn local_change_count(&self) -> usize {
        self.conn
            .query_row("SELECT count(*) FROM changes WHERE local=1", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap() as usize
    }

    /// One session; `cut(i, bytes)` may truncate the i-th message of the session (either
    /// direction) to simulate a broken transfer.
    fn sync_with(
        &mut self,
        hub: &mut Hub,
        limits: Limits,
        cut: &mut dyn FnMut(usize, &[u8]) -> Option<usize>,
    ) -> SessionReport {
        self.sync_relayed(hub, limits, &mut |i, bytes| match cut(i, &bytes) {
            Some(n) => bytes[..n].to_vec(),
            None => bytes,
        })
    }

    /// One session whose messages (either direction, numbered from 1) pass through
    /// `relay`, which may rewrite them.
    fn sync_relayed(
        &mut self,
        hub: &mut Hub,
        limits: Limits,
        relay: &mut dyn FnMut(usize, Vec<u8>) -> Vec<u8>,
    ) -> SessionReport {
        let clock = std::mem::replace(&mut self.clock, HlcClock::new("x"));
        let mut s = ClientSession::new(
            self.center.clone(),
            self.docs.actor().clone(),
            clock,
            limits,
        );
        let mut i = 0;
        let mut failures = 0;
        while let Some(req) = s.next_request(&self.conn, &mut self.docs, NOW).unwrap() {
            i += 1;
            let req = relay(i, req);
            let resp = hub.handle(&self.center, &req);
            i += 1;
            let resp = relay(i, resp);
            let tx = self.conn.transaction().unwrap();
            match s.handle_response(&tx, &mut self.docs, &resp, NOW) {
                Ok(()) => {
                    tx.commit().unwrap();
                    // The rest of a pulled batch, a transaction per part, as a node does.
                    while s.merging() {
                        let tx = self.conn.transaction().unwrap();
                        s.merge_more(&tx, &mut self.docs).unwrap();
                        tx.commit().unwrap();
                    }
                }
                Err(e) if e.is_retryable() => {
                    drop(tx);
                    failures += 1;
                    assert!(failures < 1000, "endless retries");
                }
                Err(e) => {
                    self.last_error = Some(e.to_string());
                    break;
                }
            }
            assert!(i < 100_000, "session does not end");
        }
        let report = s.report().clone();
        self.clock = s.into_clock();
        report
    }

    fn sync(&mut self, hub: &mut Hub) -> SessionReport {
        let r = self.try_sync(hub);
        if let Some(e) = &self.last_error {
            panic!("sync failed: {e}");
        }
        r
    }

    fn try_sync(&mut self, hub: &mut Hub) -> SessionReport {
        self.last_error = None;
        self.sync_with(hub, Limits::default(), &mut |_, _| None)
    }

    /// One session over a metered uplink: bulk documents wait.
    fn sync_metered(&mut self, hub: &mut Hub) -> SessionReport {
        self.last_error = None;
        let r = self.sync_with(hub, METERED, &mut |_, _| None);
        if let Some(e) = &self.last_error {
            panic!("sync failed: {e}");
        }
        r
    }

    /// Set a metric in this center's energy (`Energy`) or statistics document of `day`.
    fn metric(&mut self, kind: DocKind, day: i8, name: &str, value: i64) -> DocId {
        let center = self.center.clone();
        let date = jiff::civil::date(2026, 3, day);
        let id = match kind {
            DocKind::Energy => DocId::energy(&center, date),
            _ => DocId::stats(&center, date),
        };
        self.edit(&id, |d| {
            docs::create_metrics(d, kind, &center, date)?;
            docs::set_metric(d, name, value)
        });
        id
    }

    fn lane_count(&self, lane: store::Lane) -> usize {
        self.conn
            .query_row(
                "SELECT count(*) FROM changes WHERE local=1 AND lane=?1",
                [lane.as_i64()],
                |r| r.get::<_, i64>(0),
            )
            .unwrap() as usize
    }
}

const METERED: Limits = Limits {
    push_bytes: 256 * 1024,
    pull_bytes: 256 * 1024,
    repair_docs: 64,
    repair_buckets: 16,
    repair_rounds: 8,
    // Small parts: the metered tests also merge their pulls in parts.
    merge_bytes: 2_000,
    push_bulk: false,
};

fn ev(kind: CaseEventKind, actor: &str, hlc: &str) -> CaseEvent {
    docs::tests::event(kind, actor, hlc)
}

fn new_case(center: &CenterId, prefix: &str, seq: u32, nid: &str) -> (DocId, NewCase) {
    let no = CaseNo::new(prefix, 2026, seq).unwrap();
    let c = NewCase {
        case_no: no.clone(),
        center: Some(center.clone()),
        service: "criminal_record".into(),
        citizen: nid.parse().unwrap(),
        delivery: Delivery::Pickup {
            center: center.clone(),
        },
        fields: BTreeMap::new(),
        fee: None,
        created: ev(CaseEventKind::Created, "clerk", "0000000000001.00000.a"),
    };
    (DocId::case(Some(center), &no), c)
}

fn hub_in(dir: &tempfile::TempDir) -> Hub {
    let mut hub = Hub::open(dir.path().join("hub.db"));
    let cat = DocId::catalog();
    hub.edit(&cat, |d| {
        for s in crate::model::catalog::default_catalog().iter().take(3) {
            docs::write_service(d, s)?;
        }
        Ok(())
    });
    for c in ["midan", "qanawat", "mazzeh"] {
        let center: CenterId = c.parse().unwrap();
        let id = DocId::staff(&center, "clerk1").unwrap();
        hub.edit(&id, |d| {
            docs::write_staff(
                d,
                &center,
                &StaffMember {
                    username: "clerk1".into(),
                    full_name: format!("clerk of {c}"),
                    roles: vec![Role::Clerk],
                    permissions: vec![],
                    active: true,
                },
            )
        });
    }
    hub
}

fn citizen(nid: &str, name: &str) -> CitizenInput {
    CitizenInput {
        national_id: nid.into(),
        full_name: name.into(),
        ..Default::default()
    }
}

/// Every document a node holds has the hub's heads.
fn assert_converged(node: &mut Node, hub: &mut Hub) {
    for id in node.doc_ids() {
        assert_eq!(node.heads(&id), hub.heads(&id), "{} at {}", id, node.center);
    }
}

fn cases_of_others(node: &Node) -> Vec<DocId> {
    node.doc_ids()
        .into_iter()
        .filter(|d| d.kind() == DocKind::Case && d.owner_center().as_ref() != Some(&node.center))
        .collect()
}

#[test]
fn three_centers_work_offline_then_converge() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut nodes: Vec<Node> = ["midan", "qanawat", "mazzeh"]
        .into_iter()
        .map(Node::new)
        .collect();
    let nid = "01020304050";
    for (i, n) in nodes.iter_mut().enumerate() {
        let center = n.center.clone();
        for k in 1..=3 {
            let (id, c) = new_case(&center, ["MID", "QAN", "MAZ"][i], k, nid);
            n.edit(&id, |d| docs::create_case(d, &c));
            n.edit(&id, |d| {
                docs::append_case_event(
                    d,
                    &ev(CaseEventKind::Started, "clerk", "0000000000002.00000.a"),
                )
            });
        }
        // The same citizen registered at every center while offline.
        let cid = DocId::citizen(&nid.parse().unwrap());
        let mut input = citizen(nid, "سامر");
        if i == 1 {
            input.phone = "0944123456".into();
        }
        if i == 2 {
            input.address = "المزة".into();
        }
        n.edit(&cid, |d| docs::write_citizen(d, &input));
        let stats = DocId::stats(&center, jiff::civil::date(2026, 11, 29));
        n.edit(&stats, |d| {
            docs::create_metrics(d, DocKind::Stats, &center, jiff::civil::date(2026, 11, 29))?;
            docs::set_metric(d, "tickets", 40 + i as i64)
        });
    }
    for _ in 0..2 {
        for n in nodes.iter_mut() {
            n.sync(&mut hub);
        }
    }
    let cid = DocId::citizen(&nid.parse().unwrap());
    let mut views = Vec::new();
    for n in nodes.iter_mut() {
        assert_converged(n, &mut hub);
        assert!(
            cases_of_others(n).is_empty(),
            "{} got another center's case",
            n.center
        );
        let ids = n.doc_ids();
        assert!(ids.contains(&DocId::catalog()));
        let staff: Vec<_> = ids.iter().filter(|d| d.kind() == DocKind::Staff).collect();
        assert_eq!(staff.len(), 1, "only its own staff");
        assert_eq!(staff[0].owner_center(), Some(n.center.clone()));
        views.push(
            n.docs
                .read(&n.conn, &cid, docs::read_citizen)
                .unwrap()
                .unwrap()
                .unwrap(),
        );
        assert_eq!(n.heads(&cid), hub.heads(&cid));
    }
    assert!(
        views.windows(2).all(|w| w[0] == w[1]),
        "one citizen, not three"
    );
    assert_eq!(views[0].input.phone, "0944123456");
    assert_eq!(views[0].input.address, "المزة");
    // A second round moves nothing.
    let r = nodes[0].sync(&mut hub);
    assert_eq!((r.pushed, r.pulled_new), (0, 0));
}

#[test]
fn a_pulled_batch_is_merged_in_parts_and_its_cursor_moves_with_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    // A center in sync; then forty accounts made at the hub for it: one pulled batch.
    let mut qanawat = Node::new("qanawat");
    qanawat.sync(&mut hub);
    for k in 0..40 {
        hub_staff(&mut hub, "qanawat", &format!("clerk{k}"), "سامر");
    }
    let before = store::peer_cursor(&qanawat.conn, HUB_PEER)
        .unwrap()
        .pull_cursor;
    let limits = Limits {
        merge_bytes: 1_000,
        ..Limits::default()
    };
    let clock = std::mem::replace(&mut qanawat.clock, HlcClock::new("x"));
    let mut s = ClientSession::new(
        qanawat.center.clone(),
        qanawat.docs.actor().clone(),
        clock,
        limits,
    );
    let mut parts = 0;
    let mut most_touched = 0;
    while let Some(req) = s
        .next_request(&qanawat.conn, &mut qanawat.docs, NOW)
        .unwrap()
    {
        let resp = hub.handle(&qanawat.center, &req);
        let tx = qanawat.conn.transaction().unwrap();
        s.handle_reply(&tx, &mut qanawat.docs, decode_reply(&resp), NOW)
            .unwrap();
        most_touched = most_touched.max(s.take_touched().len());
        tx.commit().unwrap();
        while s.merging() {
            // Not merged whole: the cursor has not moved, so a crash here pulls the
            // batch again.
            let stored = store::peer_cursor(&qanawat.conn, HUB_PEER).unwrap();
            assert_eq!(
                stored.pull_cursor, before,
                "cursor moved before the last part"
            );
            let tx = qanawat.conn.transaction().unwrap();
            s.merge_more(&tx, &mut qanawat.docs).unwrap();
            most_touched = most_touched.max(s.take_touched().len());
            tx.commit().unwrap();
            parts += 1;
        }
    }
    assert!(parts >= 5, "merged in {parts} further parts");
    assert!(
        most_touched < 40,
        "one part touched {most_touched} documents"
    );
    assert!(s.report().pulled_new >= 40);
    assert!(
        store::peer_cursor(&qanawat.conn, HUB_PEER)
            .unwrap()
            .pull_cursor
            > before
    );
    qanawat.clock = s.into_clock();
    assert_converged(&mut qanawat, &mut hub);
    let staff = qanawat
        .doc_ids()
        .into_iter()
        .filter(|d| d.kind() == DocKind::Staff)
        .count();
    assert!(staff >= 40, "{staff} staff documents");
    // Nothing is left to pull.
    let r = qanawat.sync(&mut hub);
    assert_eq!(r.pulled_new, 0);
}

#[test]
fn portal_case_reaches_only_its_pickup_center_and_staff_revocation_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut midan = Node::new("midan");
    let mut qanawat = Node::new("qanawat");
    midan.sync(&mut hub);
    qanawat.sync(&mut hub);
    let center: CenterId = "midan".parse().unwrap();
    let no = CaseNo::new("WEB", 2026, 1).unwrap();
    let id = DocId::case(None, &no);
    let c = NewCase {
        case_no: no,
        center: None,
        service: "criminal_record".into(),
        citizen: "01020304050".parse().unwrap(),
        delivery: Delivery::Pickup {
            center: center.clone(),
        },
        fields: BTreeMap::new(),
        fee: None,
        created: ev(CaseEventKind::Created, "portal", "0000000000001.00000.hub"),
    };
    let cid = DocId::citizen(&c.citizen);
    hub.edit(&cid, |d| {
        docs::write_citizen(d, &citizen("01020304050", "ريم"))
    });
    hub.edit(&id, |d| docs::create_case(d, &c));
    // Revoke midan's clerk at the hub.
    let staff = DocId::staff(&center, "clerk1").unwrap();
    hub.edit(&staff, |d| {
        docs::write_staff(
            d,
            &center,
            &StaffMember {
                username: "clerk1".into(),
                full_name: "clerk of midan".into(),
                roles: vec![Role::Clerk],
                permissions: vec![],
                active: false,
            },
        )
    });
    midan.sync(&mut hub);
    qanawat.sync(&mut hub);
    assert!(midan.doc_ids().contains(&id));
    assert!(!qanawat.doc_ids().contains(&id));
    assert!(
        midan.doc_ids().contains(&cid),
        "the case's citizen came along"
    );
    assert!(!qanawat.doc_ids().contains(&cid));
    let s = midan
        .docs
        .read(&midan.conn, &staff, docs::read_staff)
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!s.active, "revocation took effect at the next sync");
    // Midan may work on the case routed to it; the hub takes the change.
    midan.edit(&id, |d| {
        docs::append_case_event(
            d,
            &ev(
                CaseEventKind::Started,
                "clerk1",
                "0000000000005.00000.midan",
            ),
        )
    });
    let r = midan.sync(&mut hub);
    assert!(r.refused_by_hub.is_empty());
    assert_eq!(midan.heads(&id), hub.heads(&id));
}

#[test]
fn case_routed_to_another_center_arrives_as_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = Node::new("midan");
    let mut b = Node::new("qanawat");
    b.sync(&mut hub);
    let center = a.center.clone();
    let (id, c) = new_case(&center, "MID", 1, "01020304050");
    a.edit(&id, |d| docs::create_case(d, &c));
    for k in 0..10 {
        let hlc = format!("{:013}.00000.midan", 10 + k);
        a.edit(&id, |d| {
            docs::append_case_event(d, &ev(CaseEventKind::Notified, "c", &hlc))
        });
    }
    a.sync(&mut hub);
    let qanawat: CenterId = "qanawat".parse().unwrap();
    a.edit(&id, |d| {
        docs::append_case_event(
            d,
            &ev(
                CaseEventKind::Routed { to: qanawat },
                "c",
                "0000000000100.00000.midan",
            ),
        )
    });
    a.sync(&mut hub);
    let r = b.sync(&mut hub);
    assert_eq!(r.snapshots, 1, "{r:?}");
    assert!(b.doc_ids().contains(&id));
    assert_eq!(b.heads(&id), a.heads(&id));
    assert_eq!(b.case(&id), a.case(&id));
    // Later changes follow as changes.
    a.edit(&id, |d| {
        docs::append_case_event(
            d,
            &ev(CaseEventKind::Started, "c", "0000000000101.00000.midan"),
        )
    });
    a.sync(&mut hub);
    let r = b.sync(&mut hub);
    assert_eq!((r.snapshots, r.pulled_new), (0, 1));
    assert_eq!(b.heads(&id), a.heads(&id));
}

#[test]
fn hub_refuses_writes_outside_a_centers_authority() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut q = Node::new("qanawat");
    q.sync(&mut hub);
    let before = hub.heads(&DocId::catalog());
    q.edit(&DocId::catalog(), |d| {
        let mut s = crate::model::catalog::default_catalog()[0].clone();
        s.name_en = "free for all".into();
        docs::write_service(d, &s)
    });
    let midan: CenterId = "midan".parse().unwrap();
    let (id, c) = new_case(&midan, "MID", 9, "01020304050");
    q.edit(&id, |d| docs::create_case(d, &c));
    let r = q.sync(&mut hub);
    assert_eq!(r.refused_by_hub.len(), 2, "{:?}", r.refused_by_hub);
    assert_eq!(hub.heads(&DocId::catalog()), before);
    assert!(hub.heads(&id).is_empty());
    // Refusals are acked: the next session does not push them again.
    let r = q.sync(&mut hub);
    assert_eq!(r.pushed, 0);
}

#[test]
fn a_centers_staff_reach_the_hub_but_the_hubs_fields_stay_the_hubs() {
    use crate::model::catalog::Authority;
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut m = Node::new("midan");
    let mut q = Node::new("qanawat");
    m.sync(&mut hub);
    q.sync(&mut hub);
    let midan = m.center.clone();
    let id = DocId::staff(&midan, "rana").unwrap();
    // Midan creates its account with a grant; it reaches the hub and only midan.
    m.edit(&id, |d| {
        docs::write_center_staff(
            d,
            &midan,
            &docs::CenterStaff {
                username: "rana",
                full_name: "رنا",
                roles: &[Role::Clerk],
                language: "ar",
                active: true,
                password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
            },
        )?;
        docs::decide_permission(
            d,
            &docs::PermissionDecision {
                authority: Authority::Justice,
                expires_on: Some(jiff::civil::date(2099, 12, 31)),
                by: "admin".into(),
                hlc: "0000000000005.00000.midan".into(),
            },
        )
    });
    let r = m.sync(&mut hub);
    assert!(r.refused_by_hub.is_empty(), "{:?}", r.refused_by_hub);
    let at_hub = hub
        .docs
        .read(&hub.conn, &id, docs::read_staff_view)
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(at_hub.member.permissions.len(), 1);
    assert!(at_hub.password_hash.is_some() && at_hub.member.active);
    q.sync(&mut hub);
    assert!(
        !q.doc_ids().contains(&id),
        "another center's staff stay away"
    );

    // The hub deactivates and revokes; concurrently midan extends the grant with an
    // earlier stamp: the hub's later decision stands at both ends.
    hub.edit(&id, |d| {
        docs::set_hub_active(d, false)?;
        docs::decide_permission(
            d,
            &docs::PermissionDecision {
                authority: Authority::Justice,
                expires_on: None,
                by: "hub".into(),
                hlc: "0000000000009.00000.hub".into(),
            },
        )
    });
    m.edit(&id, |d| {
        docs::decide_permission(
            d,
            &docs::PermissionDecision {
                authority: Authority::Justice,
                expires_on: Some(jiff::civil::date(2100, 1, 1)),
                by: "admin".into(),
                hlc: "0000000000007.00000.midan".into(),
            },
        )
    });
    m.sync(&mut hub);
    m.sync(&mut hub);
    let read = |conn: &Connection, store: &mut DocStore| {
        store
            .read(conn, &id, docs::read_staff_view)
            .unwrap()
            .unwrap()
            .unwrap()
    };
    let (at_m, at_h) = (read(&m.conn, &mut m.docs), read(&hub.conn, &mut hub.docs));
    assert_eq!(at_m.member, at_h.member);
    assert!(!at_m.member.active && !at_m.hub_active && at_m.center_active);
    assert!(at_m.member.permissions.is_empty(), "{at_m:?}");

    // Midan may not lift the hub's deactivation: that change is refused.
    let before = hub.heads(&id);
    m.edit(&id, |d| docs::set_hub_active(d, true));
    let r = m.sync(&mut hub);
    assert_eq!(r.refused_by_hub.len(), 1, "{:?}", r.refused_by_hub);
    assert!(r.refused_by_hub[0].reason.contains("hub_active"));
    assert_eq!(hub.heads(&id), before);
    // Nor write another center's staff.
    let other = DocId::staff(&"qanawat".parse().unwrap(), "rana").unwrap();
    m.edit(&other, |d| {
        docs::write_staff(d, &"qanawat".parse().unwrap(), &at_h.member)
    });
    let r = m.sync(&mut hub);
    assert_eq!(r.refused_by_hub.len(), 1, "{:?}", r.refused_by_hub);
}

#[test]
fn cut_at_any_message_byte_resumes_and_converges() {
    cut_run(7, 3);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]
    #[test]
    fn cut_at_random_bytes_resumes_and_converges(seed in any::<u64>(), every in 2usize..6) {
        cut_run(seed, every);
    }
}

/// Two centers sync while about one message in `every` (either direction) is cut at a
/// pseudo-random byte, both drawn from `seed`.
fn cut_run(seed: u64, every: usize) {
    let mut seed = seed;
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = Node::new("midan");
    let mut b = Node::new("qanawat");
    let center = a.center.clone();
    for k in 1..=30 {
        let (id, c) = new_case(&center, "MID", k, "01020304050");
        a.edit(&id, |d| docs::create_case(d, &c));
    }
    let small = Limits {
        push_bytes: 2_000,
        pull_bytes: 2_000,
        ..Limits::default()
    };
    let mut cutter = |_: usize, bytes: &[u8]| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (((seed >> 17) as usize).is_multiple_of(every) && !bytes.is_empty())
            .then(|| (seed >> 33) as usize % bytes.len())
    };
    let r = a.sync_with(&mut hub, small, &mut cutter);
    assert_eq!(
        r.pushed,
        a.local_change_count(),
        "each change acknowledged once"
    );
    b.sync_with(&mut hub, small, &mut cutter);
    assert_converged(&mut a, &mut hub);
    assert_converged(&mut b, &mut hub);
    // Nothing acknowledged is sent again.
    let r = a.sync(&mut hub);
    assert_eq!(
        (r.pushed, r.requests),
        (0, 1),
        "nothing new: the Welcome ends it {r:?}"
    );
}

#[test]
fn hub_restored_from_old_backup_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = Node::new("midan");
    let mut b = Node::new("qanawat");
    a.sync(&mut hub);
    b.sync(&mut hub);
    let backup = dir.path().join("backup.db");
    std::fs::copy(&hub.path, &backup).unwrap();
    // Work after the backup, synced to the hub that will be lost.
    let center = a.center.clone();
    let (id, c) = new_case(&center, "MID", 1, "01020304050");
    a.edit(&id, |d| docs::create_case(d, &c));
    a.sync(&mut hub);
    let cat = DocId::catalog();
    hub.edit(&cat, |d| {
        let s = crate::model::catalog::default_catalog()[5].clone();
        docs::write_service(d, &s)
    });
    b.sync(&mut hub);
    drop(hub);
    // Restore: the old file, a new epoch.
    let restored = dir.path().join("restored.db");
    std::fs::copy(&backup, &restored).unwrap();
    let mut hub = Hub::open(restored);
    let r = super::after_restore(&hub.conn, 10).unwrap();
    hub.docs = DocStore::new(automerge::ActorId::from(r.actor), 16);
    assert!(hub.heads(&id).is_empty(), "the restored hub lost the case");
    let ra = a.sync(&mut hub);
    let rb = b.sync(&mut hub);
    assert!(ra.repaired && rb.repaired);
    assert!(
        ra.unrepaired.is_empty() && rb.unrepaired.is_empty(),
        "{ra:?} {rb:?}"
    );
    assert_eq!(hub.heads(&id), a.heads(&id), "the hub got the case back");
    // The catalog edit lost at the hub survives at qanawat and comes back too.
    assert_eq!(hub.heads(&cat), b.heads(&cat));
    a.sync(&mut hub);
    assert_converged(&mut a, &mut hub);
    assert_converged(&mut b, &mut hub);
    // Then log shipping resumes: a new change flows with no repair.
    a.edit(&id, |d| {
        docs::append_case_event(d, &ev(CaseEventKind::Started, "c", "0000000000003.00000.a"))
    });
    let r = a.sync(&mut hub);
    assert!(!r.repaired);
    assert_eq!(r.pushed, 1);
    assert_eq!(hub.heads(&id), a.heads(&id));
}

/// The wall clock, as a hub start reads it (in microseconds it moves between two
/// starts of a test, as it does between a hub's restarts).
fn start_ms() -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(2));
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap()
}

/// A staff member written at the hub for `center` (a hub-made change routed to it).
fn hub_staff(hub: &mut Hub, center: &str, user: &str, name: &str) -> DocId {
    let center: CenterId = center.parse().unwrap();
    let id = DocId::staff(&center, user).unwrap();
    hub.edit(&id, |d| {
        docs::write_staff(
            d,
            &center,
            &StaffMember {
                username: user.into(),
                full_name: name.into(),
                roles: vec![Role::Clerk],
                permissions: vec![],
                active: true,
            },
        )
    });
    id
}

/// Every document the hub routes to the node is at the node, with the hub's heads.
fn assert_has_everything_routed(node: &mut Node, hub: &mut Hub) {
    let routed: Vec<DocId> = hub
        .conn
        .prepare("SELECT doc_id FROM routes WHERE center=?1 ORDER BY doc_id")
        .unwrap()
        .query_map([node.center.as_str()], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|s| s.unwrap().parse().unwrap())
        .collect();
    assert!(!routed.is_empty());
    // (A case's citizen is routed even where no test wrote it: both sides lack it.)
    for id in routed {
        assert_eq!(node.heads(&id), hub.heads(&id), "{id} at {}", node.center);
    }
    assert_converged(node, hub);
}

fn epoch_of(hub: &Hub) -> String {
    hub.conn.epoch().unwrap()
}

#[test]
fn hub_put_back_without_the_command_is_detected_and_delivers_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = Node::new("midan");
    let mut b = Node::new("qanawat");
    a.sync(&mut hub);
    b.sync(&mut hub);
    let backup = dir.path().join("backup.db");
    std::fs::copy(&hub.path, &backup).unwrap();
    let epoch = epoch_of(&hub);
    // After the backup: hub-made changes both centers read, and a center's push.
    let lost_a = hub_staff(&mut hub, "midan", "lost", "made before the loss");
    let lost_b = hub_staff(&mut hub, "qanawat", "lost", "made before the loss");
    let center = a.center.clone();
    let (case, c) = new_case(&center, "MID", 1, "01020304050");
    a.edit(&case, |d| docs::create_case(d, &c));
    a.sync(&mut hub);
    b.sync(&mut hub);
    drop(hub);
    // The file is put back and the hub started, without `markaz hub restore`.
    let restored = dir.path().join("restored.db");
    std::fs::copy(&backup, &restored).unwrap();
    let mut hub = Hub::open(restored);
    assert_eq!(epoch_of(&hub), epoch);
    // Hub-made changes after the restore: as many as before, to land where the lost
    // hub's positions were if positions were reused.
    let new_a = hub_staff(&mut hub, "midan", "new", "made after the restore");
    let new_b = hub_staff(&mut hub, "qanawat", "new", "made after the restore");
    // midan is idle: its Hello names its cursor, which this database never handed out.
    let ra = a.sync(&mut hub);
    assert!(ra.repaired, "{ra:?}");
    assert_ne!(
        epoch_of(&hub),
        epoch,
        "the hub ran the after-restore step by itself"
    );
    assert_eq!(a.heads(&new_a), hub.heads(&new_a));
    // What the hub lost comes back from the center: its own staff edit and the case.
    assert_eq!(hub.heads(&lost_a), a.heads(&lost_a));
    assert_eq!(hub.heads(&case), a.heads(&case));
    // qanawat sees the new epoch and repairs as well.
    let rb = b.sync(&mut hub);
    assert!(rb.repaired, "{rb:?}");
    assert_eq!(b.heads(&new_b), hub.heads(&new_b));
    assert_eq!(hub.heads(&lost_b), b.heads(&lost_b));
    // More hub-made changes travel by log shipping, with no repair.
    let later = hub_staff(&mut hub, "midan", "later", "made later");
    let r = a.sync(&mut hub);
    assert!(!r.repaired);
    assert_eq!(a.heads(&later), hub.heads(&later));
    b.sync(&mut hub);
    assert_has_everything_routed(&mut a, &mut hub);
    assert_has_everything_routed(&mut b, &mut hub);
}

#[test]
fn a_pull_from_a_cursor_never_handed_out_recovers_and_the_next_session_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = Node::new("midan");
    a.sync(&mut hub);
    let backup = dir.path().join("backup.db");
    std::fs::copy(&hub.path, &backup).unwrap();
    let epoch = epoch_of(&hub);
    let lost = hub_staff(&mut hub, "midan", "lost", "made before the loss");
    a.sync(&mut hub);
    drop(hub);
    let restored = dir.path().join("restored.db");
    std::fs::copy(&backup, &restored).unwrap();
    let mut hub = Hub::open(restored);
    // midan has work to push, so its Hello names no cursor: its Pull does.
    let center = a.center.clone();
    let (case, c) = new_case(&center, "MID", 2, "01020304050");
    a.edit(&case, |d| docs::create_case(d, &c));
    let new = hub_staff(&mut hub, "midan", "new", "made after the restore");
    let r1 = a.sync(&mut hub);
    assert_eq!(r1.pushed, 1);
    assert_ne!(epoch_of(&hub), epoch, "recovered at the pull");
    let r2 = a.sync(&mut hub);
    assert!(r2.repaired, "{r2:?}");
    assert_eq!(a.heads(&new), hub.heads(&new));
    assert_eq!(hub.heads(&lost), a.heads(&lost));
    assert_has_everything_routed(&mut a, &mut hub);
}

#[test]
fn after_restore_moves_every_feed_beyond_what_the_lost_hub_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = Node::new("midan");
    a.sync(&mut hub);
    let backup = dir.path().join("backup.db");
    std::fs::copy(&hub.path, &backup).unwrap();
    for i in 0..5 {
        hub_staff(&mut hub, "midan", &format!("u{i}"), "lost");
    }
    a.sync(&mut hub);
    let midan: CenterId = "midan".parse().unwrap();
    let lost_top = hub.conn.feed_len(&midan).unwrap();
    drop(hub);
    let restored = dir.path().join("restored.db");
    std::fs::copy(&backup, &restored).unwrap();
    let mut hub = Hub::open(restored);
    let r = super::after_restore(&hub.conn, start_ms()).unwrap();
    hub.docs = DocStore::new(automerge::ActorId::from(r.actor.clone()), 16);
    assert!(r.feed_floor > lost_top, "{} <= {lost_top}", r.feed_floor);
    assert_ne!(automerge::ActorId::from(r.actor), *a.docs.actor());
    let new = hub_staff(&mut hub, "midan", "new", "after the restore");
    assert!(hub.conn.feed_len(&midan).unwrap() > r.feed_floor);
    let ra = a.sync(&mut hub);
    assert!(ra.repaired);
    assert_eq!(a.heads(&new), hub.heads(&new));
    assert_has_everything_routed(&mut a, &mut hub);
}

#[test]
fn replaced_node_database_gets_a_fresh_actor_and_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = Node::new("midan");
    let center = a.center.clone();
    let (id, c) = new_case(&center, "MID", 1, "01020304050");
    a.edit(&id, |d| docs::create_case(d, &c));
    a.sync(&mut hub);
    let old_actor = a.docs.actor().clone();
    // The disk died: a blank database for the same center.
    let mut a2 = Node::new("midan");
    assert_ne!(a2.docs.actor(), &old_actor);
    let r = a2.sync(&mut hub);
    assert!(r.repaired, "{r:?}");
    assert!(a2.doc_ids().contains(&id));
    assert_converged(&mut a2, &mut hub);
    // New work from the new incarnation never collides with the old (actor, seq).
    a2.edit(&id, |d| {
        docs::append_case_event(d, &ev(CaseEventKind::Started, "c", "0000000000003.00000.a"))
    });
    let r = a2.sync(&mut hub);
    assert_eq!(r.pushed, 1);
    assert!(r.refused_by_hub.is_empty());
    assert_eq!(hub.heads(&id), a2.heads(&id));
}

/// A replaced center with more documents than one repair list may carry (the cap is 5,000
/// in production, 3 here): the hub answers whole buckets up to the cap and says how many,
/// the center asks again for the rest, and every document comes back. Before, the hub cut
/// the list and a 450,000-case center got 68,946 cases back, reported as complete.
#[test]
fn a_repair_list_longer_than_the_cap_brings_every_document_back() {
    super::server::TEST_MAX_REPAIR_DOCS.with(|c| c.set(3));
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = Node::new("midan");
    let center = a.center.clone();
    let mut ids = Vec::new();
    for seq in 1..=60 {
        let (id, c) = new_case(&center, "MID", seq, "01020304050");
        a.edit(&id, |d| docs::create_case(d, &c));
        ids.push(id);
    }
    a.sync(&mut hub);
    let mut a2 = Node::new("midan");
    let r = a2.sync(&mut hub);
    assert!(r.repaired && r.unrepaired.is_empty(), "{r:?}");
    let back = a2.doc_ids();
    let missing: Vec<_> = ids.iter().filter(|d| !back.contains(d)).collect();
    assert!(missing.is_empty(), "not repaired: {missing:?}");
    assert_converged(&mut a2, &mut hub);
}

#[test]
fn node_restored_from_old_backup_is_caught_and_takes_a_new_actor() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = Node::new("midan");
    let center = a.center.clone();
    let (id1, c1) = new_case(&center, "MID", 1, "01020304050");
    a.edit(&id1, |d| docs::create_case(d, &c1));
    a.sync(&mut hub);
    let backup = dir.path().join("node-backup.db");
    a.conn
        .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
        .unwrap();
    for k in 2..=4 {
        let (id, c) = new_case(&center, "MID", k, "01020304050");
        a.edit(&id, |d| docs::create_case(d, &c));
    }
    a.sync(&mut hub);
    // Restore the old copy: same actor id, fewer changes than the hub acknowledged.
    let conn = Connection::open(&backup).unwrap();
    let actor = store::incarnation(&conn, "midan", 0).unwrap();
    assert_eq!(&actor, a.docs.actor());
    let mut r = Node {
        center: center.clone(),
        conn,
        docs: DocStore::new(actor, 8),
        clock: HlcClock::new("midan"),
        last_error: None,
    };
    r.try_sync(&mut hub);
    assert!(
        r.last_error.as_deref().unwrap_or("").contains("old copy"),
        "{:?}",
        r.last_error
    );
    let fresh = store::new_incarnation(&r.conn, "midan", 1).unwrap();
    r.docs = DocStore::new(fresh, 8);
    let rep = r.sync(&mut hub);
    assert!(rep.repaired);
    let (id4, _) = new_case(&center, "MID", 4, "01020304050");
    assert!(
        r.doc_ids().contains(&id4),
        "lost work came back from the hub"
    );
    r.edit(&id4, |d| {
        docs::append_case_event(d, &ev(CaseEventKind::Started, "c", "0000000000009.00000.a"))
    });
    let rep = r.sync(&mut hub);
    assert!(rep.refused_by_hub.is_empty());
    assert_eq!(hub.heads(&id4), r.heads(&id4));
}

#[test]
fn delivered_at_center_cancelled_at_hub_is_flagged_everywhere() {
    use crate::model::case::Payment;
    use crate::model::ids::ReceiptNo;
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = Node::new("midan");
    let center = a.center.clone();
    let (id, c) = new_case(&center, "MID", 1, "01020304050");
    a.edit(&id, |d| {
        docs::create_case(d, &c)?;
        docs::append_case_event(
            d,
            &ev(
                CaseEventKind::Paid(Payment::Cash {
                    receipt: ReceiptNo::new("MID", 1).unwrap(),
                }),
                "c",
                "0000000000002.00000.midan",
            ),
        )?;
        docs::append_case_event(
            d,
            &ev(CaseEventKind::Started, "c", "0000000000003.00000.midan"),
        )?;
        docs::append_case_event(
            d,
            &ev(CaseEventKind::Ready, "c", "0000000000004.00000.midan"),
        )
    });
    a.sync(&mut hub);
    a.edit(&id, |d| {
        docs::append_case_event(
            d,
            &ev(
                CaseEventKind::Delivered {
                    receiver: "01020304050".parse().unwrap(),
                },
                "c",
                "0000000000005.00000.midan",
            ),
        )
    });
    hub.edit(&id, |d| {
        docs::append_case_event(
            d,
            &ev(
                CaseEventKind::Cancelled {
                    reason: "paid twice".into(),
                },
                "hub",
                "0000000000006.00000.hub",
            ),
        )
    });
    a.sync(&mut hub);
    let at_center = a.case(&id);
    let at_hub = hub
        .docs
        .read(&hub.conn, &id, docs::read_case)
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(at_center, at_hub);
    assert_eq!(at_center.derived.status, CaseStatus::Delivered);
    let conflict = at_center
        .derived
        .conflict
        .expect("conflict kept and flagged");
    assert!(matches!(
        conflict.contested.kind,
        CaseEventKind::Cancelled { .. }
    ));
}

#[test]
fn old_protocol_version_gets_a_clear_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut req = Request::Pull {
        cursor: 0,
        max_bytes: 10,
    }
    .encode();
    req[4] = PROTOCOL_VERSION + 1;
    let resp = hub.handle(&"midan".parse().unwrap(), &req);
    assert_eq!(
        Response::decode(&resp).unwrap(),
        Response::VersionRefused {
            ours: PROTOCOL_VERSION,
            theirs: PROTOCOL_VERSION + 1
        }
    );
}

// ---- push forms: compact only when the hub offers it ---------------------------------

/// The JSON header's `type` of a message, if it is one of ours.
fn message_type(bytes: &[u8]) -> Option<String> {
    let frames = crate::frame::decode_batch(bytes, PROTOCOL_VERSION).ok()?;
    let h: serde_json::Value = serde_json::from_slice(frames.first()?).ok()?;
    Some(h.get("type")?.as_str()?.to_string())
}

/// A center with some work in both lanes: cases, citizens, statistics.
fn busy_node(center: &str) -> Node {
    let mut n = Node::new(center);
    let c = n.center.clone();
    for k in 1..=40 {
        let nid = format!("0102030{:04}", k % 7);
        let (id, nc) = new_case(&c, "MID", k, &nid);
        n.edit(&id, |d| docs::create_case(d, &nc));
        let cid = DocId::citizen(&nid.parse().unwrap());
        n.edit(&cid, |d| {
            docs::write_citizen(d, &citizen(&nid, &format!("name {k}")))
        });
        let day = jiff::civil::date(2026, 11, 29);
        let stats = DocId::stats(&c, day);
        n.edit(&stats, |d| {
            docs::create_metrics(d, DocKind::Stats, &c, day)?;
            docs::set_metric(d, "tickets", i64::from(k))
        });
    }
    n
}

/// Pushes in small batches (many requests), and the types of the requests sent.
fn sync_recording(
    node: &mut Node,
    hub: &mut Hub,
    rewrite: &mut dyn FnMut(usize, Vec<u8>) -> Vec<u8>,
) -> (SessionReport, Vec<String>) {
    let mut sent = Vec::new();
    let limits = Limits {
        push_bytes: 3_000,
        ..Limits::default()
    };
    node.last_error = None;
    let r = node.sync_relayed(hub, limits, &mut |i, bytes| {
        let bytes = rewrite(i, bytes);
        if i % 2 == 1 {
            sent.push(message_type(&bytes).unwrap_or_default());
        }
        bytes
    });
    assert_eq!(node.last_error, None);
    (r, sent)
}

/// What a hub from before the compact form says in its Welcome.
fn as_old_hub(i: usize, bytes: Vec<u8>) -> Vec<u8> {
    if i.is_multiple_of(2)
        && let Ok(mut welcome @ Response::Welcome { .. }) = Response::decode(&bytes)
    {
        if let Response::Welcome {
            compact_push,
            packed_push,
            ..
        } = &mut welcome
        {
            *compact_push = false;
            *packed_push = false;
        }
        return welcome.encode();
    }
    bytes
}

/// What a hub from before the packed form (with the compact one) says in its Welcome.
fn as_compact_hub(i: usize, bytes: Vec<u8>) -> Vec<u8> {
    if i.is_multiple_of(2)
        && let Ok(mut welcome @ Response::Welcome { .. }) = Response::decode(&bytes)
    {
        if let Response::Welcome { packed_push, .. } = &mut welcome {
            *packed_push = false;
        }
        return welcome.encode();
    }
    bytes
}

#[test]
fn new_client_pushes_packed_to_a_hub_that_offers_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = busy_node("midan");
    let (r, sent) = sync_recording(&mut a, &mut hub, &mut |_, b| b);
    assert_eq!(r.pushed, a.local_change_count());
    assert!(
        sent.iter().filter(|t| *t == "push_packed").count() > 3,
        "{sent:?}"
    );
    assert!(
        !sent.iter().any(|t| t == "push" || t == "push_compact"),
        "{sent:?}"
    );
    assert_converged(&mut a, &mut hub);
}

#[test]
fn packed_push_is_offered_only_to_a_center_that_may_push() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = busy_node("midan");
    let mut welcomes = Vec::new();
    let mut record = |i: usize, b: Vec<u8>| {
        if i == 2 {
            welcomes.push(crate::frame::decode_batch(&b, PROTOCOL_VERSION).unwrap()[0].clone());
        }
        b
    };
    a.sync_relayed(&mut hub, Limits::default(), &mut record);
    // Nothing new now: the Hello offers `done_at`, and the one-round-trip Welcome is
    // what it was before the packed form.
    a.sync_relayed(&mut hub, Limits::default(), &mut record);
    let text = |h: &[u8]| String::from_utf8(h.to_vec()).unwrap();
    assert!(
        text(&welcomes[0]).contains("\"packed_push\":true"),
        "{}",
        text(&welcomes[0])
    );
    assert!(
        !text(&welcomes[1]).contains("packed_push"),
        "{}",
        text(&welcomes[1])
    );
}

#[test]
fn new_client_pushes_compact_to_a_hub_that_offers_only_compact() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = busy_node("midan");
    let (r, sent) = sync_recording(&mut a, &mut hub, &mut as_compact_hub);
    assert_eq!(r.pushed, a.local_change_count());
    assert!(
        sent.iter().filter(|t| *t == "push_compact").count() > 3,
        "{sent:?}"
    );
    assert!(
        !sent.iter().any(|t| t == "push" || t == "push_packed"),
        "{sent:?}"
    );
    assert_converged(&mut a, &mut hub);
}

#[test]
fn old_client_compact_pushes_still_sync_with_a_new_hub() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = busy_node("midan");
    // A client of the previous release ignores `packed_push` and sends the compact form.
    let (r, sent) = sync_recording(&mut a, &mut hub, &mut |i, b| {
        if i % 2 == 1
            && let Ok(req) = Request::decode(&b)
        {
            return req.encode_with(PushForm::Compact);
        }
        b
    });
    assert_eq!(r.pushed, a.local_change_count());
    assert!(
        sent.iter().filter(|t| *t == "push_compact").count() > 3,
        "{sent:?}"
    );
    assert!(!sent.iter().any(|t| t == "push_packed"), "{sent:?}");
    assert_converged(&mut a, &mut hub);
}

#[test]
fn old_client_framed_pushes_still_sync_with_a_new_hub() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = busy_node("midan");
    // An old client ignores the offer and frames every change: re-encode what this one
    // sends the way it would have.
    let (r, sent) = sync_recording(&mut a, &mut hub, &mut |i, b| {
        if i % 2 == 1
            && let Ok(req) = Request::decode(&b)
        {
            return req.encode_with(PushForm::Framed);
        }
        b
    });
    assert_eq!(r.pushed, a.local_change_count());
    assert!(sent.iter().filter(|t| *t == "push").count() > 3, "{sent:?}");
    assert!(
        !sent
            .iter()
            .any(|t| t == "push_compact" || t == "push_packed"),
        "{sent:?}"
    );
    assert_converged(&mut a, &mut hub);
    // And the other way round from the same hub: another center pulls it all.
    let mut b = Node::new("qanawat");
    b.sync(&mut hub);
    assert_converged(&mut b, &mut hub);
}

#[test]
fn new_client_frames_pushes_to_a_hub_that_does_not_offer_compact() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = busy_node("midan");
    let (r, sent) = sync_recording(&mut a, &mut hub, &mut as_old_hub);
    assert_eq!(r.pushed, a.local_change_count());
    assert!(sent.iter().filter(|t| *t == "push").count() > 3, "{sent:?}");
    assert!(
        !sent
            .iter()
            .any(|t| t == "push_compact" || t == "push_packed"),
        "{sent:?}"
    );
    assert_converged(&mut a, &mut hub);
}

#[test]
fn both_forms_store_the_centers_changes_in_its_order() {
    let rows = |conn: &Connection, sql: &str| -> Vec<(String, Vec<u8>)> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    for form in [PushForm::Framed, PushForm::Compact, PushForm::Packed] {
        let dir = tempfile::tempdir().unwrap();
        let mut hub = hub_in(&dir);
        let mut a = busy_node("midan");
        sync_recording(&mut a, &mut hub, &mut |i, b| {
            if i % 2 == 1
                && let Ok(req) = Request::decode(&b)
            {
                return req.encode_with(form);
            }
            b
        });
        let ours = rows(
            &a.conn,
            "SELECT doc_id, bytes FROM changes WHERE local=1 ORDER BY lane, seq",
        );
        let at_hub: Vec<_> = rows(&hub.conn, "SELECT doc_id, bytes FROM changes ORDER BY seq")
            .into_iter()
            .filter(|r| ours.contains(r))
            .collect();
        assert!(ours.len() > 100);
        assert_eq!(at_hub, ours, "{form:?}");
    }
}

// ---- lanes: bulk documents wait on a metered uplink --------------------------------

#[test]
fn metered_session_holds_bulk_and_moves_essential_made_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = Node::new("midan");
    let center = a.center.clone();
    // Bulk first, then essential: one contiguous cursor would block the case.
    let energy = a.metric(DocKind::Energy, 1, "pv_wh", 5_000);
    let stats = a.metric(DocKind::Stats, 1, "tickets", 40);
    let (case, c) = new_case(&center, "MID", 1, "01020304050");
    a.edit(&case, |d| docs::create_case(d, &c));
    a.metric(DocKind::Energy, 1, "pv_wh", 6_000);
    let bulk = a.lane_count(store::Lane::Bulk);
    assert_eq!(bulk, 3);

    let r = a.sync_metered(&mut hub);
    assert_eq!(r.pushed, 1, "{r:?}");
    assert_eq!(r.pushed_bulk, 0);
    assert_eq!(r.bulk_waiting, bulk);
    assert_eq!(hub.heads(&case), a.heads(&case), "the case reached the hub");
    assert!(hub.heads(&energy).is_empty(), "the energy document waits");
    assert!(hub.heads(&stats).is_empty());
    // Another metered session: still nothing bulk, nothing sent twice.
    let r = a.sync_metered(&mut hub);
    assert_eq!((r.pushed, r.bulk_waiting), (0, bulk));

    // The primary link: the bulk lane goes, exactly once.
    let r = a.sync(&mut hub);
    assert_eq!((r.pushed, r.pushed_bulk, r.bulk_waiting), (bulk, bulk, 0));
    assert_eq!(hub.heads(&energy), a.heads(&energy));
    assert_eq!(hub.heads(&stats), a.heads(&stats));
    let r = a.sync(&mut hub);
    assert_eq!(
        (r.pushed, r.requests),
        (0, 1),
        "nothing new: the Welcome ends it {r:?}"
    );
    assert_converged(&mut a, &mut hub);
}

#[test]
fn cut_at_random_bytes_in_either_lane_resumes_once() {
    for seed in [3u64, 11, 29, 101] {
        lanes_cut_run(seed, 3);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]
    #[test]
    fn lanes_resume_after_cuts_at_random_bytes(seed in any::<u64>(), every in 2usize..6) {
        lanes_cut_run(seed, every);
    }
}

/// Interleaved bulk and essential work pushed over a metered then an unmetered session,
/// in small batches, with about one message in `every` cut at a random byte.
fn lanes_cut_run(seed: u64, every: usize) {
    let mut seed = seed;
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = Node::new("midan");
    let center = a.center.clone();
    for k in 1..=12u32 {
        a.metric(
            DocKind::Energy,
            (k % 5 + 1) as i8,
            "pv_wh",
            i64::from(k) * 100,
        );
        let (id, c) = new_case(&center, "MID", k, "01020304050");
        a.edit(&id, |d| docs::create_case(d, &c));
        a.metric(DocKind::Stats, (k % 3 + 1) as i8, "tickets", i64::from(k));
    }
    let small = Limits {
        push_bytes: 1_500,
        pull_bytes: 1_500,
        ..Limits::default()
    };
    let mut cutter = |_: usize, bytes: &[u8]| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (((seed >> 17) as usize).is_multiple_of(every) && !bytes.is_empty())
            .then(|| (seed >> 33) as usize % bytes.len())
    };
    let essential = a.lane_count(store::Lane::Essential);
    let bulk = a.lane_count(store::Lane::Bulk);
    let r = a.sync_with(
        &mut hub,
        Limits {
            push_bulk: false,
            ..small
        },
        &mut cutter,
    );
    assert!(a.last_error.is_none(), "{:?}", a.last_error);
    assert_eq!((r.pushed, r.pushed_bulk), (essential, 0), "{r:?}");
    assert_eq!(r.bulk_waiting, bulk);
    let r = a.sync_with(&mut hub, small, &mut cutter);
    assert!(a.last_error.is_none(), "{:?}", a.last_error);
    assert_eq!((r.pushed, r.pushed_bulk), (bulk, bulk), "{r:?}");
    assert_converged(&mut a, &mut hub);
    let r = a.sync(&mut hub);
    assert_eq!(
        (r.pushed, r.requests),
        (0, 1),
        "nothing new: the Welcome ends it {r:?}"
    );
}

#[test]
fn replaced_database_gets_bulk_documents_back_only_unmetered() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = Node::new("midan");
    let center = a.center.clone();
    let energy = a.metric(DocKind::Energy, 2, "pv_wh", 7_000);
    let (case, c) = new_case(&center, "MID", 1, "01020304050");
    a.edit(&case, |d| docs::create_case(d, &c));
    a.sync(&mut hub);
    // The disk died: a blank database, first over the modem.
    let mut a2 = Node::new("midan");
    let r = a2.sync_metered(&mut hub);
    assert!(r.repaired && r.bulk_repair_deferred, "{r:?}");
    assert!(a2.doc_ids().contains(&case), "essential documents repaired");
    assert!(!a2.doc_ids().contains(&energy), "bulk documents wait");
    let r = a2.sync_metered(&mut hub);
    assert!(!r.repaired && r.bulk_repair_deferred, "{r:?}");
    // The primary link: the bulk documents come back; then nothing more to repair.
    let r = a2.sync(&mut hub);
    assert!(r.repaired && !r.bulk_repair_deferred, "{r:?}");
    assert_eq!(a2.heads(&energy), hub.heads(&energy));
    assert_converged(&mut a2, &mut hub);
    let r = a2.sync(&mut hub);
    assert!(!r.repaired, "{r:?}");
    // New bulk work of the new incarnation is accepted.
    a2.metric(DocKind::Energy, 2, "pv_wh", 8_000);
    let r = a2.sync(&mut hub);
    assert_eq!(r.pushed_bulk, 1);
    assert!(r.refused_by_hub.is_empty());
    assert_eq!(a2.heads(&energy), hub.heads(&energy));
}

#[test]
fn restored_database_is_caught_by_the_bulk_lane_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = Node::new("midan");
    let center = a.center.clone();
    let (case, c) = new_case(&center, "MID", 1, "01020304050");
    a.edit(&case, |d| docs::create_case(d, &c));
    let energy = a.metric(DocKind::Energy, 3, "pv_wh", 1);
    a.sync(&mut hub);
    let backup = dir.path().join("node-backup.db");
    a.conn
        .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
        .unwrap();
    // After the backup only bulk work reached the hub.
    a.metric(DocKind::Energy, 3, "pv_wh", 2);
    a.metric(DocKind::Energy, 3, "pv_wh", 3);
    let r = a.sync(&mut hub);
    assert_eq!(r.pushed_bulk, 2);
    let conn = Connection::open(&backup).unwrap();
    let actor = store::incarnation(&conn, "midan", 0).unwrap();
    let mut r = Node {
        center: center.clone(),
        conn,
        docs: DocStore::new(actor, 8),
        clock: HlcClock::new("midan"),
        last_error: None,
    };
    r.try_sync(&mut hub);
    assert!(
        r.last_error.as_deref().unwrap_or("").contains("old copy"),
        "{:?}",
        r.last_error
    );
    let fresh = store::new_incarnation(&r.conn, "midan", 1).unwrap();
    r.docs = DocStore::new(fresh, 8);
    let rep = r.sync(&mut hub);
    assert!(rep.repaired);
    assert_eq!(
        r.heads(&energy),
        hub.heads(&energy),
        "lost bulk work came back"
    );
    r.metric(DocKind::Energy, 3, "pv_wh", 4);
    let rep = r.sync(&mut hub);
    assert!(rep.refused_by_hub.is_empty(), "{rep:?}");
    assert_eq!(r.heads(&energy), hub.heads(&energy));
}

#[test]
fn database_from_before_lanes_keeps_its_changes_in_the_essential_lane() {
    // A schema-1 database: one cursor; its bulk changes were pushed in seq order.
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(&dir);
    let mut a = Node::new("midan");
    let center = a.center.clone();
    let energy = a.metric(DocKind::Energy, 4, "pv_wh", 1);
    let (case, c) = new_case(&center, "MID", 1, "01020304050");
    a.edit(&case, |d| docs::create_case(d, &c));
    a.conn.execute("UPDATE changes SET lane=0", []).unwrap();
    let r = a.sync_metered(&mut hub);
    assert_eq!(
        (r.pushed, r.bulk_waiting),
        (2, 0),
        "old rows move as before"
    );
    assert_eq!(hub.heads(&energy), a.heads(&energy));
    // New bulk work is laned.
    a.metric(DocKind::Energy, 4, "pv_wh", 2);
    let r = a.sync_metered(&mut hub);
    assert_eq!((r.pushed, r.bulk_waiting), (0, 1));
    let r = a.sync(&mut hub);
    assert_eq!(r.pushed_bulk, 1);
    assert_converged(&mut a, &mut hub);
}

#[derive(Debug, Clone)]
enum Op {
    NewCase(usize, u32),
    Event(usize, u32, u8),
    Citizen(usize, u8),
    Metric(usize, u8, i64),
    Sync(usize),
    MeteredSync(usize),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 1..4u32).prop_map(|(n, k)| Op::NewCase(n, k)),
        (0..3usize, 1..4u32, 0..3u8).prop_map(|(n, k, e)| Op::Event(n, k, e)),
        (0..3usize, 0..4u8).prop_map(|(n, f)| Op::Citizen(n, f)),
        (0..3usize, 1..3u8, 0..100i64).prop_map(|(n, d, v)| Op::Metric(n, d, v)),
        (0..3usize).prop_map(Op::Sync),
        (0..3usize).prop_map(Op::MeteredSync),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn converges_under_random_orders_and_partitions(ops in proptest::collection::vec(arb_op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let mut hub = hub_in(&dir);
        let mut nodes: Vec<Node> = ["midan", "qanawat", "mazzeh"].into_iter().map(Node::new).collect();
        let nid = "01020304050";
        let cid = DocId::citizen(&nid.parse().unwrap());
        for (i, op) in ops.iter().enumerate() {
            match *op {
                Op::NewCase(n, k) => {
                    let center = nodes[n].center.clone();
                    let (id, c) = new_case(&center, "CASE", k, nid);
                    if nodes[n].heads(&id).is_empty() {
                        nodes[n].edit(&id, |d| docs::create_case(d, &c));
                    }
                }
                Op::Event(n, k, e) => {
                    let center = nodes[n].center.clone();
                    let (id, _) = new_case(&center, "CASE", k, nid);
                    if !nodes[n].heads(&id).is_empty() {
                        let kind = [CaseEventKind::Started, CaseEventKind::Ready, CaseEventKind::Notified][e as usize % 3].clone();
                        let hlc = format!("{:013}.00000.{}", i + 10, center);
                        nodes[n].edit(&id, |d| docs::append_case_event(d, &ev(kind, "c", &hlc)));
                    }
                }
                Op::Citizen(n, f) => {
                    let mut input = citizen(nid, "سامر");
                    input.address = format!("address {f} from {n}");
                    nodes[n].edit(&cid, |d| docs::write_citizen(d, &input));
                }
                Op::Metric(n, d, v) => {
                    let kind = if d == 1 { DocKind::Energy } else { DocKind::Stats };
                    nodes[n].metric(kind, d as i8, "x", v);
                }
                Op::Sync(n) => { nodes[n].sync(&mut hub); }
                Op::MeteredSync(n) => {
                    let r = nodes[n].sync_metered(&mut hub);
                    prop_assert_eq!(r.pushed_bulk, 0);
                }
            }
        }
        for _ in 0..2 {
            for n in nodes.iter_mut() { n.sync(&mut hub); }
        }
        let mut citizen_views = Vec::new();
        for n in nodes.iter_mut() {
            assert_converged(n, &mut hub);
            prop_assert!(cases_of_others(n).is_empty());
            if let Some(v) = n.docs.read(&n.conn, &cid, docs::read_citizen).unwrap() {
                citizen_views.push(v.unwrap());
            }
        }
        prop_assert!(citizen_views.windows(2).all(|w| w[0] == w[1]));
    }
}
