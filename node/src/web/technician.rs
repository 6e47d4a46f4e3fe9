//! The technician's page: one panel per subsystem (link, 3G modem, power, sync,
//! storage), each with a state colour, one sentence saying what is wrong and what to do,
//! and its figures in words and units (dBm and bars, V, W, %, hours), timestamps in the
//! center's time zone. The actions the API has (modem reset, sync now) are buttons, each
//! behind a confirmation step that works without JavaScript. The panels refresh on their
//! own: `technician.js` fetches `/technician/panels` (the same panels, rendered here) every
//! few seconds.
//!
//! Numbers are written in the page's digits; identifiers — ports, addresses, device paths,
//! operator names, error texts of devices — never are (they are shown left-to-right as
//! they are). The typed panels of [`crate::app::status`] are turned into words only here.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use markaz_hardware::link::{ChangeReason, LinkHealth, Uplink};
use markaz_hardware::modem::ModemState;
use markaz_hardware::modem::status::{RegStatus, SimState};
use markaz_hardware::power::generator::EngineState;
use markaz_hardware::power::model::Source;
use markaz_hardware::power::policy::Level;
use markaz_hardware::power::start::{StartFailure, StartPhase};
use markaz_hardware::power::voltronic::Mode;
use markaz_sync::model::staff::Capability;
use minijinja::{Value, context};
use serde::Deserialize;

use super::i18n::{self, Digits, Lang};
use super::session::{PageError, Staff, Web, error_message, flash, local_datetime, no_store, page};
use crate::app::reports::LogRow;
use crate::app::status::{LinkPanel, ModemPanel, PanelView, PowerPanel, StatusSnapshot, SyncPanel};
use crate::devices::power::{DeviceKind, PowerField};
use crate::error::AppError;
use crate::storage::WriterState;
use crate::storage::integrity::Integrity;

/// A panel's state colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tone {
    /// Not configured on this node.
    Off,
    /// All is well.
    Ok,
    /// Worth knowing, nothing to do.
    Info,
    /// Something to look at soon.
    Warn,
    /// Broken: act now.
    Fault,
}

impl Tone {
    fn name(self) -> &'static str {
        match self {
            Tone::Off => "off",
            Tone::Ok => "ok",
            Tone::Info => "info",
            Tone::Warn => "warn",
            Tone::Fault => "fault",
        }
    }
}

/// Writes figures and times in the page's language, digits and the center's zone.
struct Words {
    lang: Lang,
    digits: Digits,
    tz: TimeZone,
    now: Timestamp,
}

impl Words {
    fn t(&self, key: &str) -> String {
        i18n::t(self.lang, key).to_string()
    }

    /// Catalog text with `{name}` filled in; values are already written.
    fn tw(&self, key: &str, args: &[(&str, &str)]) -> String {
        i18n::t_with(self.lang, key, args)
    }

    /// A number in the page's digits; a negative one isolated left-to-right, so its
    /// minus stays in front of it inside Arabic text (−73 dBm, not 73− dBm).
    fn n(&self, v: impl std::fmt::Display) -> String {
        let s = self.digits.apply(&v.to_string());
        if s.starts_with('-') {
            format!("\u{2066}{s}\u{2069}")
        } else {
            s
        }
    }

    /// One decimal place.
    fn n1(&self, v: f64) -> String {
        self.n(format!("{v:.1}"))
    }

    /// A moment in the center's zone, isolated left-to-right (a date inside Arabic).
    fn at(&self, t: Timestamp) -> String {
        let z = t.to_zoned(self.tz.clone());
        let today = self.now.to_zoned(self.tz.clone()).date();
        let s = if z.date() == today {
            z.strftime("%H:%M:%S").to_string()
        } else {
            z.strftime("%Y-%m-%d %H:%M").to_string()
        };
        format!("\u{2066}{}\u{2069}", self.n(s))
    }

    /// How long ago, in whole units.
    fn ago(&self, t: Timestamp) -> String {
        let secs = self.now.duration_since(t).as_secs().max(0);
        let (n, key) = match secs {
            s if s < 120 => (s, "tech.ago_seconds"),
            s if s < 7200 => (s / 60, "tech.ago_minutes"),
            s if s < 172_800 => (s / 3600, "tech.ago_hours"),
            s => (s / 86_400, "tech.ago_days"),
        };
        self.tw(key, &[("n", &self.n(n))])
    }

    /// "14:05:10 (3 minutes ago)".
    fn when(&self, t: Timestamp) -> String {
        format!("{} ({})", self.at(t), self.ago(t))
    }

    fn yes_no(&self, b: bool) -> String {
        self.t(if b { "tech.yes" } else { "tech.no" })
    }
}

/// One figure of a panel.
struct Fact {
    label: String,
    value: String,
    /// An identifier (port, address, path, device text): shown as is, left-to-right.
    ident: bool,
    /// Not current: its device is silent.
    stale: bool,
}

impl Fact {
    fn value(label: String, value: String) -> Self {
        Self {
            label,
            value,
            ident: false,
            stale: false,
        }
    }
    fn ident(label: String, value: String) -> Self {
        Self {
            label,
            value,
            ident: true,
            stale: false,
        }
    }
    fn stale(mut self, stale: bool) -> Self {
        self.stale = stale;
        self
    }
}

