//! Voltronic / Axpert-style hybrid inverter protocol: CRC, request encoder, reply framing
//! and decoders for `QPIGS` (general status) and `QMOD` (mode). Sans-IO.
//!
//! A request is `<cmd><CRC16-XMODEM hi lo>\r`, a reply `(<data><CRC hi lo>\r`, the CRC
//! covering everything before it (the `(` included). A CRC byte equal to `(`, CR or LF is
//! sent incremented by one, so CR only ever ends a frame. Guarantees: a reply is returned
//! only if its CRC matches; `(NAK` and a bad CRC are distinct errors; QPIGS replies with
//! extra trailing fields (newer firmware) are accepted; readings are integers in fixed
//! units (mV, mA, mHz), never floats.

use crc::{CRC_16_XMODEM, Crc};
use thiserror::Error;

use super::parse_fixed;

const XMODEM: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);
/// Longest reply accepted before the framer gives up on a line.
pub const MAX_REPLY: usize = 512;

/// Failure to read an inverter reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VoltronicError {
    /// The inverter answered `(NAK`: unknown command or the request's CRC was wrong.
    #[error("inverter answered NAK")]
    Nak,
    /// The reply's CRC does not match its contents.
    #[error("reply CRC {got:#06x}, expected {expected:#06x}")]
    BadCrc {
        /// CRC computed over the reply (after the increment rule).
        expected: u16,
        /// CRC found in the reply.
        got: u16,
    },
    /// Not a `(…CRC\r` frame.
    #[error("malformed reply: {0}")]
    Malformed(&'static str),
    /// Fewer fields than the reply must have.
    #[error("reply has {got} fields, expected at least {want}")]
    FieldCount {
        /// Fields found.
        got: usize,
        /// Fields required.
        want: usize,
    },
    /// A field is not a number of the expected shape.
    #[error("field {index} has unreadable value {value:?}")]
    BadField {
        /// Zero-based field index.
        index: usize,
        /// Raw text.
        value: String,
    },
    /// `QMOD` answered a mode letter this code does not know.
    #[error("unknown inverter mode {0:?}")]
    UnknownMode(String),
}

/// CRC16-XMODEM with the Voltronic rule: a byte equal to 0x28, 0x0D or 0x0A is incremented.
pub fn crc(data: &[u8]) -> u16 {
    let raw = XMODEM.checksum(data);
    let fix = |b: u8| {
        if matches!(b, 0x28 | 0x0D | 0x0A) {
            b + 1
        } else {
            b
        }
    };
    let [hi, lo] = raw.to_be_bytes();
    u16::from_be_bytes([fix(hi), fix(lo)])
}

/// Appends the CRC and CR to a payload (request or, in the emulator, a reply).
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = payload.to_vec();
    out.extend_from_slice(&crc(payload).to_be_bytes());
    out.push(b'\r');
    out
}

/// Commands this module speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// General status parameters.
    Qpigs,
    /// Device mode.
    Qmod,
}

impl Command {
    /// The command's text.
    pub fn name(self) -> &'static str {
        match self {
            Self::Qpigs => "QPIGS",
            Self::Qmod => "QMOD",
        }
    }

    /// Request bytes, CRC and CR included.
    pub fn encode(self) -> Vec<u8> {
        frame(self.name().as_bytes())
    }
}

/// Splits a byte stream into CR-terminated replies. Bounded: a line longer than
/// [`MAX_REPLY`] is discarded.
#[derive(Debug, Clone, Default)]
pub struct Framer {
    buf: Vec<u8>,
    overflow: bool,
}

impl Framer {
    /// An empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; returns each complete line including its CR.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for &b in bytes {
            if !self.overflow {
                self.buf.push(b);
            }
            if b == b'\r' {
                if !self.overflow {
                    out.push(std::mem::take(&mut self.buf));
                }
                self.buf.clear();
                self.overflow = false;
            } else if self.buf.len() > MAX_REPLY {
                self.buf.clear();
                self.overflow = true;
            }
        }
        out
    }

    /// Drops a partial line (before sending a new request).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.overflow = false;
    }
}

/// Checks a complete reply (`(` … CRC CR) and returns its data between `(` and the CRC.
pub fn decode_reply(reply: &[u8]) -> Result<&[u8], VoltronicError> {
    let body = reply
        .strip_suffix(b"\r")
        .ok_or(VoltronicError::Malformed("no CR at end"))?;
    if body == b"(NAK" {
        // Some firmware sends NAK without a CRC.
        return Err(VoltronicError::Nak);
    }
    if body.len() < 3 || body[0] != b'(' {
        return Err(VoltronicError::Malformed("no ( at start"));
    }
    let (payload, crc_bytes) = body.split_at(body.len() - 2);
    let got = u16::from_be_bytes([crc_bytes[0], crc_bytes[1]]);
    let expected = crc(payload);
    if got != expected {
        return Err(VoltronicError::BadCrc { expected, got });
    }
    let data = &payload[1..];
    if data == b"NAK" {
        return Err(VoltronicError::Nak);
    }
    Ok(data)
}

