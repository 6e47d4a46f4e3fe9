//! Work done at the hub on documents: portal intake (a paid case created at the hub for
//! pickup at a center or delivery by post) and the administration of staff permissions.
//!
//! A portal case gets the number `WEB-YYYY-nnnnnn`, a `Created` and a `Paid` (e-payment)
//! event, and is routed with its citizen to the pickup center's feed, so the center
//! receives both at its next sync. A permission granted or revoked here is written to the
//! staff document of that center, which is routed to it: it takes effect at its next sync.

use std::collections::BTreeMap;

use automerge::AutoCommit;
use markaz_sync::docs::{self, DocId, NewCase, PermissionDecision};
use markaz_sync::model::case::{Bank, CaseEvent, CaseEventKind, Delivery, Payment};
use markaz_sync::model::catalog::{Authority, validate_fields};
use markaz_sync::model::{CaseNo, CenterId, CitizenInput, StaffMember};
use serde::{Deserialize, Serialize};

use crate::storage::{HubEngine, StorageError};

/// Why a hub operation was refused; the web layer maps these to status codes.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// The input is wrong (400/422): `field` names what.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("not found: {0}")]
    NotFound(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn invalid(field: &str, message: impl ToString) -> PortalError {
    PortalError::Invalid {
        field: field.into(),
        message: message.to_string(),
    }
}

/// The e-payment that paid a portal case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EPayment {
    pub reference: String,
    pub bank: Bank,
}

/// `POST /api/v1/portal/cases` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalIntake {
    pub citizen: CitizenInput,
    pub service: String,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    pub payment: EPayment,
    /// `{"mode":"pickup","center":"midan"}` or `{"mode":"post","address":"…"}`.
    pub delivery: Delivery,
}

/// What intake created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalCase {
    pub case_no: String,
    pub doc_id: String,
    pub citizen_doc: String,
    /// The center it was routed to, if pickup.
    pub routed_to: Option<String>,
}

