//! Document ids and the typed schemas of the synced documents over automerge.
//!
//! One automerge document per case, per citizen (id derived from the national id), per
//! staff member, one for the catalog and fees, one per center-day of statistics and one
//! per center-day of energy summary. Layout rules that keep merges honest:
//!
//! - every field two places may set concurrently is a flat scalar at the root (a
//!   concurrent `put_object` on one key would keep only one of the two objects); values
//!   that are set as a whole (delivery, fee, roles) are JSON text scalars;
//! - a case's history is the append-only list `events` (each element the JSON of a
//!   [`CaseEvent`]), created once by the case's creator, so concurrent appends all survive;
//! - edits only write keys whose value changes, so two centers editing different fields
//!   of one citizen both win;
//! - a citizen's edit history is one root scalar per edit, keyed `edit:<hlc>` (the stamp
//!   names the node), not a list: two centers that register the same citizen offline
//!   would each create the list and one would be lost; distinct keys all survive;
//! - a case keeps its citizen's profile as at intake (`citizen_profile`, JSON), the way it
//!   keeps its fee: later edits of the profile do not change what the case recorded.
//! - a voided cash receipt is one root scalar per receipt, `void:<receipt>` (JSON of a
//!   [`ReceiptVoid`]): the payment event stays in `events`, the receipt is never deleted.
//!
//! Reading never fails on a merged value it does not understand: it is counted and
//! flagged in the view (`unreadable`, `conflicts`) rather than dropped silently.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjId as ExId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::case::{
    CaseEvent, CaseEventKind, Conflict, Delivery, Derived, ReceiptVoid, derive,
};
use crate::model::catalog::Service;
use crate::model::citizen::{CitizenEdit, CitizenInput, CitizenProfile};
use crate::model::fees::{Fee, FeeSchedule, ServiceFees};
use crate::model::ids::{CaseNo, CenterId, NationalId};
use crate::model::staff::StaffMember;

/// Errors of document ids and document edits/reads.
#[derive(Debug, Error)]
pub enum DocError {
    #[error("bad document id {id:?}: {why}")]
    BadId { id: String, why: &'static str },
    #[error("document {0} lacks its {1} field")]
    Missing(String, &'static str),
    #[error("document is a {found}, not a {expected}")]
    WrongKind {
        expected: &'static str,
        found: String,
    },
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// The kinds of synced document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    Case,
    Citizen,
    Staff,
    Catalog,
    Stats,
    Energy,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Case => "case",
            DocKind::Citizen => "citizen",
            DocKind::Staff => "staff",
            DocKind::Catalog => "catalog",
            DocKind::Stats => "stats",
            DocKind::Energy => "energy",
        }
    }
}

/// Who owns (may write, and receives) a document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The governorate hub (catalog, portal cases).
    Hub,
    /// One center.
    Center(CenterId),
    /// Nobody in particular: citizen profiles are shared by every center that serves them.
    Shared,
}

/// The owner segment used for documents the hub owns (so `hub` is not a center id).
pub const HUB_OWNER: &str = "hub";

/// A document id: `case:<owner>:<case no>`, `citizen:<blake3(nid) hex>`,
/// `staff:<center>:<username>`, `catalog`, `stats:<center>:<YYYY-MM-DD>`,
/// `energy:<center>:<YYYY-MM-DD>`. Only valid ids can be built.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DocId(String);

/// Longest document id.
pub const MAX_DOC_ID: usize = 200;

