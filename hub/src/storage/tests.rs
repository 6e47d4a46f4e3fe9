//! Tests of the storage interface. Each body takes an engine, so the same test runs on
//! every engine (see the `engine_tests!` lists).

use super::*;
use markaz_sync::hlc::HlcClock;
use markaz_sync::model::CenterId;
use markaz_sync::protocol::contract::{RequestKind, SessionResult};

fn req(kind: RequestKind, session: Option<&str>, uplink: &str, t: i64, up: i64) -> SyncLogEntry {
    SyncLogEntry {
        center: "midan".into(),
        session: session.map(str::to_string),
        uplink: uplink.into(),
        kind,
        started_ms: t,
        ended_ms: t + 10,
        bytes_up: up,
        bytes_down: 2 * up,
        changes_up: 1,
        result: SessionResult::Ok,
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
        kind: RequestKind::Pull,
        result: SessionResult::Ok,
        cursor: Some(7),
        ..SyncLogEntry::default()
    };
    e.record_sync(&entry).expect("record");
    let facts = e.center_facts().expect("facts");
    let midan = facts.iter().find(|f| f.center == "midan").expect("midan");
    assert_eq!(midan.cursor, 7);
}

/// Retention deletes what ended before the cut, in batches, and keeps the rest; a
/// nothing-new session is its session row alone.
pub(crate) fn sync_log_keeps_its_days_and_nothing_new_is_one_row(e: &mut dyn HubEngine) {
    let old = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
    let new = "9f0c2a4e-7d1b-4c3e-a5f6-112233445566";
    record(e, &req(RequestKind::Hello, Some(old), "primary", 1_000, 10)).unwrap();
    record(e, &req(RequestKind::Push, Some(old), "primary", 2_000, 10)).unwrap();
    let kept = record(
        e,
        &req(RequestKind::Hello, Some(new), "primary", 9_000_000, 10),
    )
    .unwrap();
    // A center with nothing new: its Hello, answered by a Welcome that ends the session.
    for (i, t) in [9_100_000, 9_200_000, 9_300_000].into_iter().enumerate() {
        let mut idle = req(
            RequestKind::Hello,
            Some(&format!("00000000-0000-4000-8000-00000000000{i}")),
            "primary",
            t,
            40,
        );
        idle.changes_up = 0;
        idle.ends_session = true;
        e.record_sync(&idle).unwrap();
    }
    let sessions = list(e, Some("midan"), 9_400_000, 50).unwrap();
    assert_eq!(sessions.len(), 5, "{sessions:#?}");
    assert!(
        sessions[..3]
            .iter()
            .all(|s| s.requests == 1 && s.result == SessionResult::Ok)
    );
    assert_eq!(sessions[0].bytes_up, 40);
    let log = e.sync_log(Some("midan"), None, 50).unwrap();
    assert_eq!(
        log.len(),
        3,
        "no request row for a nothing-new session: {log:#?}"
    );

    // Nothing older than the cut: nothing deleted.
    assert_eq!(e.prune_sync_log(500, 1).unwrap(), (0, 0));
    // The cut between the old session and the new: in batches of one.
    assert_eq!(e.prune_sync_log(5_000_000, 1).unwrap(), (1, 1));
    assert_eq!(e.prune_sync_log(5_000_000, 1).unwrap(), (1, 0));
    assert_eq!(e.prune_sync_log(5_000_000, 1).unwrap(), (0, 0));
    let log = e.sync_log(Some("midan"), None, 50).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].session_id, Some(kept));
    let sessions = list(e, Some("midan"), 9_400_000, 50).unwrap();
    assert_eq!(sessions.len(), 4);
    assert!(sessions.iter().all(|s| s.started_ms >= 9_000_000));
    // The center's status is not part of the log: it stays.
    let facts = e.center_facts().unwrap();
    assert!(facts.iter().any(|f| f.center == "midan"));
}

