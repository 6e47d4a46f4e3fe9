//! The turn system (نظام دور): numbered tickets per service group, called at counters.
//!
//! Pure rules only; the node stores tickets and their events in SQLite and calls these:
//! - numbering: each group has a letter and a series that restarts every local day
//!   ([`ticket_series`], [`ticket_number`]);
//! - the ticket state machine ([`check_transition`], [`TicketState::after`]);
//! - who is called next ([`pick_next`]): priority tickets (elderly, disabled, pregnant)
//!   and normal ones are served at a configured ratio while both wait, first-come first-
//!   served within each class by issue time. A transferred ticket keeps its original issue
//!   time, so it keeps its place in the new group's queue;
//! - timings: waiting time (issued → called) and service time (called → done);
//! - second chances: a no-show is undone within [`UNDO_NO_SHOW_MS`] of marking it
//!   ([`TicketAction::UndoNoShow`]), and "serve later" puts a called ticket back in line
//!   at a chosen position ([`requeue`]): a ticket's place is its *turn*, its issue time
//!   until a serve-later moves it.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// A ticket's row id in the node's database.
pub type TicketId = i64;

/// Who gets served ahead of the normal line.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PriorityClass {
    #[default]
    Normal,
    Elderly,
    Disabled,
    Pregnant,
}

impl PriorityClass {
    pub const ALL: [PriorityClass; 4] = [
        PriorityClass::Normal,
        PriorityClass::Elderly,
        PriorityClass::Disabled,
        PriorityClass::Pregnant,
    ];

    /// Elderly, disabled and pregnant citizens form the priority line.
    pub fn is_priority(self) -> bool {
        self != PriorityClass::Normal
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PriorityClass::Normal => "normal",
            PriorityClass::Elderly => "elderly",
            PriorityClass::Disabled => "disabled",
            PriorityClass::Pregnant => "pregnant",
        }
    }

    pub fn name_ar(self) -> &'static str {
        match self {
            PriorityClass::Normal => "عادي",
            PriorityClass::Elderly => "كبار السن",
            PriorityClass::Disabled => "ذوو الإعاقة",
            PriorityClass::Pregnant => "الحوامل",
        }
    }
}

/// Where a ticket stands. A transfer puts a called ticket back to `Waiting` in another
/// group (same ticket, same number, original issue time), so there is no separate
/// "transferred" state: the transfer is an event of the ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    Waiting,
    Called,
    Done,
    NoShow,
}

impl TicketState {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketState::Waiting => "waiting",
            TicketState::Called => "called",
            TicketState::Done => "done",
            TicketState::NoShow => "no_show",
        }
    }

    pub fn name_ar(self) -> &'static str {
        match self {
            TicketState::Waiting => "بالانتظار",
            TicketState::Called => "تم النداء",
            TicketState::Done => "منتهية",
            TicketState::NoShow => "لم يحضر",
        }
    }

    /// Done and no-show end a ticket.
    pub fn is_final(self) -> bool {
        matches!(self, TicketState::Done | TicketState::NoShow)
    }

    /// The state after `action`, or why the action is not possible now.
    pub fn after(self, action: TicketAction) -> Result<TicketState, TicketTransitionError> {
        let to = match action {
            TicketAction::Call => TicketState::Called,
            TicketAction::Recall => TicketState::Called,
            TicketAction::NoShow => TicketState::NoShow,
            TicketAction::Transfer => TicketState::Waiting,
            TicketAction::Finish => TicketState::Done,
            TicketAction::UndoNoShow => TicketState::Called,
            TicketAction::ServeLater => TicketState::Waiting,
        };
        let ok = match action {
            TicketAction::Call => self == TicketState::Waiting,
            TicketAction::Recall
            | TicketAction::NoShow
            | TicketAction::Transfer
            | TicketAction::ServeLater
            | TicketAction::Finish => self == TicketState::Called,
            TicketAction::UndoNoShow => self == TicketState::NoShow,
        };
        if ok {
            Ok(to)
        } else {
            Err(TicketTransitionError {
                from: self,
                to,
                action: Some(action),
            })
        }
    }
}

