//! Generator controller over Modbus RTU: the register map (a plain struct, Deep Sea
//! GenComm defaults, so other makes fit by configuration), the pure decoding of register
//! values into a [`GeneratorReading`], and the client calls that read it and send remote
//! start/stop through `tokio-modbus`.
//!
//! Guarantees: a register holding a "not available" sentinel (−1…−8 as a signed value, or
//! as a signed 32-bit value for two-register quantities) reads as `None`, never as a
//! number; every Modbus call is bounded by the caller's timeout; a control command is the
//! GenComm pair `[key, 65535 − key]` written in one request.

use std::time::Duration;

use thiserror::Error;
use tokio_modbus::client::{Context, Reader, Writer};

/// Where a controller keeps each value (holding registers, zero-based addresses as sent
/// on the wire). Defaults are Deep Sea GenComm (register = page × 256 + offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorRegisters {
    /// Modbus slave id of the controller.
    pub slave: u8,
    /// Fuel level, %.
    pub fuel_percent: u16,
    /// Engine battery voltage, 0.1 V.
    pub battery_decivolts: u16,
    /// Engine state (0 stopped, 1 pre-start, 2 warming, 3 running, 4 cooling).
    pub engine_state: u16,
    /// Engine run time in seconds, u32 high word first (this register and the next).
    pub run_time_seconds: u16,
    /// Number of starts, u32 high word first (this register and the next).
    pub starts: u16,
    /// Generator frequency, 0.1 Hz; the generator is "available" above
    /// `available_above_decihertz`.
    pub generator_frequency: Option<u16>,
    /// Mains frequency, 0.1 Hz; mains is "available" above `available_above_decihertz`.
    pub mains_frequency: Option<u16>,
    /// Frequency threshold for availability, 0.1 Hz.
    pub available_above_decihertz: u16,
    /// First of the two control registers (`[key, 65535 − key]`).
    pub control: u16,
    /// Key that starts the engine (and selects manual mode).
    pub key_start: u16,
    /// Key that stops the engine.
    pub key_stop: u16,
    /// Key that returns the controller to automatic mode.
    pub key_auto: u16,
}

impl Default for GeneratorRegisters {
    fn default() -> Self {
        Self {
            slave: 1,
            fuel_percent: 1027,
            battery_decivolts: 1029,
            engine_state: 1408,
            run_time_seconds: 1798,
            starts: 1808,
            generator_frequency: Some(1031),
            mains_frequency: Some(1059),
            available_above_decihertz: 400,
            control: 4104,
            key_start: 35732,
            key_stop: 35733,
            key_auto: 35701,
        }
    }
}

/// Engine state register.
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
    /// From the register value.
    pub fn from_register(v: u16) -> Self {
        match v {
            0 => Self::Stopped,
            1 => Self::PreStart,
            2 => Self::Warming,
            3 => Self::Running,
            4 => Self::Cooling,
            o => Self::Other(o),
        }
    }

    /// The register value.
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
/// available".
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

impl GeneratorCommand {
    /// The `[key, 65535 − key]` words for this command.
    pub fn words(self, regs: &GeneratorRegisters) -> [u16; 2] {
        let key = match self {
            Self::Start => regs.key_start,
            Self::Stop => regs.key_stop,
            Self::Auto => regs.key_auto,
        };
        [key, u16::MAX - key]
    }
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
    /// The controller answered fewer registers than asked for.
    #[error("controller answered {got} registers, asked {want}")]
    ShortReply {
        /// Registers received.
        got: usize,
        /// Registers asked for.
        want: usize,
    },
    /// The driver is gone (its task stopped).
    #[error("generator driver stopped")]
    DriverGone,
    /// The serial port could not be opened.
    #[error("opening generator port: {0}")]
    Open(String),
}

/// A 16-bit register value, `None` for the "not available" sentinels −1…−8.
pub fn available16(v: u16) -> Option<u16> {
    let s = v as i16;
    if (-8..=-1).contains(&s) {
        None
    } else {
        Some(v)
    }
}

/// A 32-bit value from two registers (high word first), `None` for −1…−8.
pub fn available32(hi: u16, lo: u16) -> Option<u32> {
    let v = (u32::from(hi) << 16) | u32::from(lo);
    if (-8..=-1).contains(&(v as i32)) {
        None
    } else {
        Some(v)
    }
}

/// Raw register values read from a controller, one per entry of the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawRegisters {
    /// Fuel register.
    pub fuel: u16,
    /// Battery register.
    pub battery: u16,
    /// Engine state register.
    pub engine: u16,
    /// Run time, high and low words.
    pub run_time: [u16; 2],
    /// Starts, high and low words.
    pub starts: [u16; 2],
    /// Generator frequency, if mapped.
    pub generator_frequency: Option<u16>,
    /// Mains frequency, if mapped.
    pub mains_frequency: Option<u16>,
}

