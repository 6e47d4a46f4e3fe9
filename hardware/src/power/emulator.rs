//! Emulators of the three power devices on pseudo-terminals — a VE.Direct MPPT and BMV,
//! a Voltronic inverter answering QPIGS/QMOD, and a Deep Sea-style Modbus RTU generator
//! controller — all driven by one simulated [`World`] that follows a [`DayProfile`] (sun
//! curve, load curve, grid cuts, generator runs) on an accelerated clock, so a whole day
//! can pass in seconds.
//!
//! The world is pure ([`World::advance`] integrates battery, fuel and run time up to a
//! given instant), so tests can also fold a day of samples without any pty. Each emulated
//! port has [`Knobs`] to inject faults: bad checksums, frames split across writes, cut
//! frames, and silence. The drivers see real ttys: they cannot tell an emulator from the
//! device.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::controller::{EmulatedController, Engine};
use super::generator::{EngineState, GeneratorCommand, GeneratorMap, GeneratorReading};
use super::vedirect::{BmvReading, ChargeState, MpptReading, encode_block};
use super::voltronic::{self, Command, Framer, Mode, Qpigs, StatusBits};
use crate::pty::PtyMaster;

/// One day of a center's power, in local time.
#[derive(Debug, Clone, PartialEq)]
pub struct DayProfile {
    /// PV starts producing.
    pub sunrise: Time,
    /// PV stops producing.
    pub sunset: Time,
    /// PV power at solar noon, W (the curve is a half sine between sunrise and sunset).
    pub pv_peak_w: u32,
    /// Load curve: (time, W) points, linear in between, flat before the first and after
    /// the last.
    pub load: Vec<(Time, u32)>,
    /// Grid cuts, `[from, to)`.
    pub grid_cuts: Vec<(Time, Time)>,
    /// Scheduled generator runs, `[from, to)` (remote commands override them).
    pub generator_runs: Vec<(Time, Time)>,
    /// Battery capacity, Wh.
    pub battery_wh: u32,
    /// State of charge at the start, per mille.
    pub initial_soc_permille: u16,
    /// Charging power from grid or generator, W.
    pub charger_w: u32,
    /// Fuel at the start, %.
    pub initial_fuel_percent: u16,
    /// Fuel burnt per hour of running, %.
    pub fuel_percent_per_hour: u16,
    /// A second array on the inverter's own charger, as a percentage of `pv_peak_w`
    /// (0: the inverter has no PV of its own).
    pub inverter_pv_percent: u32,
}

fn secs(t: Time) -> f64 {
    f64::from(t.hour()) * 3600.0
        + f64::from(t.minute()) * 60.0
        + f64::from(t.second())
        + f64::from(t.subsec_nanosecond()) / 1e9
}

fn within(spans: &[(Time, Time)], t: Time) -> bool {
    spans.iter().any(|&(a, b)| t >= a && t < b)
}

impl DayProfile {
    /// A sunny Damascus day: 05:30–19:30 sun peaking at 1.5 kW, office load, grid cut
    /// 06:00–10:00 and 14:00–16:30 and 21:00–23:00, the generator 21:00–22:00.
    pub fn damascus_summer() -> Self {
        let t = |h: i8, m: i8| Time::constant(h, m, 0, 0);
        Self {
            sunrise: t(5, 30),
            sunset: t(19, 30),
            pv_peak_w: 1500,
            load: vec![
                (t(0, 0), 120),
                (t(7, 30), 150),
                (t(8, 0), 900),
                (t(14, 0), 900),
                (t(15, 0), 200),
                (t(23, 59), 120),
            ],
            grid_cuts: vec![
                (t(6, 0), t(10, 0)),
                (t(14, 0), t(16, 30)),
                (t(21, 0), t(23, 0)),
            ],
            generator_runs: vec![(t(21, 0), t(22, 0))],
            battery_wh: 4800,
            initial_soc_permille: 800,
            charger_w: 600,
            initial_fuel_percent: 80,
            fuel_percent_per_hour: 5,
            inverter_pv_percent: 0,
        }
    }

