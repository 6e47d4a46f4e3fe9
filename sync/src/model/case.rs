//! A case (معاملة) and its lifecycle: created → paid → in_progress → ready → notified →
//! delivered (pickup) or posted (post); cancelled from any open state; rejected from paid
//! or in_progress.
//!
//! The history of a case is an append-only list of [`CaseEvent`]s, which two places (a
//! center and the hub) may extend concurrently. [`apply`] is the one transition function:
//! it refuses an illegal move with an [`IllegalTransition`] that a clerk can read.
//! [`derive()`] computes the status from the events alone, deterministically: the same set
//! of events in any order gives the same [`Derived`]. Incompatible terminal events
//! (delivered/posted against cancelled/rejected) are not resolved silently: the first one
//! by order wins and a [`Conflict`] names both.

use std::cmp::Ordering;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::ids::{CenterId, NationalId, ReceiptNo};

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Created,
    Paid,
    InProgress,
    Ready,
    Notified,
    Delivered,
    Posted,
    Cancelled,
    Rejected,
}

impl CaseStatus {
    pub const ALL: [CaseStatus; 9] = [
        CaseStatus::Created,
        CaseStatus::Paid,
        CaseStatus::InProgress,
        CaseStatus::Ready,
        CaseStatus::Notified,
        CaseStatus::Delivered,
        CaseStatus::Posted,
        CaseStatus::Cancelled,
        CaseStatus::Rejected,
    ];

    /// The serde / SQL spelling (`in_progress`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Created => "created",
            CaseStatus::Paid => "paid",
            CaseStatus::InProgress => "in_progress",
            CaseStatus::Ready => "ready",
            CaseStatus::Notified => "notified",
            CaseStatus::Delivered => "delivered",
            CaseStatus::Posted => "posted",
            CaseStatus::Cancelled => "cancelled",
            CaseStatus::Rejected => "rejected",
        }
    }

    /// The state as a clerk reads it, in English.
    pub fn name_en(self) -> &'static str {
        match self {
            CaseStatus::Created => "created (awaiting payment)",
            CaseStatus::Paid => "paid",
            CaseStatus::InProgress => "in progress",
            CaseStatus::Ready => "ready",
            CaseStatus::Notified => "ready, citizen notified",
            CaseStatus::Delivered => "delivered",
            CaseStatus::Posted => "handed to the post",
            CaseStatus::Cancelled => "cancelled",
            CaseStatus::Rejected => "rejected",
        }
    }

    /// The state as a clerk reads it, in Arabic.
    pub fn name_ar(self) -> &'static str {
        match self {
            CaseStatus::Created => "منشأة (بانتظار الدفع)",
            CaseStatus::Paid => "مدفوعة",
            CaseStatus::InProgress => "قيد المعالجة",
            CaseStatus::Ready => "جاهزة",
            CaseStatus::Notified => "جاهزة وتم إبلاغ المواطن",
            CaseStatus::Delivered => "مسلّمة",
            CaseStatus::Posted => "مسلّمة للبريد",
            CaseStatus::Cancelled => "ملغاة",
            CaseStatus::Rejected => "مرفوضة",
        }
    }

    /// Delivered, posted, cancelled and rejected end a case.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CaseStatus::Delivered
                | CaseStatus::Posted
                | CaseStatus::Cancelled
                | CaseStatus::Rejected
        )
    }
}

impl fmt::Display for CaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown status spelling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown case status '{0}'")]
pub struct UnknownStatus(pub String);

impl std::str::FromStr for CaseStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        CaseStatus::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// How the document reaches the citizen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Delivery {
    /// Picked up at the center the citizen chose.
    Pickup { center: CenterId },
    /// Handed to the postal service by the electronic services center.
    Post { address: String },
}

/// The banks through which the Syrian Electronic Payments company collects fees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bank {
    RealEstateBank,
    CommercialBank,
    AlBaraka,
    Bemo,
    SyriaInternationalIslamicBank,
}

impl Bank {
    pub const ALL: [Bank; 5] = [
        Bank::RealEstateBank,
        Bank::CommercialBank,
        Bank::AlBaraka,
        Bank::Bemo,
        Bank::SyriaInternationalIslamicBank,
    ];

    pub fn name_ar(self) -> &'static str {
        match self {
            Bank::RealEstateBank => "المصرف العقاري",
            Bank::CommercialBank => "المصرف التجاري السوري",
            Bank::AlBaraka => "بنك البركة",
            Bank::Bemo => "بنك بيمو السعودي الفرنسي",
            Bank::SyriaInternationalIslamicBank => "بنك سورية الدولي الإسلامي",
        }
    }

    pub fn name_en(self) -> &'static str {
        match self {
            Bank::RealEstateBank => "Real-Estate Bank",
            Bank::CommercialBank => "Commercial Bank of Syria",
            Bank::AlBaraka => "Al Baraka Bank",
            Bank::Bemo => "Bemo Saudi Fransi",
            Bank::SyriaInternationalIslamicBank => "Syria International Islamic Bank",
        }
    }
}

/// How a case's fee was paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Payment {
    /// Cash at the center, with the receipt the center numbered.
    Cash { receipt: ReceiptNo },
    /// Electronic payment via a bank; `reference` is the payment company's reference.
    EPayment { reference: String, bank: Bank },
}

