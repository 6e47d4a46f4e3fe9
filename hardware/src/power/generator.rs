//! Generator controller over Modbus RTU: the register map as data ([`GeneratorMap`]:
//! where each value lives — holding or input register, coil or discrete input — its
//! scale, signedness and word order, and how the controller is started and stopped),
//! presets for the controller families centers have ([`Preset`]), the pure decoding of
//! register values into a [`GeneratorReading`], and the client calls that read it and
//! send remote start/stop through `tokio-modbus`.
//!
//! Guarantees: on a map with `sentinels`, a register holding a "not available" sentinel
//! (−1…−8 as a signed value of its width) reads as `None`, never as a number; a value
//! that does not fit its field reads as `None`; every Modbus call is bounded by the
//! caller's timeout; a map that passed [`GeneratorMap::check`] never asks the controller
//! to write an input register or a discrete input.
//!
//! Sources of the presets (check them against the manual of the controller at hand):
//! - Deep Sea: GenComm (DSE "GenComm" Modbus specification; register = page × 256 +
//!   offset): fuel 1027 %, battery 1029 ×0.1 V, engine state 1408, run time 1798–1799 s
//!   and starts 1808–1809 (u32, high word first), generator frequency 1031 and mains
//!   frequency 1059 ×0.1 Hz, the control pair 4104–4105 written `[key, 65535 − key]`.
//! - Datakom D-500 / D-500 MK2 (values as the public `qveensi/datakom_exporter`
//!   reads them from the D-500 Modbus register list): holding registers, generator
//!   frequency 10339 ×0.01 Hz, battery 10341 ×0.01 V, fuel 10363 ×0.1 %, engine hours
//!   10622–10623 ×0.01 h as a u32 **low word first**. The D-500 engine-state and start
//!   counter registers are not in that source: the engine is taken as running when the
//!   generator frequency is up, and starts are not read. ASSUMED, not from a document:
//!   remote start/stop as a register pulse (1 then 0) on 10900 (start) and 10901
//!   (stop); set `[power.generator.control]` from the D-500 manual on site.
//! - SmartGen HGM6100N/HGM6200N family (SmartGen "communication protocol" documents:
//!   values through function 03H, remote control through coils with function 05H,
//!   stop coil 0 and start coil 1). ASSUMED from the same documents' usual layout and to
//!   be checked per model: engine state in register 40 (0 stopped, 1 starting,
//!   2 warming up, 3 running, 4 cooling down), fuel level 64 %, battery 55 ×0.1 V,
//!   generator frequency 14 ×0.01 Hz, mains frequency 6 ×0.01 Hz, run time 70–71
//!   (hours, u32 high word first) and starts 74–75.
//!
//! ComAp controllers are not preset: they take commands as a password-guarded
//! command/argument register sequence that none of the four methods here expresses.

use std::time::Duration;

use thiserror::Error;
use tokio_modbus::client::{Context, Reader, Writer};

/// The four Modbus tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// 16-bit read/write registers (functions 03, 06, 16).
    Holding,
    /// 16-bit read-only registers (function 04).
    Input,
    /// Read/write bits (functions 01, 05).
    Coil,
    /// Read-only bits (function 02).
    Discrete,
}

impl Table {
    /// Whether a master may write it.
    pub fn writable(self) -> bool {
        matches!(self, Self::Holding | Self::Coil)
    }
    /// Whether it holds bits rather than 16-bit words.
    pub fn is_bit(self) -> bool {
        matches!(self, Self::Coil | Self::Discrete)
    }
}

/// Which word of a 32-bit value comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WordOrder {
    /// High word at the lower address (Deep Sea, most makes).
    #[default]
    HighFirst,
    /// Low word at the lower address (Datakom).
    LowFirst,
}

/// An exact scale `num / den`: the value in the field's unit is `raw × num / den`
/// (0.1 → 1/10, 3600 → 3600/1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// Numerator.
    pub num: i64,
    /// Denominator, > 0.
    pub den: i64,
}

impl Scale {
    /// 1.
    pub const ONE: Self = Self { num: 1, den: 1 };

    /// The exact scale of a decimal number with at most six decimals, e.g. `0.01`;
    /// `None` for zero, non-finite numbers, or more decimals.
    pub fn from_f64(v: f64) -> Option<Self> {
        if !v.is_finite() || v == 0.0 {
            return None;
        }
        let mut den: i64 = 1;
        while den <= 1_000_000 {
            let n = v * den as f64;
            if (n - n.round()).abs() < 1e-9 * den as f64 && n.abs() < 1e12 {
                return Some(Self {
                    num: n.round() as i64,
                    den,
                });
            }
            den *= 10;
        }
        None
    }

