//! The SQL projection of documents that arrived from the hub.
//!
//! The API reads SQL tables; the documents are the truth. After the sync session merges
//! remote changes, [`project`] rewrites the rows of every touched document from its
//! merged state, inside the same writer transaction as the merge — a query never sees a
//! document state without its rows, nor rows of a state the documents don't have.
//!
//! Guarantees: a case's rows (`cases`, `case_events`) are rebuilt wholly from the
//! document, status and conflict from `model::case::derive`, and its citizen as at
//! intake when the document recorded one; a citizen's row from its flat fields and its
//! edit history (`citizen_edits`) from its `edit:` entries; a staff document of *this*
//! center replaces the account's name, roles, both active switches (its own and the
//! hub's) and permissions (so a revocation or deactivation at the hub takes effect
//! here); an account without a usable hash here takes the document's (a center rebuilt
//! from the hub logs its staff in with their passwords), and one the hub created without
//! a hash gets an unusable one until an admin sets it. A document
//! that cannot be read is skipped and named in the outcome, never fatal: one bad
//! document must not stop the center's sync.

use markaz_sync::docs::{self as sync_docs, CaseView, DocId, DocKind};
use markaz_sync::model::case::{CaseEvent, CaseEventKind};
use markaz_sync::model::catalog::Service;
use markaz_sync::model::fees::Fee;
use markaz_sync::model::ids::CenterId;
use markaz_sync::model::money::Money;
use markaz_sync::store::{DocStore, StoreError};
use rand::RngCore;
use rusqlite::{Connection, params};

/// Why a projection could not be written (the whole transaction rolls back).
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("documents: {0}")]
    Store(Box<StoreError>),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<StoreError> for ProjectError {
    fn from(e: StoreError) -> ProjectError {
        ProjectError::Store(Box::new(e))
    }
}

/// What one projection pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projected {
    /// Cases rewritten: (case number, status key), for live events after commit.
    pub cases: Vec<(String, String)>,
    pub citizens: usize,
    pub staff: usize,
    /// A changed catalog document: its services and fee histories (install after
    /// commit with `App::install_catalog`).
    pub catalog: Option<sync_docs::CatalogView>,
    /// Documents left as they were: (document id, why).
    pub skipped: Vec<(String, String)>,
}

/// Rewrites the SQL rows of every document in `ids` from its merged state. `center` is
/// this node's center; `catalog` the services it knows (for a case's authority and
/// target time); `now` stamps rows this pass creates.
pub fn project(
    conn: &Connection,
    docs: &mut DocStore,
    center: &CenterId,
    catalog: &[Service],
    now: jiff::Timestamp,
    ids: &[DocId],
) -> Result<Projected, ProjectError> {
    let mut out = Projected::default();
    // The catalog first: a case of a service the hub has just added, arriving in the
    // same batch, must find its service (a skipped case is not projected again until
    // its document changes).
    let mut known: Vec<Service> = catalog.to_vec();
    if ids.iter().any(|id| id.kind() == DocKind::Catalog)
        && let Some(Ok(view)) = docs.read(conn, &DocId::catalog(), sync_docs::read_catalog)?
    {
        for s in &view.services {
            match known.iter_mut().find(|k| k.code == s.code) {
                Some(k) => *k = s.clone(),
                None => known.push(s.clone()),
            }
        }
    }
    let catalog = known.as_slice();
    for id in ids {
        let skip = |out: &mut Projected, why: String| out.skipped.push((id.to_string(), why));
        match id.kind() {
            DocKind::Case => match docs.read(conn, id, sync_docs::read_case)? {
                Some(Ok(view)) => match project_case(conn, &view, catalog)? {
                    Ok(status) => out.cases.push((view.case_no.to_string(), status)),
                    Err(why) => skip(&mut out, why),
                },
                Some(Err(e)) => skip(&mut out, e.to_string()),
                None => skip(&mut out, "document missing".into()),
            },
            DocKind::Citizen => match docs.read(conn, id, sync_docs::read_citizen)? {
                Some(Ok(view)) => match project_citizen(conn, &view, now)? {
                    Ok(()) => out.citizens += 1,
                    Err(why) => skip(&mut out, why),
                },
                Some(Err(e)) => skip(&mut out, e.to_string()),
                None => skip(&mut out, "document missing".into()),
            },
            DocKind::Staff => {
                if id.owner_center().as_ref() != Some(center) {
                    skip(&mut out, "staff of another center".into());
                    continue;
                }
                match docs.read(conn, id, sync_docs::read_staff_view)? {
                    Some(Ok(view)) => {
                        project_staff(conn, &view, now)?;
                        out.staff += 1;
                    }
                    Some(Err(e)) => skip(&mut out, e.to_string()),
                    None => skip(&mut out, "document missing".into()),
                }
            }
            DocKind::Catalog => match docs.read(conn, id, sync_docs::read_catalog)? {
                // What the document lacks (services, fees) the center keeps: an empty
                // catalog the hub has not filled yet must not stop intake here.
                Some(Ok(view)) if !(view.fees.services.is_empty() && view.services.is_empty()) => {
                    out.catalog = Some(view)
                }
                Some(Ok(_)) => skip(&mut out, "empty catalog".into()),
                Some(Err(e)) => skip(&mut out, e.to_string()),
                None => skip(&mut out, "document missing".into()),
            },
            // Written here, only read at the hub: nothing to project.
            DocKind::Stats | DocKind::Energy => {}
        }
    }
    Ok(out)
}

