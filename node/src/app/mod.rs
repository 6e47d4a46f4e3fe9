//! The node's use cases: what a reception terminal, a desk, a supervisor or a technician
//! can do. Both the JSON API and the web pages call these, so the rules live once.
//!
//! Each use case validates input into domain types (parse, don't validate), checks the
//! actor's role and permissions, runs its writes through the group-commit writer (one
//! savepoint per request, answered after commit), writes the audit row in the same
//! transaction, and publishes live events only after the commit.

pub mod cases;
pub mod cash;
pub mod citizens;
pub mod conflicts;
pub mod daily_docs;
pub mod figures;
pub mod kiosk;
pub mod numbering;
pub mod queue;
pub mod reports;
pub mod staff;
pub(crate) mod staff_docs;
pub mod status;
pub mod wallclock;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use markaz_sync::model::catalog::Service;
use markaz_sync::model::fees::FeeSchedule;
use markaz_sync::model::ids::CenterId;
use markaz_sync::model::staff::{Capability, Role};

use crate::auth::AuthPolicy;
use crate::error::AppError;
use crate::events::EventBus;
use crate::storage::Db;

/// The time source. Tests and the demo can move a manual clock; production uses the
/// system clock. Besides the wall clock, a clock gives a monotonic reading
/// ([`Clock::monotonic`]) for lifetimes that must not follow a wall clock that jumps.
#[derive(Clone)]
pub enum Clock {
    System,
    /// A wall clock that tests move; its monotonic reading is the wall clock's.
    Manual(Arc<AtomicI64>),
    /// A wall clock that tests can also step (a technician's correction, a box waking up
    /// in 1970) without moving the monotonic reading: [`Clock::set_wall`].
    Stepped {
        wall: Arc<AtomicI64>,
        mono: Arc<AtomicI64>,
    },
}

/// A monotonic reading: milliseconds since some start of `boot`. Two readings compare
/// only within one boot (the same `boot`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mono {
    pub boot: Arc<str>,
    pub ms: i64,
}

/// The system's boot (its `boot_id`) and the time since boot when this process first
/// asked, with the instant it asked: monotonic milliseconds that hold across restarts of
/// the process (not of the box) and never follow a change of the wall clock.
fn system_mono() -> Mono {
    static BASE: std::sync::OnceLock<(Arc<str>, i64, std::time::Instant)> =
        std::sync::OnceLock::new();
    let (boot, base, at) = BASE.get_or_init(|| {
        let at = std::time::Instant::now();
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty());
        let uptime_ms = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .map(|secs| (secs * 1000.0) as i64);
        match (boot, uptime_ms) {
            (Some(b), Some(u)) => (Arc::from(b.as_str()), u, at),
            // Without /proc: monotonic within this process only.
            _ => (
                Arc::from(format!("process-{}", crate::auth::new_token()).as_str()),
                0,
                at,
            ),
        }
    });
    Mono {
        boot: boot.clone(),
        ms: base + at.elapsed().as_millis() as i64,
    }
}

impl Clock {
    pub fn manual(at: Timestamp) -> Self {
        Clock::Manual(Arc::new(AtomicI64::new(at.as_millisecond())))
    }

    /// A manual clock whose wall time can also be stepped ([`Clock::set_wall`]).
    pub fn stepped(at: Timestamp) -> Self {
        Clock::Stepped {
            wall: Arc::new(AtomicI64::new(at.as_millisecond())),
            mono: Arc::new(AtomicI64::new(0)),
        }
    }