/// A panel in words.
struct Panel {
    id: &'static str,
    tone: Tone,
    sentence: String,
    facts: Vec<Fact>,
}

impl Panel {
    fn not_configured(id: &'static str, w: &Words) -> Self {
        Panel {
            id,
            tone: Tone::Off,
            sentence: w.t("panel.not_configured"),
            facts: Vec::new(),
        }
    }

    fn value(&self) -> Value {
        let facts: Vec<Value> = self
            .facts
            .iter()
            .map(|f| context! { label => &f.label, value => &f.value, ident => f.ident, stale => f.stale })
            .collect();
        context! { id => self.id, state => self.tone.name(), sentence => &self.sentence, facts => facts }
    }
}

// ------------------------------------------------------------------ modem

fn sim_word(w: &Words, s: &SimState) -> String {
    match s {
        SimState::Unknown => w.t("tech.unknown"),
        SimState::Ready => w.t("modem.sim.ready"),
        SimState::Missing => w.t("modem.sim.missing"),
        SimState::PinRequired => w.t("modem.sim.pin"),
        SimState::PukRequired => w.t("modem.sim.puk"),
        SimState::Other(o) => o.clone(),
    }
}

fn reg_word(w: &Words, r: RegStatus) -> String {
    w.t(match r {
        RegStatus::NotRegistered => "modem.reg.not_registered",
        RegStatus::Home => "modem.reg.home",
        RegStatus::Searching => "modem.reg.searching",
        RegStatus::Denied => "modem.reg.denied",
        RegStatus::Unknown => "tech.unknown",
        RegStatus::Roaming => "modem.reg.roaming",
    })
}

fn modem_state_word(w: &Words, s: ModemState) -> String {
    w.t(match s {
        ModemState::Starting => "modem.state.starting",
        ModemState::Ready => "modem.state.ready",
        ModemState::NoSim => "modem.state.no_sim",
        ModemState::NotRegistered => "modem.state.not_registered",
        ModemState::Resetting => "modem.state.resetting",
        ModemState::Dead => "modem.state.dead",
        ModemState::NotConfigured => "panel.not_configured",
    })
}

/// Signal at or below this many bars is weak for data.
const WEAK_BARS: u8 = 1;

fn modem_panel(w: &Words, p: &ModemPanel) -> Panel {
    let s = &p.status;
    let stale = p.readings_stale();
    let signal = s.signal.filter(|sig| sig.dbm().is_some());
    let registration = s.registration_ps.or(s.registration_cs);
    let (tone, sentence) = match s.state {
        ModemState::NoSim => match &s.sim {
            SimState::PinRequired => (Tone::Fault, w.t("modem.say.pin")),
            SimState::PukRequired => (Tone::Fault, w.t("modem.say.puk")),
            SimState::Missing | SimState::Unknown => (Tone::Fault, w.t("modem.say.no_sim")),
            SimState::Other(_) | SimState::Ready => (Tone::Fault, w.t("modem.say.sim_other")),
        },
        ModemState::NotRegistered => match registration.map(|r| r.status) {
            Some(RegStatus::Denied) => (Tone::Fault, w.t("modem.say.denied")),
            _ => (Tone::Warn, w.t("modem.say.not_registered")),
        },
        ModemState::Resetting => (Tone::Warn, w.t("modem.say.resetting")),
        ModemState::Dead => (Tone::Fault, w.t("modem.say.dead")),
        ModemState::Starting => (Tone::Info, w.t("modem.say.starting")),
        ModemState::NotConfigured => (Tone::Off, w.t("panel.not_configured")),
        ModemState::Ready => match signal {
            Some(sig) if sig.bars() <= WEAK_BARS => (
                Tone::Warn,
                w.tw(
                    "modem.say.weak",
                    &[("dbm", &w.n(sig.dbm().unwrap_or_default()))],
                ),
            ),
            _ if s.consecutive_timeouts > 0 => (
                Tone::Warn,
                w.tw("modem.say.timeouts", &[("n", &w.n(s.consecutive_timeouts))]),
            ),
            _ => (Tone::Ok, w.t("modem.say.ok")),
        },
    };
    let mut facts = vec![Fact::value(
        w.t("modem.f.state"),
        modem_state_word(w, s.state),
    )];
    facts.push(Fact::value(w.t("modem.f.sim"), sim_word(w, &s.sim)).stale(stale));
    facts.push(
        Fact::value(
            w.t("modem.f.signal"),
            match signal {
                Some(sig) => w.tw(
                    "modem.signal",
                    &[
                        ("dbm", &w.n(sig.dbm().unwrap_or_default())),
                        ("bars", &w.n(sig.bars())),
                    ],
                ),
                None => w.t("tech.no_reading"),
            },
        )
        .stale(stale),
    );
    facts.push(
        Fact::value(
            w.t("modem.f.registration"),
            registration.map_or_else(|| w.t("tech.no_reading"), |r| reg_word(w, r.status)),
        )
        .stale(stale),
    );
    if let Some(name) = s.operator.as_ref().and_then(|o| o.name.clone()) {
        facts.push(Fact::ident(w.t("modem.f.operator"), name).stale(stale));
    }
    if let Some(r) = registration
        && let (Some(lac), Some(ci)) = (r.lac, r.ci)
    {
        facts.push(Fact::ident(w.t("modem.f.cell"), format!("{lac:X}/{ci:X}")).stale(stale));
    }
    if let Some(t) = s.network_time {
        let skew = t.read_at.as_second() - t.network.as_second();
        facts.push(Fact::value(
            w.t("modem.f.clock_skew"),
            w.tw("tech.seconds", &[("n", &w.n(skew))]),
        ));
    }
    facts.push(Fact::value(
        w.t("modem.f.last_ok"),
        s.last_ok.map_or_else(|| w.t("tech.never"), |t| w.when(t)),
    ));
    if s.consecutive_timeouts > 0 {
        facts.push(Fact::value(
            w.t("modem.f.timeouts"),
            w.n(s.consecutive_timeouts),
        ));
    }
    if let Some(e) = &s.last_error {
        facts.push(Fact::ident(w.t("tech.f.last_error"), e.clone()));
    }
    facts.push(Fact::ident(w.t("tech.f.port"), p.port.clone()));
    Panel {
        id: "modem",
        tone,
        sentence,
        facts,
    }
}