    /// `raw × num × unit / den`, rounded toward zero.
    pub fn apply(self, raw: i64, unit: i64) -> Option<i64> {
        raw.checked_mul(self.num)?
            .checked_mul(unit)?
            .checked_div(self.den)
    }

    /// The raw value that reads back as `value` (in `1 / unit` of the field's unit).
    pub fn invert(self, value: i64, unit: i64) -> Option<i64> {
        let d = self.num.checked_mul(unit)?;
        if d == 0 {
            return None;
        }
        value.checked_mul(self.den).map(|v| (v + d / 2) / d)
    }
}

/// Where one value lives and how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Table.
    pub table: Table,
    /// Zero-based address as sent on the wire.
    pub address: u16,
    /// 1, or 2 for a 32-bit value over this register and the next (registers only).
    pub words: u8,
    /// Two's complement.
    pub signed: bool,
    /// Word order of a 32-bit value.
    pub order: WordOrder,
    /// Scale into the field's unit.
    pub scale: Scale,
}

impl Point {
    /// An unsigned 16-bit holding register at `address`, scale 1.
    pub const fn holding(address: u16) -> Self {
        Self {
            table: Table::Holding,
            address,
            words: 1,
            signed: false,
            order: WordOrder::HighFirst,
            scale: Scale::ONE,
        }
    }
    /// The same point in another table.
    pub const fn in_table(mut self, table: Table) -> Self {
        self.table = table;
        self
    }
    /// The same point with a scale.
    pub const fn scaled(mut self, num: i64, den: i64) -> Self {
        self.scale = Scale { num, den };
        self
    }
    /// The same point as a 32-bit value in `order`.
    pub const fn wide(mut self, order: WordOrder) -> Self {
        self.words = 2;
        self.order = order;
        self
    }
    /// The same point, signed.
    pub const fn signed(mut self) -> Self {
        self.signed = true;
        self
    }

    /// Why this point cannot work, if it cannot: bits have no scale, width or sign; a
    /// value is one or two registers; a 32-bit value needs a next register.
    pub fn problem(&self) -> Option<MapProblem> {
        if self.table.is_bit() && (self.scale != Scale::ONE || self.words != 1 || self.signed) {
            return Some(MapProblem::BitWithFormat);
        }
        if !(1..=2).contains(&self.words) {
            return Some(MapProblem::Words);
        }
        if self.words == 2 && self.address == u16::MAX {
            return Some(MapProblem::NoNextRegister);
        }
        if self.scale.den <= 0 || self.scale.num == 0 {
            return Some(MapProblem::Scale);
        }
        None
    }

    /// The raw integer from the words read (`words.len() == self.words`), `None` for a
    /// sentinel when `sentinels`.
    pub fn raw(&self, words: &[u16], sentinels: bool) -> Option<i64> {
        let v = match (self.words, words) {
            (1, [w]) => {
                let w = *w;
                if sentinels && (-8..=-1).contains(&(w as i16)) {
                    return None;
                }
                if self.signed {
                    i64::from(w as i16)
                } else {
                    i64::from(w)
                }
            }
            (2, [a, b]) => {
                let (hi, lo) = match self.order {
                    WordOrder::HighFirst => (*a, *b),
                    WordOrder::LowFirst => (*b, *a),
                };
                let v = (u32::from(hi) << 16) | u32::from(lo);
                if sentinels && (-8..=-1).contains(&(v as i32)) {
                    return None;
                }
                if self.signed {
                    i64::from(v as i32)
                } else {
                    i64::from(v)
                }
            }
            _ => return None,
        };
        Some(v)
    }

    /// The value in `1 / unit` of the field's unit (unit 1000 gives mV for a volts
    /// field), `None` for a sentinel.
    pub fn value(&self, words: &[u16], sentinels: bool, unit: i64) -> Option<i64> {
        self.scale.apply(self.raw(words, sentinels)?, unit)
    }