impl DocId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The one catalog + fees document.
    pub fn catalog() -> DocId {
        DocId("catalog".into())
    }

    /// A case at `owner` (`None`: a portal case owned by the hub).
    pub fn case(owner: Option<&CenterId>, no: &CaseNo) -> DocId {
        DocId(format!(
            "case:{}:{}",
            owner.map_or(HUB_OWNER, |c| c.as_str()),
            no.as_str()
        ))
    }

    /// The citizen document of a national id: the same at every center.
    pub fn citizen(nid: &NationalId) -> DocId {
        DocId(format!(
            "citizen:{}",
            blake3::hash(nid.as_str().as_bytes()).to_hex()
        ))
    }

    /// A staff member of a center.
    pub fn staff(center: &CenterId, username: &str) -> Result<DocId, DocError> {
        format!("staff:{}:{}", center.as_str(), username).parse()
    }

    /// A center-day of queue statistics.
    pub fn stats(center: &CenterId, day: Date) -> DocId {
        DocId(format!("stats:{}:{}", center.as_str(), day))
    }

    /// A center-day of energy summary.
    pub fn energy(center: &CenterId, day: Date) -> DocId {
        DocId(format!("energy:{}:{}", center.as_str(), day))
    }

    /// The kind, read from the prefix.
    pub fn kind(&self) -> DocKind {
        match self.0.split(':').next() {
            Some("case") => DocKind::Case,
            Some("citizen") => DocKind::Citizen,
            Some("staff") => DocKind::Staff,
            Some("stats") => DocKind::Stats,
            Some("energy") => DocKind::Energy,
            _ => DocKind::Catalog,
        }
    }

    /// Who owns the document.
    pub fn owner(&self) -> Owner {
        match self.kind() {
            DocKind::Catalog => Owner::Hub,
            DocKind::Citizen => Owner::Shared,
            _ => {
                let seg = self.0.split(':').nth(1).unwrap_or(HUB_OWNER);
                if seg == HUB_OWNER {
                    Owner::Hub
                } else {
                    seg.parse().map_or(Owner::Hub, Owner::Center)
                }
            }
        }
    }

    /// The owning center, if a center owns it.
    pub fn owner_center(&self) -> Option<CenterId> {
        match self.owner() {
            Owner::Center(c) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DocId {
    type Err = DocError;
    fn from_str(s: &str) -> Result<DocId, DocError> {
        let bad = |why| DocError::BadId {
            id: s.chars().take(MAX_DOC_ID).collect(),
            why,
        };
        if s.len() > MAX_DOC_ID {
            return Err(bad("too long"));
        }
        if s == "catalog" {
            return Ok(DocId(s.into()));
        }
        let parts: Vec<&str> = s.splitn(3, ':').collect();
        let center = |p: &str| -> Result<(), DocError> {
            if p == HUB_OWNER {
                return Err(bad("`hub` is not a center"));
            }
            CenterId::from_str(p)
                .map(|_| ())
                .map_err(|_| bad("bad center id"))
        };
        match parts.as_slice() {
            ["case", owner, no] => {
                if *owner != HUB_OWNER {
                    center(owner)?;
                }
                CaseNo::from_str(no).map_err(|_| bad("bad case number"))?;
            }
            ["citizen", h] => {
                if h.len() != 64 || !h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(bad("citizen id is 64 lowercase hex digits"));
                }
            }
            ["staff", c, user] => {
                center(c)?;
                if user.is_empty()
                    || user.len() > 64
                    || !user
                        .chars()
                        .all(|ch| ch.is_alphanumeric() || "._-".contains(ch))
                {
                    return Err(bad("bad username"));
                }
            }
            ["stats" | "energy", c, day] => {
                center(c)?;
                Date::from_str(day).map_err(|_| bad("bad day"))?;
                if day.len() != 10 {
                    return Err(bad("day is YYYY-MM-DD"));
                }
            }
            _ => return Err(bad("unknown kind")),
        }
        Ok(DocId(s.to_string()))
    }
}

impl TryFrom<String> for DocId {
    type Error = DocError;
    fn try_from(s: String) -> Result<DocId, DocError> {
        s.parse()
    }
}

impl From<DocId> for String {
    fn from(d: DocId) -> String {
        d.0
    }
}

// ---- helpers ------------------------------------------------------------------------

const KIND: &str = "kind";

fn get_str(doc: &AutoCommit, key: &str) -> Result<Option<String>, DocError> {
    Ok(doc
        .get(ROOT, key)?
        .and_then(|(v, _)| v.as_str().map(str::to_string)))
}

fn need_str(doc: &AutoCommit, key: &'static str) -> Result<String, DocError> {
    get_str(doc, key)?.ok_or_else(|| DocError::Missing(doc_label(doc), key))
}

fn doc_label(doc: &AutoCommit) -> String {
    get_str(doc, KIND).ok().flatten().unwrap_or_default()
}

/// Put a root scalar only when it differs (so untouched fields keep no new ops).
fn put_if_changed(
    doc: &mut AutoCommit,
    key: &str,
    value: impl Into<ScalarValue>,
) -> Result<(), DocError> {
    let value = value.into();
    let same = match doc.get(ROOT, key)? {
        Some((Value::Scalar(cur), _)) => *cur == value && doc.get_all(ROOT, key)?.len() == 1,
        _ => false,
    };
    if !same {
        doc.put(ROOT, key, value)?;
    }
    Ok(())
}

fn check_kind(doc: &AutoCommit, kind: DocKind) -> Result<(), DocError> {
    match get_str(doc, KIND)? {
        Some(k) if k == kind.as_str() => Ok(()),
        Some(k) => Err(DocError::WrongKind {
            expected: kind.as_str(),
            found: k,
        }),
        None => Err(DocError::Missing(String::new(), KIND)),
    }
}

/// Root keys whose value is in conflict (two concurrent writes); automerge keeps one as
/// the value and both as alternatives.
pub fn conflicted_keys(doc: &AutoCommit) -> Vec<String> {
    doc.keys(ROOT)
        .filter(|k| doc.get_all(ROOT, k.as_str()).map_or(0, |v| v.len()) > 1)
        .collect()
}

// ---- case ---------------------------------------------------------------------------

/// What a case is created with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCase {
    pub case_no: CaseNo,
    /// Owning center (`None`: a portal case at the hub).
    pub center: Option<CenterId>,
    pub service: String,
    pub citizen: NationalId,
    pub delivery: Delivery,
    pub fields: BTreeMap<String, String>,
    pub fee: Option<Fee>,
    /// The `Created` event (its hlc orders it first).
    pub created: CaseEvent,
}

/// A case as read from its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseView {
    pub case_no: CaseNo,
    pub center: Option<CenterId>,
    pub service: String,
    pub citizen: NationalId,
    pub delivery: Delivery,
    pub fields: BTreeMap<String, String>,
    pub fee: Option<Fee>,
    /// The citizen's profile as at intake (`None`: a case made before cases kept it, or
    /// a portal case).
    pub citizen_profile: Option<CitizenProfile>,
    /// Every readable event, in the model's total order.
    pub events: Vec<CaseEvent>,
    /// Status, payment, routing and a kept, flagged conflict (from `model::case::derive`).
    pub derived: Derived,
    /// Elements of the event list that could not be read (kept in the doc, counted here).
    pub unreadable: usize,
    /// Root keys written concurrently.
    pub conflicts: Vec<String>,
    /// Other cases created independently under the same document id (two cases given
    /// one number): each read from its own creation, each flagged with a
    /// double-creation conflict like this one. Empty for a sound case.
    pub twins: Vec<CaseView>,
}

/// The root key a document's creator writes once, with a random value: the identity of
/// that creation. A second, independent creation of the same document id leaves a second
/// value under it (automerge keeps both), so it is never silently merged into the first.
pub const CREATION: &str = "creation";

/// A fresh creation identity (16 random bytes, hex).
pub fn new_creation_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// How many independent creations a document holds under its [`CREATION`] key (0 for
/// a document made before creation ids); more than 1 is a double creation.
pub fn creations(doc: &AutoCommit) -> usize {
    doc.get_all(ROOT, CREATION).map_or(0, |v| v.len())
}

/// Write a new case into an empty document.
pub fn create_case(doc: &mut AutoCommit, c: &NewCase) -> Result<(), DocError> {
    doc.put(ROOT, KIND, DocKind::Case.as_str())?;
    doc.put(ROOT, CREATION, new_creation_id())?;
    doc.put(ROOT, "case_no", c.case_no.as_str())?;
    doc.put(
        ROOT,
        "center",
        c.center.as_ref().map_or(HUB_OWNER, |c| c.as_str()),
    )?;
    doc.put(ROOT, "service", c.service.as_str())?;
    doc.put(ROOT, "citizen", c.citizen.as_str())?;
    doc.put(ROOT, "delivery", serde_json::to_string(&c.delivery)?)?;
    doc.put(ROOT, "fields", serde_json::to_string(&c.fields)?)?;
    doc.put(ROOT, "fee", serde_json::to_string(&c.fee)?)?;
    let list = doc.put_object(ROOT, "events", ObjType::List)?;
    doc.insert(&list, 0, serde_json::to_string(&c.created)?)?;
    Ok(())
}

/// Append one event to a case's history.
pub fn append_case_event(doc: &mut AutoCommit, e: &CaseEvent) -> Result<(), DocError> {
    check_kind(doc, DocKind::Case)?;
    let list = match doc.get(ROOT, "events")? {
        Some((Value::Object(ObjType::List), id)) => id,
        _ => return Err(DocError::Missing(doc_label(doc), "events")),
    };
    let n = doc.length(&list);
    doc.insert(&list, n, serde_json::to_string(e)?)?;
    Ok(())
}

const VOID_PREFIX: &str = "void:";

