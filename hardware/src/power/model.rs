//! The one power model of a center: a [`PowerSample`] derived from the latest readings of
//! whichever devices exist (solar charger, battery monitor, inverter, generator
//! controller), and the [`DailySummary`] folded from a day of samples. Pure: no IO, no
//! clock; the caller stamps samples and decides which readings are fresh enough to use.
//!
//! Guarantees of [`summarize`]: each sample's state holds until the next sample, but never
//! longer than `max_gap` (a longer silence counts as unknown time, not as the last known
//! source); everything is clipped to the local day, so samples of neighbouring days may be
//! passed in; an outage is a maximal run of time with the grid known to be absent.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::generator::GeneratorReading;
use super::vedirect::{BmvReading, MpptReading};
use super::voltronic::{Mode, Qpigs};

/// What powers the center at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The public grid.
    Grid,
    /// Solar covers the load (the battery may be charging).
    Solar,
    /// The battery covers (part of) the load.
    Battery,
    /// The generator.
    Generator,
}

impl Source {
    /// All sources, in a stable order.
    pub const ALL: [Source; 4] = [
        Source::Grid,
        Source::Solar,
        Source::Battery,
        Source::Generator,
    ];
}

/// The latest fresh readings of the devices a center has; absent or stale devices are
/// `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Devices<'a> {
    /// Solar charger.
    pub mppt: Option<&'a MpptReading>,
    /// Battery monitor.
    pub bmv: Option<&'a BmvReading>,
    /// Inverter status and mode.
    pub inverter: Option<(&'a Qpigs, Option<Mode>)>,
    /// Generator controller.
    pub generator: Option<&'a GeneratorReading>,
}

/// PV power by charger: the solar charger's and the inverter's own are separate arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PvFigures {
    /// The VE.Direct solar charger's, W.
    pub mppt_w: Option<u32>,
    /// The inverter's built-in charger's, W.
    pub inverter_w: Option<u32>,
    /// Their sum (either alone when only one reports), W.
    pub total_w: Option<u32>,
}

impl PvFigures {
    /// The figures of the fresh devices.
    pub fn of(d: &Devices<'_>) -> Self {
        let mppt_w = d.mppt.map(|m| m.pv_w);
        let inverter_w = d.inverter.map(|(q, _)| q.pv_w());
        let total_w = match (mppt_w, inverter_w) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            (a, b) => a.or(b),
        };
        Self {
            mppt_w,
            inverter_w,
            total_w,
        }
    }
}

/// Grid voltage above which the inverter's input counts as "grid present", mV.
const GRID_PRESENT_MV: u32 = 150_000;

/// One power sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerSample {
    /// When it was taken.
    pub at: Timestamp,
    /// The source in use.
    pub source: Source,
    /// Battery state of charge, %.
    pub soc_percent: Option<u8>,
    /// Battery voltage, mV.
    pub battery_mv: Option<u32>,
    /// PV power, W.
    pub pv_w: Option<u32>,
    /// Load, W.
    pub load_w: Option<u32>,
    /// Whether the generator runs.
    pub generator_running: bool,
    /// Generator fuel, %.
    pub fuel_percent: Option<u16>,
    /// Whether the grid is present; `None` if no device can tell.
    pub grid_available: Option<bool>,
}