    /// The words that read back as `value` (in `1 / unit`): what an emulator serves.
    pub fn encode(&self, value: i64, unit: i64) -> Vec<u16> {
        let raw = self.scale.invert(value, unit).unwrap_or(0);
        if self.words == 2 {
            let v = raw as u32;
            let (hi, lo) = ((v >> 16) as u16, v as u16);
            match self.order {
                WordOrder::HighFirst => vec![hi, lo],
                WordOrder::LowFirst => vec![lo, hi],
            }
        } else {
            vec![raw as u16]
        }
    }
}

/// How the controller is started and stopped remotely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `[key, 65535 − key]` written in one request to `register` and the next (Deep Sea).
    Key {
        /// First of the two holding registers.
        register: u16,
        /// Starts the engine (and selects manual mode).
        start: u16,
        /// Stops the engine.
        stop: u16,
        /// Back to automatic mode, if the controller has it.
        auto: Option<u16>,
    },
    /// Coils written on (SmartGen): `start`; to stop, `stop` written on, or without a
    /// stop coil `start` written off.
    Coils {
        /// Start coil.
        start: u16,
        /// Stop coil.
        stop: Option<u16>,
    },
    /// A holding register written `value`, then 0 after `hold` (a push button).
    Pulse {
        /// Register pulsed to start.
        start: u16,
        /// Register pulsed to stop.
        stop: u16,
        /// Value of the pulse.
        value: u16,
        /// How long the "button" stays pressed.
        hold: Duration,
    },
    /// A start register and a stop register, each written its value.
    Registers {
        /// Start register.
        start: u16,
        /// Written to `start`.
        start_value: u16,
        /// Stop register.
        stop: u16,
        /// Written to `stop`.
        stop_value: u16,
    },
}

impl Control {
    /// The table the method writes.
    pub fn table(&self) -> Table {
        match self {
            Self::Coils { .. } => Table::Coil,
            _ => Table::Holding,
        }
    }
}

/// Why a map cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MapProblem {
    /// A coil or discrete input with a scale, a width or a sign.
    #[error("a coil or discrete input is one bit: it has no scale, no second word and no sign")]
    BitWithFormat,
    /// Not 1 or 2 words.
    #[error("a value spans 1 or 2 registers")]
    Words,
    /// A 32-bit value at 65535.
    #[error("65535 has no next register for the second word")]
    NoNextRegister,
    /// Zero or negative scale.
    #[error("the scale must be a non-zero number")]
    Scale,
    /// Two commands share a key.
    #[error("each control key must differ")]
    SameKey,
}

/// The register map of a generator controller: every value optional (a controller that
/// lacks one reads as `None` there), a control method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorMap {
    /// Modbus slave id of the controller.
    pub slave: u8,
    /// Values −1…−8 mean "not available" (GenComm).
    pub sentinels: bool,
    /// Fuel level, %.
    pub fuel_percent: Option<Point>,
    /// Engine battery, V.
    pub battery_volts: Option<Point>,
    /// Engine state; decoded through `engine_codes`, or, for a bit, 1 = running.
    /// Without it the engine runs when the generator frequency is available.
    pub engine_state: Option<Point>,
    /// Engine state codes (register value → state); values not listed read as
    /// `EngineState::Other`.
    pub engine_codes: Vec<(u16, EngineState)>,
    /// Engine run time, s.
    pub run_time_seconds: Option<Point>,
    /// Number of starts.
    pub starts: Option<Point>,
    /// Generator frequency, Hz.
    pub generator_hz: Option<Point>,
    /// Mains frequency, Hz.
    pub mains_hz: Option<Point>,
    /// A source is available above this frequency, 0.1 Hz.
    pub available_above_decihertz: u16,
    /// Remote start/stop.
    pub control: Control,
}

/// Controller families with a preset map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// Deep Sea (GenComm).
    DeepSea,
    /// SmartGen HGM series.
    SmartGen,
    /// Datakom D-500.
    Datakom,
}

/// GenComm engine states.
const STANDARD_CODES: [(u16, EngineState); 5] = [
    (0, EngineState::Stopped),
    (1, EngineState::PreStart),
    (2, EngineState::Warming),
    (3, EngineState::Running),
    (4, EngineState::Cooling),
];