/// The serde name of a unit-like enum value (`"ready"`, `"civil_affairs"`).
fn key<T: serde::Serialize>(v: &T) -> Result<String, serde_json::Error> {
    Ok(match serde_json::to_value(v)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
        other => other.to_string(),
    })
}

/// Upserts the case row and rebuilds its events; `Ok(Err(why))` when it cannot be shown
/// here (a service this node does not know).
fn project_case(
    conn: &Connection,
    view: &CaseView,
    catalog: &[Service],
) -> Result<Result<String, String>, ProjectError> {
    let Some(service) = catalog.iter().find(|s| s.code == view.service) else {
        return Ok(Err(format!("unknown service {}", view.service)));
    };
    let Some(first) = view
        .events
        .iter()
        .find(|e| matches!(e.kind, CaseEventKind::Created))
        .or(view.events.first())
    else {
        return Ok(Err("case without events".into()));
    };
    let created_at = first.at;
    let updated_at = view.events.iter().map(|e| e.at).max().unwrap_or(created_at);
    let target_at = created_at + jiff::SignedDuration::from_hours(i64::from(service.target_hours));
    // A portal case paid at the hub carries no frozen fee: nothing is due at the desk.
    let fee = view.fee.clone().unwrap_or(Fee {
        authority: Money::ZERO,
        surcharge: Money::ZERO,
        total: Money::ZERO,
        authority_decision: String::new(),
        surcharge_decision: String::new(),
    });
    let status = key(&view.derived.status)?;
    conn.execute(
        "INSERT INTO cases(case_no, national_id, service_code, authority, fields, delivery, fee, fee_total, status, conflict, payment, target_at, created_by, created_at, updated_at, citizen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT(case_no) DO UPDATE SET national_id = excluded.national_id, service_code = excluded.service_code,
           authority = excluded.authority, fields = excluded.fields, delivery = excluded.delivery, fee = excluded.fee,
           fee_total = excluded.fee_total, status = excluded.status, conflict = excluded.conflict,
           payment = excluded.payment, updated_at = excluded.updated_at,
           citizen = coalesce(excluded.citizen, cases.citizen)",
        params![
            view.case_no.as_str(),
            view.citizen.as_str(),
            view.service,
            key(&service.authority)?,
            serde_json::to_string(&view.fields)?,
            serde_json::to_string(&view.delivery)?,
            serde_json::to_string(&fee)?,
            fee.total.piastres(),
            status,
            stored_conflict(view)?,
            view.derived.payment.as_ref().map(serde_json::to_string).transpose()?,
            target_at.to_string(),
            first.actor,
            created_at.to_string(),
            updated_at.to_string(),
            view.citizen_profile.as_ref().map(serde_json::to_string).transpose()?,
        ],
    )?;
    conn.execute(
        "DELETE FROM case_events WHERE case_no = ?1",
        [view.case_no.as_str()],
    )?;
    for (idx, ev) in view.events.iter().enumerate() {
        insert_event(conn, view.case_no.as_str(), idx, ev)?;
    }
    Ok(Ok(status))
}