impl RawRegisters {
    /// Decodes raw values into a reading (pure).
    pub fn decode(&self, regs: &GeneratorRegisters) -> GeneratorReading {
        let avail = |f: Option<u16>| {
            f.and_then(available16)
                .map(|hz| hz > regs.available_above_decihertz)
        };
        GeneratorReading {
            engine: available16(self.engine).map(EngineState::from_register),
            fuel_percent: available16(self.fuel),
            battery_mv: available16(self.battery).map(|d| u32::from(d) * 100),
            run_seconds: available32(self.run_time[0], self.run_time[1]),
            starts: available32(self.starts[0], self.starts[1]),
            generator_available: avail(self.generator_frequency),
            mains_available: avail(self.mains_frequency),
        }
    }
}

async fn read_regs(
    ctx: &mut Context,
    addr: u16,
    count: u16,
    timeout: Duration,
) -> Result<Vec<u16>, GeneratorError> {
    let words = tokio::time::timeout(timeout, ctx.read_holding_registers(addr, count))
        .await
        .map_err(|_| GeneratorError::Timeout(timeout))??
        .map_err(GeneratorError::Exception)?;
    if words.len() < usize::from(count) {
        return Err(GeneratorError::ShortReply {
            got: words.len(),
            want: usize::from(count),
        });
    }
    Ok(words)
}

/// Reads every mapped register; each request is bounded by `timeout`.
pub async fn read(
    ctx: &mut Context,
    regs: &GeneratorRegisters,
    timeout: Duration,
) -> Result<GeneratorReading, GeneratorError> {
    let one = async |ctx: &mut Context, addr: u16| -> Result<u16, GeneratorError> {
        Ok(read_regs(ctx, addr, 1, timeout).await?[0])
    };
    let two = async |ctx: &mut Context, addr: u16| -> Result<[u16; 2], GeneratorError> {
        let w = read_regs(ctx, addr, 2, timeout).await?;
        Ok([w[0], w[1]])
    };
    let raw = RawRegisters {
        fuel: one(ctx, regs.fuel_percent).await?,
        battery: one(ctx, regs.battery_decivolts).await?,
        engine: one(ctx, regs.engine_state).await?,
        run_time: two(ctx, regs.run_time_seconds).await?,
        starts: two(ctx, regs.starts).await?,
        generator_frequency: match regs.generator_frequency {
            Some(a) => Some(one(ctx, a).await?),
            None => None,
        },
        mains_frequency: match regs.mains_frequency {
            Some(a) => Some(one(ctx, a).await?),
            None => None,
        },
    };
    Ok(raw.decode(regs))
}

/// Sends a remote command; bounded by `timeout`.
pub async fn send(
    ctx: &mut Context,
    regs: &GeneratorRegisters,
    command: GeneratorCommand,
    timeout: Duration,
) -> Result<(), GeneratorError> {
    tokio::time::timeout(
        timeout,
        ctx.write_multiple_registers(regs.control, &command.words(regs)),
    )
    .await
    .map_err(|_| GeneratorError::Timeout(timeout))??
    .map_err(GeneratorError::Exception)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sentinels_are_not_numbers() {
        for s in 1..=8u16 {
            assert_eq!(available16(0u16.wrapping_sub(s)), None);
            assert_eq!(available32(0xFFFF, 0u16.wrapping_sub(s)), None);
        }
        assert_eq!(available16(0xFFF7), Some(0xFFF7));
        assert_eq!(available16(0), Some(0));
        assert_eq!(available32(0x0001, 0x0002), Some(0x0001_0002));
    }

    #[test]
    fn decodes_deep_sea_values() {
        let regs = GeneratorRegisters::default();
        let raw = RawRegisters {
            fuel: 73,
            battery: 128,
            engine: 3,
            run_time: [0x0001, 0x86A0],
            starts: [0, 412],
            generator_frequency: Some(500),
            mains_frequency: Some(0xFFFF),
        };
        let r = raw.decode(&regs);
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
    fn command_words_are_key_and_complement() {
        let regs = GeneratorRegisters::default();
        assert_eq!(GeneratorCommand::Start.words(&regs), [35732, 29803]);
        assert_eq!(GeneratorCommand::Stop.words(&regs), [35733, 29802]);
        assert_eq!(GeneratorCommand::Auto.words(&regs), [35701, 29834]);
    }

    proptest! {
        #[test]
        fn sentinel_rule_matches_signed_reading(v in any::<u16>()) {
            let s = v as i16;
            prop_assert_eq!(available16(v).is_none(), (-8..=-1).contains(&s));
        }
    }
}