/// QPIGS device status bits b7..b0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusBits(pub u8);

impl StatusBits {
    /// b7: SBU priority version added.
    pub fn sbu_priority(self) -> bool {
        self.0 & 0x80 != 0
    }
    /// b6: configuration changed.
    pub fn config_changed(self) -> bool {
        self.0 & 0x40 != 0
    }
    /// b5: SCC firmware updated.
    pub fn scc_firmware_updated(self) -> bool {
        self.0 & 0x20 != 0
    }
    /// b4: load on.
    pub fn load_on(self) -> bool {
        self.0 & 0x10 != 0
    }
    /// b3: battery voltage steady while charging.
    pub fn steady(self) -> bool {
        self.0 & 0x08 != 0
    }
    /// b2: charging (solar or AC).
    pub fn charging(self) -> bool {
        self.0 & 0x04 != 0
    }
    /// b1: solar (SCC) charging.
    pub fn scc_charging(self) -> bool {
        self.0 & 0x02 != 0
    }
    /// b0: AC charging.
    pub fn ac_charging(self) -> bool {
        self.0 & 0x01 != 0
    }

    fn parse(s: &str) -> Option<Self> {
        if s.len() != 8 || !s.bytes().all(|b| b == b'0' || b == b'1') {
            return None;
        }
        u8::from_str_radix(s, 2).ok().map(Self)
    }

    fn render(self) -> String {
        format!("{:08b}", self.0)
    }
}

/// A decoded QPIGS reply. Electrical values in mV, mA, mHz; powers in W/VA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qpigs {
    /// Grid voltage.
    pub grid_mv: u32,
    /// Grid frequency.
    pub grid_mhz: u32,
    /// AC output voltage.
    pub output_mv: u32,
    /// AC output frequency.
    pub output_mhz: u32,
    /// AC output apparent power.
    pub output_va: u32,
    /// AC output active power.
    pub output_w: u32,
    /// Output load percent.
    pub load_percent: u32,
    /// DC bus voltage, V.
    pub bus_v: u32,
    /// Battery voltage.
    pub battery_mv: u32,
    /// Battery charging current.
    pub charge_ma: u32,
    /// Battery capacity percent.
    pub battery_percent: u32,
    /// Heat-sink temperature, °C.
    pub heatsink_c: i32,
    /// PV input current (to the battery side on many models).
    pub pv_ma: u32,
    /// PV input voltage.
    pub pv_mv: u32,
    /// Battery voltage seen by the solar charge controller.
    pub scc_battery_mv: u32,
    /// Battery discharge current.
    pub discharge_ma: u32,
    /// Device status bits.
    pub status: StatusBits,
    /// PV charging power, W (field 20, newer firmware only).
    pub pv_charging_w: Option<u32>,
}

const QPIGS_FIELDS: usize = 17;

