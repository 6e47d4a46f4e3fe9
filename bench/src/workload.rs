//! The "center-day" workload of issue 8, generated deterministically from a seed.
//!
//! One center's day: 1,200 citizen profiles registered, 10% of them updated once, and
//! 1,500 cases, each created and then taken through five successive updates (paid,
//! in progress, ready, notified, delivered) — 10,320 operations. Every random choice
//! (times, citizens, services, payment method, names) comes from a SplitMix64 stream
//! seeded by `seed` and the center's index, so the same arguments always give the same
//! operations in the same order. Operations happen at times spread over a working day
//! (08:00–16:00 Damascus), and the list is in time order, so the cases interleave the
//! way they do at a real counter.
//!
//! [`apply`] writes the operations through the same document functions the node's use
//! cases call inside their writer jobs (`DocStore::create`/`edit` with
//! `markaz_sync::docs::{create_case, append_case_event, write_citizen}`), one automerge
//! change per operation, into the sync store tables of a SQLite database. The node's SQL
//! projection rows are not written here: the sync protocol only carries the changes.

use std::collections::BTreeMap;

use anyhow::Context;
use markaz_sync::docs::{self, DocId, NewCase};
use markaz_sync::model::case::{Bank, CaseEvent, CaseEventKind, Delivery, Payment};
use markaz_sync::model::catalog::default_catalog;
use markaz_sync::model::citizen::CitizenInput;
use markaz_sync::model::fees::Fee;
use markaz_sync::model::ids::{CaseNo, CenterId, NationalId, ReceiptNo};
use markaz_sync::model::money::Money;
use markaz_sync::store::DocStore;
use rusqlite::Connection;

/// Size of a center-day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub cases: u32,
    pub citizens: u32,
    /// Citizens updated once, in percent.
    pub citizen_update_pct: u32,
}

impl Shape {
    /// The center-day of issue 8.
    pub const CENTER_DAY: Shape = Shape {
        cases: 1_500,
        citizens: 1_200,
        citizen_update_pct: 10,
    };

    /// Operations a day of this shape holds.
    pub fn operations(&self) -> usize {
        let updated = self.citizens * self.citizen_update_pct / 100;
        (self.cases * 6 + self.citizens + updated) as usize
    }
}

/// One operation of the day, in the order it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    RegisterCitizen(CitizenInput),
    UpdateCitizen(CitizenInput),
    CreateCase(Box<NewCase>),
    CaseEvent { case_no: CaseNo, event: CaseEvent },
}

impl Op {
    /// The document this operation writes.
    pub fn doc(&self, center: &CenterId) -> anyhow::Result<DocId> {
        Ok(match self {
            Op::RegisterCitizen(c) | Op::UpdateCitizen(c) => {
                DocId::citizen(&c.national_id.parse::<NationalId>()?)
            }
            Op::CreateCase(c) => DocId::case(Some(center), &c.case_no),
            Op::CaseEvent { case_no, .. } => DocId::case(Some(center), case_no),
        })
    }
}

/// SplitMix64: small, fast, and stable across library versions (unlike `StdRng`).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const FIRST: [&str; 12] = [
    "محمد", "أحمد", "علي", "عمر", "خالد", "يوسف", "ريم", "سلمى", "هبة", "نور", "لينا", "مريم",
];
const FAMILY: [&str; 10] = [
    "الحسن",
    "الخطيب",
    "الشامي",
    "العلي",
    "الحلبي",
    "السيد",
    "الدمشقي",
    "النجار",
    "الحمصي",
    "قباني",
];
const PLACES: [&str; 6] = ["دمشق", "حلب", "حمص", "حماة", "درعا", "اللاذقية"];
const STREETS: [&str; 6] = [
    "الميدان",
    "المزة",
    "القنوات",
    "باب توما",
    "ركن الدين",
    "كفرسوسة",
];
const BANKS: [Bank; 5] = [
    Bank::RealEstateBank,
    Bank::CommercialBank,
    Bank::AlBaraka,
    Bank::Bemo,
    Bank::SyriaInternationalIslamicBank,
];

/// The day everything happens on (08:00 Damascus = 05:00 UTC).
const DAY_START_MS: i64 = 1_795_928_400_000; // 2026-11-29T05:00:00Z
const DAY_MS: u64 = 8 * 3600 * 1000;

/// The national id of citizen `i` of center number `center_no`: governorate 01
/// (Damascus), two digits of the center, seven of the citizen — unique across centers.
pub fn national_id(center_no: u32, i: u32) -> String {
    format!("01{:02}{:07}", center_no % 100, i + 1)
}

/// A citizen profile (Arabic names, a Syrian mobile number) for `nid`.
pub fn citizen(rng: &mut Rng, nid: String) -> CitizenInput {
    let year = 1950 + rng.below(55);
    let month = 1 + rng.below(12);
    let day = 1 + rng.below(28);
    CitizenInput {
        national_id: nid,
        full_name: format!("{} {}", rng.pick(&FIRST), rng.pick(&FAMILY)),
        father_name: rng.pick(&FIRST).to_string(),
        mother_name: rng.pick(&FIRST).to_string(),
        birth_date: format!("{year:04}-{month:02}-{day:02}"),
        birth_place: rng.pick(&PLACES).to_string(),
        phone: format!("09{:08}", rng.below(100_000_000)),
        address: format!("{}، شارع {}", rng.pick(&PLACES), rng.pick(&STREETS)),
    }
}