// ------------------------------------------------------------------ link

fn uplink_word(w: &Words, u: Uplink) -> String {
    w.t(match u {
        Uplink::Primary => "link.uplink.primary",
        Uplink::Modem => "link.uplink.modem",
        Uplink::Offline => "link.uplink.offline",
        Uplink::Unknown => "tech.unknown",
    })
}

fn reason_words(w: &Words, r: ChangeReason) -> String {
    match r {
        ChangeReason::PrimaryDown { failures } => {
            w.tw("link.reason.primary_down", &[("n", &w.n(failures))])
        }
        ChangeReason::PrimaryRestored { held } => w.tw(
            "link.reason.primary_restored",
            &[("n", &w.n(held.as_secs()))],
        ),
        ChangeReason::PrimaryUp => w.t("link.reason.primary_up"),
        ChangeReason::ModemRegistered => w.t("link.reason.modem_registered"),
        ChangeReason::ModemUnavailable => w.t("link.reason.modem_unavailable"),
    }
}

fn link_panel(w: &Words, p: &LinkPanel) -> Panel {
    let s = &p.status;
    let since = p
        .primary_down_since
        .map_or_else(|| w.t("tech.unknown"), |t| w.when(t));
    let (tone, sentence) = match (s.uplink, s.primary) {
        (Uplink::Unknown, _) | (_, LinkHealth::Unknown) => (Tone::Info, w.t("link.say.unknown")),
        (Uplink::Modem, _) => (Tone::Warn, w.tw("link.say.on_modem", &[("since", &since)])),
        (Uplink::Offline, _) => (Tone::Fault, w.tw("link.say.offline", &[("since", &since)])),
        (Uplink::Primary, LinkHealth::Down { .. }) => (
            Tone::Warn,
            w.tw("link.say.primary_down", &[("since", &since)]),
        ),
        (Uplink::Primary, LinkHealth::Up { failures }) if failures > 0 => {
            (Tone::Warn, w.tw("link.say.flaky", &[("n", &w.n(failures))]))
        }
        (Uplink::Primary, LinkHealth::Up { .. }) => (Tone::Ok, w.t("link.say.ok")),
    };
    let primary = match s.primary {
        LinkHealth::Up { .. } => w.t("link.primary.up"),
        LinkHealth::Down { .. } => w.t("link.primary.down"),
        LinkHealth::Unknown => w.t("tech.unknown"),
    };
    let mut facts = vec![
        Fact::value(w.t("link.f.uplink"), uplink_word(w, s.uplink)),
        Fact::value(w.t("link.f.primary"), primary),
    ];
    if let Some(t) = p.primary_down_since {
        facts.push(Fact::value(w.t("link.f.down_since"), w.when(t)));
    }
    facts.push(Fact::value(
        w.t("link.f.modem_registered"),
        w.yes_no(s.modem_registered),
    ));
    if let Some(c) = s.last_change {
        facts.push(Fact::value(
            w.t("link.f.last_change"),
            format!(
                "{} ← {}: {}",
                uplink_word(w, c.to),
                uplink_word(w, c.from),
                reason_words(w, c.reason)
            ),
        ));
    }
    facts.push(Fact::ident(
        w.t("link.f.targets"),
        if p.targets.is_empty() {
            "–".into()
        } else {
            p.targets.join(", ")
        },
    ));
    Panel {
        id: "link",
        tone,
        sentence,
        facts,
    }
}

// ------------------------------------------------------------------ power

fn source_word(w: &Words, s: Source) -> String {
    w.t(match s {
        Source::Grid => "power.source.grid",
        Source::Solar => "power.source.solar",
        Source::Battery => "power.source.battery",
        Source::Generator => "power.source.generator",
    })
}

