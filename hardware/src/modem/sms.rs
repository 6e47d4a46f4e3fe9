//! SMS-SUBMIT in PDU mode (3GPP TS 23.040 / 23.038): encoder and decoder.
//!
//! The encoder picks the GSM 7-bit default alphabet (with its extension table) when every
//! character of the text has a GSM-7 form, and UCS-2 (UTF-16BE) otherwise. Texts that do
//! not fit in one message (160 septets / 70 UTF-16 units) are split into parts carrying
//! the 8-bit-reference concatenation header `05 00 03 <ref> <total> <seq>`: 153 septets
//! per GSM-7 part (after one fill bit that aligns the text on a septet boundary) and 67
//! units per UCS-2 part. An escape sequence and a UTF-16 surrogate pair are never split
//! across parts. Validity is relative, 4 days (`AA`). The SMSC field is `00` (use the
//! SIM's).
//!
//! The decoder reads the same PDUs back (for tests and the emulator) and checks every
//! length against the data, so arbitrary hex never panics.

use std::fmt;

use super::at::AtCommand;

/// Relative validity period sent with every message: `AA` = 4 days.
pub const VALIDITY_4_DAYS: u8 = 0xAA;

const GSM7_SINGLE: usize = 160;
const GSM7_PART: usize = 153;
const UCS2_SINGLE: usize = 70;
const UCS2_PART: usize = 67;
const ESC: u8 = 0x1B;

/// The GSM 7-bit default alphabet, indexed by septet (0x1B is the escape, never a char).
const GSM7: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: characters sent as `ESC` + septet.
const GSM7_EXT: [(u8, char); 10] = [
    (0x0A, '\u{c}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Errors of SMS encoding and decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    /// The destination is not `+` and 1–20 digits.
    #[error("invalid phone number {0:?}")]
    InvalidNumber(String),
    /// The text needs more than 255 parts.
    #[error("text too long for a concatenated SMS")]
    TooLong,
    /// A PDU could not be decoded.
    #[error("malformed PDU: {0}")]
    MalformedPdu(&'static str),
}

/// A destination number: international (`+963…`) or national digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    international: bool,
    digits: String,
}

impl PhoneNumber {
    /// Parses `+` followed by 1–20 digits, or 1–20 digits.
    pub fn parse(s: &str) -> Result<Self, SmsError> {
        let (international, digits) = match s.strip_prefix('+') {
            Some(d) => (true, d),
            None => (false, s),
        };
        if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SmsError::InvalidNumber(s.to_owned()));
        }
        Ok(Self {
            international,
            digits: digits.to_owned(),
        })
    }

    /// Whether the number is in international format.
    pub fn is_international(&self) -> bool {
        self.international
    }

    /// The digits, without `+`.
    pub fn digits(&self) -> &str {
        &self.digits
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.international {
            f.write_str("+")?;
        }
        f.write_str(&self.digits)
    }
}

/// Text encoding of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// GSM 7-bit default alphabet (DCS 00).
    Gsm7,
    /// UCS-2 / UTF-16BE (DCS 08).
    Ucs2,
}

/// One PDU ready for `AT+CMGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitPdu {
    /// The PDU in hex, SMSC field included.
    pub hex: String,
    /// Octets of the TPDU (the PDU without the SMSC field): the `AT+CMGS=` argument.
    pub tpdu_len: usize,
}

impl SubmitPdu {
    /// `AT+CMGS=<len>`, then the hex PDU and Ctrl-Z after the prompt.
    pub fn at_command(&self) -> AtCommand {
        let mut payload = self.hex.clone().into_bytes();
        payload.push(0x1A);
        AtCommand::with_payload(format!("AT+CMGS={}", self.tpdu_len), payload)
    }
}

/// Concatenation header of one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    /// Reference shared by all parts of one message.
    pub reference: u16,
    /// Number of parts.
    pub total: u8,
    /// This part's number, from 1.
    pub seq: u8,
}

