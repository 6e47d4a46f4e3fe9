//! Victron VE.Direct text protocol: a sans-IO block parser, typed readings for MPPT solar
//! chargers and BMV/SmartShunt battery monitors, and an encoder (used by the emulator).
//!
//! A block is a run of fields `\r\n<label>\t<value>` closed by `\r\nChecksum\t<byte>`;
//! all bytes of the block, from the first `\r` to the checksum byte, sum to 0 mod 256.
//! The checksum byte may be any value, including CR, LF, TAB or `:`.
//!
//! Guarantees of [`Parser`]: it accepts bytes in chunks of any size (a block may be split
//! anywhere); it only returns blocks whose checksum verifies; a block with a bad checksum
//! is dropped and counted; `:`-HEX frames (which devices interleave, up to the next `\n`)
//! are skipped and left out of the checksum; oversized labels, values, blocks or HEX
//! frames are dropped and counted, so memory is bounded; it never panics on any input.
//! The first block after start-up is usually cut; if it fails its checksum it is counted
//! as `unsynced` rather than as a bad checksum.

use thiserror::Error;

const MAX_LABEL: usize = 16;
const MAX_VALUE: usize = 64;
const MAX_FIELDS: usize = 64;
const MAX_HEX: usize = 512;
const CHECKSUM_LABEL: &str = "Checksum";

/// One `<label>\t<value>` field of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Field label, e.g. `V` or `PPV`.
    pub label: String,
    /// Raw value text, e.g. `12800` or `ON`.
    pub value: String,
}

/// A complete block whose checksum verified. The `Checksum` field itself is not included.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Block {
    /// Fields in wire order.
    pub fields: Vec<Field>,
}

impl Block {
    /// The value of the first field with this label.
    pub fn get(&self, label: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.label == label)
            .map(|f| f.value.as_str())
    }
}

/// What the parser has seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParserStats {
    /// Blocks returned (checksum verified).
    pub blocks: u64,
    /// Complete blocks dropped because their checksum did not verify.
    pub bad_checksum: u64,
    /// Blocks dropped because a label, value or the block was oversized or malformed.
    pub framing_errors: u64,
    /// `:`-HEX frames skipped.
    pub hex_frames: u64,
    /// The cut first block after start-up, dropped without counting it as bad.
    pub unsynced: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between blocks: waiting for the `\n` that starts one.
    Idle {
        saw_cr: bool,
    },
    /// Just after a `\n`: the next byte starts a label.
    LineStart,
    Label,
    Value,
    /// After `Checksum\t`: the next byte is the checksum, whatever it is.
    ChecksumByte,
    /// Inside a `:`-HEX frame; resumes `resume` after its `\n`.
    Hex {
        resume: Resume,
        len: usize,
    },
}

/// States a HEX frame can interrupt (every state but `ChecksumByte` and `Hex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    Idle,
    LineStart,
    Label,
    Value,
}

/// Sans-IO VE.Direct text-protocol parser. Feed it bytes, get verified blocks.
#[derive(Debug, Clone)]
pub struct Parser {
    state: State,
    sum: u8,
    label: Vec<u8>,
    value: Vec<u8>,
    fields: Vec<Field>,
    synced: bool,
    stats: ParserStats,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    /// A parser that has not yet seen the start of a block.
    pub fn new() -> Self {
        Self {
            state: State::Idle { saw_cr: false },
            sum: 0,
            label: Vec::with_capacity(MAX_LABEL),
            value: Vec::with_capacity(MAX_VALUE),
            fields: Vec::new(),
            synced: false,
            stats: ParserStats::default(),
        }
    }

    /// Counters since creation.
    pub fn stats(&self) -> ParserStats {
        self.stats
    }