impl fmt::Display for TicketState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a counter does to a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketAction {
    Call,
    Recall,
    NoShow,
    Transfer,
    Finish,
    /// The citizen came after all: the counter serves the no-show ticket after all.
    UndoNoShow,
    /// Back in line at a chosen position (the citizen must fetch a paper first).
    ServeLater,
}

/// How long after marking a no-show the counter may undo it (five minutes).
pub const UNDO_NO_SHOW_MS: i64 = 5 * 60 * 1000;

/// Whether a no-show marked at `marked_ms` may still be undone at `now_ms`.
pub fn may_undo_no_show(marked_ms: i64, now_ms: i64) -> bool {
    (0..=UNDO_NO_SHOW_MS).contains(&now_ms.saturating_sub(marked_ms))
}

/// A ticket's turn from its issue time: microseconds, so serve-later can put a ticket
/// between two issued in the same millisecond's neighbourhood.
pub fn turn_of_issue(issued_ms: i64) -> i64 {
    issued_ms.saturating_mul(1000)
}

/// Serve later: the turns to store so that `moved` stands at `position` (1 = next) in a
/// line whose tickets are `line` — (id, turn) in the order they will be called, `moved`
/// not among them. The moved ticket takes a turn between its new neighbours; where they
/// leave no room (tickets issued in the same millisecond) it takes the one just after its
/// predecessor, and each later ticket whose turn would no longer follow its
/// predecessor's is pushed back by the least step. Alone in line it keeps `own`.
pub fn requeue(
    line: &[(TicketId, i64)],
    moved: TicketId,
    own: i64,
    position: usize,
) -> Vec<(TicketId, i64)> {
    let at = position.clamp(1, line.len() + 1) - 1;
    let prev = at.checked_sub(1).and_then(|i| line.get(i));
    let turn = match (prev, line.get(at)) {
        (None, None) => own,
        (None, Some(next)) => next.1.saturating_sub(1000),
        (Some(p), Some(n)) if n.1.saturating_sub(p.1) >= 2 => p.1 + (n.1 - p.1) / 2,
        (Some(p), _) => p.1.saturating_add(1),
    };
    let mut order = line.to_vec();
    order.insert(at, (moved, turn));
    let mut changes = vec![(moved, turn)];
    for i in at + 1..order.len() {
        if order[i].1 <= order[i - 1].1 {
            order[i].1 = order[i - 1].1.saturating_add(1);
            changes.push(order[i]);
        }
    }
    changes
}

/// A ticket move that is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the ticket is {from}; it cannot become {to}")]
pub struct TicketTransitionError {
    pub from: TicketState,
    pub to: TicketState,
    /// The action attempted, when known.
    pub action: Option<TicketAction>,
}

impl TicketTransitionError {
    pub fn message_ar(&self) -> String {
        format!(
            "حالة البطاقة: {}، لا يمكن أن تصبح: {}",
            self.from.name_ar(),
            self.to.name_ar()
        )
    }
}

/// Whether a ticket may go from `from` to `to`: waiting → called (call); called → called
/// (recall); called → done (finish); called → no_show; called → waiting (transfer, serve
/// later); no_show → called (undo, within [`UNDO_NO_SHOW_MS`]).
pub fn check_transition(from: TicketState, to: TicketState) -> Result<(), TicketTransitionError> {
    use TicketState as T;
    match (from, to) {
        (T::Waiting, T::Called)
        | (T::Called, T::Called | T::Done | T::NoShow | T::Waiting)
        | (T::NoShow, T::Called) => Ok(()),
        _ => Err(TicketTransitionError {
            from,
            to,
            action: None,
        }),
    }
}

/// A ticket number as shown and announced: the group letter and a sequence of at least
/// three digits (`A001`, `C042`, `B1204`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TicketNo {
    letter: char,
    seq: u32,
}

/// A malformed ticket number or group letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketNoError {
    #[error("a group letter is one uppercase ASCII letter, got '{0}'")]
    BadLetter(char),
    #[error("ticket sequence must be 1-99999, got {0}")]
    BadSequence(u64),
    #[error("'{0}' is not a ticket number like A001")]
    BadFormat(String),
}