/// A decoded SMS-SUBMIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedSubmit {
    /// Destination.
    pub to: PhoneNumber,
    /// Text of this part.
    pub text: String,
    /// Encoding used.
    pub encoding: Encoding,
    /// Concatenation header, if any.
    pub concat: Option<Concat>,
    /// Relative validity period octet, if present.
    pub validity: Option<u8>,
}

fn gsm7_septets(c: char) -> Option<Vec<u8>> {
    if c != '\u{1b}'
        && let Some(i) = GSM7.iter().position(|&g| g == c)
    {
        return u8::try_from(i).ok().map(|b| vec![b]);
    }
    GSM7_EXT
        .iter()
        .find(|(_, e)| *e == c)
        .map(|(code, _)| vec![ESC, *code])
}

/// Which encoding `text` will be sent in.
pub fn encoding_for(text: &str) -> Encoding {
    if text.chars().all(|c| gsm7_septets(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// Encodes `text` to `to` as one or more SMS-SUBMIT PDUs. `concat_ref` is used only when
/// the text needs several parts; use a different one for each long message.
pub fn encode_submit(
    to: &PhoneNumber,
    text: &str,
    concat_ref: u8,
) -> Result<Vec<SubmitPdu>, SmsError> {
    match encoding_for(text) {
        Encoding::Gsm7 => {
            let chars: Vec<Vec<u8>> = text.chars().filter_map(gsm7_septets).collect();
            let total: usize = chars.iter().map(Vec::len).sum();
            let parts = if total <= GSM7_SINGLE {
                vec![chars.concat()]
            } else {
                split_units(&chars, GSM7_PART)
            };
            build_parts(to, Encoding::Gsm7, &parts, concat_ref)
        }
        Encoding::Ucs2 => {
            let chars: Vec<Vec<u16>> = text
                .chars()
                .map(|c| {
                    let mut b = [0u16; 2];
                    c.encode_utf16(&mut b).to_vec()
                })
                .collect();
            let total: usize = chars.iter().map(Vec::len).sum();
            let parts = if total <= UCS2_SINGLE {
                vec![chars.concat()]
            } else {
                split_units(&chars, UCS2_PART)
            };
            let parts: Vec<Vec<u8>> = parts
                .iter()
                .map(|p| p.iter().flat_map(|u| u.to_be_bytes()).collect())
                .collect();
            build_parts(to, Encoding::Ucs2, &parts, concat_ref)
        }
    }
}

/// Greedy split into parts of at most `max` units, never splitting one character.
fn split_units<T: Clone>(chars: &[Vec<T>], max: usize) -> Vec<Vec<T>> {
    let mut parts: Vec<Vec<T>> = vec![Vec::new()];
    for c in chars {
        let needs_new = parts.last().is_some_and(|p| p.len() + c.len() > max);
        if needs_new {
            parts.push(Vec::new());
        }
        if let Some(p) = parts.last_mut() {
            p.extend_from_slice(c);
        }
    }
    parts
}

fn build_parts(
    to: &PhoneNumber,
    encoding: Encoding,
    parts: &[Vec<u8>],
    concat_ref: u8,
) -> Result<Vec<SubmitPdu>, SmsError> {
    let total = u8::try_from(parts.len()).map_err(|_| SmsError::TooLong)?;
    parts
        .iter()
        .enumerate()
        .map(|(i, units)| {
            let concat = (total > 1).then(|| [0x05, 0x00, 0x03, concat_ref, total, i as u8 + 1]);
            Ok(build_one(to, encoding, units, concat.as_ref()))
        })
        .collect()
}

/// `units` are septets (GSM-7) or UTF-16BE octets (UCS-2).
fn build_one(
    to: &PhoneNumber,
    encoding: Encoding,
    units: &[u8],
    udh: Option<&[u8; 6]>,
) -> SubmitPdu {
    let mut tpdu = Vec::with_capacity(160);
    tpdu.push(0x01 | 0x10 | if udh.is_some() { 0x40 } else { 0x00 });
    tpdu.push(0x00); // TP-MR: the modem assigns it
    tpdu.push(to.digits.len() as u8);
    tpdu.push(if to.international { 0x91 } else { 0x81 });
    tpdu.extend(semi_octets(&to.digits));
    tpdu.push(0x00); // PID
    tpdu.push(match encoding {
        Encoding::Gsm7 => 0x00,
        Encoding::Ucs2 => 0x08,
    });
    tpdu.push(VALIDITY_4_DAYS);
    let header_len = udh.map_or(0, |h| h.len());
    match encoding {
        Encoding::Gsm7 => {
            // The header is followed by fill bits up to the next septet boundary.
            let header_septets = (header_len * 8).div_ceil(7);
            tpdu.push((header_septets + units.len()) as u8);
            let mut ud = udh.map_or_else(Vec::new, |h| h.to_vec());
            ud.extend(pack_septets(units, header_septets * 7));
            tpdu.extend(&ud[..]);
        }
        Encoding::Ucs2 => {
            tpdu.push((header_len + units.len()) as u8);
            if let Some(h) = udh {
                tpdu.extend_from_slice(h);
            }
            tpdu.extend_from_slice(units);
        }
    }
    SubmitPdu {
        hex: format!("00{}", hex::encode_upper(&tpdu)),
        tpdu_len: tpdu.len(),
    }
}

fn semi_octets(digits: &str) -> Vec<u8> {
    digits
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            let lo = pair[0] - b'0';
            let hi = pair.get(1).map_or(0x0F, |d| d - b'0');
            (hi << 4) | lo
        })
        .collect()
}

/// Packs septets LSB-first into a bit stream that starts at `start_bit`; returns the
/// octets from the octet containing `start_bit / 8` on, with the header octets (whose
/// bits precede `start_bit`) left out.
fn pack_septets(septets: &[u8], start_bit: usize) -> Vec<u8> {
    let skip = start_bit / 8;
    let total_bits = start_bit + septets.len() * 7;
    let mut out = vec![0u8; total_bits.div_ceil(8)];
    for (i, &s) in septets.iter().enumerate() {
        let bit = start_bit + i * 7;
        let (byte, shift) = (bit / 8, bit % 8);
        let v = u16::from(s & 0x7F) << shift;
        out[byte] |= (v & 0xFF) as u8;
        if v > 0xFF {
            out[byte + 1] |= (v >> 8) as u8;
        }
    }
    out.split_off(skip)
}

fn unpack_septets(ud: &[u8], start_bit: usize, count: usize) -> Option<Vec<u8>> {
    if (start_bit + count * 7).div_ceil(8) > ud.len() {
        return None;
    }
    Some(
        (0..count)
            .map(|i| {
                let bit = start_bit + i * 7;
                let (byte, shift) = (bit / 8, bit % 8);
                let lo = u16::from(ud[byte]);
                let hi = u16::from(ud.get(byte + 1).copied().unwrap_or(0));
                (((hi << 8 | lo) >> shift) & 0x7F) as u8
            })
            .collect(),
    )
}

fn gsm7_to_string(septets: &[u8]) -> String {
    let mut out = String::new();
    let mut it = septets.iter();
    while let Some(&s) = it.next() {
        if s == ESC {
            match it.next() {
                Some(&e) => {
                    out.push(GSM7_EXT.iter().find(|(c, _)| *c == e).map_or(' ', |x| x.1));
                }
                None => break,
            }
        } else {
            out.push(GSM7[usize::from(s & 0x7F)]);
        }
    }
    out
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self, what: &'static str) -> Result<u8, SmsError> {
        let v = *self.b.get(self.at).ok_or(SmsError::MalformedPdu(what))?;
        self.at += 1;
        Ok(v)
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SmsError> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or(SmsError::MalformedPdu(what))?;
        self.at += n;
        Ok(s)
    }
}