    pub fn now(&self) -> Timestamp {
        let ms = match self {
            Clock::System => return Timestamp::now(),
            Clock::Manual(ms) | Clock::Stepped { wall: ms, .. } => ms.load(Ordering::SeqCst),
        };
        Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// A monotonic reading (see [`Mono`]).
    pub fn monotonic(&self) -> Mono {
        match self {
            Clock::System => system_mono(),
            Clock::Manual(ms) => Mono {
                boot: Arc::from("manual"),
                ms: ms.load(Ordering::SeqCst),
            },
            Clock::Stepped { mono, .. } => Mono {
                boot: Arc::from("stepped"),
                ms: mono.load(Ordering::SeqCst),
            },
        }
    }

    /// Moves a manual clock forward (wall and monotonic); no effect on the system clock.
    pub fn advance(&self, by: std::time::Duration) {
        let by = by.as_millis() as i64;
        match self {
            Clock::System => {}
            Clock::Manual(ms) => {
                ms.fetch_add(by, Ordering::SeqCst);
            }
            Clock::Stepped { wall, mono } => {
                wall.fetch_add(by, Ordering::SeqCst);
                mono.fetch_add(by, Ordering::SeqCst);
            }
        }
    }

    /// Steps a manual wall clock to `at` (a stepped clock's monotonic reading stays);
    /// no effect on the system clock.
    pub fn set_wall(&self, at: Timestamp) {
        match self {
            Clock::System => {}
            Clock::Manual(ms) | Clock::Stepped { wall: ms, .. } => {
                ms.store(at.as_millisecond(), Ordering::SeqCst);
            }
        }
    }
}

/// A queue group of this center (from config).
#[derive(Debug, Clone, Serialize)]
pub struct GroupSettings {
    pub id: String,
    pub letter: char,
    pub name_ar: String,
    pub name_en: String,
    pub target_wait_minutes: u32,
}

/// A counter (front desk) of this center.
#[derive(Debug, Clone, Serialize)]
pub struct CounterSettings {
    pub number: u32,
    pub groups: Vec<String>,
}

/// Everything the use cases need from config, in domain terms.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// The center's id as `[center] id` parsed it: the model's type, never re-parsed.
    pub center_id: CenterId,
    pub center_name_ar: String,
    pub center_name_en: String,
    pub receipt_prefix: String,
    pub timezone: TimeZone,
    pub auth: AuthPolicy,
    pub groups: Vec<GroupSettings>,
    pub counters: Vec<CounterSettings>,
    pub priority_weight: u32,
    pub normal_weight: u32,
    pub initial_admin_user: String,
    pub initial_admin_password: Option<String>,
}

/// Who is acting: a logged-in staff member at a terminal.
#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    pub username: String,
    pub full_name: String,
    pub roles: Vec<Role>,
    pub terminal: Option<String>,
    pub language: String,
}

impl Actor {
    pub fn can(&self, cap: Capability) -> bool {
        self.roles.iter().any(|r| r.allows(cap))
    }

    /// Refuses with 403 unless one of the actor's roles allows `cap`.
    pub fn require(&self, cap: Capability) -> Result<(), AppError> {
        if self.can(cap) {
            Ok(())
        } else {
            Err(AppError::forbidden(
                "role_forbidden",
                format!("your role does not allow {cap:?}"),
            ))
        }
    }
}

/// The application: storage, settings, catalog, clock and live events.
#[derive(Clone)]
pub struct App {
    pub db: Db,
    pub settings: Arc<AppSettings>,
    pub bus: EventBus,
    pub clock: Clock,
    /// The services offered here: the built-in catalog, overlaid by the hub's catalog
    /// document (at start, and after each sync that changes it).
    catalog: tokio::sync::watch::Sender<Arc<Vec<Service>>>,
    /// Replaced whole when the hub sends a new schedule; cases keep their frozen fee.
    fees: tokio::sync::watch::Sender<Arc<FeeSchedule>>,
    pub status: status::StatusBoard,
    /// Handles on the devices (modem, link, power); "not configured" until
    /// `devices::start` runs.
    pub devices: crate::devices::DeviceHandles,
    /// Whether case and receipt numbers may be handed out yet (`numbering`).
    numbering: tokio::sync::watch::Sender<numbering::Gate>,
    /// The Prometheus metrics (`/metrics`).
    pub metrics: crate::metrics::Metrics,
}