impl GeneratorMap {
    /// The preset of a family (see the module docs for sources and assumptions).
    pub fn preset(p: Preset) -> Self {
        match p {
            Preset::DeepSea => Self {
                slave: 1,
                sentinels: true,
                fuel_percent: Some(Point::holding(1027)),
                battery_volts: Some(Point::holding(1029).scaled(1, 10)),
                engine_state: Some(Point::holding(1408)),
                engine_codes: STANDARD_CODES.to_vec(),
                run_time_seconds: Some(Point::holding(1798).wide(WordOrder::HighFirst)),
                starts: Some(Point::holding(1808).wide(WordOrder::HighFirst)),
                generator_hz: Some(Point::holding(1031).scaled(1, 10)),
                mains_hz: Some(Point::holding(1059).scaled(1, 10)),
                available_above_decihertz: 400,
                control: Control::Key {
                    register: 4104,
                    start: 35732,
                    stop: 35733,
                    auto: Some(35701),
                },
            },
            Preset::SmartGen => Self {
                slave: 1,
                sentinels: false,
                fuel_percent: Some(Point::holding(64)),
                battery_volts: Some(Point::holding(55).scaled(1, 10)),
                engine_state: Some(Point::holding(40)),
                engine_codes: STANDARD_CODES.to_vec(),
                run_time_seconds: Some(
                    Point::holding(70)
                        .wide(WordOrder::HighFirst)
                        .scaled(3600, 1),
                ),
                starts: Some(Point::holding(74).wide(WordOrder::HighFirst)),
                generator_hz: Some(Point::holding(14).scaled(1, 100)),
                mains_hz: Some(Point::holding(6).scaled(1, 100)),
                available_above_decihertz: 400,
                control: Control::Coils {
                    start: 1,
                    stop: Some(0),
                },
            },
            Preset::Datakom => Self {
                slave: 1,
                sentinels: false,
                fuel_percent: Some(Point::holding(10363).scaled(1, 10)),
                battery_volts: Some(Point::holding(10341).scaled(1, 100)),
                engine_state: None,
                engine_codes: Vec::new(),
                // 0.01 h = 36 s.
                run_time_seconds: Some(
                    Point::holding(10622)
                        .wide(WordOrder::LowFirst)
                        .scaled(36, 1),
                ),
                starts: None,
                generator_hz: Some(Point::holding(10339).scaled(1, 100)),
                mains_hz: None,
                available_above_decihertz: 400,
                control: Control::Pulse {
                    start: 10900,
                    stop: 10901,
                    value: 1,
                    hold: Duration::from_millis(500),
                },
            },
        }
    }

    /// Every mapped value with its name (for checks, reads and emulators).
    pub fn points(&self) -> Vec<(&'static str, Point)> {
        [
            ("fuel_percent", self.fuel_percent),
            ("battery_volts", self.battery_volts),
            ("engine_state", self.engine_state),
            ("run_time_seconds", self.run_time_seconds),
            ("starts", self.starts),
            ("generator_hz", self.generator_hz),
            ("mains_hz", self.mains_hz),
        ]
        .into_iter()
        .filter_map(|(n, p)| p.map(|p| (n, p)))
        .collect()
    }

    /// Every problem that stops this map from working, with the value it is about
    /// (`"control"` for the control method).
    pub fn check(&self) -> Vec<(&'static str, MapProblem)> {
        let mut out: Vec<_> = self
            .points()
            .into_iter()
            .filter_map(|(n, p)| p.problem().map(|e| (n, e)))
            .collect();
        if let Control::Key {
            register,
            start,
            stop,
            auto,
        } = &self.control
        {
            if *register == u16::MAX {
                out.push(("control", MapProblem::NoNextRegister));
            }
            if start == stop || Some(*start) == *auto || Some(*stop) == *auto {
                out.push(("control", MapProblem::SameKey));
            }
        }
        out
    }

    /// The engine state from its raw register value.
    pub fn engine(&self, raw: u16) -> EngineState {
        self.engine_codes
            .iter()
            .find(|(v, _)| *v == raw)
            .map_or(EngineState::Other(raw), |(_, s)| *s)
    }

    /// The register value of a state (for emulators): the first code for it.
    pub fn engine_code(&self, s: EngineState) -> u16 {
        self.engine_codes
            .iter()
            .find(|(_, st)| *st == s)
            .map_or(s.register(), |(v, _)| *v)
    }
}

impl Default for GeneratorMap {
    fn default() -> Self {
        Self::preset(Preset::DeepSea)
    }
}

/// Engine state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineState {
    /// 0
    Stopped,
    /// 1
    PreStart,
    /// 2
    Warming,
    /// 3
    Running,
    /// 4
    Cooling,
    /// Any other value.
    Other(u16),
}