/// Record that a cash receipt of the case was voided, under its own root key
/// `void:<receipt>` (the payment event stays in `events`).
pub fn record_receipt_void(doc: &mut AutoCommit, v: &ReceiptVoid) -> Result<(), DocError> {
    check_kind(doc, DocKind::Case)?;
    put_if_changed(
        doc,
        &format!("{VOID_PREFIX}{}", v.receipt),
        serde_json::to_string(v)?,
    )
}

/// The receipt voids a case document records (unreadable entries are skipped).
pub fn read_receipt_voids(doc: &AutoCommit) -> Result<Vec<ReceiptVoid>, DocError> {
    check_kind(doc, DocKind::Case)?;
    let mut out = Vec::new();
    for k in doc
        .keys(ROOT)
        .filter(|k| k.starts_with(VOID_PREFIX))
        .collect::<Vec<_>>()
    {
        if let Some(json) = get_str(doc, &k)?
            && let Ok(v) = serde_json::from_str(&json)
        {
            out.push(v);
        }
    }
    Ok(out)
}

/// Record the citizen's profile as at intake (written once, by the case's creator).
pub fn set_case_citizen(doc: &mut AutoCommit, p: &CitizenProfile) -> Result<(), DocError> {
    check_kind(doc, DocKind::Case)?;
    put_if_changed(doc, CITIZEN_PROFILE, serde_json::to_string(p)?)
}

const CITIZEN_PROFILE: &str = "citizen_profile";

/// Change the delivery mode (a flat scalar).
pub fn set_case_delivery(doc: &mut AutoCommit, d: &Delivery) -> Result<(), DocError> {
    check_kind(doc, DocKind::Case)?;
    put_if_changed(doc, "delivery", serde_json::to_string(d)?)
}

/// The value of a root key as the creation `by` wrote it: when two creations left two
/// values, the one whose op is `by`'s; otherwise (one value, or a later write that
/// replaced both) the document's value.
fn str_of(doc: &AutoCommit, key: &str, by: Option<&ActorId>) -> Result<Option<String>, DocError> {
    if let Some(by) = by {
        let all = doc.get_all(ROOT, key)?;
        if all.len() > 1
            && let Some((v, _)) = all
                .iter()
                .find(|(_, id)| matches!(id, ExId::Id(_, a, _) if a == by))
        {
            return Ok(v.as_str().map(str::to_string));
        }
    }
    get_str(doc, key)
}

fn need_of(doc: &AutoCommit, key: &'static str, by: Option<&ActorId>) -> Result<String, DocError> {
    str_of(doc, key, by)?.ok_or_else(|| DocError::Missing(doc_label(doc), key))
}

/// A case's processing center (`None`: the hub's portal), citizen and delivery, as the
/// creation `by` wrote them (`None`: the document's values).
fn case_parties(
    doc: &AutoCommit,
    by: Option<&ActorId>,
) -> Result<(Option<CenterId>, NationalId, Delivery), DocError> {
    let bad = |why| DocError::BadId {
        id: "case".into(),
        why,
    };
    let center_s = need_of(doc, "center", by)?;
    let center = if center_s == HUB_OWNER {
        None
    } else {
        Some(center_s.parse().map_err(|_| bad("bad center"))?)
    };
    let citizen = need_of(doc, "citizen", by)?
        .parse()
        .map_err(|_| bad("bad national id"))?;
    let delivery: Delivery = serde_json::from_str(&need_of(doc, "delivery", by)?)?;
    Ok((center, citizen, delivery))
}

/// The `events` lists of a case: one per creation (two or more only when cases were
/// created independently under one id), the document's winning one first.
fn event_lists(doc: &AutoCommit) -> Result<Vec<ExId>, DocError> {
    let winner = match doc.get(ROOT, "events")? {
        Some((Value::Object(ObjType::List), id)) => Some(id),
        _ => None,
    };
    let mut lists: Vec<ExId> = doc
        .get_all(ROOT, "events")?
        .into_iter()
        .filter(|(v, _)| matches!(v, Value::Object(ObjType::List)))
        .map(|(_, id)| id)
        .collect();
    lists.sort_by_key(|id| Some(id) != winner.as_ref());
    Ok(lists)
}

/// Read a case. A document into which two independent creations were merged reads as
/// its winning creation with the others in `twins`; all of them carry a
/// double-creation conflict, so neither case hides behind the other.
pub fn read_case(doc: &AutoCommit) -> Result<CaseView, DocError> {
    check_kind(doc, DocKind::Case)?;
    let lists = event_lists(doc)?;
    if lists.len() <= 1 {
        return read_case_branch(doc, None, lists.first());
    }
    let mut views = Vec::with_capacity(lists.len());
    for list in &lists {
        let by = match list {
            ExId::Id(_, actor, _) => Some(actor),
            ExId::Root => None,
        };
        views.push(read_case_branch(doc, by, Some(list))?);
    }
    let created = |v: &CaseView| {
        v.events
            .iter()
            .find(|e| e.kind == CaseEventKind::Created)
            .cloned()
            .unwrap_or_else(|| CaseEvent {
                kind: CaseEventKind::Created,
                actor: String::new(),
                desk: None,
                at: jiff::Timestamp::UNIX_EPOCH,
                hlc: String::new(),
            })
    };
    let mut rest = views.split_off(1);
    let mut first = views.remove(0);
    let first_created = created(&first);
    if let Some(second) = rest.first() {
        first.derived.conflict = Some(Conflict::double_creation(
            first_created.clone(),
            created(second),
        ));
    }
    for twin in &mut rest {
        twin.derived.conflict = Some(Conflict::double_creation(
            first_created.clone(),
            created(twin),
        ));
    }
    first.twins = rest;
    Ok(first)
}

/// One creation of a case: root values as `by` wrote them, events from `list`.
fn read_case_branch(
    doc: &AutoCommit,
    by: Option<&ActorId>,
    list: Option<&ExId>,
) -> Result<CaseView, DocError> {
    let bad = |why| DocError::BadId {
        id: "case".into(),
        why,
    };
    let case_no = need_of(doc, "case_no", by)?
        .parse()
        .map_err(|_| bad("bad case number"))?;
    let (center, citizen, delivery) = case_parties(doc, by)?;
    let fields = serde_json::from_str(&need_of(doc, "fields", by)?)?;
    let fee = serde_json::from_str(&need_of(doc, "fee", by)?)?;
    // A profile that does not read is as good as none: the case still shows.
    let citizen_profile = str_of(doc, CITIZEN_PROFILE, by)?
        .and_then(|j| serde_json::from_str::<CitizenProfile>(&j).ok());
    let mut events = Vec::new();
    let mut unreadable = 0;
    if let Some(list) = list {
        for i in 0..doc.length(list) {
            let ev = doc
                .get(list, i)?
                .and_then(|(v, _)| v.as_str().map(str::to_string))
                .and_then(|s| serde_json::from_str::<CaseEvent>(&s).ok());
            match ev {
                Some(e) => events.push(e),
                None => unreadable += 1,
            }
        }
    }
    events.sort_by(crate::model::case::event_order);
    let derived = derive(&events, &delivery);
    Ok(CaseView {
        case_no,
        center,
        service: need_of(doc, "service", by)?,
        citizen,
        delivery,
        fields,
        fee,
        citizen_profile,
        events,
        derived,
        unreadable,
        conflicts: conflicted_keys(doc),
        twins: Vec::new(),
    })
}