/// What happened to a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CaseEventKind {
    Created,
    Paid(Payment),
    Started,
    Ready,
    Notified,
    /// Handed over at the counter; `receiver` is who took it (the API also checks it
    /// against the citizen or an authorised person).
    Delivered {
        receiver: NationalId,
    },
    Posted {
        tracking: String,
    },
    Cancelled {
        reason: String,
    },
    Rejected {
        reason: String,
    },
    /// Sent to another center for pickup; the status does not change.
    Routed {
        to: CenterId,
    },
    /// An operator's decision on a [`Conflict`]: which of the two incompatible terminal
    /// statuses stands, and why. It changes nothing on a case without a conflict.
    Resolved {
        outcome: CaseStatus,
        reason: String,
    },
}

/// One entry of a case's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseEvent {
    pub kind: CaseEventKind,
    /// Username of who did it (or `portal`, `hub`).
    pub actor: String,
    /// The desk / terminal it was done at.
    pub desk: Option<String>,
    pub at: Timestamp,
    /// Hybrid logical clock stamp, fixed-width so that text order is causal order.
    pub hlc: String,
}

/// A cash receipt voided at the center that issued it: asked for with a reason,
/// approved by a supervisor (another person). The receipt and the case's payment event
/// stay; the void is recorded beside them (case document key `void:<receipt>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptVoid {
    pub receipt: ReceiptNo,
    pub reason: String,
    /// Username and full name of who asked for it.
    pub requested_by: String,
    pub requested_name: String,
    pub requested_at: Timestamp,
    /// Username and full name of the supervisor who approved it.
    pub approved_by: String,
    pub approved_name: String,
    pub approved_at: Timestamp,
}

/// The action a clerk attempted, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseAction {
    Create,
    Pay,
    Start,
    MarkReady,
    Notify,
    Deliver,
    Post,
    Cancel,
    Reject,
    Route,
    Resolve,
}

impl CaseAction {
    pub fn name_en(self) -> &'static str {
        match self {
            CaseAction::Create => "create it",
            CaseAction::Pay => "record a payment",
            CaseAction::Start => "start processing",
            CaseAction::MarkReady => "mark it ready",
            CaseAction::Notify => "notify the citizen",
            CaseAction::Deliver => "hand the document over",
            CaseAction::Post => "hand it to the post",
            CaseAction::Cancel => "cancel it",
            CaseAction::Reject => "reject it",
            CaseAction::Route => "route it to another center",
            CaseAction::Resolve => "resolve a conflict",
        }
    }

    pub fn name_ar(self) -> &'static str {
        match self {
            CaseAction::Create => "إنشاؤها",
            CaseAction::Pay => "تسجيل الدفع",
            CaseAction::Start => "بدء المعالجة",
            CaseAction::MarkReady => "وضعها جاهزة",
            CaseAction::Notify => "إبلاغ المواطن",
            CaseAction::Deliver => "تسليم الوثيقة",
            CaseAction::Post => "تسليمها للبريد",
            CaseAction::Cancel => "إلغاؤها",
            CaseAction::Reject => "رفضها",
            CaseAction::Route => "تحويلها إلى مركز آخر",
            CaseAction::Resolve => "حل التعارض",
        }
    }
}

impl CaseEventKind {
    /// The action this event records.
    pub fn action(&self) -> CaseAction {
        match self {
            CaseEventKind::Created => CaseAction::Create,
            CaseEventKind::Paid(_) => CaseAction::Pay,
            CaseEventKind::Started => CaseAction::Start,
            CaseEventKind::Ready => CaseAction::MarkReady,
            CaseEventKind::Notified => CaseAction::Notify,
            CaseEventKind::Delivered { .. } => CaseAction::Deliver,
            CaseEventKind::Posted { .. } => CaseAction::Post,
            CaseEventKind::Cancelled { .. } => CaseAction::Cancel,
            CaseEventKind::Rejected { .. } => CaseAction::Reject,
            CaseEventKind::Routed { .. } => CaseAction::Route,
            CaseEventKind::Resolved { .. } => CaseAction::Resolve,
        }
    }

    /// The serde tag (`paid`, `delivered`, …), e.g. for the events table's `kind` column.
    pub fn name(&self) -> &'static str {
        match self {
            CaseEventKind::Created => "created",
            CaseEventKind::Paid(_) => "paid",
            CaseEventKind::Started => "started",
            CaseEventKind::Ready => "ready",
            CaseEventKind::Notified => "notified",
            CaseEventKind::Delivered { .. } => "delivered",
            CaseEventKind::Posted { .. } => "posted",
            CaseEventKind::Cancelled { .. } => "cancelled",
            CaseEventKind::Rejected { .. } => "rejected",
            CaseEventKind::Routed { .. } => "routed",
            CaseEventKind::Resolved { .. } => "resolved",
        }
    }

    /// The terminal status this event gives a case (delivered, posted, cancelled,
    /// rejected), if it is a terminal event.
    pub fn terminal_status(&self) -> Option<CaseStatus> {
        match self {
            CaseEventKind::Delivered { .. } => Some(CaseStatus::Delivered),
            CaseEventKind::Posted { .. } => Some(CaseStatus::Posted),
            CaseEventKind::Cancelled { .. } => Some(CaseStatus::Cancelled),
            CaseEventKind::Rejected { .. } => Some(CaseStatus::Rejected),
            _ => None,
        }
    }

    /// Delivered or posted: the citizen got the document.
    fn is_handover(&self) -> bool {
        matches!(
            self,
            CaseEventKind::Delivered { .. } | CaseEventKind::Posted { .. }
        )
    }

    /// Cancelled or rejected: the case ended without a document.
    fn is_abort(&self) -> bool {
        matches!(
            self,
            CaseEventKind::Cancelled { .. } | CaseEventKind::Rejected { .. }
        )
    }
}