    /// PV power at a local time, W.
    pub fn pv_w(&self, t: Time) -> u32 {
        let (rise, set, now) = (secs(self.sunrise), secs(self.sunset), secs(t));
        if now <= rise || now >= set || set <= rise {
            return 0;
        }
        let x = (now - rise) / (set - rise);
        (f64::from(self.pv_peak_w) * (std::f64::consts::PI * x).sin()).round() as u32
    }

    /// PV energy of the whole day from the curve, Wh (the integral of the half sine).
    pub fn pv_wh_per_day(&self) -> f64 {
        let hours = (secs(self.sunset) - secs(self.sunrise)).max(0.0) / 3600.0;
        f64::from(self.pv_peak_w) * hours * 2.0 / std::f64::consts::PI
    }

    /// PV power of the inverter's own array at a local time, W.
    pub fn inverter_pv_w(&self, t: Time) -> u32 {
        self.pv_w(t) * self.inverter_pv_percent / 100
    }

    /// Load at a local time, W.
    pub fn load_w(&self, t: Time) -> u32 {
        let now = secs(t);
        let Some(first) = self.load.first() else {
            return 0;
        };
        if now <= secs(first.0) {
            return first.1;
        }
        for w in self.load.windows(2) {
            let ((ta, wa), (tb, wb)) = (w[0], w[1]);
            let (a, b) = (secs(ta), secs(tb));
            if now >= a && now < b && b > a {
                let x = (now - a) / (b - a);
                return (f64::from(wa) + (f64::from(wb) - f64::from(wa)) * x).round() as u32;
            }
        }
        self.load.last().map_or(0, |l| l.1)
    }

    /// Whether the grid is on at a local time.
    pub fn grid_available(&self, t: Time) -> bool {
        !within(&self.grid_cuts, t)
    }

    /// Whether a generator run is scheduled at a local time.
    pub fn generator_scheduled(&self, t: Time) -> bool {
        within(&self.generator_runs, t)
    }
}

/// The simulated state at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Emulated time.
    pub at: Timestamp,
    /// PV power of the solar charger's array, W.
    pub pv_w: u32,
    /// PV power of the inverter's own array, W.
    pub pv_inverter_w: u32,
    /// The inverter runs battery-first: battery mode even with the grid present.
    pub battery_first: bool,
    /// Load, W.
    pub load_w: u32,
    /// Grid on.
    pub grid: bool,
    /// Generator running.
    pub generator_running: bool,
    /// State of charge, per mille.
    pub soc_permille: u16,
    /// Battery voltage, mV.
    pub battery_mv: u32,
    /// Battery power, W (positive = charging).
    pub battery_w: i32,
    /// Fuel, %.
    pub fuel_percent: u16,
    /// Engine run time, s.
    pub run_seconds: u32,
    /// Generator starts.
    pub starts: u32,
    /// PV yield since the start, Wh.
    pub pv_wh: f64,
}

impl Snapshot {
    fn battery_ma(&self) -> i32 {
        let ma = i64::from(self.battery_w) * 1_000_000 / i64::from(self.battery_mv.max(1));
        i32::try_from(ma).unwrap_or(0)
    }

    /// What the MPPT would report.
    pub fn mppt(&self) -> MpptReading {
        let pv_ma = i64::from(self.pv_w) * 1_000_000 / i64::from(self.battery_mv.max(1));
        MpptReading {
            battery_mv: i32::try_from(self.battery_mv).unwrap_or(i32::MAX),
            battery_ma: i32::try_from(pv_ma).unwrap_or(0),
            pv_mv: if self.pv_w > 0 { 72_000 } else { 5_000 },
            pv_w: self.pv_w,
            state: if self.pv_w > 0 {
                ChargeState::Bulk
            } else {
                ChargeState::Off
            },
            error: Some(0),
            load_on: Some(true),
            yield_total_10wh: Some(1_234_500 + (self.pv_wh / 10.0) as u32),
            yield_today_10wh: Some((self.pv_wh / 10.0) as u32),
            max_power_today_w: Some(self.pv_w),
            yield_yesterday_10wh: Some(600),
            max_power_yesterday_w: Some(1400),
        }
    }