fn mode_word(w: &Words, m: Mode) -> String {
    w.t(match m {
        Mode::PowerOn => "power.mode.power_on",
        Mode::Standby => "power.mode.standby",
        Mode::Line => "power.mode.line",
        Mode::Battery => "power.mode.battery",
        Mode::Fault => "power.mode.fault",
        Mode::PowerSaving => "power.mode.power_saving",
    })
}

fn engine_word(w: &Words, e: EngineState) -> String {
    match e {
        EngineState::Stopped => w.t("power.engine.stopped"),
        EngineState::PreStart => w.t("power.engine.pre_start"),
        EngineState::Warming => w.t("power.engine.warming"),
        EngineState::Running => w.t("power.engine.running"),
        EngineState::Cooling => w.t("power.engine.cooling"),
        EngineState::Other(n) => w.tw("power.engine.other", &[("n", &w.n(n))]),
    }
}

fn device_word(w: &Words, k: DeviceKind) -> String {
    w.t(&format!("power.device.{}", k.name()))
}

fn failure_words(w: &Words, f: &StartFailure) -> String {
    match f {
        StartFailure::Refused {
            attempts,
            last_error,
        } => w.tw(
            "power.failure.refused",
            &[("n", &w.n(attempts)), ("error", last_error)],
        ),
        StartFailure::NeverRan { waited } => {
            w.tw("power.failure.never_ran", &[("n", &w.n(waited.as_secs()))])
        }
    }
}

fn start_words(w: &Words, p: &StartPhase) -> String {
    match p {
        StartPhase::Sending { attempt } => w.tw("power.start.sending", &[("n", &w.n(attempt))]),
        StartPhase::Retrying { attempt, reason } => w.tw(
            "power.start.retrying",
            &[("n", &w.n(attempt)), ("error", reason)],
        ),
        StartPhase::Confirming => w.t("power.start.confirming"),
        StartPhase::Running => w.t("power.start.running"),
        StartPhase::Failed(f) => failure_words(w, f),
    }
}