/// Where a case must go, read without the rest of it (the hub decides routes after every
/// push, so this is on its hot path): its processing center, its citizen, its pickup
/// center and every center it was routed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRoutes {
    pub center: Option<CenterId>,
    pub citizen: NationalId,
    pub pickup: Option<CenterId>,
    pub routed_to: Vec<CenterId>,
}

/// Read a case's [`CaseRoutes`]: the same fields [`read_case`] reads, but only events
/// that can be `Routed` are parsed.
pub fn read_case_routes(doc: &AutoCommit) -> Result<CaseRoutes, DocError> {
    check_kind(doc, DocKind::Case)?;
    let (center, citizen, delivery) = case_parties(doc, None)?;
    let pickup = match delivery {
        Delivery::Pickup { center } => Some(center),
        _ => None,
    };
    let mut routed_to = Vec::new();
    if let Some((Value::Object(ObjType::List), list)) = doc.get(ROOT, "events")? {
        for i in 0..doc.length(&list) {
            let Some((v, _)) = doc.get(&list, i)? else {
                continue;
            };
            // A `Routed` event's JSON always holds its tag; skip parsing the others.
            let Some(s) = v.as_str().filter(|s| s.contains("\"routed\"")) else {
                continue;
            };
            if let Ok(CaseEvent {
                kind: CaseEventKind::Routed { to },
                ..
            }) = serde_json::from_str::<CaseEvent>(s)
            {
                routed_to.push(to);
            }
        }
    }
    Ok(CaseRoutes {
        center,
        citizen,
        pickup,
        routed_to,
    })
}

// ---- citizen ------------------------------------------------------------------------

/// A citizen profile as read from its document (raw strings, as typed; parse with
/// [`CitizenInput::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CitizenView {
    pub input: CitizenInput,
    /// The profile's recorded edits, oldest first (unreadable ones are skipped).
    pub edits: Vec<CitizenEdit>,
    pub conflicts: Vec<String>,
}

const EDIT_PREFIX: &str = "edit:";

/// Record an explicit edit of a profile (who, when, old and new values) under its own
/// root key `edit:<hlc>`, so concurrent edits at two centers all survive.
pub fn append_citizen_edit(doc: &mut AutoCommit, e: &CitizenEdit) -> Result<(), DocError> {
    check_kind(doc, DocKind::Citizen)?;
    put_if_changed(
        doc,
        &format!("{EDIT_PREFIX}{}", e.hlc),
        serde_json::to_string(e)?,
    )
}

const CITIZEN_FIELDS: [&str; 8] = [
    "national_id",
    "full_name",
    "father_name",
    "mother_name",
    "birth_date",
    "birth_place",
    "phone",
    "address",
];

fn citizen_values(c: &CitizenInput) -> [&str; 8] {
    [
        &c.national_id,
        &c.full_name,
        &c.father_name,
        &c.mother_name,
        &c.birth_date,
        &c.birth_place,
        &c.phone,
        &c.address,
    ]
}

/// Write (create or update) a citizen profile: only changed fields get new values.
pub fn write_citizen(doc: &mut AutoCommit, c: &CitizenInput) -> Result<(), DocError> {
    put_if_changed(doc, KIND, DocKind::Citizen.as_str())?;
    for (k, v) in CITIZEN_FIELDS.iter().zip(citizen_values(c)) {
        // An empty field that was never set stays unset, so two centers registering the
        // same citizen offline do not clash on the fields one of them left blank.
        if v.is_empty() && doc.get(ROOT, *k)?.is_none() {
            continue;
        }
        put_if_changed(doc, k, v)?;
    }
    Ok(())
}

/// Read a citizen profile.
pub fn read_citizen(doc: &AutoCommit) -> Result<CitizenView, DocError> {
    check_kind(doc, DocKind::Citizen)?;
    let mut vals: Vec<String> = Vec::with_capacity(8);
    for k in CITIZEN_FIELDS {
        vals.push(get_str(doc, k)?.unwrap_or_default());
    }
    let mut it = vals.into_iter();
    let mut next = || it.next().unwrap_or_default();
    let input = CitizenInput {
        national_id: next(),
        full_name: next(),
        father_name: next(),
        mother_name: next(),
        birth_date: next(),
        birth_place: next(),
        phone: next(),
        address: next(),
    };
    let mut edits: Vec<CitizenEdit> = doc
        .keys(ROOT)
        .filter(|k| k.starts_with(EDIT_PREFIX))
        .filter_map(|k| get_str(doc, &k).ok().flatten())
        .filter_map(|j| serde_json::from_str(&j).ok())
        .collect();
    edits.sort_by(|a, b| a.hlc.cmp(&b.hlc));
    Ok(CitizenView {
        input,
        edits,
        conflicts: conflicted_keys(doc),
    })
}

// ---- staff --------------------------------------------------------------------------
//
// A staff document (`staff:<center>:<username>`) is written at both ends, each owning
// its fields (docs/PROTOCOL.md, "Staff accounts"):
// - the center: `full_name`, `roles`, `language`, `active` (its own switch) and
//   `password_hash` (an argon2id PHC string, so a center rebuilt from the hub can log
//   its staff in);
// - the hub: `hub_active` (a deactivation at the hub, which the center cannot lift);
// - both: one key per authority, `perm:<authority>`, each a stamped decision (a grant
//   until a date, or a revocation); of two concurrent decisions the later stamp wins.
// The hub refuses a center's change that touches a key the center does not own
// ([`center_may_write_staff_key`]). Documents written before this layout kept the whole
// permission list in `permissions`; it is read as the base the `perm:` keys override.

/// Root keys of a staff document the center writes.
pub const STAFF_CENTER_KEYS: [&str; 9] = [
    KIND,
    CREATION,
    "center",
    "username",
    "full_name",
    "roles",
    "language",
    "active",
    "password_hash",
];
/// The root key only the hub writes: its deactivation of the account.
pub const STAFF_HUB_ACTIVE: &str = "hub_active";
const PERM_PREFIX: &str = "perm:";