    /// What the BMV would report.
    pub fn bmv(&self) -> BmvReading {
        BmvReading {
            battery_mv: i32::try_from(self.battery_mv).unwrap_or(i32::MAX),
            battery_ma: self.battery_ma(),
            power_w: Some(self.battery_w),
            consumed_mah: Some(-i32::from(1000 - self.soc_permille.min(1000)) * 200),
            soc_permille: Some(self.soc_permille),
            ttg_minutes: None,
            alarm: Some(false),
            alarm_reason: Some(0),
        }
    }

    /// What the inverter would report (its AC input is the grid or the generator).
    pub fn qpigs(&self) -> Qpigs {
        let ac_in = self.grid || self.generator_running;
        let mut bits = 0x10u8;
        if self.battery_w > 0 {
            bits |= 0x04;
        }
        if self.pv_inverter_w > 0 {
            bits |= 0x02;
        }
        if ac_in && self.battery_w > 0 {
            bits |= 0x01;
        }
        let discharge_ma = (-self.battery_ma()).max(0);
        Qpigs {
            grid_mv: if ac_in { 229_800 } else { 0 },
            grid_mhz: if ac_in { 50_000 } else { 0 },
            output_mv: 230_000,
            output_mhz: 50_000,
            output_va: self.load_w * 10 / 9,
            output_w: self.load_w,
            load_percent: self.load_w * 100 / 5000,
            bus_v: 380,
            battery_mv: self.battery_mv / 10 * 10,
            charge_ma: u32::try_from(self.battery_ma().max(0)).unwrap_or(0) / 1000 * 1000,
            battery_percent: u32::from(self.soc_permille / 10),
            heatsink_c: 41,
            pv_ma: self.pv_inverter_w * 1000 / 72 / 1000 * 1000,
            pv_mv: if self.pv_inverter_w > 0 { 72_000 } else { 0 },
            scc_battery_mv: self.battery_mv / 10 * 10,
            discharge_ma: u32::try_from(discharge_ma).unwrap_or(0) / 1000 * 1000,
            status: StatusBits(bits),
            pv_charging_w: Some(self.pv_inverter_w),
        }
    }

    /// The inverter mode.
    pub fn mode(&self) -> Mode {
        if (self.grid && !self.battery_first) || self.generator_running {
            Mode::Line
        } else {
            Mode::Battery
        }
    }

    /// What the generator controller would report.
    pub fn generator(&self) -> GeneratorReading {
        GeneratorReading {
            engine: Some(if self.generator_running {
                EngineState::Running
            } else {
                EngineState::Stopped
            }),
            fuel_percent: Some(self.fuel_percent),
            battery_mv: Some(12_800),
            run_seconds: Some(self.run_seconds),
            starts: Some(self.starts),
            generator_available: Some(self.generator_running),
            mains_available: Some(self.grid),
        }
    }
}

/// Values a test pins, whatever the simulation says (each `Some` replaces the
/// simulated value in every device's answers from then on).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// State of charge, per mille.
    pub soc_permille: Option<u16>,
    /// Battery voltage, mV.
    pub battery_mv: Option<u32>,
    /// PV power of the solar charger's array, W.
    pub pv_w: Option<u32>,
    /// PV power of the inverter's own array, W.
    pub pv_inverter_w: Option<u32>,
    /// Load, W.
    pub load_w: Option<u32>,
    /// Grid on.
    pub grid: Option<bool>,
    /// Generator running.
    pub generator_running: Option<bool>,
    /// Fuel, %.
    pub fuel_percent: Option<u16>,
    /// Engine run time, s.
    pub run_seconds: Option<u32>,
    /// Generator starts.
    pub starts: Option<u32>,
}

impl Overrides {
    fn apply(&self, s: &mut Snapshot) {
        macro_rules! pin {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { s.$f = v; } )* };
        }
        pin!(
            soc_permille,
            battery_mv,
            pv_w,
            pv_inverter_w,
            load_w,
            grid,
            generator_running,
            fuel_percent,
            run_seconds,
            starts
        );
    }
}