impl PowerSample {
    /// Derives a sample from the devices' latest readings.
    ///
    /// Preference order where devices overlap: state of charge and voltage from the
    /// battery monitor, then the solar charger (voltage), then the inverter; PV is the
    /// solar charger's plus the inverter's own charger's (separate arrays; see
    /// [`PvFigures`]); load from the inverter's output, else PV minus battery charging
    /// power. Grid presence from the generator controller's mains input or the inverter
    /// (line mode or grid voltage), true if either sees it.
    ///
    /// The source: the generator while it runs; otherwise, when the inverter's mode is
    /// known, the mode decides — line mode is the grid, battery mode is the battery (or
    /// solar when PV covers the load) even with the grid present, as a battery-first
    /// inverter runs; without a mode, the grid when present, else solar or battery.
    pub fn derive(at: Timestamp, d: &Devices<'_>) -> Self {
        let inv = d.inverter.map(|(q, _)| q);
        let soc_percent = d
            .bmv
            .and_then(|b| b.soc_permille)
            .map(|p| {
                u8::try_from((u32::from(p) + 5) / 10)
                    .unwrap_or(100)
                    .min(100)
            })
            .or_else(|| inv.map(|q| u8::try_from(q.battery_percent.min(100)).unwrap_or(100)));
        let battery_mv = d
            .bmv
            .map(|b| b.battery_mv)
            .or(d.mppt.map(|m| m.battery_mv))
            .and_then(|v| u32::try_from(v).ok())
            .or(inv.map(|q| q.battery_mv));
        let pv_w = PvFigures::of(d).total_w;
        let load_w = inv.map(|q| q.output_w).or_else(|| {
            let (pv, bmv) = (pv_w?, d.bmv?);
            let charging = bmv.power_w.unwrap_or_else(|| {
                let mw = i64::from(bmv.battery_mv) * i64::from(bmv.battery_ma) / 1_000_000;
                i32::try_from(mw).unwrap_or(0)
            });
            u32::try_from((i64::from(pv) - i64::from(charging)).max(0)).ok()
        });
        let generator_running = d.generator.is_some_and(GeneratorReading::running);
        let views = [
            d.generator.and_then(|g| g.mains_available),
            // While the generator runs, the inverter's AC input is the generator.
            d.inverter
                .filter(|_| !generator_running)
                .map(|(q, mode)| mode == Some(Mode::Line) || q.grid_mv >= GRID_PRESENT_MV),
        ];
        let grid_available = if views.contains(&Some(true)) {
            Some(true)
        } else if views.contains(&Some(false)) {
            Some(false)
        } else {
            None
        };
        let solar_covers = pv_w.is_some_and(|pv| pv > 0 && load_w.is_none_or(|l| pv >= l));
        let off_grid = if solar_covers {
            Source::Solar
        } else {
            Source::Battery
        };
        let mode = d.inverter.and_then(|(_, m)| m);
        let source = match mode {
            _ if generator_running => Source::Generator,
            Some(Mode::Line) => Source::Grid,
            Some(Mode::Battery) => off_grid,
            _ if grid_available == Some(true) => Source::Grid,
            _ => off_grid,
        };
        Self {
            at,
            source,
            soc_percent,
            battery_mv,
            pv_w,
            load_w,
            generator_running,
            fuel_percent: d.generator.and_then(|g| g.fuel_percent),
            grid_available,
        }
    }
}

/// Seconds spent on each source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SourceSeconds {
    /// On the grid.
    pub grid: u64,
    /// On solar.
    pub solar: u64,
    /// On battery.
    pub battery: u64,
    /// On the generator.
    pub generator: u64,
}

impl SourceSeconds {
    /// Seconds on one source.
    pub fn get(&self, s: Source) -> u64 {
        match s {
            Source::Grid => self.grid,
            Source::Solar => self.solar,
            Source::Battery => self.battery,
            Source::Generator => self.generator,
        }
    }

    fn get_mut(&mut self, s: Source) -> &mut u64 {
        match s {
            Source::Grid => &mut self.grid,
            Source::Solar => &mut self.solar,
            Source::Battery => &mut self.battery,
            Source::Generator => &mut self.generator,
        }
    }
}

/// One grid outage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// When the grid went (or the day's start, if it was already gone).
    pub start: Timestamp,
    /// How long it lasted within the day, s.
    pub duration_seconds: u64,
}

/// The energy figures of one local day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailySummary {
    /// The local date.
    pub date: Date,
    /// Time on each source (`hours_on` gives hours).
    pub seconds_per_source: SourceSeconds,
    /// Time not covered by any sample (device silent or node down), s.
    pub unknown_seconds: u64,
    /// Generator run time, s.
    pub generator_run_seconds: u64,
    /// Generator starts seen (stopped → running transitions).
    pub generator_starts: u32,
    /// PV energy, Wh.
    pub pv_wh: u64,
    /// Lowest state of charge seen, %.
    pub min_soc: Option<u8>,
    /// Grid outages, in order.
    pub outages: Vec<Outage>,
}

impl DailySummary {
    /// Hours on one source.
    pub fn hours_on(&self, s: Source) -> f64 {
        self.seconds_per_source.get(s) as f64 / 3600.0
    }
}