impl TicketNo {
    pub const MAX_SEQ: u32 = 99_999;

    pub fn new(letter: char, seq: u32) -> Result<TicketNo, TicketNoError> {
        if !letter.is_ascii_uppercase() {
            return Err(TicketNoError::BadLetter(letter));
        }
        if !(1..=Self::MAX_SEQ).contains(&seq) {
            return Err(TicketNoError::BadSequence(u64::from(seq)));
        }
        Ok(TicketNo { letter, seq })
    }

    pub fn letter(self) -> char {
        self.letter
    }

    pub fn seq(self) -> u32 {
        self.seq
    }
}

impl fmt::Display for TicketNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:03}", self.letter, self.seq)
    }
}

impl FromStr for TicketNo {
    type Err = TicketNoError;
    fn from_str(s: &str) -> Result<Self, TicketNoError> {
        let bad = || TicketNoError::BadFormat(s.to_string());
        let s2 = s.trim().to_ascii_uppercase();
        let mut chars = s2.chars();
        let letter = chars.next().ok_or_else(bad)?;
        let digits = chars.as_str();
        if digits.len() < 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let seq: u32 = digits.parse().map_err(|_| bad())?;
        let t = TicketNo::new(letter, seq)?;
        // One spelling per ticket: no padding beyond three digits.
        if t.to_string() != s2 {
            return Err(bad());
        }
        Ok(t)
    }
}

impl Serialize for TicketNo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TicketNo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The displayed number for the `seq`-th ticket of a group's day, e.g. `A001`. Sequences
/// beyond three digits widen (`A1000`); a bad letter or a zero sequence still prints, as
/// the letter comes from validated config and the sequence from SQL.
pub fn ticket_number(letter: char, seq: u32) -> String {
    format!("{letter}{seq:03}")
}

/// The center's local civil date of an instant: the day a ticket belongs to.
pub fn local_day(at: Timestamp, tz: &TimeZone) -> Date {
    at.to_zoned(tz.clone()).date()
}

/// The name of the sequence a ticket of group `letter` issued on local `day` draws from.
/// A new day is a new name, so every series restarts at 001 at local midnight.
pub fn ticket_series(letter: char, day: Date) -> String {
    format!("ticket:{day}:{letter}")
}

/// The ratio of priority to normal calls while both lines wait: `priority` priority
/// tickets, then `normal` normal ones, repeating. With a zero weight, that line is only
/// served when the other is empty; with both zero, pure first-come first-served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    pub priority: u32,
    pub normal: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            priority: 2,
            normal: 1,
        }
    }
}

/// Where a counter is in the current ratio cycle. Kept per counter and day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RatioState {
    /// Priority tickets called in this cycle while normal ones were waiting too.
    pub priority_served: u32,
    /// Normal tickets called in this cycle while priority ones were waiting too.
    pub normal_served: u32,
}

/// A waiting ticket, as `pick_next` needs it. `turn` is its place in line: the original
/// issue time ([`turn_of_issue`], unchanged by a transfer) unless a serve-later moved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingTicket {
    pub id: TicketId,
    pub priority: PriorityClass,
    pub turn: i64,
}

fn oldest<'a>(tickets: impl Iterator<Item = &'a WaitingTicket>) -> Option<&'a WaitingTicket> {
    tickets.min_by_key(|t| (t.turn, t.id))
}

/// The ticket a counter calls next among `waiting` (the waiting tickets of the groups it
/// serves), updating the counter's `ratio`. `None` when nobody waits.
pub fn pick_next(
    waiting: &[WaitingTicket],
    ratio: &mut RatioState,
    weights: Weights,
) -> Option<TicketId> {
    let prio = oldest(waiting.iter().filter(|t| t.priority.is_priority()));
    let normal = oldest(waiting.iter().filter(|t| !t.priority.is_priority()));
    match (prio, normal) {
        (None, None) => None,
        (Some(p), None) => Some(p.id),
        (None, Some(n)) => Some(n.id),
        (Some(p), Some(n)) => {
            if weights.priority == 0 && weights.normal == 0 {
                return oldest([p, n].into_iter()).map(|t| t.id);
            }
            if ratio.priority_served >= weights.priority && ratio.normal_served >= weights.normal {
                *ratio = RatioState::default();
            }
            if ratio.priority_served < weights.priority {
                ratio.priority_served += 1;
                Some(p.id)
            } else {
                ratio.normal_served += 1;
                Some(n.id)
            }
        }
    }
}