impl Qpigs {
    /// Decodes the data of a QPIGS reply (as returned by [`decode_reply`]).
    pub fn parse(data: &[u8]) -> Result<Self, VoltronicError> {
        let text = std::str::from_utf8(data).map_err(|_| VoltronicError::Malformed("not ASCII"))?;
        let f: Vec<&str> = text.split_ascii_whitespace().collect();
        if f.len() < QPIGS_FIELDS {
            return Err(VoltronicError::FieldCount {
                got: f.len(),
                want: QPIGS_FIELDS,
            });
        }
        let bad = |index: usize| VoltronicError::BadField {
            index,
            value: f[index].to_owned(),
        };
        let milli = |i: usize| -> Result<u32, VoltronicError> {
            parse_fixed(f[i], 1000)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad(i))
        };
        let unit = |i: usize| -> Result<u32, VoltronicError> {
            parse_fixed(f[i], 1)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad(i))
        };
        Ok(Self {
            grid_mv: milli(0)?,
            grid_mhz: milli(1)?,
            output_mv: milli(2)?,
            output_mhz: milli(3)?,
            output_va: unit(4)?,
            output_w: unit(5)?,
            load_percent: unit(6)?,
            bus_v: unit(7)?,
            battery_mv: milli(8)?,
            charge_ma: milli(9)?,
            battery_percent: unit(10)?,
            heatsink_c: parse_fixed(f[11], 1)
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| bad(11))?,
            pv_ma: milli(12)?,
            pv_mv: milli(13)?,
            scc_battery_mv: milli(14)?,
            discharge_ma: milli(15)?,
            status: StatusBits::parse(f[16]).ok_or_else(|| bad(16))?,
            pv_charging_w: if f.len() > 19 { Some(unit(19)?) } else { None },
        })
    }

    /// PV power in W: the inverter's own figure when the firmware sends it, otherwise
    /// PV voltage × PV current.
    pub fn pv_w(&self) -> u32 {
        self.pv_charging_w.unwrap_or_else(|| {
            let w = u64::from(self.pv_mv) * u64::from(self.pv_ma) / 1_000_000;
            u32::try_from(w).unwrap_or(u32::MAX)
        })
    }

    /// The reply data in the inverter's fixed-width format (for the emulator).
    pub fn render(&self) -> String {
        let d = |v: u32, int: usize, dec: usize| -> String {
            let scaled = u64::from(v) / 10u64.pow(3 - dec as u32);
            let div = 10u64.pow(dec as u32);
            if dec == 0 {
                format!("{:0int$}", scaled)
            } else {
                format!("{:0int$}.{:0dec$}", scaled / div, scaled % div)
            }
        };
        let mut s = format!(
            "{} {} {} {} {:04} {:04} {:03} {:03} {} {:03} {:03} {:04} {:04} {} {} {:05} {}",
            d(self.grid_mv, 3, 1),
            d(self.grid_mhz, 2, 1),
            d(self.output_mv, 3, 1),
            d(self.output_mhz, 2, 1),
            self.output_va,
            self.output_w,
            self.load_percent,
            self.bus_v,
            d(self.battery_mv, 2, 2),
            self.charge_ma / 1000,
            self.battery_percent,
            self.heatsink_c,
            self.pv_ma / 1000,
            d(self.pv_mv, 3, 1),
            d(self.scc_battery_mv, 2, 2),
            self.discharge_ma / 1000,
            self.status.render(),
        );
        if let Some(w) = self.pv_charging_w {
            s.push_str(&format!(" 00 00 {w:05} 010"));
        }
        s
    }
}

/// Inverter mode (`QMOD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `P`: power on.
    PowerOn,
    /// `S`: standby.
    Standby,
    /// `L`: line (grid) mode.
    Line,
    /// `B`: battery (inverter) mode.
    Battery,
    /// `F`: fault.
    Fault,
    /// `H`: power saving.
    PowerSaving,
}

impl Mode {
    /// Decodes the data of a QMOD reply.
    pub fn parse(data: &[u8]) -> Result<Self, VoltronicError> {
        match data {
            b"P" => Ok(Self::PowerOn),
            b"S" => Ok(Self::Standby),
            b"L" => Ok(Self::Line),
            b"B" => Ok(Self::Battery),
            b"F" => Ok(Self::Fault),
            b"H" => Ok(Self::PowerSaving),
            other => Err(VoltronicError::UnknownMode(
                String::from_utf8_lossy(other).into_owned(),
            )),
        }
    }