/// Whether a center may write root key `key` of one of its staff documents.
pub fn center_may_write_staff_key(key: &str) -> bool {
    STAFF_CENTER_KEYS.contains(&key) || key.starts_with(PERM_PREFIX)
}

/// One per-authority decision in a staff document: a grant valid through `expires_on`,
/// or a revocation (`expires_on: None`); `by` who decided (a username at a center, an
/// operator at the hub), `hlc` when (the stamp that orders concurrent decisions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionDecision {
    pub authority: crate::model::catalog::Authority,
    pub expires_on: Option<Date>,
    pub by: String,
    pub hlc: String,
}

/// A staff document as read, with both ends' fields apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaffView {
    pub center: Option<CenterId>,
    /// The account as it acts: active only when both ends let it, permissions the
    /// granted ones.
    pub member: StaffMember,
    /// The center's own switch.
    pub center_active: bool,
    /// The hub's switch (a deactivation at the hub).
    pub hub_active: bool,
    /// The center's argon2id hash (never shown; `None` for an account the hub created).
    #[serde(skip_serializing)]
    pub password_hash: Option<String>,
    pub language: Option<String>,
    /// The latest decision per authority, revocations included.
    pub decisions: Vec<PermissionDecision>,
    pub conflicts: Vec<String>,
}

fn perm_key(a: crate::model::catalog::Authority) -> Result<String, DocError> {
    match serde_json::to_value(a)? {
        serde_json::Value::String(s) => Ok(format!("{PERM_PREFIX}{s}")),
        other => Ok(format!("{PERM_PREFIX}{other}")),
    }
}

fn put_identity(doc: &mut AutoCommit, center: &CenterId, username: &str) -> Result<(), DocError> {
    put_if_changed(doc, KIND, DocKind::Staff.as_str())?;
    put_if_changed(doc, "center", center.as_str())?;
    put_if_changed(doc, "username", username)
}

/// A staff member's language when the document names none.
pub const DEFAULT_LANGUAGE: &str = "ar";

/// The center's fields of one of its accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CenterStaff<'a> {
    pub username: &'a str,
    pub full_name: &'a str,
    pub roles: &'a [crate::model::staff::Role],
    pub language: &'a str,
    pub active: bool,
    /// `None`: leave the document's hash as it is.
    pub password_hash: Option<&'a str>,
}

/// Write the center's fields of a staff member (only those that changed).
pub fn write_center_staff(
    doc: &mut AutoCommit,
    center: &CenterId,
    s: &CenterStaff<'_>,
) -> Result<(), DocError> {
    put_identity(doc, center, s.username)?;
    put_if_changed(doc, "full_name", s.full_name)?;
    put_if_changed(doc, "roles", serde_json::to_string(s.roles)?)?;
    // The default language is left unwritten on an account that never had one (one the
    // hub created), so reflecting it unchanged adds no change.
    if s.language != DEFAULT_LANGUAGE || doc.get(ROOT, "language")?.is_some() {
        put_if_changed(doc, "language", s.language)?;
    }
    put_if_changed(doc, "active", s.active)?;
    if let Some(h) = s.password_hash {
        put_if_changed(doc, "password_hash", h)?;
    }
    Ok(())
}

/// Record a permission decision (a grant or a revocation) unless the document's
/// current decision for the authority already says the same.
pub fn decide_permission(doc: &mut AutoCommit, d: &PermissionDecision) -> Result<(), DocError> {
    check_kind(doc, DocKind::Staff)?;
    let key = perm_key(d.authority)?;
    let current = staff_decisions(doc)?
        .into_iter()
        .find(|c| c.authority == d.authority);
    if current.is_some_and(|c| c.expires_on == d.expires_on)
        && doc.get_all(ROOT, key.as_str())?.len() <= 1
    {
        return Ok(());
    }
    doc.put(ROOT, key.as_str(), serde_json::to_string(d)?)?;
    Ok(())
}

/// Deactivate (or reactivate) an account at the hub.
pub fn set_hub_active(doc: &mut AutoCommit, active: bool) -> Result<(), DocError> {
    check_kind(doc, DocKind::Staff)?;
    put_if_changed(doc, STAFF_HUB_ACTIVE, active)
}

/// Write a staff member as a whole at the hub (creating the account for a center):
/// identity, name, roles; `active` as the hub's switch; each permission listed as a
/// grant and each one the document has but the list lacks as a revocation, stamped
/// `by`/`hlc`.
pub fn write_staff_stamped(
    doc: &mut AutoCommit,
    center: &CenterId,
    s: &StaffMember,
    by: &str,
    hlc: &str,
) -> Result<(), DocError> {
    put_identity(doc, center, &s.username)?;
    put_if_changed(doc, "full_name", s.full_name.as_str())?;
    put_if_changed(doc, "roles", serde_json::to_string(&s.roles)?)?;
    if doc.get(ROOT, "active")?.is_none() {
        put_if_changed(doc, "active", true)?;
    }
    put_if_changed(doc, STAFF_HUB_ACTIVE, s.active)?;
    let before = staff_decisions(doc)?;
    for p in &s.permissions {
        decide_permission(
            doc,
            &PermissionDecision {
                authority: p.authority,
                expires_on: Some(p.expires_on),
                by: by.into(),
                hlc: hlc.into(),
            },
        )?;
    }
    for d in before {
        if d.expires_on.is_some() && !s.permissions.iter().any(|p| p.authority == d.authority) {
            decide_permission(
                doc,
                &PermissionDecision {
                    authority: d.authority,
                    expires_on: None,
                    by: by.into(),
                    hlc: hlc.into(),
                },
            )?;
        }
    }
    Ok(())
}

/// [`write_staff_stamped`] by the hub without a clock stamp (a concurrent stamped
/// decision wins over it).
pub fn write_staff(
    doc: &mut AutoCommit,
    center: &CenterId,
    s: &StaffMember,
) -> Result<(), DocError> {
    write_staff_stamped(doc, center, s, HUB_OWNER, "")
}

