//! Power devices of a center: the solar charger and battery monitor (Victron VE.Direct),
//! the hybrid inverter (Voltronic/Axpert QPIGS/QMOD) and the generator controller
//! (Modbus RTU), one power model derived from whichever of them exist, the power policy,
//! and emulators of all three devices on pseudo-terminals.
//!
//! Layout: the wire formats (`vedirect`, `voltronic`, `generator`'s register decoding)
//! are sans-IO; `driver` holds the three tasks that own a port each and publish their
//! latest state on a `tokio::sync::watch`; `model` and `policy` are pure functions of
//! samples. Nothing here knows about configuration files or the node: callers hand in
//! plain settings structs.

pub mod controller;
pub mod driver;
pub mod emulator;
pub mod generator;
pub mod model;
pub mod policy;
pub mod start;
pub mod vedirect;
pub mod voltronic;

/// Parses a decimal string such as `"230.0"`, `"-1.25"` or `"57"` into an integer count of
/// `1 / scale` units (e.g. scale 1000 turns volts into millivolts), rounding toward zero on
/// excess digits. Returns `None` on anything that is not a plain decimal number.
pub(crate) fn parse_fixed(s: &str, scale: i64) -> Option<i64> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut value: i64 = 0;
    for b in int_part.bytes() {
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    value = value.checked_mul(scale)?;
    let mut unit = scale;
    for b in frac_part.bytes() {
        unit /= 10;
        if unit == 0 {
            break;
        }
        value = value.checked_add(i64::from(b - b'0').checked_mul(unit)?)?;
    }
    Some(if neg { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::parse_fixed;

    #[test]
    fn fixed_point_parsing() {
        assert_eq!(parse_fixed("230.0", 1000), Some(230_000));
        assert_eq!(parse_fixed("57.45", 1000), Some(57_450));
        assert_eq!(parse_fixed("49.9", 1000), Some(49_900));
        assert_eq!(parse_fixed("0014", 1000), Some(14_000));
        assert_eq!(parse_fixed("-1.2345", 1000), Some(-1_234));
        assert_eq!(parse_fixed("", 1000), None);
        assert_eq!(parse_fixed(".", 1000), None);
        assert_eq!(parse_fixed("1a", 1000), None);
        assert_eq!(parse_fixed("99999999999999999999", 1000), None);
    }
}