/// The operations of one center-day, in time order, deterministic in (`seed`,
/// `center_no`, `shape`). `center` is the owning center of the cases.
pub fn generate(
    seed: u64,
    center: &CenterId,
    center_no: u32,
    shape: Shape,
) -> anyhow::Result<Vec<Op>> {
    let mut rng = Rng::new(seed ^ (u64::from(center_no) << 32) ^ 0x6d61_726b_617a);
    let catalog = default_catalog();
    // (time ms into the day, tie-breaker, op)
    let mut timed: Vec<(u64, usize, Op)> = Vec::with_capacity(shape.operations());
    let push = |t: u64, op: Op, timed: &mut Vec<(u64, usize, Op)>| {
        let n = timed.len();
        timed.push((t.min(DAY_MS - 1), n, op));
    };
    // Citizens register during the first 7 hours; 10% are corrected later in the day.
    let mut registered_at = Vec::with_capacity(shape.citizens as usize);
    let mut profiles = Vec::with_capacity(shape.citizens as usize);
    for i in 0..shape.citizens {
        let t = rng.below(DAY_MS * 7 / 8);
        let c = citizen(&mut rng, national_id(center_no, i));
        registered_at.push(t);
        profiles.push(c.clone());
        push(t, Op::RegisterCitizen(c), &mut timed);
    }
    let updated = shape.citizens * shape.citizen_update_pct / 100;
    for k in 0..updated {
        // Every tenth citizen, so the set is spread and deterministic.
        let i = (k * 100 / shape.citizen_update_pct.max(1)) as usize % profiles.len();
        let mut c = profiles[i].clone();
        c.phone = format!("09{:08}", rng.below(100_000_000));
        c.address = format!("{}، شارع {}", rng.pick(&PLACES), rng.pick(&STREETS));
        let t = registered_at[i] + 1 + rng.below(DAY_MS - registered_at[i]);
        push(t, Op::UpdateCitizen(c), &mut timed);
    }
    let year = 2026;
    for seq in 1..=shape.cases {
        let case_no = CaseNo::new("BEN", year, seq)?;
        let who = rng.below(u64::from(shape.citizens)) as usize;
        let nid: NationalId = profiles[who].national_id.parse()?;
        let service = rng.pick(&catalog);
        // Created after the citizen registered, then five steps a few minutes apart.
        let mut t = registered_at[who] + 1 + rng.below(DAY_MS / 8);
        let fields: BTreeMap<String, String> = service
            .fields
            .iter()
            .filter(|f| f.required)
            .map(|f| (f.key.clone(), format!("قيمة {}", rng.below(1000))))
            .collect();
        let authority = Money::from_syp(1_000 * (1 + rng.below(10) as i64))?;
        let surcharge = Money::from_syp(500)?;
        let total = authority
            .checked_add(surcharge)
            .context("fee total overflows")?;
        let clerk = format!("clerk{}", 1 + rng.below(8));
        let desk = Some(format!("desk-{}", 1 + rng.below(8)));
        let event = |kind: CaseEventKind, t: u64| CaseEvent {
            kind,
            actor: clerk.clone(),
            desk: desk.clone(),
            at: jiff::Timestamp::from_millisecond(DAY_START_MS + t as i64)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            // Filled in time order below.
            hlc: String::new(),
        };
        let created = event(CaseEventKind::Created, t);
        push(
            t,
            Op::CreateCase(Box::new(NewCase {
                case_no: case_no.clone(),
                center: Some(center.clone()),
                service: service.code.clone(),
                citizen: nid.clone(),
                delivery: Delivery::Pickup {
                    center: center.clone(),
                },
                fields,
                fee: Some(Fee {
                    authority,
                    surcharge,
                    total,
                    authority_decision: "قرار 12/2026".into(),
                    surcharge_decision: "قرار 3/2025".into(),
                }),
                created,
            })),
            &mut timed,
        );
        let payment = if rng.below(3) == 0 {
            Payment::EPayment {
                reference: format!("EP-{:08}", rng.below(100_000_000)),
                bank: *rng.pick(&BANKS),
            }
        } else {
            Payment::Cash {
                receipt: ReceiptNo::new("BEN", u64::from(seq))?,
            }
        };
        let steps = [
            CaseEventKind::Paid(payment),
            CaseEventKind::Started,
            CaseEventKind::Ready,
            CaseEventKind::Notified,
            CaseEventKind::Delivered {
                receiver: nid.clone(),
            },
        ];
        for kind in steps {
            t += 1 + rng.below(DAY_MS / 40);
            let e = event(kind, t);
            push(
                t,
                Op::CaseEvent {
                    case_no: case_no.clone(),
                    event: e,
                },
                &mut timed,
            );
        }
    }
    timed.sort_by_key(|(t, n, _)| (*t, *n));
    // Hybrid logical clock stamps in time order (ties get the next logical counter).
    let mut last = (0u64, 0u32);
    let mut ops = Vec::with_capacity(timed.len());
    for (t, _, mut op) in timed {
        let wall = (DAY_START_MS as u64) + t;
        last = if wall > last.0 {
            (wall, 0)
        } else {
            (last.0, last.1 + 1)
        };
        let hlc = format!("{:013}.{:05}.{}", last.0, last.1, center.as_str());
        match &mut op {
            Op::CreateCase(c) => c.created.hlc = hlc,
            Op::CaseEvent { event, .. } => event.hlc = hlc,
            _ => {}
        }
        ops.push(op);
    }
    Ok(ops)
}