/// Milliseconds from issue to the first call, if called (never negative: a clock step
/// backwards counts as zero).
pub fn waiting_ms(issued_ms: i64, called_ms: Option<i64>) -> Option<i64> {
    called_ms.map(|c| c.saturating_sub(issued_ms).max(0))
}

/// Milliseconds from the call to the end of service (done or no-show), if both happened.
pub fn service_ms(called_ms: Option<i64>, done_ms: Option<i64>) -> Option<i64> {
    match (called_ms, done_ms) {
        (Some(c), Some(d)) => Some(d.saturating_sub(c).max(0)),
        _ => None,
    }
}

/// Count, mean and maximum of a set of durations (ms), for reports per ticket, counter,
/// service or day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurationSummary {
    pub count: u64,
    pub mean_ms: i64,
    pub max_ms: i64,
}

/// Summarises durations; `None` for an empty set.
pub fn summarize(durations: impl IntoIterator<Item = i64>) -> Option<DurationSummary> {
    let (mut count, mut sum, mut max) = (0u64, 0i128, i64::MIN);
    for d in durations {
        count += 1;
        sum += i128::from(d);
        max = max.max(d);
    }
    let mean = i64::try_from(sum / i128::from(count.max(1))).unwrap_or(i64::MAX);
    (count > 0).then_some(DurationSummary {
        count,
        mean_ms: mean,
        max_ms: max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The SQL of `app::queue` and `app::reports` writes and filters states with
    /// `TicketState::as_str`, and rows are read back through serde: the two must be one
    /// spelling, or a ticket written as `no_show` would be read as waiting.
    #[test]
    fn the_state_written_in_sql_is_the_state_read_back() {
        for s in [
            TicketState::Waiting,
            TicketState::Called,
            TicketState::Done,
            TicketState::NoShow,
        ] {
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json, serde_json::Value::String(s.as_str().into()));
            assert_eq!(serde_json::from_value::<TicketState>(json).unwrap(), s);
        }
    }

    fn t(id: TicketId, priority: PriorityClass, issued_ms: i64) -> WaitingTicket {
        WaitingTicket {
            id,
            priority,
            turn: turn_of_issue(issued_ms),
        }
    }

    #[test]
    fn undo_a_no_show_within_five_minutes_only() {
        use TicketAction as A;
        use TicketState as S;
        assert_eq!(S::NoShow.after(A::UndoNoShow), Ok(S::Called));
        assert!(S::Done.after(A::UndoNoShow).is_err());
        assert!(S::Waiting.after(A::UndoNoShow).is_err());
        assert_eq!(S::Called.after(A::ServeLater), Ok(S::Waiting));
        assert!(S::Waiting.after(A::ServeLater).is_err());
        assert!(may_undo_no_show(1_000, 1_000));
        assert!(may_undo_no_show(1_000, 1_000 + UNDO_NO_SHOW_MS));
        assert!(!may_undo_no_show(1_000, 1_001 + UNDO_NO_SHOW_MS));
        assert!(
            !may_undo_no_show(1_000, 999),
            "a clock step back is no licence"
        );
    }

    /// The line after a requeue, in call order: (turn, id) ascending.
    fn after_requeue(line: &[(TicketId, i64)], moved: TicketId, position: usize) -> Vec<TicketId> {
        let mut all: Vec<(TicketId, i64)> = line.to_vec();
        all.push((moved, 0));
        for (id, turn) in requeue(line, moved, 0, position) {
            all.iter_mut().find(|t| t.0 == id).unwrap().1 = turn;
        }
        all.sort_by_key(|t| (t.1, t.0));
        all.iter().map(|t| t.0).collect()
    }

    #[test]
    fn serve_later_takes_the_chosen_position() {
        let line = [(2, 1_000_000), (3, 2_000_000), (4, 3_000_000)];
        assert_eq!(after_requeue(&line, 1, 1), [1, 2, 3, 4]);
        assert_eq!(after_requeue(&line, 1, 2), [2, 1, 3, 4]);
        assert_eq!(after_requeue(&line, 1, 4), [2, 3, 4, 1]);
        assert_eq!(
            after_requeue(&line, 1, 0),
            [1, 2, 3, 4],
            "0 is read as next"
        );
        assert_eq!(
            after_requeue(&line, 1, 99),
            [2, 3, 4, 1],
            "past the end is last"
        );
        assert_eq!(
            requeue(&[], 1, 42, 3),
            [(1, 42)],
            "alone, it keeps its turn"
        );
        // Issued in the same millisecond: later tickets are pushed back by the least step.
        let same = [(2, 5_000), (3, 5_000), (4, 5_000)];
        assert_eq!(after_requeue(&same, 1, 2), [2, 1, 3, 4]);
        assert_eq!(
            requeue(&same, 1, 0, 2),
            [(1, 5_001), (3, 5_002), (4, 5_003)]
        );
    }

    proptest! {
        /// Wherever serve-later puts a ticket, it is called at that position and the
        /// others keep their order.
        #[test]
        fn serve_later_position_holds(
            mut turns in proptest::collection::vec(0i64..50, 0..30),
            position in 1usize..40,
        ) {
            turns.sort();
            let line: Vec<(TicketId, i64)> =
                turns.iter().enumerate().map(|(i, t)| (i as TicketId + 10, *t)).collect();
            let order = after_requeue(&line, 1, position);
            let at = order.iter().position(|id| *id == 1).unwrap();
            prop_assert_eq!(at, (position - 1).min(line.len()));
            let others: Vec<TicketId> = order.into_iter().filter(|id| *id != 1).collect();
            let before: Vec<TicketId> = line.iter().map(|t| t.0).collect();
            prop_assert_eq!(others, before);
        }
    }

    #[test]
    fn ticket_numbers() {
        assert_eq!(ticket_number('A', 1), "A001");
        assert_eq!(ticket_number('C', 42), "C042");
        assert_eq!(ticket_number('B', 1204), "B1204");
        let n: TicketNo = "a007".parse().unwrap();
        assert_eq!(
            (n.letter(), n.seq(), n.to_string()),
            ('A', 7, "A007".to_string())
        );
        for bad in ["", "A", "A01", "A0001", "1001", "AB01", "A00x", "A000"] {
            assert!(bad.parse::<TicketNo>().is_err(), "{bad}");
        }
        assert!(TicketNo::new('a', 1).is_err());
        assert_eq!(
            serde_json::to_string(&TicketNo::new('D', 12).unwrap()).unwrap(),
            "\"D012\""
        );
    }

    #[test]
    fn series_restart_at_local_midnight() {
        // Damascus is UTC+3: 20:59 UTC is 23:59 local, 21:01 UTC is 00:01 the next day.
        let tz = TimeZone::fixed(jiff::tz::offset(3));
        let mut sequences: BTreeMap<String, u32> = BTreeMap::new();
        let mut issue = |letter: char, at: &str| {
            let day = local_day(at.parse().unwrap(), &tz);
            let seq = sequences.entry(ticket_series(letter, day)).or_insert(0);
            *seq += 1;
            ticket_number(letter, *seq)
        };
        assert_eq!(issue('A', "2026-03-01T06:00:00Z"), "A001");
        assert_eq!(issue('A', "2026-03-01T07:00:00Z"), "A002");
        assert_eq!(issue('B', "2026-03-01T07:00:01Z"), "B001");
        assert_eq!(issue('A', "2026-03-01T20:59:00Z"), "A003");
        assert_eq!(issue('A', "2026-03-01T21:01:00Z"), "A001", "new local day");
        assert_eq!(issue('B', "2026-03-02T05:00:00Z"), "B001");
        assert_eq!(
            ticket_series('A', jiff::civil::date(2026, 3, 2)),
            "ticket:2026-03-02:A"
        );
    }

    #[test]
    fn ticket_state_machine() {
        use TicketAction as A;
        use TicketState as S;
        assert_eq!(S::Waiting.after(A::Call), Ok(S::Called));
        assert_eq!(S::Called.after(A::Recall), Ok(S::Called));
        assert_eq!(S::Called.after(A::Finish), Ok(S::Done));
        assert_eq!(S::Called.after(A::NoShow), Ok(S::NoShow));
        assert_eq!(S::Called.after(A::Transfer), Ok(S::Waiting));
        for (from, action) in [
            (S::Waiting, A::Recall),
            (S::Waiting, A::Finish),
            (S::Waiting, A::NoShow),
            (S::Waiting, A::Transfer),
            (S::Called, A::Call),
            (S::Done, A::Call),
            (S::Done, A::Recall),
            (S::NoShow, A::Call),
            (S::NoShow, A::Finish),
            (S::Done, A::UndoNoShow),
        ] {
            let err = from.after(action).unwrap_err();
            assert_eq!(err.from, from);
            assert!(err.to_string().contains(from.as_str()));
        }
        // check_transition agrees with `after` on every pair.
        let all = [S::Waiting, S::Called, S::Done, S::NoShow];
        let actions = [
            A::Call,
            A::Recall,
            A::NoShow,
            A::Transfer,
            A::Finish,
            A::UndoNoShow,
            A::ServeLater,
        ];
        for from in all {
            for to in all {
                let by_action = actions.iter().any(|a| from.after(*a) == Ok(to));
                assert_eq!(
                    check_transition(from, to).is_ok(),
                    by_action,
                    "{from} -> {to}"
                );
            }
        }
        assert!(
            check_transition(S::Done, S::Waiting)
                .unwrap_err()
                .message_ar()
                .contains("منتهية")
        );
        assert_eq!(serde_json::to_string(&S::NoShow).unwrap(), "\"no_show\"");
    }

    #[test]
    fn fifo_within_a_class_and_ties_by_id() {
        let mut r = RatioState::default();
        let w = Weights {
            priority: 1,
            normal: 1,
        };
        let waiting = [
            t(3, PriorityClass::Normal, 300),
            t(1, PriorityClass::Normal, 100),
            t(2, PriorityClass::Normal, 100),
        ];
        assert_eq!(pick_next(&waiting, &mut r, w), Some(1));
        assert_eq!(pick_next(&[], &mut r, w), None);
        assert_eq!(r, RatioState::default(), "no ratio use with one line only");
    }

    #[test]
    fn ratio_two_priority_per_normal() {
        let w = Weights {
            priority: 2,
            normal: 1,
        };
        let mut waiting = vec![
            t(1, PriorityClass::Normal, 1),
            t(2, PriorityClass::Normal, 2),
            t(3, PriorityClass::Normal, 3),
            t(4, PriorityClass::Elderly, 4),
            t(5, PriorityClass::Pregnant, 5),
            t(6, PriorityClass::Disabled, 6),
            t(7, PriorityClass::Elderly, 7),
        ];
        let mut r = RatioState::default();
        let mut order = vec![];
        while let Some(id) = pick_next(&waiting, &mut r, w) {
            order.push(id);
            waiting.retain(|x| x.id != id);
        }
        assert_eq!(order, [4, 5, 1, 6, 7, 2, 3]);
    }

    #[test]
    fn zero_weights() {
        let waiting = [
            t(1, PriorityClass::Normal, 1),
            t(2, PriorityClass::Elderly, 2),
        ];
        let mut r = RatioState::default();
        assert_eq!(
            pick_next(
                &waiting,
                &mut r,
                Weights {
                    priority: 0,
                    normal: 0
                }
            ),
            Some(1),
            "plain FIFO"
        );
        assert_eq!(
            pick_next(
                &waiting,
                &mut r,
                Weights {
                    priority: 0,
                    normal: 1
                }
            ),
            Some(1)
        );
        assert_eq!(
            pick_next(
                &waiting,
                &mut r,
                Weights {
                    priority: 1,
                    normal: 0
                }
            ),
            Some(2)
        );
    }

    #[test]
    fn transferred_ticket_keeps_its_place() {
        // B005 was issued at 09:00 in group A, called, then transferred to group B, where
        // tickets issued at 09:10 and 09:20 wait. It is served first there.
        let b_queue = [
            t(11, PriorityClass::Normal, 9 * 60 + 10),
            t(12, PriorityClass::Normal, 9 * 60 + 20),
        ];
        let transferred = t(5, PriorityClass::Normal, 9 * 60);
        let mut waiting = b_queue.to_vec();
        waiting.push(transferred);
        let mut r = RatioState::default();
        assert_eq!(pick_next(&waiting, &mut r, Weights::default()), Some(5));
    }

    #[test]
    fn timings() {
        assert_eq!(waiting_ms(1_000, Some(61_000)), Some(60_000));
        assert_eq!(waiting_ms(1_000, None), None);
        assert_eq!(waiting_ms(5_000, Some(4_000)), Some(0));
        assert_eq!(service_ms(Some(10), Some(310)), Some(300));
        assert_eq!(service_ms(Some(10), None), None);
        assert_eq!(summarize([]), None);
        assert_eq!(
            summarize([100, 300, 200]),
            Some(DurationSummary {
                count: 3,
                mean_ms: 200,
                max_ms: 300
            })
        );
    }

    /// Calls `picks` tickets from two lines that never run dry; returns true per priority pick.
    fn saturated(w: Weights, picks: usize) -> Vec<bool> {
        let mut r = RatioState::default();
        let (mut next_p, mut next_n) = (1_000_000i64, 0i64);
        (0..picks)
            .map(|_| {
                let waiting = [
                    t(next_p, PriorityClass::Elderly, next_p),
                    t(next_n, PriorityClass::Normal, next_n),
                ];
                let id = pick_next(&waiting, &mut r, w).expect("someone waits");
                if id == next_p {
                    next_p += 1;
                    true
                } else {
                    next_n += 1;
                    false
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn ratio_counts_match_weights(p in 0u32..6, n in 0u32..6, cycles in 1usize..20) {
            prop_assume!(p + n > 0);
            let picks = saturated(Weights { priority: p, normal: n }, cycles * (p + n) as usize);
            let prio = picks.iter().filter(|x| **x).count();
            prop_assert_eq!(prio, cycles * p as usize);
            prop_assert_eq!(picks.len() - prio, cycles * n as usize);
        }

        #[test]
        fn never_starves_either_line(p in 1u32..6, n in 1u32..6, picks in 1usize..200) {
            let seq = saturated(Weights { priority: p, normal: n }, picks);
            let longest = |want: bool| seq.split(|x| *x != want).map(|run| run.len()).max().unwrap_or(0);
            prop_assert!(longest(true) <= p as usize, "at most {} priority in a row", p);
            prop_assert!(longest(false) <= n as usize, "at most {} normal in a row", n);
        }

        #[test]
        fn always_the_oldest_of_the_chosen_line(
            tickets in prop::collection::vec((prop::sample::select(PriorityClass::ALL.to_vec()), 0i64..50), 0..30),
            p in 0u32..4, n in 0u32..4,
        ) {
            let mut waiting: Vec<_> = tickets.iter().enumerate().map(|(i, (c, at))| t(i as i64, *c, *at)).collect();
            let mut r = RatioState::default();
            let w = Weights { priority: p, normal: n };
            let mut served = 0;
            while let Some(id) = pick_next(&waiting, &mut r, w) {
                let chosen = *waiting.iter().find(|x| x.id == id).expect("picked from the list");
                let same_line = waiting.iter().filter(|x| x.priority.is_priority() == chosen.priority.is_priority());
                prop_assert_eq!(oldest(same_line).map(|x| x.id), Some(id));
                waiting.retain(|x| x.id != id);
                served += 1;
            }
            prop_assert_eq!(served, tickets.len(), "everyone is served");
        }
    }
}