/// The `conflict` column of a case: its derived conflict, and for two cases created under
/// one number, the other cases whole (`twins`), so they stay readable here.
fn stored_conflict(view: &CaseView) -> Result<Option<String>, ProjectError> {
    let Some(c) = &view.derived.conflict else {
        return Ok(None);
    };
    let mut v = serde_json::to_value(c)?;
    if !view.twins.is_empty()
        && let serde_json::Value::Object(m) = &mut v
    {
        m.insert("twins".into(), serde_json::to_value(&view.twins)?);
    }
    Ok(Some(serde_json::to_string(&v)?))
}

fn insert_event(
    conn: &Connection,
    case_no: &str,
    idx: usize,
    ev: &CaseEvent,
) -> Result<(), ProjectError> {
    conn.execute(
        "INSERT INTO case_events(case_no, idx, at, actor, desk, kind, json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            case_no,
            idx as i64,
            ev.at.to_string(),
            ev.actor,
            ev.desk,
            crate::app::cases::event_name(&ev.kind)?,
            serde_json::to_string(ev)?
        ],
    )?;
    Ok(())
}

fn project_citizen(
    conn: &Connection,
    view: &sync_docs::CitizenView,
    now: jiff::Timestamp,
) -> Result<Result<(), String>, ProjectError> {
    let c = &view.input;
    if c.national_id.is_empty() {
        return Ok(Err("citizen without national id".into()));
    }
    let phone = (!c.phone.is_empty()).then_some(c.phone.as_str());
    conn.execute(
        "INSERT INTO citizens(national_id, full_name, father_name, mother_name, birth_date, birth_place, phone, address, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
         ON CONFLICT(national_id) DO UPDATE SET full_name = excluded.full_name, father_name = excluded.father_name,
           mother_name = excluded.mother_name, birth_date = excluded.birth_date, birth_place = excluded.birth_place,
           phone = excluded.phone, address = excluded.address, updated_at = excluded.updated_at",
        params![
            c.national_id,
            c.full_name,
            c.father_name,
            c.mother_name,
            c.birth_date,
            c.birth_place,
            phone,
            c.address,
            now.to_string()
        ],
    )?;
    // Edits are only ever added; rows already here stay.
    for e in &view.edits {
        crate::app::citizens::insert_edit(conn, &c.national_id, e)?;
    }
    Ok(Ok(()))
}

/// A password hash no password verifies against (not a PHC string): an account created
/// at the hub cannot log in until an admin here sets its password.
fn unusable_password_hash() -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    format!("!unset:{}", hex::encode(salt))
}

fn project_staff(
    conn: &Connection,
    v: &sync_docs::StaffView,
    now: jiff::Timestamp,
) -> Result<(), ProjectError> {
    let now = now.to_string();
    let m = &v.member;
    // A hash from the document only fills an account that has none usable here (one
    // the hub created, or every account of a center rebuilt from the hub): a password
    // changed here since is never replaced by an older copy.
    let hash = v
        .password_hash
        .clone()
        .filter(|h| h.starts_with('$'))
        .unwrap_or_else(unusable_password_hash);
    conn.execute(
        "INSERT INTO staff(username, full_name, password_hash, roles, active, hub_active, language, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, coalesce(?7, 'ar'), ?8, ?8)
         ON CONFLICT(username) DO UPDATE SET full_name = excluded.full_name, roles = excluded.roles,
           active = excluded.active, hub_active = excluded.hub_active,
           language = coalesce(?7, staff.language), updated_at = excluded.updated_at,
           password_hash = CASE WHEN staff.password_hash NOT LIKE '$%' AND excluded.password_hash LIKE '$%'
                                THEN excluded.password_hash ELSE staff.password_hash END",
        params![
            m.username,
            m.full_name,
            hash,
            serde_json::to_string(&m.roles)?,
            v.center_active,
            v.hub_active,
            v.language,
            now
        ],
    )?;
    conn.execute(
        "DELETE FROM staff_permissions WHERE username = ?1",
        [&m.username],
    )?;
    for d in &v.decisions {
        let Some(expires_on) = d.expires_on else {
            continue;
        };
        conn.execute(
            "INSERT INTO staff_permissions(username, authority, expires_on, granted_by, granted_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![m.username, key(&d.authority)?, expires_on.to_string(), d.by, now],
        )?;
    }
    if !m.active {
        conn.execute("DELETE FROM sessions WHERE username = ?1", [&m.username])?;
    }
    Ok(())
}