fn power_panel(w: &Words, p: &PowerPanel) -> Panel {
    let s = p.sample.as_ref();
    let stale_fields = p.stale_fields();
    let is_stale = |f: PowerField| stale_fields.contains(&f);
    let soc = s
        .and_then(|s| s.soc_percent)
        .map_or_else(|| "?".to_string(), |v| w.n(v));
    let silent = p.devices.iter().find(|d| d.stale);
    let failed = p.generator.as_ref().and_then(|g| match &g.start {
        Some(StartPhase::Failed(f)) => Some(f),
        _ => None,
    });
    let grid_present = s.and_then(|s| s.grid_available) == Some(true);
    let (tone, sentence) = if p.no_fresh_device {
        let since = p
            .devices
            .iter()
            .filter_map(|d| d.updated_at)
            .max()
            .map_or_else(|| w.t("tech.never"), |t| w.when(t));
        (Tone::Fault, w.tw("power.say.silent", &[("since", &since)]))
    } else if p.level == Level::Critical {
        (Tone::Fault, w.tw("power.say.critical", &[("soc", &soc)]))
    } else if let Some(f) = failed {
        (
            Tone::Fault,
            w.tw(
                "power.say.start_failed",
                &[("reason", &failure_words(w, f))],
            ),
        )
    } else if p.inverter_mode == Some(Mode::Fault) {
        (Tone::Fault, w.t("power.say.inverter_fault"))
    } else if p.level == Level::Low {
        (Tone::Warn, w.tw("power.say.low", &[("soc", &soc)]))
    } else if let Some(d) = silent {
        let since = d
            .updated_at
            .map_or_else(|| w.t("tech.never"), |t| w.when(t));
        (
            Tone::Warn,
            w.tw(
                "power.say.device_silent",
                &[("device", &device_word(w, d.kind)), ("since", &since)],
            ),
        )
    } else if p.monitor_lost {
        (Tone::Warn, w.t("power.say.monitor_lost"))
    } else if s.is_some_and(|s| s.generator_running) {
        let fuel = s
            .and_then(|s| s.fuel_percent)
            .map_or_else(|| "?".to_string(), |v| w.n(v));
        (
            Tone::Info,
            w.tw("power.say.on_generator", &[("fuel", &fuel)]),
        )
    } else if p.inverter_mode == Some(Mode::Battery) && grid_present {
        (
            Tone::Info,
            w.tw("power.say.battery_first", &[("soc", &soc)]),
        )
    } else if p.level == Level::OnBattery || s.is_some_and(|s| matches!(s.source, Source::Battery))
    {
        (Tone::Info, w.tw("power.say.on_battery", &[("soc", &soc)]))
    } else {
        let source = s.map_or_else(|| w.t("tech.unknown"), |s| source_word(w, s.source));
        (Tone::Ok, w.tw("power.say.ok", &[("source", &source)]))
    };
    let none = || w.t("tech.no_reading");
    let mut facts = vec![
        Fact::value(
            w.t("power.f.source"),
            s.map_or_else(none, |s| source_word(w, s.source)),
        )
        .stale(is_stale(PowerField::Source)),
        Fact::value(
            w.t("power.f.soc"),
            s.and_then(|s| s.soc_percent)
                .map_or_else(none, |v| w.tw("unit.percent", &[("n", &w.n(v))])),
        )
        .stale(is_stale(PowerField::Soc)),
        Fact::value(
            w.t("power.f.battery_v"),
            s.and_then(|s| s.battery_mv).map_or_else(none, |mv| {
                w.tw("unit.volts", &[("n", &w.n1(f64::from(mv) / 1000.0))])
            }),
        )
        .stale(is_stale(PowerField::BatteryV)),
    ];
    let watts = |v: Option<u32>| v.map(|v| w.tw("unit.watts", &[("n", &w.n(v))]));
    let pv = match (p.pv.mppt_w, p.pv.inverter_w) {
        (Some(_), Some(_)) => w.tw(
            "power.pv_split",
            &[
                ("total", &watts(p.pv.total_w).unwrap_or_default()),
                ("mppt", &watts(p.pv.mppt_w).unwrap_or_default()),
                ("inverter", &watts(p.pv.inverter_w).unwrap_or_default()),
            ],
        ),
        _ => watts(s.and_then(|s| s.pv_w)).unwrap_or_else(none),
    };
    facts.push(Fact::value(w.t("power.f.pv"), pv).stale(is_stale(PowerField::Pv)));
    facts.push(
        Fact::value(
            w.t("power.f.load"),
            watts(s.and_then(|s| s.load_w)).unwrap_or_else(none),
        )
        .stale(is_stale(PowerField::Load)),
    );
    facts.push(
        Fact::value(
            w.t("power.f.grid"),
            s.and_then(|s| s.grid_available).map_or_else(none, |g| {
                w.t(if g {
                    "power.grid.present"
                } else {
                    "power.grid.absent"
                })
            }),
        )
        .stale(is_stale(PowerField::Grid)),
    );
    if p.device(DeviceKind::Inverter).is_some() {
        facts.push(
            Fact::value(
                w.t("power.f.inverter_mode"),
                p.inverter_mode.map_or_else(none, |m| mode_word(w, m)),
            )
            .stale(is_stale(PowerField::InverterMode)),
        );
    }
    if let Some(g) = &p.generator {
        let r = g.reading.as_ref();
        let gs = is_stale(PowerField::Generator);
        facts.push(
            Fact::value(
                w.t("power.f.engine"),
                r.and_then(|r| r.engine)
                    .map_or_else(none, |e| engine_word(w, e)),
            )
            .stale(gs),
        );
        facts.push(
            Fact::value(
                w.t("power.f.fuel"),
                r.and_then(|r| r.fuel_percent)
                    .map_or_else(none, |v| w.tw("unit.percent", &[("n", &w.n(v))])),
            )
            .stale(gs),
        );
        facts.push(
            Fact::value(
                w.t("power.f.run_hours"),
                r.and_then(|r| r.run_seconds).map_or_else(none, |v| {
                    w.tw("unit.hours", &[("n", &w.n1(f64::from(v) / 3600.0))])
                }),
            )
            .stale(gs),
        );
        facts.push(
            Fact::value(
                w.t("power.f.starts"),
                r.and_then(|r| r.starts).map_or_else(none, |v| w.n(v)),
            )
            .stale(gs),
        );
        if let Some(phase) = &g.start {
            facts.push(Fact::value(w.t("power.f.start"), start_words(w, phase)));
        }
        if g.requested_by_policy {
            facts.push(Fact::value(
                w.t("power.f.requested"),
                w.t("power.requested_by_policy"),
            ));
        }
    }
    facts.push(Fact::value(
        w.t("power.f.bulk_sync"),
        w.t(if p.bulk_sync_deferred {
            "power.bulk.deferred"
        } else {
            "power.bulk.moves"
        }),
    ));
    if let Some(t) = &p.today {
        let h = |src: Source| w.n1(t.hours_on(src));
        facts.push(Fact::value(
            w.t("power.f.today"),
            w.tw(
                "power.today_hours",
                &[
                    ("grid", &h(Source::Grid)),
                    ("solar", &h(Source::Solar)),
                    ("battery", &h(Source::Battery)),
                    ("generator", &h(Source::Generator)),
                ],
            ),
        ));
    }
    if let Some(s) = s {
        facts.push(Fact::value(w.t("power.f.sample_at"), w.when(s.at)).stale(p.no_fresh_device));
    }
    for d in &p.devices {
        let state = if d.stale {
            w.tw(
                "power.device.silent_since",
                &[(
                    "since",
                    &d.updated_at
                        .map_or_else(|| w.t("tech.never"), |t| w.when(t)),
                )],
            )
        } else {
            w.tw(
                "power.device.ok_at",
                &[(
                    "at",
                    &d.updated_at.map_or_else(|| w.t("tech.never"), |t| w.at(t)),
                )],
            )
        };
        facts.push(Fact::value(device_word(w, d.kind), state).stale(d.stale));
        facts.push(Fact::ident(
            w.tw("power.device.port", &[("device", &device_word(w, d.kind))]),
            match &d.port_error {
                Some(e) => format!("{} ({e})", d.port),
                None => d.port.clone(),
            },
        ));
    }
    Panel {
        id: "power",
        tone,
        sentence,
        facts,
    }
}