/// The simulated center: battery, generator and fuel, advanced along a profile.
#[derive(Debug, Clone)]
pub struct World {
    profile: DayProfile,
    tz: TimeZone,
    at: Timestamp,
    soc_permille: f64,
    fuel_percent: f64,
    run_seconds: f64,
    starts: u32,
    pv_wh: f64,
    /// Set by remote start/stop; `None` follows the profile's schedule.
    commanded: Option<bool>,
    running: bool,
    battery_first: bool,
}

/// Longest integration step, emulated seconds.
const STEP_SECONDS: f64 = 30.0;

impl World {
    /// A world at `start`, whose profile is read in `tz`.
    pub fn new(profile: DayProfile, tz: TimeZone, start: Timestamp) -> Self {
        let local = start.to_zoned(tz.clone()).time();
        let running = profile.generator_scheduled(local);
        Self {
            soc_permille: f64::from(profile.initial_soc_permille),
            fuel_percent: f64::from(profile.initial_fuel_percent),
            profile,
            tz,
            at: start,
            run_seconds: 0.0,
            starts: 0,
            pv_wh: 0.0,
            commanded: None,
            running,
            battery_first: false,
        }
    }

    /// The profile.
    pub fn profile(&self) -> &DayProfile {
        &self.profile
    }

    fn local(&self, t: Timestamp) -> Time {
        t.to_zoned(self.tz.clone()).time()
    }

    fn wants_running(&self, t: Time) -> bool {
        self.fuel_percent > 0.0
            && self
                .commanded
                .unwrap_or_else(|| self.profile.generator_scheduled(t))
    }

    /// Applies a remote command now.
    pub fn command(&mut self, c: GeneratorCommand) {
        self.commanded = match c {
            GeneratorCommand::Start => Some(true),
            GeneratorCommand::Stop => Some(false),
            GeneratorCommand::Auto => None,
        };
        let now = self.local(self.at);
        self.set_running(self.wants_running(now));
    }

    /// Runs the inverter battery-first (true) or grid-first (false) from now on.
    pub fn set_battery_first(&mut self, on: bool) {
        self.battery_first = on;
    }

    fn set_running(&mut self, on: bool) {
        if on && !self.running {
            self.starts += 1;
        }
        self.running = on;
    }

    fn battery_w(&self, t: Time) -> f64 {
        let pv = f64::from(self.profile.pv_w(t)) + f64::from(self.profile.inverter_pv_w(t));
        let load = f64::from(self.profile.load_w(t));
        if (self.profile.grid_available(t) && !self.battery_first) || self.running {
            pv + f64::from(self.profile.charger_w)
        } else {
            pv - load
        }
    }

    /// Integrates up to `now` (never backwards) and returns the state there.
    pub fn advance(&mut self, now: Timestamp) -> Snapshot {
        while self.at < now {
            let left = now.duration_since(self.at).as_secs_f64();
            let dt = left.min(STEP_SECONDS);
            let mid = self.local(self.at + SignedDuration::from_secs_f64(dt / 2.0));
            let start_of_step = self.local(self.at);
            self.set_running(self.wants_running(start_of_step));
            let cap = f64::from(self.profile.battery_wh.max(1));
            let bw = self.battery_w(mid);
            self.soc_permille =
                (self.soc_permille + bw * dt / 3600.0 / cap * 1000.0).clamp(0.0, 1000.0);
            self.pv_wh += f64::from(self.profile.pv_w(mid)) * dt / 3600.0;
            if self.running {
                self.run_seconds += dt;
                self.fuel_percent = (self.fuel_percent
                    - f64::from(self.profile.fuel_percent_per_hour) * dt / 3600.0)
                    .max(0.0);
            }
            self.at += SignedDuration::from_secs_f64(dt);
        }
        let t = self.local(self.at);
        self.set_running(self.wants_running(t));
        let soc = self.soc_permille.round() as u16;
        let battery_w = if soc >= 1000 && self.battery_w(t) > 0.0 {
            0
        } else {
            self.battery_w(t).round() as i32
        };
        Snapshot {
            at: self.at,
            pv_w: self.profile.pv_w(t),
            pv_inverter_w: self.profile.inverter_pv_w(t),
            battery_first: self.battery_first,
            load_w: self.profile.load_w(t),
            grid: self.profile.grid_available(t),
            generator_running: self.running,
            soc_permille: soc,
            battery_mv: 23_000 + u32::from(soc) * 4,
            battery_w,
            fuel_percent: self.fuel_percent.round() as u16,
            run_seconds: self.run_seconds as u32,
            starts: self.starts,
            pv_wh: self.pv_wh,
        }
    }
}