pub(crate) fn requests_group_by_header_or_by_hello(e: &mut dyn HubEngine) {
    let c = e;
    let a = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";
    let b = "9f0c2a4e-7d1b-4c3e-a5f6-112233445566";
    let s1 = record(c, &req(RequestKind::Hello, Some(a), "primary", 0, 10)).unwrap();
    assert_eq!(
        record(c, &req(RequestKind::Push, Some(a), "modem", 20, 100)).unwrap(),
        s1
    );
    let s2 = record(c, &req(RequestKind::Hello, Some(b), "modem", 40, 10)).unwrap();
    assert_ne!(s1, s2);
    // Without the header: each Hello opens a session, the rest join the latest.
    let f1 = record(c, &req(RequestKind::Hello, None, "primary", 60, 5)).unwrap();
    assert_eq!(
        record(c, &req(RequestKind::Pull, None, "primary", 70, 5)).unwrap(),
        f1
    );
    let f2 = record(c, &req(RequestKind::Hello, None, "primary", 80, 5)).unwrap();
    assert_ne!(f1, f2);
    let mut failing = req(RequestKind::Pull, None, "primary", 90, 5);
    failing.result = SessionResult::Error;
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
    assert_eq!(first.result, SessionResult::Ok, "a newer session ended it");
    let last = by_id(f2);
    assert_eq!(last.result, SessionResult::Error);
    assert_eq!(last.error.as_deref(), Some("hub_error: commit failed"));
    assert_eq!(last.errors, 1);
    // A retry that succeeds inside the same session reopens it.
    record(c, &req(RequestKind::Pull, None, "primary", 95, 5)).unwrap();
    let rows = list(c, Some("midan"), 200, 1).unwrap();
    assert_eq!(
        (rows[0].id, rows[0].result, rows[0].ended_ms),
        (f2, SessionResult::Open, None)
    );
    assert!(list(c, Some("qanawat"), 0, 10).unwrap().is_empty());
    // A last pull that caught the center up ends the session at once.
    let mut last_pull = req(RequestKind::Pull, None, "primary", 96, 5);
    last_pull.ends_session = true;
    record(c, &last_pull).unwrap();
    let rows = list(c, Some("midan"), 200, 1).unwrap();
    assert_eq!(
        (rows[0].result, rows[0].ended_ms),
        (SessionResult::Ok, Some(106))
    );
}

/// A center in memory (its own SQLite document store) that syncs by handing its
/// requests straight to an engine's [`HubDocs::sync_request`], as the endpoint does.
pub(crate) struct MemCenter {
    pub id: CenterId,
    pub conn: rusqlite::Connection,
    pub docs: DocStore,
}

impl MemCenter {
    pub fn new(id: &str) -> MemCenter {
        let conn = rusqlite::Connection::open_in_memory().expect("memory db");
        store::migrate(&conn).expect("migrate");
        let actor = store::incarnation(&conn, id, 0).expect("actor");
        MemCenter {
            id: id.parse().expect("center id"),
            conn,
            docs: DocStore::new(actor, 16),
        }
    }

    /// One whole session against `e`.
    pub fn sync(&mut self, e: &mut dyn HubEngine) {
        let now = || jiff::Timestamp::now().as_millisecond() as u64;
        let mut s = markaz_sync::protocol::ClientSession::new(
            self.id.clone(),
            self.docs.actor().clone(),
            HlcClock::new(self.id.as_str()),
            markaz_sync::protocol::Limits::default(),
        );
        let mut n = 0;
        while let Some(req) = s
            .next_request(&self.conn, &mut self.docs, now())
            .expect("request")
        {
            n += 1;
            assert!(n < 100, "the session does not end");
            let (resp, log) = e.sync_request(&self.id, now(), Request::decode(&req));
            assert_eq!(log.error, None, "{resp:?}");
            let tx = self.conn.transaction().expect("tx");
            s.handle_response(&tx, &mut self.docs, &resp.encode(), now())
                .expect("response");
            tx.commit().expect("commit");
        }
    }

    /// A new case of this center, for pickup at `pickup`.
    pub fn new_case(&mut self, seq: u32, pickup: &str) -> DocId {
        use markaz_sync::model::case::{CaseEvent, CaseEventKind, Delivery};
        let no = markaz_sync::model::CaseNo::new("MID", 2026, seq).expect("case no");
        let c = markaz_sync::docs::NewCase {
            case_no: no.clone(),
            center: Some(self.id.clone()),
            service: "criminal_record".into(),
            citizen: "01020304050".parse().expect("nid"),
            delivery: Delivery::Pickup {
                center: pickup.parse().expect("center"),
            },
            fields: Default::default(),
            fee: None,
            created: CaseEvent {
                kind: CaseEventKind::Created,
                actor: "clerk".into(),
                desk: None,
                at: jiff::Timestamp::now(),
                hlc: format!("0000000000001.00000.{}", self.id),
            },
        };
        let id = DocId::case(Some(&self.id), &no);
        self.docs
            .create(&self.conn, &id, |d| markaz_sync::docs::create_case(d, &c))
            .expect("create case");
        id
    }