// ------------------------------------------------------------------ sync

fn parse_ts(s: &Option<String>) -> Option<Timestamp> {
    s.as_deref().and_then(|s| s.parse().ok())
}

fn sync_panel(w: &Words, p: &SyncPanel) -> Panel {
    let ok_at = parse_ts(&p.last_success_at);
    let err_at = parse_ts(&p.last_error_at);
    let failing = match (ok_at, err_at) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(ok), Some(err)) => err > ok,
    };
    let interval = i64::try_from(p.interval_secs).unwrap_or(i64::MAX);
    let overdue = ok_at.is_some_and(|t| w.now.duration_since(t).as_secs() > 3 * interval.max(60));
    let (tone, sentence) = if failing {
        let since = err_at.map_or_else(|| w.t("tech.unknown"), |t| w.when(t));
        let last = ok_at.map_or_else(|| w.t("tech.never"), |t| w.when(t));
        (
            Tone::Fault,
            w.tw("sync.say.failing", &[("since", &since), ("last", &last)]),
        )
    } else if ok_at.is_none() {
        (Tone::Info, w.t("sync.say.never"))
    } else if overdue {
        (
            Tone::Warn,
            w.tw(
                "sync.say.overdue",
                &[("ago", &ok_at.map(|t| w.ago(t)).unwrap_or_default())],
            ),
        )
    } else if p.metered && p.backlog_bulk > 0 {
        (
            Tone::Info,
            w.tw("sync.say.metered", &[("n", &w.n(p.backlog_bulk))]),
        )
    } else {
        (
            Tone::Ok,
            w.tw(
                "sync.say.ok",
                &[
                    ("ago", &ok_at.map(|t| w.ago(t)).unwrap_or_default()),
                    ("n", &w.n(p.backlog)),
                ],
            ),
        )
    };
    let mut facts = vec![
        Fact::value(
            w.t("sync.f.last_success"),
            ok_at.map_or_else(|| w.t("tech.never"), |t| w.when(t)),
        ),
        Fact::value(
            w.t("sync.f.backlog"),
            w.tw(
                "sync.backlog",
                &[
                    ("n", &w.n(p.backlog)),
                    ("essential", &w.n(p.backlog_essential)),
                    ("bulk", &w.n(p.backlog_bulk)),
                ],
            ),
        ),
    ];
    if let Some(u) = &p.uplink {
        let word = match u.as_str() {
            "primary" => uplink_word(w, Uplink::Primary),
            "modem" => uplink_word(w, Uplink::Modem),
            "offline" => uplink_word(w, Uplink::Offline),
            other => other.to_string(),
        };
        facts.push(Fact::value(w.t("sync.f.uplink"), word));
    }
    if let Some(t) = err_at {
        facts.push(Fact::value(w.t("sync.f.last_error_at"), w.when(t)));
    }
    if let Some(e) = &p.last_error {
        facts.push(Fact::ident(w.t("tech.f.last_error"), e.clone()));
    }
    facts.push(Fact::value(
        w.t("sync.f.interval"),
        w.tw("tech.seconds", &[("n", &w.n(p.interval_secs))]),
    ));
    if let Some(ms) = p.skew_ms {
        facts.push(Fact::value(
            w.t("sync.f.skew"),
            w.tw("tech.seconds", &[("n", &w.n1(ms as f64 / 1000.0))]),
        ));
    }
    if let Some(b) = &p.modem_budget {
        facts.push(Fact::value(
            w.t("sync.f.modem_budget"),
            w.tw(
                "sync.budget",
                &[
                    ("used", &w.n(b.used_bytes / 1024)),
                    ("budget", &w.n(b.budget_bytes / 1024)),
                ],
            ),
        ));
    }
    facts.push(Fact::value(
        w.t("sync.f.bulk"),
        w.t(if p.metered {
            "sync.bulk.waits"
        } else {
            "sync.bulk.moves"
        }),
    ));
    facts.push(Fact::ident(w.t("sync.f.hub"), p.hub.clone()));
    Panel {
        id: "sync",
        tone,
        sentence,
        facts,
    }
}

// ------------------------------------------------------------------ storage