/// Why a transition was refused (besides the state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionFault {
    /// The action is not possible from the current state.
    WrongState,
    /// Cancel/reject need a non-empty reason.
    ReasonRequired,
    /// Hand-over at the counter, but the case is to be posted.
    NotForPickup,
    /// Posting, but the case is for pickup.
    NotForPost,
    /// Posting needs the postal tracking number.
    TrackingRequired,
    /// An e-payment needs the payment reference.
    ReferenceRequired,
}

/// A refused case transition, with the state and the attempted action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}", self.message_en())]
pub struct IllegalTransition {
    pub from: CaseStatus,
    pub action: CaseAction,
    pub fault: TransitionFault,
}

impl IllegalTransition {
    /// Stable machine code for the API.
    pub fn code(&self) -> &'static str {
        match self.fault {
            TransitionFault::WrongState => "illegal_transition",
            TransitionFault::ReasonRequired => "reason_required",
            TransitionFault::NotForPickup => "not_for_pickup",
            TransitionFault::NotForPost => "not_for_post",
            TransitionFault::TrackingRequired => "tracking_required",
            TransitionFault::ReferenceRequired => "reference_required",
        }
    }

    /// A sentence for the clerk, naming the current state.
    pub fn message_en(&self) -> String {
        let state = self.from.name_en();
        let action = self.action.name_en();
        match self.fault {
            TransitionFault::WrongState => {
                let hint = match self.action {
                    CaseAction::Create => "it already exists",
                    CaseAction::Pay => "only a case awaiting payment can be paid",
                    CaseAction::Start => "it must be paid first",
                    CaseAction::MarkReady => "it must be in progress first",
                    CaseAction::Notify => "it must be ready first",
                    CaseAction::Deliver | CaseAction::Post => "it must be ready first",
                    CaseAction::Reject => "only a paid or in-progress case can be rejected",
                    CaseAction::Cancel | CaseAction::Route => "the case is closed",
                    CaseAction::Resolve => "only a case in conflict can be resolved",
                };
                format!("The case is {state}: you cannot {action} ({hint}).")
            }
            TransitionFault::ReasonRequired => {
                format!("The case is {state}: to {action}, give a reason.")
            }
            TransitionFault::NotForPickup => {
                format!(
                    "The case is {state}: you cannot {action} at the counter, it is to be sent by post."
                )
            }
            TransitionFault::NotForPost => {
                format!("The case is {state}: you cannot {action}, it is for pickup at a center.")
            }
            TransitionFault::TrackingRequired => {
                format!("The case is {state}: to {action}, give the postal tracking number.")
            }
            TransitionFault::ReferenceRequired => {
                format!("The case is {state}: to {action}, give the e-payment reference.")
            }
        }
    }

    /// The same sentence in Arabic.
    pub fn message_ar(&self) -> String {
        let state = self.from.name_ar();
        let action = self.action.name_ar();
        match self.fault {
            TransitionFault::WrongState => {
                let hint = match self.action {
                    CaseAction::Create => "المعاملة موجودة مسبقاً",
                    CaseAction::Pay => "لا تُدفع إلا معاملة بانتظار الدفع",
                    CaseAction::Start => "يجب أن تُدفع أولاً",
                    CaseAction::MarkReady => "يجب أن تكون قيد المعالجة أولاً",
                    CaseAction::Notify | CaseAction::Deliver | CaseAction::Post => {
                        "يجب أن تكون جاهزة أولاً"
                    }
                    CaseAction::Reject => "لا تُرفض إلا معاملة مدفوعة أو قيد المعالجة",
                    CaseAction::Cancel | CaseAction::Route => "المعاملة منتهية",
                    CaseAction::Resolve => "لا يُحل إلا تعارض قائم",
                };
                format!("حالة المعاملة: {state}، لا يمكن {action} ({hint}).")
            }
            TransitionFault::ReasonRequired => {
                format!("حالة المعاملة: {state}، يجب ذكر السبب من أجل {action}.")
            }
            TransitionFault::NotForPickup => {
                format!("حالة المعاملة: {state}، لا يمكن {action} في المركز، فهي مرسلة بالبريد.")
            }
            TransitionFault::NotForPost => {
                format!("حالة المعاملة: {state}، لا يمكن {action}، فهي للاستلام من المركز.")
            }
            TransitionFault::TrackingRequired => {
                format!("حالة المعاملة: {state}، يجب إدخال رقم التتبع البريدي من أجل {action}.")
            }
            TransitionFault::ReferenceRequired => {
                format!("حالة المعاملة: {state}، يجب إدخال مرجع الدفع الإلكتروني من أجل {action}.")
            }
        }
    }
}