    /// The mode letter.
    pub fn letter(self) -> char {
        match self {
            Self::PowerOn => 'P',
            Self::Standby => 'S',
            Self::Line => 'L',
            Self::Battery => 'B',
            Self::Fault => 'F',
            Self::PowerSaving => 'H',
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn qpigs_request_bytes() {
        assert_eq!(
            Command::Qpigs.encode(),
            [0x51, 0x50, 0x49, 0x47, 0x53, 0xB7, 0xA9, 0x0D]
        );
        assert_eq!(Command::Qmod.encode(), b"QMOD\x49\xC1\r");
    }

    #[test]
    fn crc_bytes_never_collide_with_framing() {
        for n in 0u32..5000 {
            let c = crc(n.to_string().as_bytes()).to_be_bytes();
            assert!(c.iter().all(|b| ![0x28, 0x0D, 0x0A].contains(b)));
        }
    }

    const SAMPLE: &str = "(000.0 00.0 230.0 49.9 0161 0119 003 460 57.50 012 100 0069 0014 103.8 57.45 00000 00110110 00 00 00856 010";

    #[test]
    fn decodes_a_real_qpigs_reply_with_extra_fields() {
        let reply = frame(SAMPLE.as_bytes());
        let q = Qpigs::parse(decode_reply(&reply).unwrap()).unwrap();
        assert_eq!(q.grid_mv, 0);
        assert_eq!(q.output_mv, 230_000);
        assert_eq!(q.output_mhz, 49_900);
        assert_eq!(q.output_va, 161);
        assert_eq!(q.output_w, 119);
        assert_eq!(q.bus_v, 460);
        assert_eq!(q.battery_mv, 57_500);
        assert_eq!(q.charge_ma, 12_000);
        assert_eq!(q.battery_percent, 100);
        assert_eq!(q.heatsink_c, 69);
        assert_eq!(q.pv_ma, 14_000);
        assert_eq!(q.pv_mv, 103_800);
        assert_eq!(q.scc_battery_mv, 57_450);
        assert_eq!(q.discharge_ma, 0);
        assert!(q.status.load_on() && q.status.charging() && q.status.scc_charging());
        assert!(!q.status.ac_charging() && !q.status.sbu_priority());
        assert_eq!(q.pv_charging_w, Some(856));
        assert_eq!(q.pv_w(), 856);
    }

    #[test]
    fn older_firmware_without_extra_fields() {
        let short: String = SAMPLE.split(' ').take(17).collect::<Vec<_>>().join(" ");
        let q = Qpigs::parse(decode_reply(&frame(short.as_bytes())).unwrap()).unwrap();
        assert_eq!(q.pv_charging_w, None);
        assert_eq!(q.pv_w(), 1453);
    }

    #[test]
    fn nak_bad_crc_and_short_replies() {
        assert_eq!(decode_reply(&frame(b"(NAK")), Err(VoltronicError::Nak));
        assert_eq!(decode_reply(b"(NAK\r"), Err(VoltronicError::Nak));
        let mut r = frame(b"(B");
        r[2] ^= 1;
        assert!(matches!(
            decode_reply(&r),
            Err(VoltronicError::BadCrc { .. })
        ));
        assert!(matches!(
            decode_reply(b"(B"),
            Err(VoltronicError::Malformed(_))
        ));
        assert!(matches!(
            Qpigs::parse(b"230.0 50.0"),
            Err(VoltronicError::FieldCount { got: 2, .. })
        ));
        assert_eq!(
            Mode::parse(decode_reply(&frame(b"(L")).unwrap()),
            Ok(Mode::Line)
        );
        assert!(matches!(
            Mode::parse(b"Z"),
            Err(VoltronicError::UnknownMode(_))
        ));
    }

    #[test]
    fn framer_splits_replies_in_pieces() {
        let mut f = Framer::new();
        let a = frame(b"(B");
        let b = frame(b"(L");
        let mut stream = a.clone();
        stream.extend_from_slice(&b);
        assert!(f.feed(&stream[..3]).is_empty());
        assert_eq!(f.feed(&stream[3..]), vec![a, b]);
    }

    fn arb_qpigs() -> impl Strategy<Value = Qpigs> {
        (
            (
                0u32..=999,
                0u32..=99,
                0u32..=999,
                0u32..=99,
                0u32..=9999,
                0u32..=9999,
            ),
            (
                0u32..=999,
                0u32..=999,
                0u32..=9999,
                0u32..=999,
                0u32..=100,
                0i32..=999,
            ),
            (
                0u32..=9999,
                0u32..=9999,
                0u32..=9999,
                0u32..=99999,
                any::<u8>(),
            ),
            proptest::option::of(0u32..=99999),
        )
            .prop_map(
                |((gv, gf, ov, of, va, w), (lp, bus, bv, ca, bp, hs), (pa, pv, sv, da, st), pw)| {
                    Qpigs {
                        grid_mv: gv * 100,
                        grid_mhz: gf * 100,
                        output_mv: ov * 100,
                        output_mhz: of * 100,
                        output_va: va,
                        output_w: w,
                        load_percent: lp,
                        bus_v: bus,
                        battery_mv: bv * 10,
                        charge_ma: ca * 1000,
                        battery_percent: bp,
                        heatsink_c: hs,
                        pv_ma: pa * 1000,
                        pv_mv: pv * 100,
                        scc_battery_mv: sv * 10,
                        discharge_ma: da * 1000,
                        status: StatusBits(st),
                        pv_charging_w: pw,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn qpigs_round_trip(q in arb_qpigs()) {
            let reply = frame(format!("({}", q.render()).as_bytes());
            let mut framer = Framer::new();
            let lines = framer.feed(&reply);
            prop_assert_eq!(lines.len(), 1);
            let data = decode_reply(&lines[0]).unwrap();
            prop_assert_eq!(Qpigs::parse(data), Ok(q));
        }

        #[test]
        fn random_replies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut framer = Framer::new();
            for line in framer.feed(&bytes) {
                if let Ok(data) = decode_reply(&line) {
                    let _ = Qpigs::parse(data);
                    let _ = Mode::parse(data);
                }
            }
            let _ = decode_reply(&bytes);
        }

        #[test]
        fn any_flipped_byte_is_caught(idx in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut reply = frame(format!("({}", SAMPLE.trim_start_matches('(')).as_bytes());
            let i = idx.index(reply.len() - 1);
            reply[i] ^= flip;
            prop_assert!(decode_reply(&reply).is_err());
        }
    }
}