fn storage_panel(w: &Words, web: &Web) -> Panel {
    let app = &web.app;
    let integrity = app.db.integrity.get();
    let health = app.db.writer.health();
    let (tone, sentence) = match (&integrity, health.state) {
        (Integrity::Corrupt { .. }, _) => (Tone::Fault, w.t("technician.storage_damaged")),
        (_, WriterState::Ok) => match integrity {
            Integrity::Checking => (Tone::Info, w.t("storage.say.checking")),
            _ => (Tone::Ok, w.t("storage.say.ok")),
        },
        (_, WriterState::Stalled) => (Tone::Warn, w.t("storage.say.stalled")),
        (_, WriterState::Failing) => (Tone::Fault, w.t("storage.say.failing")),
        (_, WriterState::Refusing) => (Tone::Fault, w.t("storage.say.refusing")),
        (_, WriterState::Stopped) => (Tone::Fault, w.t("storage.say.stopped")),
    };
    let mut facts = vec![
        Fact::value(
            w.t("storage.f.integrity"),
            w.t(match integrity {
                Integrity::Checking => "storage.integrity.checking",
                Integrity::Ok { .. } => "storage.integrity.ok",
                Integrity::Corrupt { .. } => "storage.integrity.corrupt",
            }),
        ),
        Fact::value(
            w.t("storage.f.writer"),
            w.t(&format!("storage.writer.{}", health.state.as_str())),
        ),
        Fact::value(w.t("storage.f.commits"), w.n(health.commits)),
    ];
    if health.consecutive_failures > 0 {
        facts.push(Fact::value(
            w.t("storage.f.failures"),
            w.n(health.consecutive_failures),
        ));
    }
    if let Some(e) = health.refused.as_ref().or(health.last_error.as_ref()) {
        facts.push(Fact::ident(w.t("tech.f.last_error"), e.clone()));
    }
    if let Integrity::Corrupt { problems } = &integrity {
        for p in problems.iter().take(3) {
            facts.push(Fact::ident(w.t("storage.f.problem"), p.clone()));
        }
    }
    if let Some(wal) = app.db.integrity.wal_shortfall() {
        facts.push(Fact::value(
            w.t("storage.f.wal_shortfall"),
            w.tw(
                "storage.wal",
                &[
                    ("present", &w.n(wal.present_frames)),
                    ("expected", &w.n(wal.expected_frames)),
                ],
            ),
        ));
    }
    Panel {
        id: "storage",
        tone,
        sentence,
        facts,
    }
}

// ------------------------------------------------------------------ pages

fn words(web: &Web, lang: Lang) -> Words {
    Words {
        lang,
        digits: if lang == Lang::En {
            Digits::Western
        } else {
            web.options.digits
        },
        tz: web.app.settings.timezone.clone(),
        now: web.app.now(),
    }
}

/// Every panel of the page, in words.
fn panels(web: &Web, lang: Lang, snap: &StatusSnapshot) -> Vec<Value> {
    let w = words(web, lang);
    let one = |id, p: Option<Panel>| p.unwrap_or_else(|| Panel::not_configured(id, &w));
    // A fixed order: panels that jump on a live refresh would lose the reader's eye.
    let out = [
        one("link", snap.link.live().map(|p| link_panel(&w, p))),
        one("modem", snap.modem.live().map(|p| modem_panel(&w, p))),
        one("power", snap.power.live().map(|p| power_panel(&w, p))),
        one("sync", snap.sync.live().map(|p| sync_panel(&w, p))),
        storage_panel(&w, web),
    ];
    out.iter().map(Panel::value).collect()
}

/// The actions, each with whether it can be used here.
fn actions(web: &Web, staff: &Staff, snap: &StatusSnapshot) -> Value {
    let can = staff.actor.can(Capability::TechnicalActions);
    context! {
        allowed => can,
        modem_reset => can && web.app.devices.modem_configured(),
        sync_now => can && matches!(snap.sync, PanelView::Live { .. }),
    }
}

fn log_rows(web: &Web, rows: &[LogRow]) -> Vec<Value> {
    rows.iter()
        .map(|r| context! { at => local_datetime(&web.app, &r.at), who => &r.who, terminal => &r.terminal, what => &r.what, subject => &r.subject, detail => &r.detail })
        .collect()
}

/// An action to confirm (`?confirm=`), or the outcome of one (`?done=`).
#[derive(Debug, Deserialize, Default)]
pub struct TechQuery {
    #[serde(default)]
    confirm: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

/// The actions a technician can take from the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    ModemReset,
    SyncNow,
}

impl Action {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "modem_reset" => Some(Action::ModemReset),
            "sync_now" => Some(Action::SyncNow),
            _ => None,
        }
    }
    fn slug(self) -> &'static str {
        match self {
            Action::ModemReset => "modem_reset",
            Action::SyncNow => "sync_now",
        }
    }
}

async fn render(
    web: &Web,
    staff: &Staff,
    status: StatusCode,
    confirm: Option<Action>,
    done: Option<&str>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let lang = staff.lang();
    let app = &web.app;
    let a = &staff.actor;
    let err = |e| PageError::app(e, lang);
    let snap = app.status.snapshot();
    let events = app.node_events(a, 100, false).await.map_err(err)?;
    let errors = app.node_events(a, 20, true).await.map_err(err)?;
    let audit = match app.audit_log(a, 100).await {
        Ok(rows) => Some(log_rows(web, &rows)),
        Err(AppError::Forbidden { .. }) => None,
        Err(e) => return Err(err(e)),
    };
    let storage_damaged = matches!(app.db.integrity.get(), Integrity::Corrupt { .. });
    let actions = actions(web, staff, &snap);
    let confirm = confirm.filter(|c| {
        staff.actor.can(Capability::TechnicalActions) && {
            *c == Action::SyncNow || app.devices.modem_configured()
        }
    });
    page(
        web,
        staff,
        status,
        "technician.html",
        context! {
            panels => panels(web, lang, &snap),
            actions => actions,
            confirm => confirm.map(Action::slug),
            storage_damaged => storage_damaged,
            clock => web.app.clock_check().await.ok(),
            events => log_rows(web, &events),
            errors => log_rows(web, &errors),
            audit => audit,
            flash => flash(lang, done),
            error => error,
        },
    )
}