/// Fault injection for one emulated port. Counters are consumed one per frame.
#[derive(Debug, Default)]
pub struct Knobs {
    silent: AtomicBool,
    bad_checksums: AtomicU32,
    split_frames: AtomicU32,
    cut_frames: AtomicU32,
    hex_frames: AtomicU32,
}

fn take(c: &AtomicU32) -> bool {
    c.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl Knobs {
    /// Stop sending or answering (true) or resume (false).
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
    }
    /// The next `n` frames carry a wrong checksum/CRC.
    pub fn inject_bad_checksums(&self, n: u32) {
        self.bad_checksums.fetch_add(n, Ordering::SeqCst);
    }
    /// The next `n` frames are written in two parts with a pause between.
    pub fn split_frames(&self, n: u32) {
        self.split_frames.fetch_add(n, Ordering::SeqCst);
    }
    /// The next `n` frames are cut in the middle and never finished.
    pub fn cut_frames(&self, n: u32) {
        self.cut_frames.fetch_add(n, Ordering::SeqCst);
    }
    /// Before each of the next `n` VE.Direct blocks, and inside it, send a HEX frame.
    pub fn inject_hex_frames(&self, n: u32) {
        self.hex_frames.fetch_add(n, Ordering::SeqCst);
    }
    fn silent(&self) -> bool {
        self.silent.load(Ordering::SeqCst)
    }
    /// Whether the port is silent now.
    pub(crate) fn is_silent(&self) -> bool {
        self.silent()
    }
    /// Consumes one bad-checksum injection, if any is pending.
    pub(crate) fn take_bad_checksum(&self) -> bool {
        take(&self.bad_checksums)
    }
}

/// Timing of the emulators.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Emulated time at start.
    pub start: Timestamp,
    /// Zone of the profile's local times.
    pub tz: TimeZone,
    /// Emulated seconds per real second (3600: an hour per second).
    pub time_scale: f64,
    /// Real time between VE.Direct blocks (1 s on a real device).
    pub block_interval: Duration,
    /// Register map of the emulated generator controller.
    pub generator: GeneratorMap,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            start: Timestamp::UNIX_EPOCH,
            tz: TimeZone::UTC,
            time_scale: 1.0,
            block_interval: Duration::from_secs(1),
            generator: GeneratorMap::default(),
        }
    }
}

/// One emulated device: its tty path and its fault knobs.
#[derive(Debug, Clone)]
pub struct EmulatedPort {
    path: PathBuf,
    knobs: Arc<Knobs>,
}

impl EmulatedPort {
    /// The tty a driver opens.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Fault knobs.
    pub fn knobs(&self) -> &Knobs {
        &self.knobs
    }
}

#[derive(Debug)]
struct Shared {
    world: Mutex<World>,
    overrides: Mutex<Overrides>,
    origin: tokio::time::Instant,
    start: Timestamp,
    scale: f64,
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        // A panic elsewhere must not stop the other emulated devices.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn now(&self) -> Timestamp {
        let real = self.origin.elapsed().as_secs_f64();
        self.start + SignedDuration::from_secs_f64(real * self.scale)
    }
    fn snapshot(&self) -> Snapshot {
        let now = self.now();
        let mut s = self.world().advance(now);
        self.overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply(&mut s);
        s
    }
}