/// Folds samples into the summary of `date` in `tz`. Samples need not be sorted and may
/// include neighbouring days; see the module docs for how gaps are treated.
pub fn summarize(
    date: Date,
    tz: &TimeZone,
    samples: &[PowerSample],
    max_gap: SignedDuration,
) -> DailySummary {
    let day_start = tz.to_timestamp(date.to_datetime(jiff::civil::Time::midnight()));
    let day_end = tz.to_timestamp(
        date.tomorrow()
            .unwrap_or(date)
            .to_datetime(jiff::civil::Time::midnight()),
    );
    let mut summary = DailySummary {
        date,
        seconds_per_source: SourceSeconds::default(),
        unknown_seconds: 0,
        generator_run_seconds: 0,
        generator_starts: 0,
        pv_wh: 0,
        min_soc: None,
        outages: Vec::new(),
    };
    let (Ok(day_start), Ok(day_end)) = (day_start, day_end) else {
        return summary;
    };
    let mut sorted: Vec<&PowerSample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.at);

    let in_day = |t: Timestamp| t >= day_start && t < day_end;
    summary.min_soc = sorted
        .iter()
        .filter(|s| in_day(s.at))
        .filter_map(|s| s.soc_percent)
        .min();

    let mut covered_ms: i64 = 0;
    let mut source_ms = [0i64; 4];
    let mut gen_ms: i64 = 0;
    let mut pv_wms: f64 = 0.0;
    // Outages as (start, end) in ms since the epoch, merged when contiguous.
    let mut outages: Vec<(Timestamp, Timestamp)> = Vec::new();

    for pair in sorted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if !a.generator_running && b.generator_running && in_day(b.at) {
            summary.generator_starts += 1;
        }
        let gap = b.at.duration_since(a.at);
        let seg_end = if gap > max_gap {
            a.at.checked_add(max_gap).unwrap_or(b.at)
        } else {
            b.at
        };
        let start = a.at.max(day_start);
        let end = seg_end.min(day_end);
        if end <= start {
            continue;
        }
        let ms = end.duration_since(start).as_millis() as i64;
        covered_ms += ms;
        let idx = Source::ALL.iter().position(|s| *s == a.source).unwrap_or(0);
        source_ms[idx] += ms;
        if a.generator_running {
            gen_ms += ms;
        }
        if let Some(pa) = a.pv_w {
            // Linear between the two samples when they are close enough, flat otherwise.
            let pb = match b.pv_w {
                Some(pb) if gap <= max_gap => pb,
                _ => pa,
            };
            let span = gap.as_millis() as f64;
            let at = |t: Timestamp| -> f64 {
                if span <= 0.0 {
                    return f64::from(pa);
                }
                let x = t.duration_since(a.at).as_millis() as f64 / span;
                f64::from(pa) + (f64::from(pb) - f64::from(pa)) * x.clamp(0.0, 1.0)
            };
            pv_wms += (at(start) + at(end)) / 2.0 * ms as f64;
        }
        if a.grid_available == Some(false) {
            match outages.last_mut() {
                Some((_, last_end)) if *last_end == start => *last_end = end,
                _ => outages.push((start, end)),
            }
        }
    }

    let secs = |ms: i64| u64::try_from((ms + 500) / 1000).unwrap_or(0);
    for (i, s) in Source::ALL.iter().enumerate() {
        *summary.seconds_per_source.get_mut(*s) = secs(source_ms[i]);
    }
    let day_ms = day_end.duration_since(day_start).as_millis() as i64;
    summary.unknown_seconds = secs(day_ms - covered_ms);
    summary.generator_run_seconds = secs(gen_ms);
    summary.pv_wh = (pv_wms / 3_600_000.0).round().max(0.0) as u64;
    summary.outages = outages
        .into_iter()
        .map(|(s, e)| Outage {
            start: s,
            duration_seconds: secs(e.duration_since(s).as_millis() as i64),
        })
        .collect();
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power::generator::EngineState;
    use crate::power::vedirect::ChargeState;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn sample(at: &str, source: Source, grid: Option<bool>, pv: u32, soc: u8) -> PowerSample {
        PowerSample {
            at: ts(at),
            source,
            soc_percent: Some(soc),
            battery_mv: Some(25_000),
            pv_w: Some(pv),
            load_w: Some(300),
            generator_running: source == Source::Generator,
            fuel_percent: None,
            grid_available: grid,
        }
    }

    fn qpigs(grid_mv: u32, pv_w: u32, output_w: u32) -> Qpigs {
        use crate::power::voltronic::StatusBits;
        Qpigs {
            grid_mv,
            grid_mhz: 50_000,
            output_mv: 230_000,
            output_mhz: 50_000,
            output_va: output_w,
            output_w,
            load_percent: 10,
            bus_v: 380,
            battery_mv: 25_000,
            charge_ma: 0,
            battery_percent: 60,
            heatsink_c: 40,
            pv_ma: 0,
            pv_mv: 0,
            scc_battery_mv: 25_000,
            discharge_ma: 0,
            status: StatusBits(0),
            pv_charging_w: Some(pv_w),
        }
    }

    #[test]
    fn a_battery_first_inverter_decides_the_source_and_pv_adds_up() {
        let at = ts("2026-06-01T10:00:00Z");
        // Grid present, inverter in battery mode: the battery (not the grid) carries it.
        let q = qpigs(229_800, 300, 500);
        let d = Devices {
            inverter: Some((&q, Some(Mode::Battery))),
            ..Devices::default()
        };
        let s = PowerSample::derive(at, &d);
        assert_eq!(s.source, Source::Battery);
        assert_eq!(s.grid_available, Some(true));
        // PV covering the load in battery mode: solar.
        let sunny = qpigs(229_800, 700, 500);
        let d = Devices {
            inverter: Some((&sunny, Some(Mode::Battery))),
            ..Devices::default()
        };
        assert_eq!(PowerSample::derive(at, &d).source, Source::Solar);
        // Line mode: the grid, even with sun.
        let d = Devices {
            inverter: Some((&sunny, Some(Mode::Line))),
            ..Devices::default()
        };
        assert_eq!(PowerSample::derive(at, &d).source, Source::Grid);
        // Without a mode: grid presence decides, as before.
        let d = Devices {
            inverter: Some((&q, None)),
            ..Devices::default()
        };
        assert_eq!(PowerSample::derive(at, &d).source, Source::Grid);
        // An MPPT and the inverter's own charger: separate figures and a total.
        let mppt = MpptReading {
            battery_mv: 26_000,
            battery_ma: 5_000,
            pv_mv: 70_000,
            pv_w: 450,
            state: ChargeState::Bulk,
            error: None,
            load_on: None,
            yield_total_10wh: None,
            yield_today_10wh: None,
            max_power_today_w: None,
            yield_yesterday_10wh: None,
            max_power_yesterday_w: None,
        };
        let d = Devices {
            mppt: Some(&mppt),
            inverter: Some((&q, Some(Mode::Battery))),
            ..Devices::default()
        };
        let pv = PvFigures::of(&d);
        assert_eq!(
            (pv.mppt_w, pv.inverter_w, pv.total_w),
            (Some(450), Some(300), Some(750))
        );
        let s = PowerSample::derive(at, &d);
        assert_eq!(s.pv_w, Some(750));
        assert_eq!(s.source, Source::Solar, "750 W of PV covers 500 W");
    }

    #[test]
    fn derive_prefers_generator_then_grid_then_solar() {
        let mppt = MpptReading {
            battery_mv: 26_000,
            battery_ma: 5_000,
            pv_mv: 70_000,
            pv_w: 500,
            state: ChargeState::Bulk,
            error: None,
            load_on: None,
            yield_total_10wh: None,
            yield_today_10wh: None,
            max_power_today_w: None,
            yield_yesterday_10wh: None,
            max_power_yesterday_w: None,
        };
        let bmv = BmvReading {
            battery_mv: 25_900,
            battery_ma: 5_000,
            power_w: Some(130),
            consumed_mah: None,
            soc_permille: Some(734),
            ttg_minutes: None,
            alarm: None,
            alarm_reason: None,
        };
        let gen_reading = GeneratorReading {
            engine: Some(EngineState::Stopped),
            fuel_percent: Some(60),
            battery_mv: None,
            run_seconds: None,
            starts: None,
            generator_available: Some(false),
            mains_available: Some(false),
        };
        let at = ts("2026-06-01T10:00:00Z");
        let d = Devices {
            mppt: Some(&mppt),
            bmv: Some(&bmv),
            inverter: None,
            generator: Some(&gen_reading),
        };
        let s = PowerSample::derive(at, &d);
        assert_eq!(s.source, Source::Solar);
        assert_eq!(s.soc_percent, Some(73));
        assert_eq!(s.battery_mv, Some(25_900));
        assert_eq!(s.load_w, Some(370));
        assert_eq!(s.grid_available, Some(false));
        assert_eq!(s.fuel_percent, Some(60));

        let on_mains = GeneratorReading {
            mains_available: Some(true),
            ..gen_reading.clone()
        };
        let d2 = Devices {
            generator: Some(&on_mains),
            ..d
        };
        assert_eq!(PowerSample::derive(at, &d2).source, Source::Grid);

        let running = GeneratorReading {
            engine: Some(EngineState::Running),
            ..on_mains.clone()
        };
        let d3 = Devices {
            generator: Some(&running),
            ..d
        };
        assert_eq!(PowerSample::derive(at, &d3).source, Source::Generator);

        // A monitor sending nonsense must not overflow anything.
        let wild = BmvReading {
            soc_permille: Some(u16::MAX),
            battery_mv: i32::MIN,
            battery_ma: i32::MIN,
            power_w: None,
            ..bmv.clone()
        };
        let s = PowerSample::derive(
            at,
            &Devices {
                bmv: Some(&wild),
                ..d
            },
        );
        assert_eq!(s.soc_percent, Some(100));

        let none = PowerSample::derive(at, &Devices::default());
        assert_eq!(none.source, Source::Battery);
        assert_eq!(none.grid_available, None);
    }

    #[test]
    fn summary_of_a_small_day() {
        let tz = TimeZone::UTC;
        let samples = vec![
            sample("2026-06-01T00:00:00Z", Source::Grid, Some(true), 0, 90),
            sample("2026-06-01T06:00:00Z", Source::Battery, Some(false), 0, 80),
            sample("2026-06-01T08:00:00Z", Source::Solar, Some(false), 1000, 60),
            sample("2026-06-01T10:00:00Z", Source::Solar, Some(false), 1000, 70),
            sample("2026-06-01T12:00:00Z", Source::Grid, Some(true), 0, 90),
            sample(
                "2026-06-01T18:00:00Z",
                Source::Generator,
                Some(false),
                0,
                85,
            ),
            sample("2026-06-01T20:00:00Z", Source::Grid, Some(true), 0, 95),
            sample("2026-06-02T00:00:00Z", Source::Grid, Some(true), 0, 10),
        ];
        let s = summarize(
            "2026-06-01".parse().unwrap(),
            &tz,
            &samples,
            SignedDuration::from_hours(7),
        );
        assert_eq!(s.seconds_per_source.grid, (6 + 6 + 4) * 3600);
        assert_eq!(s.seconds_per_source.battery, 2 * 3600);
        assert_eq!(s.seconds_per_source.solar, 4 * 3600);
        assert_eq!(s.seconds_per_source.generator, 2 * 3600);
        assert_eq!(s.unknown_seconds, 0);
        assert_eq!(s.generator_starts, 1);
        assert_eq!(s.generator_run_seconds, 2 * 3600);
        // 0→1000 W over 2 h (1000 Wh), 1000 W for 2 h (2000 Wh), 1000→0 over 2 h (1000 Wh).
        assert_eq!(s.pv_wh, 4000);
        assert_eq!(s.min_soc, Some(60), "the next day's 10% is not this day's");
        assert_eq!(
            s.outages,
            vec![
                Outage {
                    start: ts("2026-06-01T06:00:00Z"),
                    duration_seconds: 6 * 3600
                },
                Outage {
                    start: ts("2026-06-01T18:00:00Z"),
                    duration_seconds: 2 * 3600
                },
            ]
        );
    }

    #[test]
    fn long_silence_is_unknown_time() {
        let samples = vec![
            sample("2026-06-01T00:00:00Z", Source::Battery, Some(false), 0, 50),
            sample("2026-06-01T12:00:00Z", Source::Battery, Some(false), 0, 50),
        ];
        let s = summarize(
            "2026-06-01".parse().unwrap(),
            &TimeZone::UTC,
            &samples,
            SignedDuration::from_mins(5),
        );
        assert_eq!(s.seconds_per_source.battery, 300);
        assert_eq!(s.unknown_seconds, 86_400 - 300);
        assert_eq!(s.outages.len(), 1);
        assert_eq!(s.outages[0].duration_seconds, 300);
    }
}