/// `GET /technician` (`?confirm=modem_reset` shows the confirmation of an action).
pub async fn show(
    State(web): State<Web>,
    staff: Staff,
    Query(q): Query<TechQuery>,
) -> Result<Response, PageError> {
    staff.require(Capability::ViewTechnical)?;
    let confirm = q.confirm.as_deref().and_then(Action::parse);
    render(
        &web,
        &staff,
        StatusCode::OK,
        confirm,
        q.done.as_deref(),
        None,
    )
    .await
}

/// `GET /technician/panels`: the panels alone, for the page's live refresh.
pub async fn panels_fragment(State(web): State<Web>, staff: Staff) -> Result<Response, PageError> {
    staff.require(Capability::ViewTechnical)?;
    let lang = staff.lang();
    let snap = web.app.status.snapshot();
    let ctx = context! {
        ..context! { panels => panels(&web, lang, &snap) },
        ..super::session::base_context(&web, lang, "/technician", Some(&staff))
    };
    let html =
        super::render::render("technician_panels.html", ctx).map_err(|e| PageError::Render {
            err: e.to_string(),
            lang,
        })?;
    Ok(no_store(Html(html).into_response()))
}

#[derive(Debug, Deserialize, Default)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
}

/// `POST /technician/action`: carries out a confirmed action (the same use cases as
/// `POST /api/v1/technician/…`, audited alike).
pub async fn act(
    State(web): State<Web>,
    staff: Staff,
    Form(f): Form<ActionForm>,
) -> Result<Response, PageError> {
    staff.check_csrf(&f.csrf)?;
    staff.require(Capability::TechnicalActions)?;
    let lang = staff.lang();
    let Some(action) = Action::parse(&f.action) else {
        return render(
            &web,
            &staff,
            StatusCode::BAD_REQUEST,
            None,
            None,
            Some(i18n::t(lang, "error.invalid").into()),
        )
        .await;
    };
    let r = match action {
        Action::ModemReset => web.app.technician_modem_reset(&staff.actor).await,
        Action::SyncNow => web.app.technician_sync_now(&staff.actor).await,
    };
    match r {
        Ok(_) => {
            let done = match action {
                Action::ModemReset => "modem_reset",
                Action::SyncNow => "sync_now",
            };
            Ok(Redirect::to(&format!("/technician?done={done}")).into_response())
        }
        Err(e) => {
            render(
                &web,
                &staff,
                super::session::status_of(&e),
                None,
                None,
                Some(error_message(lang, &e)),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use markaz_hardware::modem::ModemStatus;

    fn words(lang: Lang) -> Words {
        Words {
            lang,
            digits: if lang == Lang::En {
                Digits::Western
            } else {
                Digits::ArabicIndic
            },
            tz: TimeZone::get("Asia/Damascus").unwrap(),
            now: "2026-12-03T10:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn a_missing_sim_says_what_to_do_and_keeps_the_port_latin() {
        let mut status = ModemStatus::starting();
        status.state = ModemState::NoSim;
        status.sim = SimState::Missing;
        status.last_ok = Some("2026-12-03T09:59:00Z".parse().unwrap());
        let p = ModemPanel {
            port: "/dev/ttyUSB2".into(),
            status,
        };
        for lang in Lang::ALL {
            let w = words(lang);
            let panel = modem_panel(&w, &p);
            assert_eq!(panel.tone, Tone::Fault);
            assert_eq!(panel.sentence, i18n::t(lang, "modem.say.no_sim"));
            let port = panel.facts.iter().find(|f| f.ident).unwrap();
            assert_eq!(port.value, "/dev/ttyUSB2");
            // The last answer is shown in the center's zone (UTC+3): 12:59.
            let last = &panel
                .facts
                .iter()
                .find(|f| f.label == w.t("modem.f.last_ok"))
                .unwrap()
                .value;
            let twelve = w.n("12:59:00");
            assert!(last.contains(&twelve), "{last}");
        }
    }

    #[test]
    fn every_state_has_words_in_both_languages() {
        for lang in Lang::ALL {
            let w = words(lang);
            for s in [
                ModemState::Starting,
                ModemState::Ready,
                ModemState::NoSim,
                ModemState::NotRegistered,
                ModemState::Resetting,
                ModemState::Dead,
            ] {
                let mut status = ModemStatus::starting();
                status.state = s;
                let p = modem_panel(
                    &w,
                    &ModemPanel {
                        port: "x".into(),
                        status,
                    },
                );
                // A missing catalog key would show as the key itself.
                for text in std::iter::once(&p.sentence)
                    .chain(p.facts.iter().flat_map(|f| [&f.label, &f.value]))
                {
                    let key_like = text.split_whitespace().any(|t| {
                        let t = t.trim_matches(|c: char| !c.is_ascii_alphanumeric());
                        t.contains('.')
                            && t.chars()
                                .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
                    });
                    assert!(!key_like, "{lang:?} {s:?}: {text}");
                }
            }
        }
    }
}
