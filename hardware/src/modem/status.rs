//! Typed parsers for the modem's status replies and the snapshot the driver publishes.
//!
//! Each parser takes the payload after the prefix (`+CSQ: 20,99` → `20,99`) and either
//! returns a typed value or a [`StatusError`] naming what was wrong; none panics on any
//! input. `+CREG`/`+CGREG` accept both the solicited shape `n,stat[,lac,ci[,act]]` and
//! the unsolicited shape `stat[,lac,ci[,act]]`, told apart by where the quoted `lac`
//! sits.

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};

/// A status payload that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// The payload does not have the shape of this reply.
    #[error("malformed {what}: {payload:?}")]
    Malformed {
        /// Which reply was being parsed.
        what: &'static str,
        /// The offending payload.
        payload: String,
    },
}

fn malformed(what: &'static str, payload: &str) -> StatusError {
    StatusError::Malformed {
        what,
        payload: payload.to_owned(),
    }
}

/// State of the SIM card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimState {
    /// Not asked yet.
    Unknown,
    /// `READY`.
    Ready,
    /// No SIM (`+CME ERROR: 10`).
    Missing,
    /// `SIM PIN`: the SIM wants its PIN.
    PinRequired,
    /// `SIM PUK`: the SIM is blocked.
    PukRequired,
    /// SIM failure or busy (`+CME ERROR: 13`/`14`) or another `+CPIN` answer.
    Other(String),
}

impl SimState {
    /// Parses the payload of `+CPIN: <code>`.
    pub fn parse_cpin(payload: &str) -> Self {
        match payload.trim().trim_matches('"') {
            "READY" => SimState::Ready,
            "SIM PIN" => SimState::PinRequired,
            "SIM PUK" => SimState::PukRequired,
            "NOT INSERTED" => SimState::Missing,
            other => SimState::Other(other.to_owned()),
        }
    }

    /// Maps a `+CME ERROR` code answered to `AT+CPIN?`.
    pub fn from_cme(code: u16) -> Self {
        match code {
            10 => SimState::Missing,
            11 => SimState::PinRequired,
            12 => SimState::PukRequired,
            13 => SimState::Other("SIM failure".into()),
            14 => SimState::Other("SIM busy".into()),
            n => SimState::Other(format!("CME error {n}")),
        }
    }
}

/// Received signal, from `+CSQ: <rssi>,<ber>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    /// 0–31, or 99 for unknown.
    pub rssi: u8,
    /// Bit error rate class 0–7, or 99 for unknown.
    pub ber: u8,
}

impl Signal {
    /// Parses `rssi,ber`.
    pub fn parse(payload: &str) -> Result<Self, StatusError> {
        let mut it = payload.split(',').map(|s| s.trim().parse::<u8>());
        match (it.next(), it.next(), it.next()) {
            (Some(Ok(rssi)), Some(Ok(ber)), None) if rssi <= 31 || rssi == 99 => {
                Ok(Self { rssi, ber })
            }
            _ => Err(malformed("+CSQ", payload)),
        }
    }

    /// Signal in dBm (−113 + 2·rssi); `None` when the modem does not know.
    pub fn dbm(&self) -> Option<i16> {
        (self.rssi <= 31).then(|| -113 + 2 * i16::from(self.rssi))
    }

    /// Bars 0–5 as a phone shows them.
    pub fn bars(&self) -> u8 {
        match self.dbm() {
            None => 0,
            Some(d) if d >= -73 => 5,
            Some(d) if d >= -83 => 4,
            Some(d) if d >= -93 => 3,
            Some(d) if d >= -103 => 2,
            Some(d) if d >= -111 => 1,
            Some(_) => 0,
        }
    }
}

/// Network registration status (`<stat>` of CREG/CGREG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegStatus {
    /// 0: not registered, not searching.
    NotRegistered,
    /// 1: registered on the home network.
    Home,
    /// 2: searching.
    Searching,
    /// 3: registration denied.
    Denied,
    /// 4 or anything unrecognised.
    Unknown,
    /// 5: registered, roaming.
    Roaming,
}

impl RegStatus {
    fn from_code(n: u8) -> Self {
        match n {
            0 => RegStatus::NotRegistered,
            1 => RegStatus::Home,
            2 => RegStatus::Searching,
            3 => RegStatus::Denied,
            5 => RegStatus::Roaming,
            _ => RegStatus::Unknown,
        }
    }