impl App {
    pub fn new(db: Db, settings: AppSettings, clock: Clock) -> Self {
        Self {
            metrics: crate::metrics::Metrics::new(&db.writer),
            db,
            settings: Arc::new(settings),
            bus: EventBus::default(),
            clock,
            catalog: tokio::sync::watch::Sender::new(Arc::new(
                markaz_sync::model::catalog::default_catalog(),
            )),
            fees: tokio::sync::watch::Sender::new(Arc::new(
                markaz_sync::model::fees::default_fee_schedule(),
            )),
            status: status::StatusBoard::default(),
            devices: crate::devices::DeviceHandles::default(),
            numbering: tokio::sync::watch::Sender::new(numbering::Gate::Local),
        }
    }

    /// Sets the numbering gate: the sync task closes it at start and opens it when its
    /// first session has ended.
    pub fn set_numbering_gate(&self, gate: numbering::Gate) {
        self.numbering.send_replace(gate);
    }

    /// The numbering gate, once the first sync session since start has ended or
    /// [`numbering::FIRST_SESSION_WAIT`] has passed (then numbers are handed out as the
    /// database's confirmation says: never a reused number, never a stopped desk).
    pub async fn numbering_gate(&self) -> numbering::Gate {
        let mut rx = self.numbering.subscribe();
        let waited = tokio::time::timeout(
            numbering::FIRST_SESSION_WAIT,
            rx.wait_for(|g| *g != numbering::Gate::FirstSession),
        )
        .await;
        match waited {
            Ok(Ok(g)) => *g,
            _ => {
                // A first session this long (a big repair over the modem) must not make
                // every desk wait: numbers go by the database's confirmation from now.
                self.numbering.send_if_modified(|g| {
                    let first = *g == numbering::Gate::FirstSession;
                    if first {
                        *g = numbering::Gate::Open;
                    }
                    first
                });
                numbering::Gate::Open
            }
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn now_ms(&self) -> i64 {
        self.now().as_millisecond()
    }

    /// Now in the center's time zone.
    pub fn local_now(&self) -> Zoned {
        self.now().to_zoned(self.settings.timezone.clone())
    }

    /// The center's local civil date, which keys the daily ticket series.
    pub fn today(&self) -> Date {
        self.local_now().date()
    }

    /// The services offered here (a snapshot; the hub may replace it at a sync).
    pub fn catalog(&self) -> Arc<Vec<Service>> {
        self.catalog.borrow().clone()
    }

    /// Installs the services of the hub's catalog document: each replaces the service
    /// with its code, new codes are added after the known ones. Services the document
    /// lacks stay (a catalog the hub has not filled yet must not stop intake here).
    pub fn set_catalog(&self, services: Vec<Service>) {
        if services.is_empty() {
            return;
        }
        self.catalog.send_modify(|current| {
            let mut list = current.as_ref().clone();
            for s in services {
                match list.iter_mut().find(|k| k.code == s.code) {
                    Some(known) => *known = s,
                    None => list.push(s),
                }
            }
            *current = Arc::new(list);
        });
    }

    /// Installs the services and fees of the catalog document stored here, so a node
    /// that restarts offline keeps what the hub last sent. `Ok(false)` when there is no
    /// such document yet (the built-in catalog and fees stay).
    pub async fn load_catalog_doc(&self) -> Result<bool, AppError> {
        let view = self
            .db
            .writer
            .write(|tx| -> Result<_, AppError> {
                let c = tx.conn;
                Ok(tx.docs.read(
                    c,
                    &markaz_sync::docs::DocId::catalog(),
                    markaz_sync::docs::read_catalog,
                )?)
            })
            .await?;
        match view {
            None => Ok(false),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the stored catalog document is unreadable; keeping the built-in catalog");
                Ok(false)
            }
            Some(Ok(view)) => {
                self.install_catalog(view);
                Ok(true)
            }
        }
    }

    /// Installs a catalog document's services ([`App::set_catalog`]) and fee histories:
    /// each service's history in the document replaces the one known here; services the
    /// document has no fees for keep theirs.
    pub fn install_catalog(&self, view: markaz_sync::docs::CatalogView) {
        self.set_catalog(view.services);
        if !view.fees.services.is_empty() {
            let mut schedule = self.fees().as_ref().clone();
            schedule.services.extend(view.fees.services);
            self.set_fee_schedule(schedule);
        }
    }

    pub fn service(&self, code: &str) -> Result<Service, AppError> {
        self.catalog
            .borrow()
            .iter()
            .find(|s| s.code == code)
            .cloned()
            .ok_or_else(|| {
                AppError::field(
                    "service",
                    "unknown_service",
                    format!("no service with code '{code}'"),
                    format!("لا توجد خدمة بالرمز '{code}'"),
                )
            })
    }

    /// The fee schedule in force (all its dated components).
    pub fn fees(&self) -> Arc<FeeSchedule> {
        self.fees.borrow().clone()
    }

    /// Installs a new fee schedule (from the hub, or a test).
    pub fn set_fee_schedule(&self, schedule: FeeSchedule) {
        self.fees.send_replace(Arc::new(schedule));
    }

    pub fn group(&self, id: &str) -> Option<&GroupSettings> {
        self.settings.groups.iter().find(|g| g.id == id)
    }

    pub fn counter(&self, number: u32) -> Result<&CounterSettings, AppError> {
        self.settings
            .counters
            .iter()
            .find(|c| c.number == number)
            .ok_or_else(|| AppError::not_found(format!("counter {number}")))
    }
}

/// Appends a row to the audit log inside the caller's transaction.
pub fn audit(
    conn: &Connection,
    at: Timestamp,
    actor: &Actor,
    action: &str,
    subject: &str,
    detail: serde_json::Value,
) -> Result<(), AppError> {
    // Cached: every audited write runs it on the writer thread.
    conn.prepare_cached(
        "INSERT INTO audit_log(at, actor, terminal, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![at.to_string(), actor.username, actor.terminal, action, subject, detail.to_string()])?;
    Ok(())
}

/// Takes the next value of a named per-center sequence inside the caller's transaction.
pub fn next_seq(conn: &Connection, name: &str) -> Result<i64, AppError> {
    let v: i64 = conn
        .prepare_cached(
            "INSERT INTO sequences(name, value) VALUES (?1, 1)
             ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value",
        )?
        .query_row([name], |r| r.get(0))?;
    Ok(v)
}

/// Appends to the node's technician-facing event log.
pub fn node_log(
    conn: &Connection,
    at: Timestamp,
    level: &str,
    source: &str,
    message: &str,
) -> Result<(), AppError> {
    conn.execute(
        "INSERT INTO node_log(at, level, source, message) VALUES (?1, ?2, ?3, ?4)",
        params![at.to_string(), level, source, message],
    )?;
    Ok(())
}

/// Stamps a new event with the node's hybrid logical clock, inside the caller's write
/// transaction. The last stamp is persisted, so stamps keep increasing across restarts and
/// even when the wall clock jumps back (a box without an RTC battery wakes up in 1970).
pub fn next_hlc(conn: &Connection, node: &str, wall: Timestamp) -> Result<String, AppError> {
    use markaz_sync::hlc::{HlcClock, HlcStamp};
    let last: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'hlc'", [], |r| r.get(0))
        .optional()?;
    let mut clock = match last.as_deref().map(HlcStamp::parse) {
        Some(Ok(stamp)) => HlcClock::resume(stamp),
        _ => HlcClock::new(node),
    };
    let stamp = clock
        .tick(u64::try_from(wall.as_millisecond()).unwrap_or(0))
        .encode();
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('hlc', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [&stamp],
    )?;
    Ok(stamp)
}