    /// Feeds bytes; returns the blocks completed by them, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Block> {
        let mut out = Vec::new();
        for &b in bytes {
            if let Some(block) = self.push(b) {
                out.push(block);
            }
        }
        out
    }

    fn push(&mut self, b: u8) -> Option<Block> {
        if b == b':' {
            let resume = match self.state {
                State::Idle { .. } => Some(Resume::Idle),
                State::LineStart => Some(Resume::LineStart),
                State::Label => Some(Resume::Label),
                State::Value => Some(Resume::Value),
                State::ChecksumByte | State::Hex { .. } => None,
            };
            if let Some(resume) = resume {
                self.state = State::Hex { resume, len: 0 };
                return None;
            }
        }
        match self.state {
            State::Idle { saw_cr } => {
                match b {
                    b'\r' => self.state = State::Idle { saw_cr: true },
                    b'\n' => {
                        self.sum = if saw_cr {
                            b'\r'.wrapping_add(b'\n')
                        } else {
                            b'\n'
                        };
                        self.fields.clear();
                        self.state = State::LineStart;
                    }
                    _ => self.state = State::Idle { saw_cr: false },
                }
                None
            }
            State::LineStart => {
                self.add(b);
                self.label.clear();
                self.label.push(b);
                self.state = State::Label;
                None
            }
            State::Label => {
                self.add(b);
                if b == b'\t' {
                    if self.label == CHECKSUM_LABEL.as_bytes() {
                        self.state = State::ChecksumByte;
                    } else {
                        self.value.clear();
                        self.state = State::Value;
                    }
                } else if self.label.len() >= MAX_LABEL || b == b'\r' || b == b'\n' {
                    self.framing_error();
                } else {
                    self.label.push(b);
                }
                None
            }
            State::Value => {
                self.add(b);
                match b {
                    b'\r' => {}
                    b'\n' => {
                        if self.fields.len() >= MAX_FIELDS {
                            self.framing_error();
                            return None;
                        }
                        self.fields.push(Field {
                            label: String::from_utf8_lossy(&self.label).into_owned(),
                            value: String::from_utf8_lossy(&self.value).into_owned(),
                        });
                        self.state = State::LineStart;
                    }
                    _ if self.value.len() >= MAX_VALUE => self.framing_error(),
                    _ => self.value.push(b),
                }
                None
            }
            State::ChecksumByte => {
                self.add(b);
                self.state = State::Idle { saw_cr: false };
                let fields = std::mem::take(&mut self.fields);
                let was_synced = std::mem::replace(&mut self.synced, true);
                if self.sum == 0 {
                    self.stats.blocks += 1;
                    Some(Block { fields })
                } else {
                    if was_synced {
                        self.stats.bad_checksum += 1;
                    } else {
                        self.stats.unsynced += 1;
                    }
                    None
                }
            }
            State::Hex { resume, len } => {
                if b == b'\n' {
                    self.stats.hex_frames += 1;
                    self.state = match resume {
                        Resume::Idle => State::Idle { saw_cr: false },
                        Resume::LineStart => State::LineStart,
                        Resume::Label => State::Label,
                        Resume::Value => State::Value,
                    };
                } else if len >= MAX_HEX {
                    self.framing_error();
                } else {
                    self.state = State::Hex {
                        resume,
                        len: len + 1,
                    };
                }
                None
            }
        }
    }

    fn add(&mut self, b: u8) {
        self.sum = self.sum.wrapping_add(b);
    }

    fn framing_error(&mut self) {
        if self.synced {
            self.stats.framing_errors += 1;
        } else {
            self.stats.unsynced += 1;
        }
        self.synced = true;
        self.fields.clear();
        self.state = State::Idle { saw_cr: false };
    }
}

/// Encodes fields as one block with a correct checksum.
pub fn encode_block<L: AsRef<str>, V: AsRef<str>>(fields: &[(L, V)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.len() * 12 + 12);
    for (label, value) in fields {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(label.as_ref().as_bytes());
        out.push(b'\t');
        out.extend_from_slice(value.as_ref().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(CHECKSUM_LABEL.as_bytes());
    out.push(b'\t');
    let sum = out.iter().fold(0u8, |acc, &b| acc.wrapping_add(b));
    out.push(0u8.wrapping_sub(sum));
    out
}

/// A field was missing or could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FieldError {
    /// A field the reading needs is not in the block.
    #[error("VE.Direct field {0} missing")]
    Missing(&'static str),
    /// A field's value is not what its label promises.
    #[error("VE.Direct field {label} has unreadable value {value:?}")]
    Invalid {
        /// The label.
        label: &'static str,
        /// The raw value.
        value: String,
    },
}

/// MPPT charger state (`CS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeState {
    /// 0
    Off,
    /// 2
    Fault,
    /// 3
    Bulk,
    /// 4
    Absorption,
    /// 5
    Float,
    /// 7
    Equalize,
    /// 245
    Starting,
    /// 252
    ExternalControl,
    /// Any other code.
    Other(u8),
}

impl ChargeState {
    /// From the `CS` code.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Off,
            2 => Self::Fault,
            3 => Self::Bulk,
            4 => Self::Absorption,
            5 => Self::Float,
            7 => Self::Equalize,
            245 => Self::Starting,
            252 => Self::ExternalControl,
            other => Self::Other(other),
        }
    }

    /// The `CS` code.
    pub fn code(self) -> u8 {
        match self {
            Self::Off => 0,
            Self::Fault => 2,
            Self::Bulk => 3,
            Self::Absorption => 4,
            Self::Float => 5,
            Self::Equalize => 7,
            Self::Starting => 245,
            Self::ExternalControl => 252,
            Self::Other(c) => c,
        }
    }
}