    pub fn has(&self, id: &DocId) -> bool {
        self.conn
            .query_row(
                "SELECT 1 FROM doc_meta WHERE doc_id=?1",
                [id.as_str()],
                |_| Ok(()),
            )
            .is_ok()
    }

    pub fn heads(&mut self, id: &DocId) -> Vec<automerge::ChangeHash> {
        self.docs.heads(&self.conn, id).expect("heads")
    }
}

/// The keys of a document's root map, as the hub reads it.
pub(crate) fn root_keys(e: &mut dyn HubEngine, id: &DocId) -> Vec<String> {
    use automerge::ReadDoc;
    let v = e
        .read_doc(id, &mut |d| {
            Ok(serde_json::Value::from(
                d.keys(automerge::ROOT).collect::<Vec<_>>(),
            ))
        })
        .expect("read")
        .expect("exists");
    serde_json::from_value(v).expect("keys")
}

pub(crate) fn hub_documents_route_to_the_centers_that_need_them(e: &mut dyn HubEngine) {
    assert_eq!(
        e.doc_ids("catalog").expect("ids"),
        vec![DocId::catalog()],
        "a new hub starts with the catalog"
    );
    let mut midan = MemCenter::new("midan");
    let mut qanawat = MemCenter::new("qanawat");
    let own = midan.new_case(1, "midan");
    let for_qanawat = midan.new_case(2, "qanawat");
    midan.sync(e);
    qanawat.sync(e);
    assert!(midan.has(&DocId::catalog()) && qanawat.has(&DocId::catalog()));
    assert!(qanawat.has(&for_qanawat), "a pickup at qanawat goes there");
    assert!(!qanawat.has(&own), "midan's own case stays at midan");
    assert_eq!(e.doc_ids("case").expect("ids").len(), 2);

    // A hub edit reaches the center its document is routed to, and only it.
    let staff = DocId::staff(&midan.id, "clerk1").expect("staff id");
    e.hub_edit(&staff, &mut |d| {
        markaz_sync::docs::write_staff(
            d,
            &"midan".parse().expect("center"),
            &markaz_sync::model::staff::StaffMember {
                username: "clerk1".into(),
                full_name: "موظف".into(),
                roles: vec![markaz_sync::model::staff::Role::Clerk],
                permissions: vec![],
                active: true,
            },
        )
    })
    .expect("edit");
    e.route(&staff, &midan.id).expect("route");
    midan.sync(e);
    qanawat.sync(e);
    assert!(midan.has(&staff) && !qanawat.has(&staff));

    // A change made at qanawat to the routed case comes back to midan.
    qanawat
        .docs
        .edit(&qanawat.conn, &for_qanawat, |d| {
            automerge::transaction::Transactable::put(d, automerge::ROOT, "note", "ready")
                .map_err(markaz_sync::docs::DocError::from)
        })
        .expect("edit at qanawat");
    qanawat.sync(e);
    midan.sync(e);
    assert_eq!(midan.heads(&for_qanawat), qanawat.heads(&for_qanawat));
    assert!(root_keys(e, &for_qanawat).contains(&"note".to_string()));
    // Nothing new: the feeds are drained, the heads stay.
    let before = midan.heads(&own);
    midan.sync(e);
    assert_eq!(midan.heads(&own), before);
}