    /// The wire code.
    pub fn code(&self) -> u8 {
        match self {
            RegStatus::NotRegistered => 0,
            RegStatus::Home => 1,
            RegStatus::Searching => 2,
            RegStatus::Denied => 3,
            RegStatus::Unknown => 4,
            RegStatus::Roaming => 5,
        }
    }

    /// Registered, at home or roaming.
    pub fn is_registered(&self) -> bool {
        matches!(self, RegStatus::Home | RegStatus::Roaming)
    }
}

/// A registration report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    /// Registration status.
    pub status: RegStatus,
    /// Location area code.
    pub lac: Option<u32>,
    /// Cell id.
    pub ci: Option<u32>,
    /// Access technology (2 = UTRAN).
    pub act: Option<u8>,
}

impl Registration {
    /// Parses a CREG/CGREG payload in either shape; returns the URC mode `<n>` when the
    /// payload was the solicited shape.
    pub fn parse(payload: &str) -> Result<(Option<u8>, Self), StatusError> {
        let fields: Vec<&str> = payload.split(',').map(str::trim).collect();
        let quoted = fields.iter().position(|f| f.starts_with('"'));
        // Solicited: n,stat[,"lac","ci"[,act]]; unsolicited: stat[,"lac","ci"[,act]].
        let solicited = match quoted {
            Some(1) => false,
            Some(2) => true,
            Some(_) => return Err(malformed("+CREG", payload)),
            None => match fields.len() {
                1 => false,
                2 => true,
                _ => return Err(malformed("+CREG", payload)),
            },
        };
        let (n, rest) = if solicited {
            let n = fields[0]
                .parse::<u8>()
                .map_err(|_| malformed("+CREG", payload))?;
            (Some(n), &fields[1..])
        } else {
            (None, &fields[..])
        };
        let stat = rest
            .first()
            .and_then(|s| s.parse::<u8>().ok())
            .ok_or_else(|| malformed("+CREG", payload))?;
        let hex = |i: usize| -> Result<Option<u32>, StatusError> {
            match rest.get(i) {
                None => Ok(None),
                Some(s) => u32::from_str_radix(s.trim_matches('"'), 16)
                    .map(Some)
                    .map_err(|_| malformed("+CREG", payload)),
            }
        };
        let lac = hex(1)?;
        let ci = hex(2)?;
        if lac.is_some() != ci.is_some() || rest.len() > 4 {
            return Err(malformed("+CREG", payload));
        }
        let act = match rest.get(3) {
            None => None,
            Some(s) => Some(s.parse::<u8>().map_err(|_| malformed("+CREG", payload))?),
        };
        Ok((
            n,
            Self {
                status: RegStatus::from_code(stat),
                lac,
                ci,
                act,
            },
        ))
    }
}

/// The operator, from `+COPS: <mode>[,<format>,"<oper>"[,<AcT>]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Selection mode (0 automatic).
    pub mode: u8,
    /// Operator name or numeric code, as reported.
    pub name: Option<String>,
    /// Access technology (2 = UTRAN).
    pub act: Option<u8>,
}

impl Operator {
    /// Parses the COPS payload.
    pub fn parse(payload: &str) -> Result<Self, StatusError> {
        let err = || malformed("+COPS", payload);
        let (mode, rest) = match payload.split_once(',') {
            Some((m, r)) => (m, Some(r)),
            None => (payload, None),
        };
        let mode = mode.trim().parse::<u8>().map_err(|_| err())?;
        let Some(rest) = rest else {
            return Ok(Self {
                mode,
                name: None,
                act: None,
            });
        };
        let (_format, rest) = rest.split_once(',').ok_or_else(err)?;
        let rest = rest.trim();
        let after_open = rest.strip_prefix('"').ok_or_else(err)?;
        let close = after_open.find('"').ok_or_else(err)?;
        let name = after_open[..close].to_owned();
        let tail = after_open[close + 1..].trim();
        let act = match tail.strip_prefix(',') {
            Some(a) => Some(a.trim().parse::<u8>().map_err(|_| err())?),
            None if tail.is_empty() => None,
            None => return Err(err()),
        };
        Ok(Self {
            mode,
            name: Some(name),
            act,
        })
    }
}