/// A reading of an MPPT solar charger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpptReading {
    /// `V`: battery voltage, mV.
    pub battery_mv: i32,
    /// `I`: battery current, mA (positive = charging).
    pub battery_ma: i32,
    /// `VPV`: panel voltage, mV.
    pub pv_mv: u32,
    /// `PPV`: panel power, W.
    pub pv_w: u32,
    /// `CS`: charger state.
    pub state: ChargeState,
    /// `ERR`: error code (0 = none).
    pub error: Option<u16>,
    /// `LOAD`: load output on, when the model has one.
    pub load_on: Option<bool>,
    /// `H19`: total yield, 0.01 kWh.
    pub yield_total_10wh: Option<u32>,
    /// `H20`: yield today, 0.01 kWh.
    pub yield_today_10wh: Option<u32>,
    /// `H21`: maximum power today, W.
    pub max_power_today_w: Option<u32>,
    /// `H22`: yield yesterday, 0.01 kWh.
    pub yield_yesterday_10wh: Option<u32>,
    /// `H23`: maximum power yesterday, W.
    pub max_power_yesterday_w: Option<u32>,
}

/// A reading of a BMV or SmartShunt battery monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmvReading {
    /// `V`: battery voltage, mV.
    pub battery_mv: i32,
    /// `I`: battery current, mA (positive = charging).
    pub battery_ma: i32,
    /// `P`: battery power, W (positive = charging).
    pub power_w: Option<i32>,
    /// `CE`: consumed charge, mAh (zero or negative).
    pub consumed_mah: Option<i32>,
    /// `SOC`: state of charge, per mille; `None` while the monitor is not synchronised.
    pub soc_permille: Option<u16>,
    /// `TTG`: time to go, minutes; `None` when infinite (`-1`) or unknown.
    pub ttg_minutes: Option<u32>,
    /// `Alarm`: alarm condition active.
    pub alarm: Option<bool>,
    /// `AR`: alarm reason bitmask.
    pub alarm_reason: Option<u16>,
}

/// What a verified block describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// A solar charger block (has `PPV`).
    Mppt(MpptReading),
    /// A battery monitor block (has `SOC` or `CE`).
    Bmv(BmvReading),
    /// A block with neither, e.g. the BMV's history block (`H1`…`H18`).
    Other,
}

impl Reading {
    /// Types a verified block.
    pub fn from_block(block: &Block) -> Result<Self, FieldError> {
        if block.get("PPV").is_some() {
            MpptReading::from_block(block).map(Self::Mppt)
        } else if block.get("SOC").is_some() || block.get("CE").is_some() {
            BmvReading::from_block(block).map(Self::Bmv)
        } else {
            Ok(Self::Other)
        }
    }
}

fn req<T: std::str::FromStr>(block: &Block, label: &'static str) -> Result<T, FieldError> {
    opt(block, label)?.ok_or(FieldError::Missing(label))
}

fn opt<T: std::str::FromStr>(block: &Block, label: &'static str) -> Result<Option<T>, FieldError> {
    match block.get(label) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| FieldError::Invalid {
            label,
            value: v.to_owned(),
        }),
    }
}

fn on_off(block: &Block, label: &'static str) -> Result<Option<bool>, FieldError> {
    match block.get(label) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("ON") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("OFF") => Ok(Some(false)),
        Some(v) => Err(FieldError::Invalid {
            label,
            value: v.to_owned(),
        }),
    }
}