/// The oversight figures per center, service and day come from the case documents as
/// each engine stores them (`HubDocs`), with the same rows.
pub(crate) fn oversight_figures_per_day_from_the_case_documents(e: &mut dyn HubEngine) {
    use crate::oversight::{OversightQuery, figures};
    let mut midan = MemCenter::new("midan");
    midan.new_case(1, "midan");
    midan.new_case(2, "qanawat");
    midan.sync(e);
    let now = jiff::Timestamp::now();
    let tz = jiff::tz::TimeZone::UTC;
    let today = now.to_zoned(tz.clone()).date();
    let q = OversightQuery {
        per_day: true,
        ..OversightQuery::default()
    };
    let rows = figures(e, &q, now, &tz).expect("figures");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(
        (r.day, r.center.as_str(), r.service.as_str()),
        (Some(today), "midan", "criminal_record")
    );
    assert_eq!((r.received, r.within_target, r.beyond_target), (2, 2, 0));
    let tomorrow = OversightQuery {
        from: today.tomorrow().ok(),
        ..OversightQuery::default()
    };
    assert!(figures(e, &tomorrow, now, &tz).expect("figures").is_empty());
}

/// Operators, sessions, API tokens, login limits and the audit log, through the
/// `operators` rules (which every engine shares) and the rows underneath.
pub(crate) fn operators_sessions_tokens_limits_and_audit(e: &mut dyn HubEngine) {
    use crate::operators::{self, AuditFilter, NewOperator, OperatorUpdate, Role, Who};
    let who = |at_ms| Who {
        operator: "admin".into(),
        address: "10.0.0.9".into(),
        at_ms,
    };
    assert_eq!(e.operator_count().unwrap(), 0);
    let new = |u: &str, roles: Vec<Role>| NewOperator {
        username: u.into(),
        full_name: format!("{u} <b>"),
        roles,
        language: "ar".into(),
    };
    operators::create(e, &new("admin", vec![Role::Admin]), "h0".into(), &who(1)).unwrap();
    let amal = operators::create(
        e,
        &new("amal", vec![Role::Network, Role::Oversight, Role::Network]),
        "h1".into(),
        &who(2),
    )
    .unwrap();
    assert_eq!(amal.roles, vec![Role::Oversight, Role::Network]);
    assert!(matches!(
        operators::create(e, &new("amal", vec![Role::Staff]), "h".into(), &who(3)),
        Err(operators::OperatorError::Exists(_))
    ));
    assert_eq!(e.operator_count().unwrap(), 2);
    let stored = e.operator("amal").unwrap().expect("amal");
    assert_eq!(
        (stored.password_hash.as_str(), stored.full_name.as_str()),
        ("h1", "amal <b>")
    );
    assert!(e.operator("nobody").unwrap().is_none());

    // Sessions: kept by hash, touched, ended one by one, all of an operator, or pruned.
    let rec = |created_ms, last_seen_ms| crate::operators::SessionRecord {
        username: "amal".parse().unwrap(),
        created_ms,
        last_seen_ms,
    };
    e.insert_session("s1", &rec(10, 10)).unwrap();
    e.insert_session("s2", &rec(10, 10)).unwrap();
    e.insert_session("s3", &rec(500, 500)).unwrap();
    e.touch_session("s1", 400).unwrap();
    assert_eq!(e.session("s1").unwrap(), Some(rec(10, 400)));
    e.delete_session("s1").unwrap();
    assert_eq!(e.session("s1").unwrap(), None);
    e.prune_sessions(0, 100).unwrap();
    assert_eq!(e.session("s2").unwrap(), None, "idle too long");
    assert!(e.session("s3").unwrap().is_some());
    // Deactivating ends the sessions; the last active admin keeps the role.
    let off = OperatorUpdate {
        active: Some(false),
        ..OperatorUpdate::default()
    };
    assert!(!operators::update(e, "amal", &off, &who(20)).unwrap().active);
    assert_eq!(e.session("s3").unwrap(), None);
    assert!(operators::update(e, "admin", &off, &who(21)).is_err());
    assert!(e.operator("admin").unwrap().unwrap().active);

    // API tokens: by hash, marking their use; revoked by id.
    let t = operators::add_token(e, "amal", "backup", "th1", &who(30)).unwrap();
    assert_eq!(e.use_api_token("th1", 31).unwrap().as_deref(), Some("amal"));
    assert_eq!(e.use_api_token("nope", 31).unwrap(), None);
    let listed = e.api_tokens(Some("amal")).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id, listed[0].last_used_ms), (t.id, Some(31)));
    assert!(e.api_tokens(Some("admin")).unwrap().is_empty());
    operators::revoke_token(e, t.id, &who(32)).unwrap();
    assert_eq!(e.use_api_token("th1", 33).unwrap(), None);
    assert!(!e.delete_api_token(t.id).unwrap());

    // Login limits per (username, address).
    assert_eq!(e.login_failures("amal", "10.0.0.1").unwrap().count, 0);
    let f = |count, last_ms| markaz_web::login::Failures { count, last_ms };
    e.set_login_failures("amal", "10.0.0.1", f(3, 40)).unwrap();
    e.set_login_failures("amal", "10.0.0.1", f(4, 41)).unwrap();
    e.set_login_failures("amal", "10.0.0.2", f(1, 42)).unwrap();
    assert_eq!(e.login_failures("amal", "10.0.0.1").unwrap(), f(4, 41));
    let limits = e.login_limits().unwrap();
    assert_eq!(limits.len(), 2);
    assert_eq!(limits[0].address, "10.0.0.2", "newest first");
    assert_eq!(e.clear_login_failures("amal", Some("10.0.0.1")).unwrap(), 1);
    assert_eq!(e.login_failures("amal", "10.0.0.2").unwrap(), f(1, 42));
    assert_eq!(
        operators::clear_limit(e, "amal", None, &who(43)).unwrap(),
        1
    );
    assert!(e.login_limits().unwrap().is_empty());

    // The audit log: every change above, newest first, filtered.
    let all = e.audit(&AuditFilter::default()).unwrap();
    let kinds: Vec<&str> = all.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "operator.login_limit.clear",
            "operator.token.revoke",
            "operator.token.create",
            "operator.update",
            "operator.create",
            "operator.create",
        ]
    );
    assert_eq!(all[3].before.as_ref().unwrap()["active"], true);
    assert_eq!(all[3].after.as_ref().unwrap()["active"], false);
    assert_eq!(all[0].address, "10.0.0.9");
    let mut centered = who(50).entry("staff.grant", Some("midan"), "midan/huda", None, None);
    e.record_audit(&centered).unwrap();
    centered.operator = "rana".into();
    centered.kind = "catalog.fee".into();
    centered.center = None;
    e.record_audit(&centered).unwrap();
    let by = |e: &mut dyn HubEngine, f: AuditFilter| -> Vec<String> {
        e.audit(&f).unwrap().into_iter().map(|a| a.kind).collect()
    };
    assert_eq!(
        by(
            e,
            AuditFilter {
                center: Some("midan".into()),
                ..AuditFilter::default()
            }
        ),
        ["staff.grant"]
    );
    assert_eq!(
        by(
            e,
            AuditFilter {
                operator: Some("rana".into()),
                ..AuditFilter::default()
            }
        ),
        ["catalog.fee"]
    );
    assert_eq!(
        by(
            e,
            AuditFilter {
                kind: Some("operator.token.".into()),
                ..AuditFilter::default()
            }
        ),
        ["operator.token.revoke", "operator.token.create"]
    );
    assert_eq!(
        by(
            e,
            AuditFilter {
                kind: Some("operator.".into()),
                limit: Some(2),
                ..AuditFilter::default()
            }
        )
        .len(),
        2
    );
}

/// One `#[test]` per body for an engine made by `$open` (a function of the test's name
/// giving a boxed engine and whatever must live as long as it, or `None` when the engine
/// is not available here and the test is skipped).
macro_rules! engine_tests {
    ($open:path; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let Some((mut e, _keep)) = $open(stringify!($name)) else { return };
                super::$name(&mut *e);
            }
        )*
    };
}
pub(crate) use engine_tests;

mod sqlite {
    fn open(_test: &str) -> Option<(Box<dyn super::HubEngine>, tempfile::TempDir)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = super::HubDb::open(dir.path()).expect("open");
        Some((Box::new(db), dir))
    }

    super::engine_tests!(open;
        counters_count_and_status_keeps_the_cursor,
        sync_log_keeps_its_days_and_nothing_new_is_one_row,
        requests_group_by_header_or_by_hello,
        hub_documents_route_to_the_centers_that_need_them,
        operators_sessions_tokens_limits_and_audit,
        oversight_figures_per_day_from_the_case_documents,
    );
}

mod pg;