/// Decodes an SMS-SUBMIT PDU in hex (with its SMSC field).
pub fn decode_submit(pdu_hex: &str) -> Result<DecodedSubmit, SmsError> {
    let bytes = hex::decode(pdu_hex.trim()).map_err(|_| SmsError::MalformedPdu("not hex"))?;
    let mut c = Cursor { b: &bytes, at: 0 };
    let sca_len = c.u8("SMSC length")?;
    c.take(usize::from(sca_len), "SMSC")?;
    let first = c.u8("first octet")?;
    if first & 0x03 != 0x01 {
        return Err(SmsError::MalformedPdu("not an SMS-SUBMIT"));
    }
    let _mr = c.u8("message reference")?;
    let n_digits = usize::from(c.u8("address length")?);
    let toa = c.u8("type of address")?;
    let addr = c.take(n_digits.div_ceil(2), "address")?;
    let mut digits = String::with_capacity(n_digits);
    for i in 0..n_digits {
        let b = addr[i / 2];
        let d = if i % 2 == 0 { b & 0x0F } else { b >> 4 };
        if d > 9 {
            return Err(SmsError::MalformedPdu("address digit"));
        }
        digits.push(char::from(b'0' + d));
    }
    let to = PhoneNumber::parse(&if toa == 0x91 {
        format!("+{digits}")
    } else {
        digits
    })
    .map_err(|_| SmsError::MalformedPdu("address"))?;
    let _pid = c.u8("PID")?;
    let dcs = c.u8("DCS")?;
    let validity = match (first >> 3) & 0x03 {
        0 => None,
        2 => Some(c.u8("validity")?),
        _ => {
            c.take(7, "validity")?;
            None
        }
    };
    let encoding = match dcs & 0x0C {
        0x00 => Encoding::Gsm7,
        0x08 => Encoding::Ucs2,
        _ => return Err(SmsError::MalformedPdu("unsupported DCS")),
    };
    let udl = usize::from(c.u8("UDL")?);
    let ud = &bytes[c.at..];
    let (udh_len, concat) = if first & 0x40 != 0 {
        let udhl = usize::from(*ud.first().ok_or(SmsError::MalformedPdu("UDH"))?);
        let udh = ud.get(1..1 + udhl).ok_or(SmsError::MalformedPdu("UDH"))?;
        (1 + udhl, parse_concat(udh)?)
    } else {
        (0, None)
    };
    let text = match encoding {
        Encoding::Gsm7 => {
            let header_septets = (udh_len * 8).div_ceil(7);
            let count = udl
                .checked_sub(header_septets)
                .ok_or(SmsError::MalformedPdu("UDL"))?;
            let septets = unpack_septets(ud, header_septets * 7, count)
                .ok_or(SmsError::MalformedPdu("user data too short"))?;
            gsm7_to_string(&septets)
        }
        Encoding::Ucs2 => {
            let body = ud
                .get(udh_len..udl)
                .ok_or(SmsError::MalformedPdu("user data too short"))?;
            if body.len() % 2 != 0 {
                return Err(SmsError::MalformedPdu("odd UCS-2 length"));
            }
            let units: Vec<u16> = body
                .chunks(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            String::from_utf16(&units).map_err(|_| SmsError::MalformedPdu("bad UTF-16"))?
        }
    };
    Ok(DecodedSubmit {
        to,
        text,
        encoding,
        concat,
        validity,
    })
}

fn parse_concat(mut udh: &[u8]) -> Result<Option<Concat>, SmsError> {
    let mut found = None;
    while let [iei, len, rest @ ..] = udh {
        let len = usize::from(*len);
        let data = rest
            .get(..len)
            .ok_or(SmsError::MalformedPdu("UDH element"))?;
        match (iei, data) {
            (0x00, [r, total, seq]) => {
                found = Some(Concat {
                    reference: u16::from(*r),
                    total: *total,
                    seq: *seq,
                })
            }
            (0x08, [r1, r2, total, seq]) => {
                found = Some(Concat {
                    reference: u16::from_be_bytes([*r1, *r2]),
                    total: *total,
                    seq: *seq,
                })
            }
            _ => {}
        }
        udh = &rest[len..];
    }
    Ok(found)
}

/// Joins decoded parts of one concatenated message in sequence order; `None` if a part
/// is missing or they disagree on reference/total.
pub fn join_parts(parts: &[DecodedSubmit]) -> Option<String> {
    let Some(first) = parts.first() else {
        return Some(String::new());
    };
    let Some(c0) = first.concat else {
        return (parts.len() == 1).then(|| first.text.clone());
    };
    let mut sorted: Vec<&DecodedSubmit> = parts.iter().collect();
    sorted.sort_by_key(|p| p.concat.map(|c| c.seq));
    let ok = sorted.len() == usize::from(c0.total)
        && sorted.iter().enumerate().all(|(i, p)| {
            p.concat.is_some_and(|c| {
                c.reference == c0.reference && c.total == c0.total && usize::from(c.seq) == i + 1
            })
        });
    ok.then(|| sorted.iter().map(|p| p.text.as_str()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn num() -> PhoneNumber {
        PhoneNumber::parse("+963944123456").unwrap()
    }

    #[test]
    fn worked_example_from_protocols_md() {
        let pdus = encode_submit(&num(), "مرحبا", 0).unwrap();
        assert_eq!(pdus.len(), 1);
        assert_eq!(
            pdus[0].hex,
            "0011000C916993442143650008AA0A06450631062D06280627"
        );
        assert_eq!(pdus[0].tpdu_len, 24);
        assert_eq!(pdus[0].at_command().line, "AT+CMGS=24");
        let d = decode_submit(&pdus[0].hex).unwrap();
        assert_eq!(d.text, "مرحبا");
        assert_eq!(d.to, num());
        assert_eq!(d.encoding, Encoding::Ucs2);
        assert_eq!(d.validity, Some(0xAA));
        assert_eq!(d.concat, None);
    }

    /// "hello" to +963944123456 in GSM-7, derived by hand:
    /// septets h=68 e=65 l=6C l=6C o=6F, packed LSB first:
    /// o0 = 68 | (65&1)<<7 = E8; o1 = 65>>1 | (6C&3)<<6 = 32; o2 = 6C>>2 | (6C&7)<<5 = 9B;
    /// o3 = 6C>>3 | (6F&F)<<4 = FD; o4 = 6F>>4 = 06 → E8329BFD06, UDL 05 (septets).
    /// TPDU: 11 00 0C 91 699344214365 00 00 AA 05 E8329BFD06 = 19 octets.
    #[test]
    fn gsm7_hello_vector() {
        let pdus = encode_submit(&num(), "hello", 0).unwrap();
        assert_eq!(pdus[0].hex, "0011000C916993442143650000AA05E8329BFD06");
        assert_eq!(pdus[0].tpdu_len, 19);
        assert_eq!(decode_submit(&pdus[0].hex).unwrap().text, "hello");
    }

    #[test]
    fn national_number_with_odd_digits_and_extension_chars() {
        let to = PhoneNumber::parse("0944123").unwrap();
        let pdus = encode_submit(&to, "a€[b]", 0).unwrap();
        // 7 digits, type 81, semi-octets 90 44 21 F3.
        assert!(
            pdus[0].hex.starts_with("0011000781904421F30000AA08"),
            "{}",
            pdus[0].hex
        );
        let d = decode_submit(&pdus[0].hex).unwrap();
        assert_eq!(d.text, "a€[b]");
        assert_eq!(d.to, to);
        assert!(PhoneNumber::parse("+96x").is_err());
        assert!(PhoneNumber::parse("+").is_err());
    }

    #[test]
    fn concatenated_arabic() {
        let text = "مرحبا، وثيقتك جاهزة للاستلام من مركز خدمة المواطن في الميدان. يرجى إحضار الهوية الشخصية والإيصال.";
        let units = text.encode_utf16().count();
        assert!(units > 70);
        let pdus = encode_submit(&num(), text, 0x42).unwrap();
        assert_eq!(pdus.len(), units.div_ceil(67));
        // First part: UDHI set, UDL 0x8C (6 header + 134 text octets), header 050003 42 02 01.
        assert!(
            pdus[0]
                .hex
                .starts_with("0051000C916993442143650008AA8C05000342020106"),
            "{}",
            pdus[0].hex
        );
        assert_eq!(pdus[0].tpdu_len, 14 + 140);
        let decoded: Vec<DecodedSubmit> = pdus
            .iter()
            .map(|p| decode_submit(&p.hex).unwrap())
            .collect();
        assert_eq!(decoded[0].text.encode_utf16().count(), 67);
        assert_eq!(join_parts(&decoded).as_deref(), Some(text));
    }

    #[test]
    fn concatenated_gsm7_with_fill_bit() {
        let text = "Your document is ready for pickup at the Midan citizen service center. Please bring your ID card and the receipt. Office hours: 8:00-14:00, Sunday to Thursday. {ref 42}";
        assert!(text.len() > 160);
        let pdus = encode_submit(&num(), text, 7).unwrap();
        assert_eq!(pdus.len(), 2);
        // UDL = 7 header septets + 153 text septets = 160 = A0; header 050003 07 02 01;
        // first text septet 'Y' (0x59) shifted by one fill bit = B2.
        assert!(
            pdus[0]
                .hex
                .starts_with("0051000C916993442143650000AAA0050003070201B2"),
            "{}",
            pdus[0].hex
        );
        assert_eq!(pdus[0].tpdu_len, 14 + 140);
        let decoded: Vec<DecodedSubmit> = pdus
            .iter()
            .map(|p| decode_submit(&p.hex).unwrap())
            .collect();
        assert_eq!(decoded[0].text.chars().count(), 153);
        assert_eq!(join_parts(&decoded).as_deref(), Some(text));
    }

    #[test]
    fn escape_and_surrogates_are_not_split() {
        // 152 plain septets then '€' (2 septets) must move '€' to part 2.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(20));
        let parts: Vec<_> = encode_submit(&num(), &text, 1)
            .unwrap()
            .iter()
            .map(|p| decode_submit(&p.hex).unwrap())
            .collect();
        assert_eq!(parts[0].text, "a".repeat(152));
        assert_eq!(join_parts(&parts).unwrap(), text);
        // 66 units then an emoji (surrogate pair) must move the emoji to part 2.
        let text = format!("{}😀{}", "ب".repeat(66), "ت".repeat(10));
        let parts: Vec<_> = encode_submit(&num(), &text, 1)
            .unwrap()
            .iter()
            .map(|p| decode_submit(&p.hex).unwrap())
            .collect();
        assert_eq!(parts[0].text, "ب".repeat(66));
        assert_eq!(join_parts(&parts).unwrap(), text);
    }

    #[test]
    fn single_part_limits() {
        assert_eq!(encode_submit(&num(), &"x".repeat(160), 0).unwrap().len(), 1);
        assert_eq!(encode_submit(&num(), &"x".repeat(161), 0).unwrap().len(), 2);
        assert_eq!(encode_submit(&num(), &"س".repeat(70), 0).unwrap().len(), 1);
        assert_eq!(encode_submit(&num(), &"س".repeat(71), 0).unwrap().len(), 2);
    }

    fn text_strategy() -> impl Strategy<Value = String> {
        let gsm = proptest::sample::select(
            GSM7.iter()
                .copied()
                .filter(|c| *c != '\u{1b}')
                .collect::<Vec<_>>(),
        );
        let ext = proptest::sample::select(GSM7_EXT.iter().map(|e| e.1).collect::<Vec<_>>());
        let other = proptest::sample::select(vec!['م', 'ر', 'ح', '😀', '中', 'ـ']);
        prop_oneof![
            proptest::collection::vec(prop_oneof![4 => gsm.clone(), 1 => ext.clone()], 0..400),
            proptest::collection::vec(prop_oneof![gsm, ext, other], 0..400),
        ]
        .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #[test]
        fn roundtrip(text in text_strategy(), r in any::<u8>()) {
            let pdus = encode_submit(&num(), &text, r).unwrap();
            let parts: Vec<DecodedSubmit> = pdus.iter().map(|p| decode_submit(&p.hex).unwrap()).collect();
            for p in &pdus {
                // 14 octets of TPDU header for this number + at most 140 octets of user data.
                prop_assert!(p.tpdu_len <= 14 + 140);
                prop_assert_eq!(p.hex.len() / 2, p.tpdu_len + 1);
            }
            prop_assert_eq!(join_parts(&parts), Some(text));
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_submit(&hex::encode(bytes));
        }
    }
}