/// The latest decision per authority: the legacy `permissions` list as the base, each
/// `perm:` key over it, and of concurrent values of one key the highest stamp.
fn staff_decisions(doc: &AutoCommit) -> Result<Vec<PermissionDecision>, DocError> {
    let mut out: BTreeMap<crate::model::catalog::Authority, PermissionDecision> = BTreeMap::new();
    if let Some(list) = get_str(doc, "permissions")?
        && let Ok(list) = serde_json::from_str::<Vec<crate::model::staff::Permission>>(&list)
    {
        for p in list {
            out.insert(
                p.authority,
                PermissionDecision {
                    authority: p.authority,
                    expires_on: Some(p.expires_on),
                    by: HUB_OWNER.into(),
                    hlc: String::new(),
                },
            );
        }
    }
    for k in doc.keys(ROOT).collect::<Vec<_>>() {
        if !k.starts_with(PERM_PREFIX) {
            continue;
        }
        let best = doc
            .get_all(ROOT, k.as_str())?
            .into_iter()
            .filter_map(|(v, _)| v.as_str().map(str::to_string))
            .filter_map(|j| serde_json::from_str::<PermissionDecision>(&j).ok())
            // The later stamp wins; equal stamps fall back to the text, so every
            // replica picks the same.
            .max_by(|a, b| {
                (a.hlc.as_str(), serde_json::to_string(a).unwrap_or_default())
                    .cmp(&(b.hlc.as_str(), serde_json::to_string(b).unwrap_or_default()))
            });
        if let Some(d) = best {
            out.insert(d.authority, d);
        }
    }
    Ok(out.into_values().collect())
}

fn get_bool(doc: &AutoCommit, key: &str) -> Result<Option<bool>, DocError> {
    Ok(doc.get(ROOT, key)?.and_then(|(v, _)| v.as_bool()))
}

/// Read a staff document with both ends' fields.
pub fn read_staff_view(doc: &AutoCommit) -> Result<StaffView, DocError> {
    check_kind(doc, DocKind::Staff)?;
    let center_active = get_bool(doc, "active")?.unwrap_or(true);
    let hub_active = get_bool(doc, STAFF_HUB_ACTIVE)?.unwrap_or(true);
    let decisions = staff_decisions(doc)?;
    let permissions = decisions
        .iter()
        .filter_map(|d| {
            Some(crate::model::staff::Permission {
                authority: d.authority,
                expires_on: d.expires_on?,
            })
        })
        .collect();
    let roles = match get_str(doc, "roles")? {
        Some(r) => serde_json::from_str(&r)?,
        None => Vec::new(),
    };
    Ok(StaffView {
        center: get_str(doc, "center")?.and_then(|c| c.parse().ok()),
        member: StaffMember {
            username: need_str(doc, "username")?,
            full_name: get_str(doc, "full_name")?.unwrap_or_default(),
            roles,
            permissions,
            active: center_active && hub_active,
        },
        center_active,
        hub_active,
        password_hash: get_str(doc, "password_hash")?,
        language: get_str(doc, "language")?,
        decisions,
        conflicts: conflicted_keys(doc),
    })
}

/// Read a staff member as it acts (see [`StaffView::member`]).
pub fn read_staff(doc: &AutoCommit) -> Result<StaffMember, DocError> {
    Ok(read_staff_view(doc)?.member)
}

/// Whether a change a center pushed to one of its staff documents writes only keys the
/// center owns (see [`center_may_write_staff_key`]); `Err` names the first other key.
pub fn check_center_staff_change(bytes: &[u8]) -> Result<(), String> {
    let change = automerge::Change::try_from(bytes).map_err(|e| format!("bad change: {e}"))?;
    check_center_staff_ops(&change)
}

/// [`check_center_staff_change`] of a decoded change.
pub fn check_center_staff_ops(change: &automerge::Change) -> Result<(), String> {
    for op in change.decode().operations {
        match (&op.obj, &op.key) {
            (automerge::legacy::ObjectId::Root, automerge::legacy::Key::Map(k))
                if center_may_write_staff_key(k) => {}
            (automerge::legacy::ObjectId::Root, automerge::legacy::Key::Map(k)) => {
                return Err(format!("the hub owns the staff field '{k}'"));
            }
            _ => return Err("a staff document has only root fields".into()),
        }
    }
    Ok(())
}

// ---- catalog ------------------------------------------------------------------------

/// The catalog and fee schedule as read from the catalog document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogView {
    pub services: Vec<Service>,
    pub fees: FeeSchedule,
    /// Entries that could not be read.
    pub unreadable: usize,
}

/// Write one service (key `service:<code>`).
pub fn write_service(doc: &mut AutoCommit, s: &Service) -> Result<(), DocError> {
    put_if_changed(doc, KIND, DocKind::Catalog.as_str())?;
    put_if_changed(
        doc,
        &format!("service:{}", s.code),
        serde_json::to_string(s)?,
    )
}

/// Write one service's fee history (key `fees:<code>`).
pub fn write_fees(doc: &mut AutoCommit, code: &str, f: &ServiceFees) -> Result<(), DocError> {
    put_if_changed(doc, KIND, DocKind::Catalog.as_str())?;
    put_if_changed(doc, &format!("fees:{code}"), serde_json::to_string(f)?)
}

/// Read the catalog and fees.
pub fn read_catalog(doc: &AutoCommit) -> Result<CatalogView, DocError> {
    check_kind(doc, DocKind::Catalog)?;
    let mut v = CatalogView {
        services: Vec::new(),
        fees: FeeSchedule::default(),
        unreadable: 0,
    };
    for k in doc.keys(ROOT).collect::<Vec<_>>() {
        let Some(text) = get_str(doc, &k)? else {
            continue;
        };
        if let Some(_code) = k.strip_prefix("service:") {
            match serde_json::from_str::<Service>(&text) {
                Ok(s) => v.services.push(s),
                Err(_) => v.unreadable += 1,
            }
        } else if let Some(code) = k.strip_prefix("fees:") {
            match serde_json::from_str::<ServiceFees>(&text) {
                Ok(f) => {
                    v.fees.services.insert(code.to_string(), f);
                }
                Err(_) => v.unreadable += 1,
            }
        }
    }
    v.services.sort_by(|a, b| a.code.cmp(&b.code));
    Ok(v)
}

// ---- statistics and energy ----------------------------------------------------------

/// A center-day of named integer metrics (statistics or energy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricsView {
    pub center: CenterId,
    pub day: String,
    pub metrics: BTreeMap<String, i64>,
}

/// Start a center-day metrics document (`kind` is Stats or Energy).
pub fn create_metrics(
    doc: &mut AutoCommit,
    kind: DocKind,
    center: &CenterId,
    day: Date,
) -> Result<(), DocError> {
    put_if_changed(doc, KIND, kind.as_str())?;
    put_if_changed(doc, "center", center.as_str())?;
    put_if_changed(doc, "day", day.to_string())?;
    Ok(())
}

/// Set one metric (key `m:<name>`); the center alone writes its day, so last write wins.
pub fn set_metric(doc: &mut AutoCommit, name: &str, value: i64) -> Result<(), DocError> {
    put_if_changed(doc, &format!("m:{name}"), value)
}