/// All power devices of a center, emulated on ptys. Tasks stop on the cancel token.
#[derive(Debug)]
pub struct PowerEmulator {
    shared: Arc<Shared>,
    /// VE.Direct MPPT solar charger.
    pub mppt: EmulatedPort,
    /// VE.Direct BMV battery monitor.
    pub bmv: EmulatedPort,
    /// Voltronic inverter.
    pub inverter: EmulatedPort,
    /// Modbus RTU generator controller.
    pub generator: EmulatedController,
}

impl PowerEmulator {
    /// Opens four ptys and starts the emulators. Must be called inside a tokio runtime.
    pub fn start(
        profile: DayProfile,
        options: EmulatorOptions,
        cancel: &CancellationToken,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            world: Mutex::new(World::new(profile, options.tz.clone(), options.start)),
            overrides: Mutex::new(Overrides::default()),
            origin: tokio::time::Instant::now(),
            start: options.start,
            scale: options.time_scale,
        });
        let port = |master: &PtyMaster| EmulatedPort {
            path: master.path().to_path_buf(),
            knobs: Arc::new(Knobs::default()),
        };
        let (m1, m2, m3) = (PtyMaster::open()?, PtyMaster::open()?, PtyMaster::open()?);
        let (mppt, bmv, inverter) = (port(&m1), port(&m2), port(&m3));
        let generator = EmulatedController::start(options.generator, shared.clone(), cancel)?;
        let every = options.block_interval;
        tokio::spawn(vedirect_task(
            m1,
            shared.clone(),
            mppt.knobs.clone(),
            every,
            |s| s.mppt().to_fields(),
            cancel.clone(),
        ));
        tokio::spawn(vedirect_task(
            m2,
            shared.clone(),
            bmv.knobs.clone(),
            every,
            |s| s.bmv().to_fields(),
            cancel.clone(),
        ));
        tokio::spawn(inverter_task(
            m3,
            shared.clone(),
            inverter.knobs.clone(),
            every,
            cancel.clone(),
        ));
        Ok(Self {
            shared,
            mppt,
            bmv,
            inverter,
            generator,
        })
    }

    /// The emulated time now.
    pub fn now(&self) -> Timestamp {
        self.shared.now()
    }

    /// The simulated state now.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// Pins values (see [`Overrides`]); `Overrides::default()` lets the simulation
    /// speak again.
    pub fn set_overrides(&self, o: Overrides) {
        *self
            .shared
            .overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = o;
    }

    /// Changes the pinned values in place.
    pub fn update_overrides(&self, f: impl FnOnce(&mut Overrides)) {
        f(&mut self
            .shared
            .overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner()));
    }

    /// Runs the emulated inverter battery-first (mode B with the grid present).
    pub fn set_battery_first(&self, on: bool) {
        let now = self.shared.now();
        let mut w = self.shared.world();
        w.advance(now);
        w.set_battery_first(on);
    }
}

pub(crate) async fn write_frame(
    master: &mut PtyMaster,
    frame: &[u8],
    knobs: &Knobs,
    pause: Duration,
) -> io::Result<()> {
    if take(&knobs.cut_frames) {
        return master.write_all(&frame[..frame.len() / 2]).await;
    }
    if take(&knobs.split_frames) {
        let mid = frame.len() / 2;
        master.write_all(&frame[..mid]).await?;
        tokio::time::sleep(pause).await;
        return master.write_all(&frame[mid..]).await;
    }
    master.write_all(frame).await
}