impl MpptReading {
    /// Reads an MPPT block; `V`, `I`, `VPV`, `PPV` and `CS` are required.
    pub fn from_block(block: &Block) -> Result<Self, FieldError> {
        Ok(Self {
            battery_mv: req(block, "V")?,
            battery_ma: req(block, "I")?,
            pv_mv: req(block, "VPV")?,
            pv_w: req(block, "PPV")?,
            state: ChargeState::from_code(req(block, "CS")?),
            error: opt(block, "ERR")?,
            load_on: on_off(block, "LOAD")?,
            yield_total_10wh: opt(block, "H19")?,
            yield_today_10wh: opt(block, "H20")?,
            max_power_today_w: opt(block, "H21")?,
            yield_yesterday_10wh: opt(block, "H22")?,
            max_power_yesterday_w: opt(block, "H23")?,
        })
    }

    /// Fields in the order a SmartSolar sends them (PID/FW/SER omitted).
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("V", self.battery_mv.to_string()),
            ("I", self.battery_ma.to_string()),
            ("VPV", self.pv_mv.to_string()),
            ("PPV", self.pv_w.to_string()),
            ("CS", self.state.code().to_string()),
        ];
        if let Some(e) = self.error {
            f.push(("ERR", e.to_string()));
        }
        if let Some(l) = self.load_on {
            f.push(("LOAD", if l { "ON" } else { "OFF" }.to_owned()));
        }
        for (label, v) in [
            ("H19", self.yield_total_10wh),
            ("H20", self.yield_today_10wh),
            ("H21", self.max_power_today_w),
            ("H22", self.yield_yesterday_10wh),
            ("H23", self.max_power_yesterday_w),
        ] {
            if let Some(v) = v {
                f.push((label, v.to_string()));
            }
        }
        f
    }
}

impl BmvReading {
    /// Reads a BMV block; `V` and `I` are required.
    pub fn from_block(block: &Block) -> Result<Self, FieldError> {
        let soc_permille = match block.get("SOC") {
            Some(v) if v.trim().starts_with("--") => None,
            _ => opt(block, "SOC")?,
        };
        let ttg: Option<i64> = match block.get("TTG") {
            Some(v) if v.trim().starts_with("--") => None,
            _ => opt(block, "TTG")?,
        };
        Ok(Self {
            battery_mv: req(block, "V")?,
            battery_ma: req(block, "I")?,
            power_w: opt(block, "P")?,
            consumed_mah: opt(block, "CE")?,
            soc_permille,
            ttg_minutes: ttg.and_then(|t| u32::try_from(t).ok()),
            alarm: on_off(block, "Alarm")?,
            alarm_reason: opt(block, "AR")?,
        })
    }