/// The one transition function of a case. Returns the new status, or why not.
pub fn apply(
    status: CaseStatus,
    kind: &CaseEventKind,
    delivery: &Delivery,
) -> Result<CaseStatus, IllegalTransition> {
    use CaseStatus as S;
    let refuse = |fault| {
        Err(IllegalTransition {
            from: status,
            action: kind.action(),
            fault,
        })
    };
    let open = !status.is_terminal();
    match kind {
        CaseEventKind::Created => refuse(TransitionFault::WrongState),
        CaseEventKind::Paid(payment) => {
            if status != S::Created {
                return refuse(TransitionFault::WrongState);
            }
            if let Payment::EPayment { reference, .. } = payment
                && reference.trim().is_empty()
            {
                return refuse(TransitionFault::ReferenceRequired);
            }
            Ok(S::Paid)
        }
        CaseEventKind::Started if status == S::Paid => Ok(S::InProgress),
        CaseEventKind::Ready if status == S::InProgress => Ok(S::Ready),
        CaseEventKind::Notified if status == S::Ready => Ok(S::Notified),
        CaseEventKind::Delivered { .. } if matches!(status, S::Ready | S::Notified) => {
            match delivery {
                Delivery::Pickup { .. } => Ok(S::Delivered),
                Delivery::Post { .. } => refuse(TransitionFault::NotForPickup),
            }
        }
        CaseEventKind::Posted { tracking } if matches!(status, S::Ready | S::Notified) => {
            match delivery {
                Delivery::Pickup { .. } => refuse(TransitionFault::NotForPost),
                Delivery::Post { .. } if tracking.trim().is_empty() => {
                    refuse(TransitionFault::TrackingRequired)
                }
                Delivery::Post { .. } => Ok(S::Posted),
            }
        }
        CaseEventKind::Cancelled { reason } if open => {
            if reason.trim().is_empty() {
                refuse(TransitionFault::ReasonRequired)
            } else {
                Ok(S::Cancelled)
            }
        }
        CaseEventKind::Rejected { reason } if matches!(status, S::Paid | S::InProgress) => {
            if reason.trim().is_empty() {
                refuse(TransitionFault::ReasonRequired)
            } else {
                Ok(S::Rejected)
            }
        }
        CaseEventKind::Routed { .. } if open => Ok(status),
        _ => refuse(TransitionFault::WrongState),
    }
}

/// Two terminal events that cannot both be true: the document was handed over (delivered
/// or posted) and the case was cancelled or rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The terminal event that came first by order and set the status.
    pub applied: CaseEvent,
    /// The later, incompatible terminal event.
    pub contested: CaseEvent,
    /// The operator's decision, once made (a `Resolved` event in the case's history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
}

/// How a conflict was resolved: the status that stands, why, who and when (from the
/// `Resolved` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub outcome: CaseStatus,
    pub reason: String,
    pub actor: String,
    pub at: Timestamp,
    pub hlc: String,
}

impl Resolution {
    pub fn message_en(&self) -> String {
        format!(
            "Resolved by {} at {}: the case stands as {}. Reason: {}",
            self.actor,
            self.at,
            self.outcome.name_en(),
            self.reason
        )
    }

    pub fn message_ar(&self) -> String {
        format!(
            "حُلّ التعارض من قبل {} في {}: تبقى المعاملة {}. السبب: {}",
            self.actor,
            self.at,
            self.outcome.name_ar(),
            self.reason
        )
    }
}

impl Conflict {
    /// Two independent creations under one document id (two different cases given the
    /// same number): `applied` and `contested` are both `Created` events.
    pub fn double_creation(first: CaseEvent, second: CaseEvent) -> Conflict {
        Conflict {
            applied: first,
            contested: second,
            resolution: None,
        }
    }

    /// The two statuses an operator may choose between: the one each terminal event
    /// would give (empty for a double creation, which is not resolved by an event).
    pub fn outcomes(&self) -> Vec<CaseStatus> {
        if self.is_double_creation() {
            return Vec::new();
        }
        [&self.applied, &self.contested]
            .into_iter()
            .filter_map(|e| e.kind.terminal_status())
            .collect()
    }

    /// Whether an operator has decided it.
    pub fn is_resolved(&self) -> bool {
        self.resolution.is_some()
    }

    /// Whether this is a [`Conflict::double_creation`].
    pub fn is_double_creation(&self) -> bool {
        self.applied.kind == CaseEventKind::Created && self.contested.kind == CaseEventKind::Created
    }

    pub fn message_en(&self) -> String {
        if self.is_double_creation() {
            return format!(
                "Two different cases carry this number: one created by {} at {}, one by {} at {}. Both are kept; a supervisor must check them.",
                self.applied.actor, self.applied.at, self.contested.actor, self.contested.at
            );
        }
        format!(
            "Conflicting records: {} by {} and {} by {}. A supervisor must check this case.",
            self.applied.kind.name(),
            self.applied.actor,
            self.contested.kind.name(),
            self.contested.actor
        )
    }

    pub fn message_ar(&self) -> String {
        if self.is_double_creation() {
            return format!(
                "معاملتان مختلفتان تحملان هذا الرقم: الأولى أنشأها {} في {}، والثانية {} في {}. حُفظت الاثنتان؛ يجب أن يراجعهما المشرف.",
                self.applied.actor, self.applied.at, self.contested.actor, self.contested.at
            );
        }
        format!(
            "سجلات متعارضة: {} من قبل {} و{} من قبل {}. يجب أن يراجع المشرف هذه المعاملة.",
            self.applied.kind.name(),
            self.applied.actor,
            self.contested.kind.name(),
            self.contested.actor
        )
    }
}

/// What the events of a case say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Derived {
    pub status: CaseStatus,
    pub conflict: Option<Conflict>,
    /// The payment of the applied `Paid` event.
    pub payment: Option<Payment>,
    /// The last center the case was routed to, if any.
    pub routed_to: Option<CenterId>,
    /// How many events were illegal in the folded order and ignored (e.g. a duplicate
    /// "ready" from two desks).
    pub skipped: usize,
}