impl EngineState {
    /// From a GenComm register value.
    pub fn from_register(v: u16) -> Self {
        STANDARD_CODES
            .iter()
            .find(|(c, _)| *c == v)
            .map_or(Self::Other(v), |(_, s)| *s)
    }

    /// The GenComm register value.
    pub fn register(self) -> u16 {
        match self {
            Self::Stopped => 0,
            Self::PreStart => 1,
            Self::Warming => 2,
            Self::Running => 3,
            Self::Cooling => 4,
            Self::Other(o) => o,
        }
    }

    /// Whether the engine turns (warming, running or cooling down).
    pub fn is_running(self) -> bool {
        matches!(self, Self::Warming | Self::Running | Self::Cooling)
    }
}

/// The latest values read from a controller; `None` where the controller says "not
/// available" or the map has no such value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorReading {
    /// Engine state.
    pub engine: Option<EngineState>,
    /// Fuel level, %.
    pub fuel_percent: Option<u16>,
    /// Engine battery, mV.
    pub battery_mv: Option<u32>,
    /// Total engine run time, s.
    pub run_seconds: Option<u32>,
    /// Number of starts.
    pub starts: Option<u32>,
    /// Generator output present.
    pub generator_available: Option<bool>,
    /// Mains present.
    pub mains_available: Option<bool>,
}

impl GeneratorReading {
    /// Whether the engine turns; `false` when unknown.
    pub fn running(&self) -> bool {
        self.engine.is_some_and(EngineState::is_running)
    }
}

/// A remote command to the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorCommand {
    /// Start the engine.
    Start,
    /// Stop the engine.
    Stop,
    /// Return to automatic mode.
    Auto,
}

/// Failure to talk to the controller.
#[derive(Debug, Error)]
pub enum GeneratorError {
    /// No answer within the timeout.
    #[error("generator controller did not answer within {0:?}")]
    Timeout(Duration),
    /// Serial port or framing failure.
    #[error("modbus transport: {0}")]
    Transport(#[from] tokio_modbus::Error),
    /// The controller refused the request.
    #[error("controller answered exception {0}")]
    Exception(tokio_modbus::ExceptionCode),
    /// The controller answered fewer values than asked for.
    #[error("controller answered {got} values, asked {want}")]
    ShortReply {
        /// Values received.
        got: usize,
        /// Values asked for.
        want: usize,
    },
    /// The map's control method has no such command (e.g. `Auto` with coils).
    #[error("this controller's control method has no {0:?} command")]
    Unsupported(GeneratorCommand),
    /// The driver is gone (its task stopped).
    #[error("generator driver stopped")]
    DriverGone,
    /// The serial port could not be opened.
    #[error("opening generator port: {0}")]
    Open(String),
}

/// Raw words read for each mapped value, in [`GeneratorMap::points`] order (a bit
/// reads as one word, 0 or 1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawValues(pub Vec<(&'static str, Vec<u16>)>);

impl RawValues {
    fn get(&self, name: &str) -> Option<&[u16]> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, w)| w.as_slice())
    }

    /// Decodes raw values into a reading (pure).
    pub fn decode(&self, map: &GeneratorMap) -> GeneratorReading {
        let value = |name: &str, p: Option<Point>, unit: i64| -> Option<i64> {
            p?.value(self.get(name)?, map.sentinels, unit)
        };
        let hz_avail =
            |name, p| value(name, p, 10).map(|dhz| dhz > i64::from(map.available_above_decihertz));
        let generator_available = hz_avail("generator_hz", map.generator_hz);
        let engine = match map.engine_state {
            Some(p) if p.table.is_bit() => self.get("engine_state").and_then(|w| {
                w.first().map(|b| {
                    if *b != 0 {
                        EngineState::Running
                    } else {
                        EngineState::Stopped
                    }
                })
            }),
            Some(p) => p
                .raw(self.get("engine_state").unwrap_or(&[]), map.sentinels)
                .and_then(|v| u16::try_from(v).ok())
                .map(|v| map.engine(v)),
            None => generator_available.map(|on| {
                if on {
                    EngineState::Running
                } else {
                    EngineState::Stopped
                }
            }),
        };
        let fit16 = |v: Option<i64>| v.and_then(|v| u16::try_from(v).ok());
        let fit32 = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
        GeneratorReading {
            engine,
            fuel_percent: fit16(value("fuel_percent", map.fuel_percent, 1)),
            battery_mv: fit32(value("battery_volts", map.battery_volts, 1000)),
            run_seconds: fit32(value("run_time_seconds", map.run_time_seconds, 1)),
            starts: fit32(value("starts", map.starts, 1)),
            generator_available,
            mains_available: hz_avail("mains_hz", map.mains_hz),
        }
    }
}