/// Parses `+CCLK: "yy/MM/dd,hh:mm:ss±zz"` (zz in quarter hours) into an instant.
pub fn parse_cclk(payload: &str) -> Result<Timestamp, StatusError> {
    let err = || malformed("+CCLK", payload);
    let s = payload.trim().trim_matches('"');
    let (date, time) = s.split_once(',').ok_or_else(err)?;
    let num = |x: &str| x.parse::<i32>().map_err(|_| err());
    let d: Vec<&str> = date.split('/').collect();
    if d.len() != 3 {
        return Err(err());
    }
    let sign_at = time.find(['+', '-']).ok_or_else(err)?;
    let (hms, zone) = time.split_at(sign_at);
    let t: Vec<&str> = hms.split(':').collect();
    if t.len() != 3 {
        return Err(err());
    }
    let quarters = num(&zone[1..])?;
    let quarters = if zone.starts_with('-') {
        -quarters
    } else {
        quarters
    };
    let small = |v: i32| i8::try_from(v).map_err(|_| err());
    let year = 2000 + num(d[0])?;
    let dt = jiff::civil::DateTime::new(
        i16::try_from(year).map_err(|_| err())?,
        small(num(d[1])?)?,
        small(num(d[2])?)?,
        small(num(t[0])?)?,
        small(num(t[1])?)?,
        small(num(t[2])?)?,
        0,
    )
    .map_err(|_| err())?;
    let offset = Offset::from_seconds(quarters * 15 * 60).map_err(|_| err())?;
    dt.to_zoned(TimeZone::fixed(offset))
        .map(|z| z.timestamp())
        .map_err(|_| err())
}

/// What the driver believes the modem is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModemState {
    /// Opening the port and running the init sequence.
    Starting,
    /// Answering, SIM ready, registered.
    Ready,
    /// Answering, but no SIM (or a SIM that needs a PIN/PUK).
    NoSim,
    /// Answering, SIM ready, not registered on circuit or packet service.
    NotRegistered,
    /// Stopped answering; being reset with `AT+CFUN=1,1`.
    Resetting,
    /// Resets did not help (or the port cannot be opened); see `last_error`.
    Dead,
    /// No modem configured on this node.
    NotConfigured,
}

/// Snapshot of the modem, published on a watch channel by the driver.
#[derive(Debug, Clone, PartialEq)]
pub struct ModemStatus {
    /// Overall state.
    pub state: ModemState,
    /// SIM state.
    pub sim: SimState,
    /// Last signal reading.
    pub signal: Option<Signal>,
    /// Circuit-switched registration (CREG).
    pub registration_cs: Option<Registration>,
    /// Packet-switched registration (CGREG).
    pub registration_ps: Option<Registration>,
    /// Current operator.
    pub operator: Option<Operator>,
    /// Network time from the last `AT+CCLK?`, with the local instant it was read.
    pub network_time: Option<NetworkTime>,
    /// When the modem last answered OK.
    pub last_ok: Option<Timestamp>,
    /// AT commands in a row that got no answer.
    pub consecutive_timeouts: u32,
    /// The last problem, human-readable (shown on the technician page).
    pub last_error: Option<String>,
}

/// The network's clock, as read from the modem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkTime {
    /// The network's time.
    pub network: Timestamp,
    /// This node's wall clock when it was read (to measure skew).
    pub read_at: Timestamp,
}

impl ModemStatus {
    /// The snapshot before anything is known.
    pub fn starting() -> Self {
        Self::with_state(ModemState::Starting)
    }

    /// The snapshot of a node without a modem.
    pub fn not_configured() -> Self {
        Self::with_state(ModemState::NotConfigured)
    }

    fn with_state(state: ModemState) -> Self {
        Self {
            state,
            sim: SimState::Unknown,
            signal: None,
            registration_cs: None,
            registration_ps: None,
            operator: None,
            network_time: None,
            last_ok: None,
            consecutive_timeouts: 0,
            last_error: None,
        }
    }

    /// Registered for packet data (or circuit, when CGREG is unknown): usable as an uplink.
    pub fn is_registered(&self) -> bool {
        self.state == ModemState::Ready
    }