/// The total order of events: (hlc, actor, kind), then the remaining fields, so equal keys
/// mean equal events and the fold does not depend on input order.
pub fn event_order(a: &CaseEvent, b: &CaseEvent) -> Ordering {
    let kind_key = |e: &CaseEvent| serde_json::to_string(&e.kind).unwrap_or_default();
    a.hlc
        .cmp(&b.hlc)
        .then_with(|| a.actor.cmp(&b.actor))
        .then_with(|| kind_key(a).cmp(&kind_key(b)))
        .then_with(|| a.at.cmp(&b.at))
        .then_with(|| a.desk.cmp(&b.desk))
}

/// Whether `kind` would be acceptable from some state under `delivery` (a well-formed
/// event), used so that a malformed terminal event is skipped, not shown as a conflict.
fn well_formed(kind: &CaseEventKind, delivery: &Delivery) -> bool {
    [CaseStatus::Paid, CaseStatus::Ready]
        .into_iter()
        .any(|s| apply(s, kind, delivery).is_ok())
}

/// The status of a case from its events. `delivery` is the case's delivery mode.
pub fn derive(events: &[CaseEvent], delivery: &Delivery) -> Derived {
    let mut sorted: Vec<&CaseEvent> = events.iter().collect();
    sorted.sort_by(|a, b| event_order(a, b));
    let mut d = Derived {
        status: CaseStatus::Created,
        conflict: None,
        payment: None,
        routed_to: None,
        skipped: 0,
    };
    let mut terminal: Option<&CaseEvent> = None;
    let mut resolutions: Vec<&CaseEvent> = Vec::new();
    for e in sorted {
        // The case exists from its creation; a `Created` event is its genesis, not a move.
        if e.kind == CaseEventKind::Created {
            continue;
        }
        // A resolution decides a conflict, so it is weighed once the fold has found one
        // (whatever its place in the order: the result stays order-independent).
        if matches!(e.kind, CaseEventKind::Resolved { .. }) {
            resolutions.push(e);
            continue;
        }
        match apply(d.status, &e.kind, delivery) {
            Ok(next) => {
                match &e.kind {
                    CaseEventKind::Paid(p) => d.payment = Some(p.clone()),
                    CaseEventKind::Routed { to } => d.routed_to = Some(to.clone()),
                    _ => {}
                }
                if next.is_terminal() {
                    terminal = Some(e);
                }
                d.status = next;
            }
            Err(_) => {
                let incompatible = terminal.is_some_and(|t| {
                    (t.kind.is_handover() && e.kind.is_abort())
                        || (t.kind.is_abort() && e.kind.is_handover())
                });
                match terminal {
                    Some(t)
                        if incompatible
                            && d.conflict.is_none()
                            && well_formed(&e.kind, delivery) =>
                    {
                        d.conflict = Some(Conflict {
                            applied: t.clone(),
                            contested: e.clone(),
                            resolution: None,
                        });
                    }
                    _ => d.skipped += 1,
                }
            }
        }
    }
    resolve(&mut d, &resolutions);
    d
}

/// Applies the last (in event order) resolution that chooses one of the conflict's two
/// outcomes; every other resolution is skipped.
fn resolve(d: &mut Derived, resolutions: &[&CaseEvent]) {
    let Some(conflict) = d.conflict.as_mut() else {
        d.skipped += resolutions.len();
        return;
    };
    let outcomes = conflict.outcomes();
    let mut chosen = None;
    for e in resolutions {
        match &e.kind {
            CaseEventKind::Resolved { outcome, reason }
                if outcomes.contains(outcome) && !reason.trim().is_empty() =>
            {
                if chosen.is_some() {
                    d.skipped += 1;
                }
                chosen = Some(Resolution {
                    outcome: *outcome,
                    reason: reason.clone(),
                    actor: e.actor.clone(),
                    at: e.at,
                    hlc: e.hlc.clone(),
                });
            }
            _ => d.skipped += 1,
        }
    }
    if let Some(r) = chosen {
        d.status = r.outcome;
        conflict.resolution = Some(r);
    }
}