async fn bounded<T>(
    timeout: Duration,
    f: impl Future<Output = tokio_modbus::Result<T>>,
) -> Result<T, GeneratorError> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| GeneratorError::Timeout(timeout))??
        .map_err(GeneratorError::Exception)
}

async fn read_point(
    ctx: &mut Context,
    p: Point,
    timeout: Duration,
) -> Result<Vec<u16>, GeneratorError> {
    let n = u16::from(p.words);
    let words: Vec<u16> = match p.table {
        Table::Holding => bounded(timeout, ctx.read_holding_registers(p.address, n)).await?,
        Table::Input => bounded(timeout, ctx.read_input_registers(p.address, n)).await?,
        Table::Coil => bounded(timeout, ctx.read_coils(p.address, 1))
            .await?
            .into_iter()
            .take(1)
            .map(u16::from)
            .collect(),
        Table::Discrete => bounded(timeout, ctx.read_discrete_inputs(p.address, 1))
            .await?
            .into_iter()
            .take(1)
            .map(u16::from)
            .collect(),
    };
    let want = if p.table.is_bit() { 1 } else { usize::from(n) };
    if words.len() < want {
        return Err(GeneratorError::ShortReply {
            got: words.len(),
            want,
        });
    }
    Ok(words[..want].to_vec())
}

/// Reads every mapped value; each request is bounded by `timeout`.
pub async fn read(
    ctx: &mut Context,
    map: &GeneratorMap,
    timeout: Duration,
) -> Result<GeneratorReading, GeneratorError> {
    let mut raw = RawValues::default();
    for (name, p) in map.points() {
        raw.0.push((name, read_point(ctx, p, timeout).await?));
    }
    Ok(raw.decode(map))
}