    /// Fields in the order a BMV-712 sends them.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("V", self.battery_mv.to_string()),
            ("I", self.battery_ma.to_string()),
        ];
        if let Some(p) = self.power_w {
            f.push(("P", p.to_string()));
        }
        if let Some(ce) = self.consumed_mah {
            f.push(("CE", ce.to_string()));
        }
        f.push((
            "SOC",
            self.soc_permille
                .map_or_else(|| "---".to_owned(), |s| s.to_string()),
        ));
        f.push((
            "TTG",
            self.ttg_minutes
                .map_or_else(|| "-1".to_owned(), |t| t.to_string()),
        ));
        if let Some(a) = self.alarm {
            f.push(("Alarm", if a { "ON" } else { "OFF" }.to_owned()));
        }
        if let Some(ar) = self.alarm_reason {
            f.push(("AR", ar.to_string()));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mppt() -> MpptReading {
        MpptReading {
            battery_mv: 26_710,
            battery_ma: 4_200,
            pv_mv: 71_550,
            pv_w: 118,
            state: ChargeState::Bulk,
            error: Some(0),
            load_on: Some(true),
            yield_total_10wh: Some(123_456),
            yield_today_10wh: Some(321),
            max_power_today_w: Some(640),
            yield_yesterday_10wh: Some(298),
            max_power_yesterday_w: Some(610),
        }
    }

    #[test]
    fn parses_a_real_mppt_block() {
        // Captured layout of a SmartSolar 100/30; checksum computed by the encoder.
        let fields = [
            ("PID", "0xA053"),
            ("FW", "159"),
            ("SER#", "HQ2132QY2KR"),
            ("V", "26710"),
            ("I", "4200"),
            ("VPV", "71550"),
            ("PPV", "118"),
            ("CS", "3"),
            ("MPPT", "2"),
            ("OR", "0x00000000"),
            ("ERR", "0"),
            ("LOAD", "ON"),
            ("IL", "300"),
            ("H19", "123456"),
            ("H20", "321"),
            ("H21", "640"),
            ("H22", "298"),
            ("H23", "610"),
            ("HSDS", "12"),
        ];
        let bytes = encode_block(&fields);
        let mut p = Parser::new();
        let blocks = p.feed(&bytes);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].get("SER#"), Some("HQ2132QY2KR"));
        assert_eq!(Reading::from_block(&blocks[0]), Ok(Reading::Mppt(mppt())));
        assert_eq!(p.stats().blocks, 1);
    }

    #[test]
    fn bad_checksum_is_dropped_and_counted() {
        let good = encode_block(&[("V", "12800"), ("SOC", "876")]);
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] = bad[last].wrapping_add(1);
        let mut p = Parser::new();
        let mut stream = good.clone();
        stream.extend_from_slice(&bad);
        stream.extend_from_slice(&good);
        let blocks = p.feed(&stream);
        assert_eq!(blocks.len(), 2);
        assert_eq!(p.stats().bad_checksum, 1);
        assert_eq!(p.stats().unsynced, 0);
    }

    #[test]
    fn checksum_byte_may_be_any_special_byte() {
        // Find field values whose checksum byte is each of the awkward bytes.
        for special in [b'\r', b'\n', b'\t', b':'] {
            let block = (0..10_000)
                .map(|n: usize| encode_block(&[("V", n.to_string()), ("I", "~".repeat(n % 4))]))
                .find(|b| *b.last().unwrap_or(&0) == special)
                .expect("some value gives this checksum");
            let mut stream = block.clone();
            stream.extend_from_slice(&block);
            let mut p = Parser::new();
            assert_eq!(p.feed(&stream).len(), 2, "checksum byte {special:#x}");
            assert_eq!(p.stats().bad_checksum, 0);
        }
    }

    #[test]
    fn hex_frames_are_skipped_between_and_inside_blocks() {
        let block = encode_block(&[("V", "12800"), ("I", "-300"), ("CE", "-1200")]);
        let mut stream = b":A0102000543\n".to_vec();
        stream.extend_from_slice(&block);
        // Inside the block, after the value of V (where a device may interleave one).
        let split = block
            .windows(5)
            .position(|w| w == b"12800")
            .map(|p| p + 5)
            .unwrap_or(0);
        stream.extend_from_slice(&block[..split]);
        stream.extend_from_slice(b":7F0ED0071\n");
        stream.extend_from_slice(&block[split..]);
        let mut p = Parser::new();
        let blocks = p.feed(&stream);
        assert_eq!(blocks.len(), 2);
        assert_eq!(p.stats().hex_frames, 2);
        assert_eq!(p.stats().bad_checksum, 0);
    }

    #[test]
    fn cut_first_block_is_not_a_bad_checksum() {
        let block = encode_block(&[("V", "12800"), ("I", "-300"), ("SOC", "900")]);
        let mut stream = block[7..].to_vec();
        stream.extend_from_slice(&block);
        let mut p = Parser::new();
        assert_eq!(p.feed(&stream).len(), 1);
        assert_eq!(p.stats().bad_checksum, 0);
    }

    #[test]
    fn oversized_value_is_a_framing_error() {
        let long = "9".repeat(MAX_VALUE + 1);
        let good = encode_block(&[("V", "1")]);
        let mut stream = good.clone();
        stream.extend_from_slice(&encode_block(&[("V", long.as_str())]));
        stream.extend_from_slice(&good);
        let mut p = Parser::new();
        assert_eq!(p.feed(&stream).len(), 2);
        assert_eq!(p.stats().framing_errors, 1);
    }

    #[test]
    fn bmv_block_with_unsynchronised_soc() {
        let b = Block {
            fields: [
                ("V", "25120"),
                ("I", "-2100"),
                ("SOC", "---"),
                ("TTG", "-1"),
            ]
            .iter()
            .map(|(l, v)| Field {
                label: (*l).into(),
                value: (*v).into(),
            })
            .collect(),
        };
        let Ok(Reading::Bmv(r)) = Reading::from_block(&b) else {
            panic!("not a BMV reading");
        };
        assert_eq!(r.soc_permille, None);
        assert_eq!(r.ttg_minutes, None);
        assert_eq!(r.battery_ma, -2100);
    }

    #[test]
    fn bad_value_is_a_typed_error() {
        let b = Block {
            fields: vec![
                Field {
                    label: "V".into(),
                    value: "1".into(),
                },
                Field {
                    label: "I".into(),
                    value: "1".into(),
                },
                Field {
                    label: "VPV".into(),
                    value: "1".into(),
                },
                Field {
                    label: "PPV".into(),
                    value: "lots".into(),
                },
            ],
        };
        assert!(matches!(
            Reading::from_block(&b),
            Err(FieldError::Invalid { label: "PPV", .. })
        ));
    }

    fn arb_mppt() -> impl Strategy<Value = MpptReading> {
        (
            (
                any::<i32>(),
                any::<i32>(),
                any::<u32>(),
                any::<u32>(),
                any::<u8>(),
            ),
            (
                any::<Option<u16>>(),
                any::<Option<bool>>(),
                any::<Option<u32>>(),
                any::<Option<u32>>(),
                any::<Option<u32>>(),
                any::<Option<u32>>(),
                any::<Option<u32>>(),
            ),
        )
            .prop_map(
                |((v, i, vpv, ppv, cs), (err, load, h19, h20, h21, h22, h23))| MpptReading {
                    battery_mv: v,
                    battery_ma: i,
                    pv_mv: vpv,
                    pv_w: ppv,
                    state: ChargeState::from_code(cs),
                    error: err,
                    load_on: load,
                    yield_total_10wh: h19,
                    yield_today_10wh: h20,
                    max_power_today_w: h21,
                    yield_yesterday_10wh: h22,
                    max_power_yesterday_w: h23,
                },
            )
    }

    fn arb_bmv() -> impl Strategy<Value = BmvReading> {
        (
            any::<i32>(),
            any::<i32>(),
            any::<Option<i32>>(),
            any::<Option<i32>>(),
            proptest::option::of(0u16..=1000),
            any::<Option<u32>>(),
            any::<Option<bool>>(),
            any::<Option<u16>>(),
        )
            .prop_map(|(v, i, p, ce, soc, ttg, alarm, ar)| BmvReading {
                battery_mv: v,
                battery_ma: i,
                power_w: p,
                consumed_mah: ce,
                soc_permille: soc,
                ttg_minutes: ttg,
                alarm,
                alarm_reason: ar,
            })
    }

    /// Labels and values as devices send them: printable, no TAB/CR/LF/`:`.
    fn arb_fields() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec(
            ("[A-Za-z0-9#_]{1,9}", "[ -9;-~]{0,33}")
                .prop_filter("not the checksum label", |(l, _)| l != CHECKSUM_LABEL),
            1..24,
        )
    }

    proptest! {
        #[test]
        fn random_chunking_gives_the_same_blocks(
            blocks in proptest::collection::vec(arb_fields(), 1..5),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut stream = Vec::new();
            for f in &blocks {
                stream.extend_from_slice(&encode_block(f));
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            points.push(0);
            points.push(stream.len());
            points.sort_unstable();
            let mut p = Parser::new();
            let mut got = Vec::new();
            for w in points.windows(2) {
                got.extend(p.feed(&stream[w[0]..w[1]]));
            }
            let want: Vec<Block> = blocks
                .iter()
                .map(|f| Block {
                    fields: f
                        .iter()
                        .map(|(l, v)| Field { label: l.clone(), value: v.clone() })
                        .collect(),
                })
                .collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(p.stats().bad_checksum, 0);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut p = Parser::new();
            for block in p.feed(&bytes) {
                let _ = Reading::from_block(&block);
            }
            // Still finds a good block afterwards (after at most one resync block).
            let good = encode_block(&[("V", "1")]);
            let mut tail = good.clone();
            tail.extend_from_slice(&good);
            prop_assert!(!p.feed(&tail).is_empty());
        }

        #[test]
        fn mppt_round_trip(r in arb_mppt()) {
            let mut p = Parser::new();
            let blocks = p.feed(&encode_block(&r.to_fields()));
            prop_assert_eq!(blocks.len(), 1);
            prop_assert_eq!(Reading::from_block(&blocks[0]), Ok(Reading::Mppt(r)));
        }

        #[test]
        fn bmv_round_trip(r in arb_bmv()) {
            let mut p = Parser::new();
            let blocks = p.feed(&encode_block(&r.to_fields()));
            prop_assert_eq!(blocks.len(), 1);
            prop_assert_eq!(Reading::from_block(&blocks[0]), Ok(Reading::Bmv(r)));
        }
    }
}