/// Applies `ops` to the document store on `conn`, one automerge change per operation,
/// committing every `batch` operations. Returns the number of operations applied.
pub fn apply(
    conn: &mut Connection,
    docs: &mut DocStore,
    center: &CenterId,
    ops: &[Op],
    batch: usize,
) -> anyhow::Result<usize> {
    for chunk in ops.chunks(batch.max(1)) {
        let tx = conn.transaction()?;
        for op in chunk {
            let id = op.doc(center)?;
            match op {
                Op::RegisterCitizen(c) => {
                    docs.create(&tx, &id, |d| docs::write_citizen(d, c))
                        .with_context(|| format!("while registering {id}"))?;
                }
                Op::UpdateCitizen(c) => {
                    docs.edit(&tx, &id, |d| docs::write_citizen(d, c))
                        .with_context(|| format!("while updating {id}"))?;
                }
                Op::CreateCase(c) => {
                    docs.create(&tx, &id, |d| docs::create_case(d, c))
                        .with_context(|| format!("while creating {id}"))?;
                }
                Op::CaseEvent { event, .. } => {
                    docs.edit(&tx, &id, |d| docs::append_case_event(d, event))
                        .with_context(|| format!("while updating {id}"))?;
                }
            }
        }
        tx.commit()?;
    }
    Ok(ops.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Shape {
        Shape {
            cases: 40,
            citizens: 30,
            citizen_update_pct: 10,
        }
    }

    #[test]
    fn the_center_day_has_the_issues_size() {
        assert_eq!(Shape::CENTER_DAY.operations(), 10_320);
        let c: CenterId = "midan".parse().unwrap();
        let ops = generate(7, &c, 0, Shape::CENTER_DAY).unwrap();
        assert_eq!(ops.len(), 10_320);
    }

    #[test]
    fn the_generator_is_deterministic_and_seed_dependent() {
        let c: CenterId = "midan".parse().unwrap();
        let a = generate(42, &c, 3, small()).unwrap();
        let b = generate(42, &c, 3, small()).unwrap();
        let other = generate(43, &c, 3, small()).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a.len(), small().operations());
    }

    #[test]
    fn each_case_goes_through_its_five_steps_in_order() {
        let c: CenterId = "midan".parse().unwrap();
        let ops = generate(1, &c, 0, small()).unwrap();
        let mut seen: BTreeMap<CaseNo, Vec<String>> = BTreeMap::new();
        let mut last_hlc = String::new();
        for op in &ops {
            match op {
                Op::CreateCase(n) => {
                    assert!(n.created.hlc > last_hlc);
                    last_hlc = n.created.hlc.clone();
                    seen.entry(n.case_no.clone())
                        .or_default()
                        .push("created".into());
                }
                Op::CaseEvent { case_no, event } => {
                    assert!(event.hlc > last_hlc, "stamps follow the order");
                    last_hlc = event.hlc.clone();
                    let v = seen.get_mut(case_no).expect("created first");
                    v.push(serde_json::to_value(&event.kind).unwrap()["kind"].to_string());
                }
                _ => {}
            }
        }
        assert_eq!(seen.len(), 40);
        for steps in seen.values() {
            assert_eq!(
                steps,
                &[
                    "created",
                    "\"paid\"",
                    "\"started\"",
                    "\"ready\"",
                    "\"notified\"",
                    "\"delivered\""
                ]
            );
        }
    }

    #[test]
    fn applying_makes_one_change_per_operation() {
        let c: CenterId = "midan".parse().unwrap();
        let ops = generate(5, &c, 0, small()).unwrap();
        let mut conn = Connection::open_in_memory().unwrap();
        markaz_sync::store::migrate(&conn).unwrap();
        let actor = markaz_sync::store::incarnation(&conn, "midan", 0).unwrap();
        let mut store = DocStore::new(actor, 64);
        apply(&mut conn, &mut store, &c, &ops, 100).unwrap();
        let changes: i64 = conn
            .query_row("SELECT count(*) FROM changes WHERE local = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(changes as usize, ops.len());
        let id = DocId::case(Some(&c), &CaseNo::new("BEN", 2026, 1).unwrap());
        let view = store
            .read(&conn, &id, docs::read_case)
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(view.events.len(), 6);
    }
}