    /// Recomputes `state` from the SIM and registration fields (for an answering modem).
    pub fn derive_state(&mut self) {
        self.state = match &self.sim {
            SimState::Ready => {
                let cs = self
                    .registration_cs
                    .is_some_and(|r| r.status.is_registered());
                let ps = self
                    .registration_ps
                    .is_some_and(|r| r.status.is_registered());
                if cs || ps {
                    ModemState::Ready
                } else {
                    ModemState::NotRegistered
                }
            }
            SimState::Unknown => ModemState::Starting,
            _ => ModemState::NoSim,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn csq_maps_to_dbm_and_bars() {
        let s = Signal::parse("20,99").unwrap();
        assert_eq!(s.dbm(), Some(-73));
        assert_eq!(s.bars(), 5);
        assert_eq!(Signal::parse("0,0").unwrap().dbm(), Some(-113));
        assert_eq!(Signal::parse("31,0").unwrap().dbm(), Some(-51));
        assert_eq!(Signal::parse("99,99").unwrap().dbm(), None);
        assert_eq!(Signal::parse("99,99").unwrap().bars(), 0);
        assert_eq!(Signal::parse("10,0").unwrap().bars(), 3);
        assert!(Signal::parse("40,0").is_err());
        assert!(Signal::parse("x").is_err());
    }

    #[test]
    fn creg_both_shapes() {
        let (n, r) = Registration::parse("2,1,\"1A2B\",\"00C3\",2").unwrap();
        assert_eq!(n, Some(2));
        assert_eq!(r.status, RegStatus::Home);
        assert_eq!(r.lac, Some(0x1a2b));
        assert_eq!(r.ci, Some(0xc3));
        assert_eq!(r.act, Some(2));
        let (n, r) = Registration::parse("0,5").unwrap();
        assert_eq!((n, r.status), (Some(0), RegStatus::Roaming));
        let (n, r) = Registration::parse("2").unwrap();
        assert_eq!((n, r.status, r.lac), (None, RegStatus::Searching, None));
        let (n, r) = Registration::parse("1,\"1A2B\",\"00C3\",2").unwrap();
        assert_eq!((n, r.status, r.act), (None, RegStatus::Home, Some(2)));
        let (n, r) = Registration::parse("2,3,\"FFFE\",\"0001\"").unwrap();
        assert_eq!((n, r.status, r.act), (Some(2), RegStatus::Denied, None));
        assert!(Registration::parse("a,b,c").is_err());
        assert!(Registration::parse("").is_err());
    }

    #[test]
    fn cops_and_cpin() {
        let o = Operator::parse("0,0,\"SYRIATEL\",2").unwrap();
        assert_eq!(o.name.as_deref(), Some("SYRIATEL"));
        assert_eq!(o.act, Some(2));
        assert_eq!(Operator::parse("0").unwrap().name, None);
        assert_eq!(
            Operator::parse("0,2,\"41701\"").unwrap().name.as_deref(),
            Some("41701")
        );
        assert!(Operator::parse("0,0,SYRIATEL").is_err());
        assert_eq!(SimState::parse_cpin("READY"), SimState::Ready);
        assert_eq!(SimState::parse_cpin("SIM PIN"), SimState::PinRequired);
        assert_eq!(SimState::from_cme(10), SimState::Missing);
    }

    #[test]
    fn cclk_quarter_hour_zone() {
        let t = parse_cclk("\"26/11/29,09:30:15+12\"").unwrap();
        assert_eq!(t.to_string(), "2026-11-29T06:30:15Z");
        let t = parse_cclk("\"26/01/01,00:00:00-02\"").unwrap();
        assert_eq!(t.to_string(), "2026-01-01T00:30:00Z");
        assert!(parse_cclk("\"26/13/01,00:00:00+00\"").is_err());
        assert!(parse_cclk("garbage").is_err());
    }

    #[test]
    fn state_follows_sim_and_registration() {
        let mut s = ModemStatus::starting();
        s.sim = SimState::Missing;
        s.derive_state();
        assert_eq!(s.state, ModemState::NoSim);
        s.sim = SimState::Ready;
        s.registration_cs = Registration::parse("0,2").ok().map(|x| x.1);
        s.derive_state();
        assert_eq!(s.state, ModemState::NotRegistered);
        s.registration_ps = Registration::parse("1").ok().map(|x| x.1);
        s.derive_state();
        assert_eq!(s.state, ModemState::Ready);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = Signal::parse(&s);
            let _ = Registration::parse(&s);
            let _ = Operator::parse(&s);
            let _ = parse_cclk(&s);
            let _ = SimState::parse_cpin(&s);
        }

        #[test]
        fn creg_unsolicited_roundtrip(stat in 0u8..6, lac in any::<u16>(), ci in any::<u32>(), act in proptest::option::of(0u8..8)) {
            let mut wire = format!("{stat},\"{lac:04X}\",\"{ci:X}\"");
            if let Some(a) = act { wire.push_str(&format!(",{a}")); }
            let (n, r) = Registration::parse(&wire).unwrap();
            prop_assert_eq!(n, None);
            prop_assert_eq!(r.status.code(), stat);
            prop_assert_eq!(r.lac, Some(u32::from(lac)));
            prop_assert_eq!(r.ci, Some(ci));
            prop_assert_eq!(r.act, act);
        }
    }
}