/// Read a metrics document.
pub fn read_metrics(doc: &AutoCommit) -> Result<MetricsView, DocError> {
    let kind = need_str(doc, KIND)?;
    if kind != "stats" && kind != "energy" {
        return Err(DocError::WrongKind {
            expected: "stats or energy",
            found: kind,
        });
    }
    let center = need_str(doc, "center")?
        .parse()
        .map_err(|_| DocError::Missing(kind.clone(), "center"))?;
    let mut metrics = BTreeMap::new();
    for k in doc.keys(ROOT).collect::<Vec<_>>() {
        if let Some(name) = k.strip_prefix("m:")
            && let Some((v, _)) = doc.get(ROOT, k.as_str())?
            && let Some(n) = v.as_i64()
        {
            metrics.insert(name.to_string(), n);
        }
    }
    Ok(MetricsView {
        center,
        day: need_str(doc, "day")?,
        metrics,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::case::CaseEventKind;
    use jiff::Timestamp;

    pub fn event(kind: CaseEventKind, actor: &str, hlc: &str) -> CaseEvent {
        CaseEvent {
            kind,
            actor: actor.into(),
            desk: None,
            at: Timestamp::UNIX_EPOCH,
            hlc: hlc.into(),
        }
    }

    pub fn new_case(center: &str, seq: u32) -> NewCase {
        let center: CenterId = center.parse().unwrap();
        NewCase {
            case_no: CaseNo::new("MID", 2026, seq).unwrap(),
            center: Some(center.clone()),
            service: "criminal_record".into(),
            citizen: "01020304050".parse().unwrap(),
            delivery: Delivery::Pickup { center },
            fields: BTreeMap::new(),
            fee: None,
            created: event(CaseEventKind::Created, "clerk", "0000000000001.00000.a"),
        }
    }

    #[test]
    fn doc_ids_parse_with_kind_and_owner() {
        let c: CenterId = "midan".parse().unwrap();
        let no = CaseNo::new("MID", 2026, 7).unwrap();
        let id = DocId::case(Some(&c), &no);
        assert_eq!(id.as_str().parse::<DocId>().unwrap(), id);
        assert_eq!(id.kind(), DocKind::Case);
        assert_eq!(id.owner(), Owner::Center(c.clone()));
        let portal = DocId::case(None, &no);
        assert_eq!(portal.owner(), Owner::Hub);
        let nid: NationalId = "01020304050".parse().unwrap();
        let cit = DocId::citizen(&nid);
        assert_eq!(
            cit.as_str().parse::<DocId>().unwrap().kind(),
            DocKind::Citizen
        );
        assert_eq!(cit.owner(), Owner::Shared);
        let s = DocId::staff(&c, "sara.k").unwrap();
        assert_eq!(s.owner_center(), Some(c.clone()));
        let d = DocId::stats(&c, jiff::civil::date(2026, 11, 29));
        assert_eq!(d.as_str(), "stats:midan:2026-11-29");
        assert_eq!(d.as_str().parse::<DocId>().unwrap().kind(), DocKind::Stats);
        for bad in [
            "",
            "case:midan",
            "case:hub2:x",
            "citizen:abc",
            "staff:hub:x",
            "stats:midan:2026-13-01",
            "energy:midan:26-1-1",
            "whatever",
            "staff:midan:a b",
        ] {
            assert!(bad.parse::<DocId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn two_creations_under_one_id_stay_two_flagged_cases() {
        use crate::model::case::{CaseStatus, Payment};
        use crate::model::ids::ReceiptNo;
        // The first box made the case and took it to ready; a replacement box that did
        // not know made another case under the same number for another citizen.
        let mut a = AutoCommit::new();
        create_case(&mut a, &new_case("midan", 1)).unwrap();
        for (k, h) in [
            (
                CaseEventKind::Paid(Payment::Cash {
                    receipt: ReceiptNo::new("MID", 1).unwrap(),
                }),
                "0000000000002.00000.a",
            ),
            (CaseEventKind::Started, "0000000000003.00000.a"),
            (CaseEventKind::Ready, "0000000000004.00000.a"),
        ] {
            append_case_event(&mut a, &event(k, "clerk", h)).unwrap();
        }
        let mut b = AutoCommit::new();
        let mut other = new_case("midan", 1);
        other.citizen = "02030405060".parse().unwrap();
        other.service = "passport".into();
        other.created = event(CaseEventKind::Created, "desk2", "0000000000009.00000.b");
        create_case(&mut b, &other).unwrap();
        assert_eq!(creations(&a), 1);
        a.merge(&mut b).unwrap();
        b.merge(&mut a.clone()).unwrap();
        assert_eq!(creations(&a), 2);
        for merged in [&a, &b] {
            let v = read_case(merged).unwrap();
            assert_eq!(v.twins.len(), 1, "the other case is kept");
            let mut all = vec![v.clone()];
            all.extend(v.twins.clone());
            let mut seen: Vec<(String, String, CaseStatus)> = all
                .iter()
                .map(|c| (c.citizen.to_string(), c.service.clone(), c.derived.status))
                .collect();
            seen.sort();
            assert_eq!(
                seen,
                vec![
                    (
                        "01020304050".into(),
                        "criminal_record".into(),
                        CaseStatus::Ready
                    ),
                    ("02030405060".into(), "passport".into(), CaseStatus::Created),
                ]
            );
            for c in &all {
                let conflict = c.derived.conflict.as_ref().expect("flagged");
                assert!(conflict.is_double_creation(), "{conflict:?}");
                assert!(conflict.message_en().contains("Two different cases"));
            }
        }
        // Both replicas read the same.
        assert_eq!(read_case(&a).unwrap(), read_case(&b).unwrap());
        // A single creation is no conflict.
        let mut c = AutoCommit::new();
        create_case(&mut c, &new_case("midan", 2)).unwrap();
        let v = read_case(&c).unwrap();
        assert!(v.twins.is_empty() && v.derived.conflict.is_none());
    }

    #[test]
    fn concurrent_appends_survive_and_conflict_is_flagged() {
        use crate::model::case::{CaseStatus, Payment};
        use crate::model::ids::ReceiptNo;
        let mut a = AutoCommit::new();
        create_case(&mut a, &new_case("midan", 1)).unwrap();
        for (k, h) in [
            (
                CaseEventKind::Paid(Payment::Cash {
                    receipt: ReceiptNo::new("MID", 1).unwrap(),
                }),
                "0000000000002.00000.a",
            ),
            (CaseEventKind::Started, "0000000000003.00000.a"),
            (CaseEventKind::Ready, "0000000000004.00000.a"),
        ] {
            append_case_event(&mut a, &event(k, "clerk", h)).unwrap();
        }
        let mut b = a.fork();
        append_case_event(
            &mut a,
            &event(
                CaseEventKind::Delivered {
                    receiver: "01020304050".parse().unwrap(),
                },
                "clerk",
                "0000000000005.00000.a",
            ),
        )
        .unwrap();
        append_case_event(
            &mut b,
            &event(
                CaseEventKind::Cancelled {
                    reason: "duplicate".into(),
                },
                "hub",
                "0000000000006.00000.hub",
            ),
        )
        .unwrap();
        a.merge(&mut b).unwrap();
        b.merge(&mut a).unwrap();
        let va = read_case(&a).unwrap();
        let vb = read_case(&b).unwrap();
        assert_eq!(va, vb);
        assert_eq!(va.events.len(), 6);
        assert_eq!(va.derived.status, CaseStatus::Delivered);
        assert!(va.derived.conflict.is_some(), "kept and flagged");
    }

    #[test]
    fn case_routes_read_what_read_case_reads() {
        let mut d = AutoCommit::new();
        let mut c = new_case("midan", 3);
        c.delivery = Delivery::Pickup {
            center: "mezzeh".parse().unwrap(),
        };
        create_case(&mut d, &c).unwrap();
        let events = [
            // Text that mentions routing without being a `Routed` event.
            CaseEventKind::Cancelled {
                reason: "\"routed\" by mistake".into(),
            },
            CaseEventKind::Routed {
                to: "kafrsouseh".parse().unwrap(),
            },
            CaseEventKind::Ready,
            CaseEventKind::Routed {
                to: "mezzeh".parse().unwrap(),
            },
        ];
        for (i, k) in events.into_iter().enumerate() {
            let hlc = format!("000000000000{}.00000.a", i + 2);
            append_case_event(&mut d, &event(k, "clerk", &hlc)).unwrap();
        }
        let full = read_case(&d).unwrap();
        let routes = read_case_routes(&d).unwrap();
        assert_eq!(routes.center, full.center);
        assert_eq!(routes.citizen, full.citizen);
        assert_eq!(routes.pickup.as_ref().map(CenterId::as_str), Some("mezzeh"));
        let routed: Vec<CenterId> = full
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                CaseEventKind::Routed { to } => Some(to.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(routes.routed_to, routed);
        assert_eq!(routes.routed_to.len(), 2);
        // Not a case: refused like read_case.
        let mut other = AutoCommit::new();
        write_citizen(
            &mut other,
            &CitizenInput {
                national_id: "01020304050".into(),
                ..CitizenInput::default()
            },
        )
        .unwrap();
        assert!(read_case_routes(&other).is_err());
    }

    #[test]
    fn citizen_edits_of_different_fields_both_win() {
        let mut input = CitizenInput {
            national_id: "01020304050".into(),
            full_name: "سامر".into(),
            ..Default::default()
        };
        let mut a = AutoCommit::new();
        write_citizen(&mut a, &input).unwrap();
        let mut b = a.fork();
        input.phone = "0944123456".into();
        write_citizen(&mut a, &input).unwrap();
        let mut other = read_citizen(&b).unwrap().input;
        other.address = "الميدان".into();
        write_citizen(&mut b, &other).unwrap();
        a.merge(&mut b).unwrap();
        let v = read_citizen(&a).unwrap();
        assert_eq!(v.input.phone, "0944123456");
        assert_eq!(v.input.address, "الميدان");
        assert!(v.conflicts.is_empty());
    }

    #[test]
    fn concurrent_citizen_edits_at_two_centers_all_survive() {
        use crate::model::citizen::{CitizenEdit, FieldChange};
        let input = CitizenInput {
            national_id: "01020304050".into(),
            full_name: "سامر".into(),
            ..Default::default()
        };
        let edit = |hlc: &str, field: &str| CitizenEdit {
            at: jiff::Timestamp::UNIX_EPOCH,
            hlc: hlc.into(),
            actor: "clerk".into(),
            actor_name: "موظف".into(),
            desk: None,
            changes: vec![FieldChange {
                field: field.into(),
                old: String::new(),
                new: "x".into(),
            }],
        };
        // Both centers register the citizen offline: each creates the document.
        let mut a = AutoCommit::new();
        write_citizen(&mut a, &input).unwrap();
        let mut b = AutoCommit::new();
        write_citizen(&mut b, &input).unwrap();
        append_citizen_edit(&mut a, &edit("0000000000002.00000.qan", "phone")).unwrap();
        append_citizen_edit(&mut b, &edit("0000000000001.00000.mid", "address")).unwrap();
        a.merge(&mut b).unwrap();
        let v = read_citizen(&a).unwrap();
        let fields: Vec<_> = v
            .edits
            .iter()
            .map(|e| e.changes[0].field.as_str())
            .collect();
        assert_eq!(fields, ["address", "phone"], "both edits, in clock order");
    }

    #[test]
    fn a_case_keeps_its_citizen_as_at_intake() {
        let c = new_case("mid", 1);
        let mut doc = AutoCommit::new();
        create_case(&mut doc, &c).unwrap();
        assert_eq!(read_case(&doc).unwrap().citizen_profile, None);
        let profile = CitizenInput {
            national_id: c.citizen.to_string(),
            full_name: "سامر خليل".into(),
            father_name: "خليل".into(),
            mother_name: "هدى".into(),
            birth_date: "1985-04-12".into(),
            birth_place: "دمشق".into(),
            phone: String::new(),
            address: "دمشق".into(),
        }
        .parse()
        .unwrap();
        set_case_citizen(&mut doc, &profile).unwrap();
        assert_eq!(read_case(&doc).unwrap().citizen_profile, Some(profile));
    }

    #[test]
    fn catalog_staff_metrics_roundtrip() {
        let mut cat = AutoCommit::new();
        for s in crate::model::catalog::default_catalog() {
            write_service(&mut cat, &s).unwrap();
        }
        let fees = crate::model::fees::default_fee_schedule();
        for (code, f) in &fees.services {
            write_fees(&mut cat, code, f).unwrap();
        }
        let v = read_catalog(&cat).unwrap();
        assert_eq!(v.services.len(), 17);
        assert_eq!(v.fees, fees);

        let c: CenterId = "midan".parse().unwrap();
        let m = StaffMember {
            username: "sara".into(),
            full_name: "سارة".into(),
            roles: vec![crate::model::staff::Role::Clerk],
            permissions: vec![],
            active: true,
        };
        let mut s = AutoCommit::new();
        write_staff(&mut s, &c, &m).unwrap();
        assert_eq!(read_staff(&s).unwrap(), m);
        assert!(read_case(&s).is_err());

        let mut e = AutoCommit::new();
        create_metrics(&mut e, DocKind::Energy, &c, jiff::civil::date(2026, 11, 29)).unwrap();
        set_metric(&mut e, "solar_wh", 12_345).unwrap();
        assert_eq!(read_metrics(&e).unwrap().metrics["solar_wh"], 12_345);
    }
}