/// Create a portal case (and its citizen profile) at the hub and route both to the
/// pickup center. Runs on the writer thread.
pub fn intake(
    e: &mut dyn HubEngine,
    p: &PortalIntake,
    now: jiff::Timestamp,
) -> Result<PortalCase, PortalError> {
    let profile = p.citizen.parse().map_err(|errs| {
        invalid(
            "citizen",
            errs.iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let reference = p.payment.reference.trim();
    if reference.is_empty() || reference.len() > 64 {
        return Err(invalid("payment.reference", "1 to 64 characters"));
    }
    let pickup = match &p.delivery {
        Delivery::Pickup { center } => Some(center.clone()),
        Delivery::Post { address } if address.trim().is_empty() => {
            return Err(invalid("delivery.address", "required for post"));
        }
        Delivery::Post { .. } => None,
    };
    let mut catalog = None;
    e.read_doc(&DocId::catalog(), &mut |d| {
        catalog = Some(docs::read_catalog(d)?);
        Ok(serde_json::Value::Null)
    })?;
    let catalog = catalog.ok_or_else(|| PortalError::NotFound("catalog".into()))?;
    let service = catalog
        .services
        .iter()
        .find(|s| s.code == p.service)
        .ok_or_else(|| invalid("service", format!("unknown service {}", p.service)))?;
    let fields = validate_fields(service, &p.fields).map_err(|errs| {
        invalid(
            "fields",
            errs.iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let fee = catalog.fees.fee_for(&service.code, today).ok();
    let year = today.year();
    let seq = e.next_counter(&format!("portal-case-{year}"))?;
    let case_no = CaseNo::new("WEB", year, seq).map_err(|err| invalid("case_no", err))?;
    let now_ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
    let event = |kind, hlc: String| CaseEvent {
        kind,
        actor: "portal".into(),
        desk: None,
        at: now,
        hlc,
    };
    let created = event(CaseEventKind::Created, e.tick_hlc(now_ms));
    let paid = event(
        CaseEventKind::Paid(Payment::EPayment {
            reference: reference.to_string(),
            bank: p.payment.bank,
        }),
        e.tick_hlc(now_ms),
    );
    let new = NewCase {
        case_no: case_no.clone(),
        center: None,
        service: service.code.clone(),
        citizen: profile.national_id.clone(),
        delivery: p.delivery.clone(),
        fields,
        fee,
        created,
    };
    let citizen_doc = DocId::citizen(&new.citizen);
    let input = p.citizen.clone();
    e.hub_edit(&citizen_doc, &mut |d| docs::write_citizen(d, &input))?;
    let id = DocId::case(None, &case_no);
    let mut first = true;
    e.hub_edit(&id, &mut |d| {
        if first {
            first = false;
            docs::create_case(d, &new)?;
        }
        docs::append_case_event(d, &paid)
    })?;
    if let Some(center) = &pickup {
        // route_stored already routes a pickup case and its citizen; this makes the
        // relay explicit and is a no-op when the route exists.
        e.route(&id, center)?;
        e.route(&citizen_doc, center)?;
    }
    tracing::info!(case = %case_no, routed_to = ?pickup, "portal case created");
    Ok(PortalCase {
        case_no: case_no.to_string(),
        doc_id: id.to_string(),
        citizen_doc: citizen_doc.to_string(),
        routed_to: pickup.map(|c| c.to_string()),
    })
}

/// `POST /api/v1/staff/{center}/{username}/permissions` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub authority: Authority,
    pub expires_on: jiff::civil::Date,
}

/// A staff member of `center` as the hub holds it, if any.
pub fn read_staff(
    e: &mut dyn HubEngine,
    center: &CenterId,
    username: &str,
) -> Result<Option<StaffMember>, PortalError> {
    let id = DocId::staff(center, username).map_err(|err| invalid("username", err))?;
    let mut staff = None;
    e.read_doc(&id, &mut |d| {
        staff = Some(docs::read_staff(d)?);
        Ok(serde_json::Value::Null)
    })?;
    Ok(staff)
}

fn edit_staff(
    e: &mut dyn HubEngine,
    center: &CenterId,
    username: &str,
    change: &dyn Fn(&mut AutoCommit, &str) -> Result<(), docs::DocError>,
) -> Result<StaffMember, PortalError> {
    let id = DocId::staff(center, username).map_err(|err| invalid("username", err))?;
    let mut exists = false;
    e.read_doc(&id, &mut |d| {
        docs::read_staff(d)?;
        exists = true;
        Ok(serde_json::Value::Null)
    })?;
    if !exists {
        return Err(PortalError::NotFound(format!("staff {center}/{username}")));
    }
    let hlc = e.tick_hlc(now_ms());
    e.hub_edit(&id, &mut |d| change(d, &hlc))?;
    let mut staff = None;
    e.read_doc(&id, &mut |d| {
        staff = Some(docs::read_staff(d)?);
        Ok(serde_json::Value::Null)
    })?;
    staff.ok_or_else(|| PortalError::NotFound(format!("staff {center}/{username}")))
}

fn now_ms() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

/// Grant (or extend) a permission of a staff member of `center`: a decision stamped by
/// the hub's clock, so of a concurrent decision at the center the later one stands.
pub fn grant(
    e: &mut dyn HubEngine,
    center: &CenterId,
    username: &str,
    g: &Grant,
) -> Result<StaffMember, PortalError> {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    if g.expires_on < today {
        return Err(invalid("expires_on", "the expiry date is already past"));
    }
    edit_staff(e, center, username, &|d, hlc| {
        docs::decide_permission(
            d,
            &PermissionDecision {
                authority: g.authority,
                expires_on: Some(g.expires_on),
                by: docs::HUB_OWNER.into(),
                hlc: hlc.into(),
            },
        )
    })
}

/// Revoke a staff member's permission for `authority` (no-op if absent).
pub fn revoke(
    e: &mut dyn HubEngine,
    center: &CenterId,
    username: &str,
    authority: Authority,
) -> Result<StaffMember, PortalError> {
    edit_staff(e, center, username, &|d, hlc| {
        let held = docs::read_staff_view(d)?
            .decisions
            .iter()
            .any(|x| x.authority == authority && x.expires_on.is_some());
        if !held {
            return Ok(());
        }
        docs::decide_permission(
            d,
            &PermissionDecision {
                authority,
                expires_on: None,
                by: docs::HUB_OWNER.into(),
                hlc: hlc.into(),
            },
        )
    })
}

/// Deactivate (or reactivate) an account at the hub. The center cannot lift a
/// deactivation made here; its own switch is apart (docs/PROTOCOL.md).
pub fn set_hub_active(
    e: &mut dyn HubEngine,
    center: &CenterId,
    username: &str,
    active: bool,
) -> Result<StaffMember, PortalError> {
    edit_staff(e, center, username, &|d, _| docs::set_hub_active(d, active))
}

/// Create or replace a staff member of `center` (hub side): name, roles, the hub's
/// active switch, and its permissions as stamped decisions.
pub fn put_staff(
    e: &mut dyn HubEngine,
    center: &CenterId,
    staff: &StaffMember,
) -> Result<(), PortalError> {
    let id = DocId::staff(center, &staff.username).map_err(|err| invalid("username", err))?;
    let hlc = e.tick_hlc(now_ms());
    e.hub_edit(&id, &mut |d| {
        docs::write_staff_stamped(d, center, staff, docs::HUB_OWNER, &hlc)
    })?;
    Ok(())
}

/// One staff member of one center, as the hub's staff page and API list it (never the
/// password hash: only whether the center has set one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaffRow {
    pub center: String,
    pub username: String,
    pub full_name: String,
    pub roles: Vec<markaz_sync::model::Role>,
    /// Whether it acts: the center's switch and the hub's both on.
    pub active: bool,
    pub center_active: bool,
    pub hub_active: bool,
    pub has_password: bool,
    /// The latest decision per authority (revocations included), with whether the
    /// grant has expired.
    pub permissions: Vec<PermissionRow>,
}

/// One authority's permission of a staff member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermissionRow {
    pub authority: Authority,
    /// `None`: revoked.
    pub expires_on: Option<jiff::civil::Date>,
    pub expired: bool,
    pub by: String,
    pub hlc: String,
}

fn staff_row(v: docs::StaffView, center: &str, today: jiff::civil::Date) -> StaffRow {
    StaffRow {
        center: center.to_string(),
        username: v.member.username,
        full_name: v.member.full_name,
        roles: v.member.roles,
        active: v.member.active,
        center_active: v.center_active,
        hub_active: v.hub_active,
        has_password: v.password_hash.is_some_and(|h| h.starts_with('$')),
        permissions: v
            .decisions
            .into_iter()
            .map(|d| PermissionRow {
                authority: d.authority,
                expires_on: d.expires_on,
                expired: d.expires_on.is_some_and(|x| x < today),
                by: d.by,
                hlc: d.hlc,
            })
            .collect(),
    }
}

/// Every staff member of every center (optionally of one), by center and username;
/// accounts created at a center are here once it has synced.
pub fn list_staff(
    e: &mut dyn HubEngine,
    center: Option<&CenterId>,
    today: jiff::civil::Date,
) -> Result<Vec<StaffRow>, PortalError> {
    let mut out = Vec::new();
    for id in e.doc_ids("staff")? {
        let Some(c) = id.owner_center() else {
            continue;
        };
        if center.is_some_and(|want| want != &c) {
            continue;
        }
        let mut view = None;
        let r = e.read_doc(&id, &mut |d| {
            view = Some(docs::read_staff_view(d)?);
            Ok(serde_json::Value::Null)
        });
        match (r, view) {
            (Ok(_), Some(v)) => out.push(staff_row(v, c.as_str(), today)),
            (Err(err), _) => tracing::warn!(doc = %id, %err, "unreadable staff document"),
            _ => {}
        }
    }
    out.sort_by(|a, b| (&a.center, &a.username).cmp(&(&b.center, &b.username)));
    Ok(out)
}

/// One staff member with both ends' fields, if the hub has it.
pub fn staff_row_of(
    e: &mut dyn HubEngine,
    center: &CenterId,
    username: &str,
    today: jiff::civil::Date,
) -> Result<Option<StaffRow>, PortalError> {
    let id = DocId::staff(center, username).map_err(|err| invalid("username", err))?;
    let mut view = None;
    e.read_doc(&id, &mut |d| {
        view = Some(docs::read_staff_view(d)?);
        Ok(serde_json::Value::Null)
    })?;
    Ok(view.map(|v| staff_row(v, center.as_str(), today)))
}