/// Sends a remote command by the map's method; each request bounded by `timeout`.
pub async fn send(
    ctx: &mut Context,
    map: &GeneratorMap,
    command: GeneratorCommand,
    timeout: Duration,
) -> Result<(), GeneratorError> {
    use GeneratorCommand::{Auto, Start, Stop};
    match (&map.control, command) {
        (
            Control::Key {
                register,
                start,
                stop,
                auto,
            },
            c,
        ) => {
            let key = match c {
                Start => *start,
                Stop => *stop,
                Auto => auto.ok_or(GeneratorError::Unsupported(c))?,
            };
            bounded(
                timeout,
                ctx.write_multiple_registers(*register, &[key, u16::MAX - key]),
            )
            .await
        }
        (Control::Coils { start, .. }, Start) => {
            bounded(timeout, ctx.write_single_coil(*start, true)).await
        }
        (
            Control::Coils {
                stop: Some(stop), ..
            },
            Stop,
        ) => bounded(timeout, ctx.write_single_coil(*stop, true)).await,
        (Control::Coils { start, stop: None }, Stop) => {
            bounded(timeout, ctx.write_single_coil(*start, false)).await
        }
        (
            Control::Pulse {
                start,
                stop,
                value,
                hold,
            },
            c @ (Start | Stop),
        ) => {
            let reg = if c == Start { *start } else { *stop };
            bounded(timeout, ctx.write_single_register(reg, *value)).await?;
            tokio::time::sleep(*hold).await;
            bounded(timeout, ctx.write_single_register(reg, 0)).await
        }
        (
            Control::Registers {
                start,
                start_value,
                stop,
                stop_value,
            },
            c @ (Start | Stop),
        ) => {
            let (reg, v) = if c == Start {
                (*start, *start_value)
            } else {
                (*stop, *stop_value)
            };
            bounded(timeout, ctx.write_single_register(reg, v)).await
        }
        (_, c) => Err(GeneratorError::Unsupported(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn raw(pairs: &[(&'static str, &[u16])]) -> RawValues {
        RawValues(pairs.iter().map(|(n, w)| (*n, w.to_vec())).collect())
    }

    #[test]
    fn sentinels_are_not_numbers() {
        let p16 = Point::holding(0);
        let p32 = Point::holding(0).wide(WordOrder::HighFirst);
        for s in 1..=8u16 {
            assert_eq!(p16.raw(&[0u16.wrapping_sub(s)], true), None);
            assert_eq!(p32.raw(&[0xFFFF, 0u16.wrapping_sub(s)], true), None);
        }
        assert_eq!(p16.raw(&[0xFFFF], false), Some(0xFFFF));
        assert_eq!(p16.raw(&[0xFFF7], true), Some(0xFFF7));
        assert_eq!(p32.raw(&[1, 2], true), Some(0x0001_0002));
    }

    #[test]
    fn decodes_deep_sea_values() {
        let map = GeneratorMap::preset(Preset::DeepSea);
        let r = raw(&[
            ("fuel_percent", &[73]),
            ("battery_volts", &[128]),
            ("engine_state", &[3]),
            ("run_time_seconds", &[0x0001, 0x86A0]),
            ("starts", &[0, 412]),
            ("generator_hz", &[500]),
            ("mains_hz", &[0xFFFF]),
        ])
        .decode(&map);
        assert_eq!(r.fuel_percent, Some(73));
        assert_eq!(r.battery_mv, Some(12_800));
        assert_eq!(r.engine, Some(EngineState::Running));
        assert!(r.running());
        assert_eq!(r.run_seconds, Some(100_000));
        assert_eq!(r.starts, Some(412));
        assert_eq!(r.generator_available, Some(true));
        assert_eq!(r.mains_available, None);
    }

    #[test]
    fn scales_word_orders_signs_and_bits() {
        let map = GeneratorMap {
            sentinels: false,
            fuel_percent: Some(Point::holding(1).in_table(Table::Input).scaled(1, 10)),
            battery_volts: Some(Point::holding(2).signed().scaled(1, 100)),
            engine_state: Some(Point::holding(3).in_table(Table::Discrete)),
            run_time_seconds: Some(Point::holding(4).wide(WordOrder::LowFirst).scaled(36, 1)),
            starts: None,
            generator_hz: None,
            mains_hz: None,
            ..GeneratorMap::default()
        };
        let r = raw(&[
            ("fuel_percent", &[734]),
            ("battery_volts", &[1280]),
            ("engine_state", &[1]),
            ("run_time_seconds", &[0x86A0, 0x0001]),
        ])
        .decode(&map);
        assert_eq!(r.fuel_percent, Some(73));
        assert_eq!(r.battery_mv, Some(12_800));
        assert_eq!(r.engine, Some(EngineState::Running));
        assert_eq!(r.run_seconds, Some(3_600_000));
        assert_eq!(r.starts, None);
        // A negative value does not fit a voltage: unknown, not a huge number.
        let r = raw(&[("battery_volts", &[0xFF00])]).decode(&map);
        assert_eq!(r.battery_mv, None);
    }

    #[test]
    fn scale_from_decimal_is_exact() {
        assert_eq!(Scale::from_f64(0.1), Some(Scale { num: 1, den: 10 }));
        assert_eq!(Scale::from_f64(0.01), Some(Scale { num: 1, den: 100 }));
        assert_eq!(Scale::from_f64(3600.0), Some(Scale { num: 3600, den: 1 }));
        assert_eq!(Scale::from_f64(0.0), None);
        assert_eq!(Scale::from_f64(f64::NAN), None);
    }

    #[test]
    fn presets_work_and_bad_maps_are_named() {
        for p in [Preset::DeepSea, Preset::SmartGen, Preset::Datakom] {
            assert_eq!(GeneratorMap::preset(p).check(), vec![], "{p:?}");
        }
        let bad = GeneratorMap {
            fuel_percent: Some(Point::holding(1).in_table(Table::Coil).scaled(1, 10)),
            starts: Some(Point::holding(u16::MAX).wide(WordOrder::HighFirst)),
            ..GeneratorMap::default()
        };
        assert_eq!(
            bad.check(),
            vec![
                ("fuel_percent", MapProblem::BitWithFormat),
                ("starts", MapProblem::NoNextRegister)
            ]
        );
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(
            v in 0i64..1_000_000,
            signed in any::<bool>(),
            low_first in any::<bool>(),
            den in prop::sample::select(vec![1i64, 10, 100]),
        ) {
            let order = if low_first { WordOrder::LowFirst } else { WordOrder::HighFirst };
            let mut p = Point::holding(10).wide(order).scaled(1, den);
            p.signed = signed;
            // v in 1/den units: encode and read back at unit `den`.
            let words = p.encode(v, den);
            prop_assert_eq!(p.value(&words, false, den), Some(v));
        }
    }
}