/// Checks an operator's resolution of `conflict` before it is recorded: the conflict is
/// not a double creation, the outcome is one of its two sides, the reason is given.
pub fn check_resolution(
    conflict: Option<&Conflict>,
    status: CaseStatus,
    outcome: CaseStatus,
    reason: &str,
) -> Result<(), IllegalTransition> {
    let refuse = |fault| {
        Err(IllegalTransition {
            from: status,
            action: CaseAction::Resolve,
            fault,
        })
    };
    match conflict {
        Some(c) if c.outcomes().contains(&outcome) => {
            if reason.trim().is_empty() {
                refuse(TransitionFault::ReasonRequired)
            } else {
                Ok(())
            }
        }
        _ => refuse(TransitionFault::WrongState),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pickup() -> Delivery {
        Delivery::Pickup {
            center: "midan".parse().unwrap(),
        }
    }
    fn post() -> Delivery {
        Delivery::Post {
            address: "دمشق - المزة".into(),
        }
    }
    fn cash() -> CaseEventKind {
        CaseEventKind::Paid(Payment::Cash {
            receipt: "MID-R-000001".parse().unwrap(),
        })
    }
    fn delivered() -> CaseEventKind {
        CaseEventKind::Delivered {
            receiver: "01020304050".parse().unwrap(),
        }
    }
    fn posted() -> CaseEventKind {
        CaseEventKind::Posted {
            tracking: "RR123456789SY".into(),
        }
    }
    fn cancelled() -> CaseEventKind {
        CaseEventKind::Cancelled {
            reason: "طلب المواطن".into(),
        }
    }
    fn rejected() -> CaseEventKind {
        CaseEventKind::Rejected {
            reason: "وثائق ناقصة".into(),
        }
    }
    fn ev(kind: CaseEventKind, hlc: &str, actor: &str) -> CaseEvent {
        CaseEvent {
            kind,
            actor: actor.into(),
            desk: Some("desk-3".into()),
            at: Timestamp::UNIX_EPOCH,
            hlc: hlc.into(),
        }
    }

    fn run(path: &[CaseEventKind], delivery: &Delivery) -> Result<CaseStatus, IllegalTransition> {
        path.iter()
            .try_fold(CaseStatus::Created, |s, k| apply(s, k, delivery))
    }

    #[test]
    fn every_legal_path() {
        use CaseEventKind as K;
        use CaseStatus as S;
        let cases: Vec<(Vec<CaseEventKind>, Delivery, S)> = vec![
            (vec![cash()], pickup(), S::Paid),
            (vec![cash(), K::Started], pickup(), S::InProgress),
            (vec![cash(), K::Started, K::Ready], pickup(), S::Ready),
            (
                vec![cash(), K::Started, K::Ready, K::Notified],
                pickup(),
                S::Notified,
            ),
            (
                vec![cash(), K::Started, K::Ready, K::Notified, delivered()],
                pickup(),
                S::Delivered,
            ),
            (
                vec![cash(), K::Started, K::Ready, delivered()],
                pickup(),
                S::Delivered,
            ),
            (
                vec![cash(), K::Started, K::Ready, posted()],
                post(),
                S::Posted,
            ),
            (
                vec![cash(), K::Started, K::Ready, K::Notified, posted()],
                post(),
                S::Posted,
            ),
            (vec![cancelled()], pickup(), S::Cancelled),
            (vec![cash(), cancelled()], pickup(), S::Cancelled),
            (
                vec![cash(), K::Started, cancelled()],
                pickup(),
                S::Cancelled,
            ),
            (
                vec![cash(), K::Started, K::Ready, cancelled()],
                pickup(),
                S::Cancelled,
            ),
            (
                vec![cash(), K::Started, K::Ready, K::Notified, cancelled()],
                post(),
                S::Cancelled,
            ),
            (vec![cash(), rejected()], pickup(), S::Rejected),
            (vec![cash(), K::Started, rejected()], post(), S::Rejected),
            (
                vec![
                    CaseEventKind::Paid(Payment::EPayment {
                        reference: "SEP-778812".into(),
                        bank: Bank::AlBaraka,
                    }),
                    K::Routed {
                        to: "qanawat".parse().unwrap(),
                    },
                    K::Started,
                    K::Ready,
                    delivered(),
                ],
                pickup(),
                S::Delivered,
            ),
        ];
        for (path, delivery, expected) in cases {
            assert_eq!(run(&path, &delivery), Ok(expected), "{path:?}");
        }
    }

    /// The legal (status, action) pairs, written from the rules, independently of `apply`.
    fn legal(from: CaseStatus, action: CaseAction) -> bool {
        use CaseAction as A;
        use CaseStatus as S;
        match action {
            A::Create => false,
            A::Pay => from == S::Created,
            A::Start => from == S::Paid,
            A::MarkReady => from == S::InProgress,
            A::Notify => from == S::Ready,
            A::Deliver | A::Post => matches!(from, S::Ready | S::Notified),
            A::Cancel | A::Route => !from.is_terminal(),
            A::Reject => matches!(from, S::Paid | S::InProgress),
            // Never a transition: a resolution is weighed by `derive` on a conflict.
            A::Resolve => false,
        }
    }

    #[test]
    fn every_illegal_transition_is_refused_naming_the_state() {
        use CaseEventKind as K;
        let kinds = [
            K::Created,
            cash(),
            K::Started,
            K::Ready,
            K::Notified,
            delivered(),
            posted(),
            cancelled(),
            rejected(),
            K::Routed {
                to: "mazzeh".parse().unwrap(),
            },
        ];
        let mut refused = 0;
        for from in CaseStatus::ALL {
            for kind in &kinds {
                // Delivery mode chosen so that only the state decides.
                let delivery = if matches!(kind, K::Posted { .. }) {
                    post()
                } else {
                    pickup()
                };
                let got = apply(from, kind, &delivery);
                if legal(from, kind.action()) {
                    assert!(got.is_ok(), "{from:?} + {kind:?} should be legal");
                } else {
                    refused += 1;
                    let err = got.expect_err("illegal");
                    assert_eq!(err.from, from);
                    assert_eq!(err.action, kind.action());
                    assert_eq!(err.fault, TransitionFault::WrongState);
                    assert_eq!(err.code(), "illegal_transition");
                    assert!(
                        err.message_en().contains(from.name_en()),
                        "{}",
                        err.message_en()
                    );
                    assert!(
                        err.message_ar().contains(from.name_ar()),
                        "{}",
                        err.message_ar()
                    );
                }
            }
        }
        assert_eq!(refused, 90 - 20, "20 legal (state, action) pairs");
    }

    #[test]
    fn reasons_tracking_reference_and_delivery_mode_are_checked() {
        use CaseStatus as S;
        let fault = |s, k: CaseEventKind, d: &Delivery| apply(s, &k, d).unwrap_err().fault;
        assert_eq!(
            fault(
                S::Paid,
                CaseEventKind::Cancelled {
                    reason: "  ".into()
                },
                &pickup()
            ),
            TransitionFault::ReasonRequired
        );
        assert_eq!(
            fault(
                S::Paid,
                CaseEventKind::Rejected { reason: "".into() },
                &pickup()
            ),
            TransitionFault::ReasonRequired
        );
        assert_eq!(
            fault(S::Ready, delivered(), &post()),
            TransitionFault::NotForPickup
        );
        assert_eq!(
            fault(S::Notified, posted(), &pickup()),
            TransitionFault::NotForPost
        );
        assert_eq!(
            fault(
                S::Ready,
                CaseEventKind::Posted {
                    tracking: " ".into()
                },
                &post()
            ),
            TransitionFault::TrackingRequired
        );
        let e = CaseEventKind::Paid(Payment::EPayment {
            reference: "".into(),
            bank: Bank::Bemo,
        });
        let err = apply(S::Created, &e, &pickup()).unwrap_err();
        assert_eq!(err.fault, TransitionFault::ReferenceRequired);
        assert_eq!(err.code(), "reference_required");
        assert_eq!(
            apply(S::InProgress, &delivered(), &pickup())
                .unwrap_err()
                .to_string(),
            "The case is in progress: you cannot hand the document over (it must be ready first)."
        );
    }

    #[test]
    fn events_serialise_with_tags() {
        let e = ev(cash(), "0001", "rana");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"]["kind"], "paid");
        assert_eq!(json["kind"]["method"], "cash");
        assert_eq!(json["kind"]["receipt"], "MID-R-000001");
        let back: CaseEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        let bad = serde_json::json!({"kind":"delivered","receiver":"123"});
        assert!(
            serde_json::from_value::<CaseEventKind>(bad).is_err(),
            "receiver id is validated"
        );
        assert_eq!(
            serde_json::to_value(pickup()).unwrap(),
            serde_json::json!({"mode":"pickup","center":"midan"})
        );
        assert_eq!(
            "in_progress".parse::<CaseStatus>().unwrap(),
            CaseStatus::InProgress
        );
    }

    #[test]
    fn derive_follows_the_events() {
        let events = vec![
            ev(CaseEventKind::Created, "0001", "rana"),
            ev(cash(), "0002", "rana"),
            ev(CaseEventKind::Started, "0003", "omar"),
            ev(CaseEventKind::Ready, "0004", "omar"),
            ev(CaseEventKind::Ready, "0004", "sami"),
            ev(CaseEventKind::Notified, "0005", "system"),
        ];
        let d = derive(&events, &pickup());
        assert_eq!(d.status, CaseStatus::Notified);
        assert_eq!(d.conflict, None);
        assert_eq!(d.skipped, 1, "the duplicate ready");
        assert!(matches!(d.payment, Some(Payment::Cash { .. })));
    }

    #[test]
    fn a_resolution_decides_a_conflict_in_any_order() {
        let resolved = |outcome, hlc| {
            ev(
                CaseEventKind::Resolved {
                    outcome,
                    reason: "الوثيقة سُلّمت فعلاً".into(),
                },
                hlc,
                "hub-admin",
            )
        };
        let base = vec![
            ev(cash(), "0002", "rana"),
            ev(CaseEventKind::Started, "0003", "omar"),
            ev(CaseEventKind::Ready, "0004", "omar"),
            ev(cancelled(), "0005", "hub-admin"),
            ev(delivered(), "0006", "rana"),
        ];
        let unresolved = derive(&base, &pickup());
        assert_eq!(unresolved.status, CaseStatus::Cancelled);
        let c = unresolved.conflict.as_ref().expect("conflict");
        assert_eq!(
            c.outcomes(),
            vec![CaseStatus::Cancelled, CaseStatus::Delivered]
        );
        assert!(!c.is_resolved());
        assert!(check_resolution(Some(c), unresolved.status, CaseStatus::Delivered, "x").is_ok());
        assert_eq!(
            check_resolution(Some(c), unresolved.status, CaseStatus::Posted, "x")
                .unwrap_err()
                .code(),
            "illegal_transition"
        );
        assert_eq!(
            check_resolution(Some(c), unresolved.status, CaseStatus::Delivered, " ")
                .unwrap_err()
                .code(),
            "reason_required"
        );
        assert!(check_resolution(None, CaseStatus::Ready, CaseStatus::Delivered, "x").is_err());

        let mut events = base.clone();
        events.push(resolved(CaseStatus::Delivered, "0007"));
        let d = derive(&events, &pickup());
        assert_eq!(d.status, CaseStatus::Delivered);
        let r = d
            .conflict
            .as_ref()
            .and_then(|c| c.resolution.clone())
            .expect("resolved");
        assert_eq!(
            (r.outcome, r.actor.as_str()),
            (CaseStatus::Delivered, "hub-admin")
        );
        assert!(r.message_en().contains("delivered") && r.message_ar().contains("السبب"));
        // Any order gives the same; a later resolution wins; a resolution for an outcome
        // outside the conflict is skipped.
        let mut shuffled = events.clone();
        shuffled.reverse();
        assert_eq!(derive(&shuffled, &pickup()), d);
        events.push(resolved(CaseStatus::Cancelled, "0008"));
        events.push(resolved(CaseStatus::Rejected, "0009"));
        let d2 = derive(&events, &pickup());
        assert_eq!(d2.status, CaseStatus::Cancelled);
        // Without a conflict a resolution changes nothing.
        let plain = vec![
            ev(cash(), "0002", "rana"),
            resolved(CaseStatus::Cancelled, "0003"),
        ];
        let p = derive(&plain, &pickup());
        assert_eq!((p.status, p.skipped), (CaseStatus::Paid, 1));
        // The event round-trips as JSON with its tag.
        let json = serde_json::to_value(&events[5].kind).unwrap();
        assert_eq!(json["kind"], "resolved");
        assert_eq!(json["outcome"], "delivered");
    }

    #[test]
    fn delivered_and_cancelled_concurrently_is_a_conflict() {
        let events = vec![
            ev(cash(), "0002", "rana"),
            ev(CaseEventKind::Started, "0003", "omar"),
            ev(CaseEventKind::Ready, "0004", "omar"),
            ev(cancelled(), "0005", "hub-admin"),
            ev(delivered(), "0006", "rana"),
        ];
        let d = derive(&events, &pickup());
        assert_eq!(d.status, CaseStatus::Cancelled);
        let c = d.conflict.expect("conflict flagged");
        assert_eq!(c.applied.actor, "hub-admin");
        assert_eq!(c.contested.kind, delivered());
        assert!(c.message_en().contains("cancelled") && c.message_en().contains("delivered"));

        // The other way round: delivery first.
        let mut events = events;
        events[3].hlc = "0007".into();
        let d = derive(&events, &pickup());
        assert_eq!(d.status, CaseStatus::Delivered);
        assert_eq!(d.conflict.unwrap().contested.kind, cancelled());
    }

    #[test]
    fn compatible_or_malformed_late_events_are_skipped_not_conflicts() {
        let events = vec![
            ev(cash(), "0002", "rana"),
            ev(cancelled(), "0003", "rana"),
            ev(rejected(), "0004", "omar"),
            ev(posted(), "0005", "omar"), // a pickup case cannot be posted: malformed
        ];
        let d = derive(&events, &pickup());
        assert_eq!(d.status, CaseStatus::Cancelled);
        assert_eq!(d.conflict, None);
        assert_eq!(d.skipped, 2);
    }

    fn arb_kind() -> impl Strategy<Value = CaseEventKind> {
        prop_oneof![
            Just(CaseEventKind::Created),
            Just(cash()),
            Just(CaseEventKind::Paid(Payment::EPayment {
                reference: "SEP-1".into(),
                bank: Bank::Bemo
            })),
            Just(CaseEventKind::Started),
            Just(CaseEventKind::Ready),
            Just(CaseEventKind::Notified),
            Just(delivered()),
            Just(posted()),
            Just(cancelled()),
            Just(CaseEventKind::Cancelled { reason: "".into() }),
            Just(rejected()),
            Just(CaseEventKind::Routed {
                to: "qanawat".parse().unwrap()
            }),
        ]
    }

    fn arb_event() -> impl Strategy<Value = CaseEvent> {
        (
            arb_kind(),
            0u8..6,
            prop::sample::select(vec!["rana", "omar", "hub"]),
            0i64..3,
            prop::option::of(Just("desk-1")),
        )
            .prop_map(|(kind, hlc, actor, at, desk)| CaseEvent {
                kind,
                actor: actor.into(),
                desk: desk.map(String::from),
                at: Timestamp::from_second(at).unwrap_or(Timestamp::UNIX_EPOCH),
                hlc: format!("{hlc:04}"),
            })
    }

    proptest! {
        #[test]
        fn derive_is_order_independent(
            (events, shuffled) in prop::collection::vec(arb_event(), 0..14)
                .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
            post_mode in any::<bool>(),
        ) {
            let delivery = if post_mode { post() } else { pickup() };
            prop_assert_eq!(derive(&events, &delivery), derive(&shuffled, &delivery));
        }

        #[test]
        fn a_terminal_status_is_never_undone_by_later_events(
            early in prop::collection::vec(arb_event(), 0..12),
            late in prop::collection::vec(arb_event(), 0..8),
            post_mode in any::<bool>(),
        ) {
            let delivery = if post_mode { post() } else { pickup() };
            let before = derive(&early, &delivery);
            let mut all = early.clone();
            all.extend(late.into_iter().map(|mut e| {
                e.hlc = format!("9{}", e.hlc);
                e
            }));
            let after = derive(&all, &delivery);
            if before.status.is_terminal() {
                prop_assert_eq!(after.status, before.status);
            }
            if before.conflict.is_some() {
                prop_assert_eq!(after.conflict, before.conflict);
            }
        }

        #[test]
        fn conflicts_pair_a_handover_with_an_abort(
            events in prop::collection::vec(arb_event(), 0..14),
            post_mode in any::<bool>(),
        ) {
            let delivery = if post_mode { post() } else { pickup() };
            let d = derive(&events, &delivery);
            if let Some(c) = &d.conflict {
                prop_assert!(d.status.is_terminal());
                let pair = (c.applied.kind.is_handover(), c.contested.kind.is_handover());
                prop_assert!(pair == (true, false) || pair == (false, true));
                prop_assert!(c.contested.kind.is_abort() || c.applied.kind.is_abort());
            }
            // A well-formed linear history is never skipped or conflicted.
            let happy: Vec<_> = [cash(), CaseEventKind::Started, CaseEventKind::Ready]
                .into_iter().enumerate().map(|(i, k)| ev(k, &format!("{i:04}"), "rana")).collect();
            let h = derive(&happy, &delivery);
            prop_assert_eq!((h.status, h.skipped, h.conflict), (CaseStatus::Ready, 0, None));
        }
    }
}