async fn vedirect_task(
    mut master: PtyMaster,
    shared: Arc<Shared>,
    knobs: Arc<Knobs>,
    every: Duration,
    fields: fn(&Snapshot) -> Vec<(&'static str, String)>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    let mut sink = [0u8; 64];
    loop {
        let due = tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => true,
            // Drain anything the driver writes (HEX queries): a real device reads them too.
            r = master.read(&mut sink) => if r.is_err() { return } else { false },
        };
        if !due || knobs.silent() {
            continue;
        }
        let snap = shared.snapshot();
        let mut block = encode_block(&fields(&snap));
        if take(&knobs.bad_checksums)
            && let Some(last) = block.last_mut()
        {
            *last = last.wrapping_add(1);
        }
        if take(&knobs.hex_frames) {
            let mut with_hex = b":A0102000543\n".to_vec();
            let cut = block.len() / 3;
            // Insert at the start of a line inside the block (before a `\r\n`).
            let at = block[cut..]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(block.len(), |p| cut + p);
            with_hex.extend_from_slice(&block[..at]);
            with_hex.extend_from_slice(b":7F0ED0071\n");
            with_hex.extend_from_slice(&block[at..]);
            block = with_hex;
        }
        if write_frame(&mut master, &block, &knobs, every / 3)
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn inverter_task(
    mut master: PtyMaster,
    shared: Arc<Shared>,
    knobs: Arc<Knobs>,
    pause: Duration,
    cancel: CancellationToken,
) {
    let mut framer = Framer::new();
    let mut buf = [0u8; 128];
    loop {
        let n = tokio::select! {
            () = cancel.cancelled() => return,
            r = master.read(&mut buf) => match r {
                Ok(n) => n,
                Err(_) => return,
            },
        };
        for line in framer.feed(&buf[..n]) {
            if knobs.silent() {
                continue;
            }
            let payload = line.strip_suffix(b"\r").unwrap_or(&line);
            let valid = payload.len() > 2 && {
                let (cmd, crc) = payload.split_at(payload.len() - 2);
                voltronic::crc(cmd).to_be_bytes() == crc
            };
            let cmd = &payload[..payload.len().saturating_sub(2)];
            let data = if !valid {
                "NAK".to_owned()
            } else if cmd == Command::Qpigs.name().as_bytes() {
                shared.snapshot().qpigs().render()
            } else if cmd == Command::Qmod.name().as_bytes() {
                shared.snapshot().mode().letter().to_string()
            } else {
                "NAK".to_owned()
            };
            let mut reply = voltronic::frame(format!("({data}").as_bytes());
            if take(&knobs.bad_checksums) && reply.len() >= 3 {
                let i = reply.len() - 2;
                reply[i] = if reply[i] == 0x40 { 0x41 } else { 0x40 };
            }
            if write_frame(&mut master, &reply, &knobs, pause / 4)
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// The world as a generator controller's engine.
impl Engine for Shared {
    fn reading(&self) -> GeneratorReading {
        self.snapshot().generator()
    }
    fn command(&self, c: GeneratorCommand) {
        self.world().command(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_curves() {
        let p = DayProfile::damascus_summer();
        let t = |h: i8, m: i8| Time::constant(h, m, 0, 0);
        assert_eq!(p.pv_w(t(3, 0)), 0);
        assert_eq!(p.pv_w(t(12, 30)), 1500);
        assert_eq!(p.load_w(t(10, 0)), 900);
        assert_eq!(p.load_w(t(14, 30)), 550);
        assert!(!p.grid_available(t(7, 0)) && p.grid_available(t(10, 0)));
        assert!(p.generator_scheduled(t(21, 30)));
    }

    #[test]
    fn world_runs_down_the_battery_without_grid() {
        let mut p = DayProfile::damascus_summer();
        p.grid_cuts = vec![(Time::MIN, Time::MAX)];
        p.generator_runs.clear();
        p.pv_peak_w = 0;
        p.load = vec![(Time::MIN, 120)];
        let start: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        let mut w = World::new(p, TimeZone::UTC, start);
        let s = w.advance(start + SignedDuration::from_hours(4));
        // 120 W for 4 h from a 4800 Wh bank = 10 % of charge.
        assert_eq!(s.soc_permille, 700);
        assert_eq!(s.battery_w, -120);
        w.command(GeneratorCommand::Start);
        let s = w.advance(start + SignedDuration::from_hours(5));
        assert!(s.generator_running);
        assert_eq!((s.starts, s.run_seconds), (1, 3600));
        assert_eq!(s.fuel_percent, 75);
        assert_eq!(s.soc_permille, 825);
    }
}
