//! A 3G modem emulator on a pseudo-terminal, speaking the driver's dialect.
//!
//! It answers the 27.007/27.005 commands the driver uses (`AT`, `ATE0/1`, `CMEE`, `CPIN`,
//! `CSQ`, `CREG`, `CGREG`, `COPS`, `CCLK`, `CMGF`, `CMGS` with the `> ` prompt,
//! `CFUN=1,1`) and the Quectel socket commands (`QICSGP`, `QIACT`, `QIDEACT`, `QIOPEN`,
//! `QISEND`, `QIRD`, `QICLOSE`, with `+QIURC` "recv"/"closed"). Sockets are a real TCP
//! passthrough to loopback addresses. Bytes on the serial line are paced like a UART
//! (115200 baud 8N1 = 11,520 bytes/s by default) in both directions.
//!
//! The [`EmulatorHandle`] turns knobs while it runs: signal, registration (with or
//! without URCs), missing SIM, reply delay, garbled replies, a hang (until reset, or
//! forever), the next SMS error code, and pacing. Every SMS accepted is decoded and
//! recorded for tests to read. Like a real module it powers on with echo on and comes
//! back from `AT+CFUN=1,1` with echo on, `RDY`, and all sockets gone.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::sms::{DecodedSubmit, PhoneNumber, decode_submit, join_parts};
use crate::pty::PtyMaster;

/// Bytes per second of 115200 baud 8N1.
pub const UART_115200: u32 = 11_520;

/// How the emulated module misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hang {
    /// Answers normally.
    No,
    /// Answers nothing until `AT+CFUN=1,1` (or until un-hung).
    UntilReset,
    /// Answers nothing, not even to a reset.
    Forever,
}

/// An SMS the emulator accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedSms {
    /// The PDU as received (hex).
    pub hex: String,
    /// The `AT+CMGS=` length it came with.
    pub cmgs_len: usize,
    /// The message reference answered.
    pub reference: u8,
    /// The decoded PDU.
    pub decoded: DecodedSubmit,
}

#[derive(Debug)]
struct Knobs {
    rssi: u8,
    reg_stat: u8,
    sim_present: bool,
    /// The SIM asks for its PIN (`+CPIN: SIM PIN`).
    sim_pin: bool,
    /// The operator name `+COPS?` gives while registered.
    operator: String,
    /// How far the network's clock (`+CCLK?`) is ahead of the real one, s.
    clock_offset_secs: i64,
    reply_delay: Duration,
    garbled: bool,
    hang: Hang,
    next_sms_error: Option<u16>,
    /// Fail the next part numbered `.0` (1-based) of a concatenated SMS with `.1`.
    part_error: Option<(u8, u16)>,
    bytes_per_sec: Option<u32>,
    reset_time: Duration,
}

#[derive(Debug, Default)]
struct Record {
    sms: Vec<RecordedSms>,
    resets: u32,
    commands: Vec<String>,
}

enum Control {
    RegistrationChanged,
    Urc(String),
    TcpOpened {
        id: u8,
        generation: u64,
        ok: bool,
    },
    TcpData {
        id: u8,
        generation: u64,
        data: Vec<u8>,
    },
    TcpClosed {
        id: u8,
        generation: u64,
    },
    ResetDone,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Controls a running emulator. Cheap to clone.
#[derive(Clone)]
pub struct EmulatorHandle {
    knobs: Arc<Mutex<Knobs>>,
    record: Arc<Mutex<Record>>,
    ctl: mpsc::UnboundedSender<Control>,
    path: PathBuf,
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Starts an emulator on a fresh pty; it runs until `cancel` fires.
pub fn start(cancel: CancellationToken) -> io::Result<(EmulatorHandle, JoinHandle<()>)> {
    let master = PtyMaster::open()?;
    let path = master.path().to_path_buf();
    let knobs = Arc::new(Mutex::new(Knobs {
        rssi: 20,
        reg_stat: 1,
        sim_present: true,
        sim_pin: false,
        operator: "SYRIATEL".into(),
        clock_offset_secs: 0,
        reply_delay: Duration::ZERO,
        garbled: false,
        hang: Hang::No,
        next_sms_error: None,
        part_error: None,
        bytes_per_sec: Some(UART_115200),
        reset_time: Duration::from_millis(100),
    }));
    let record = Arc::new(Mutex::new(Record::default()));
    let (ctl, ctl_rx) = mpsc::unbounded_channel();
    let emu = Emu {
        master,
        knobs: knobs.clone(),
        record: record.clone(),
        ctl_tx: ctl.clone(),
        ctl_rx,
        echo: true,
        cmee: 0,
        creg_n: 0,
        cgreg_n: 0,
        cmgf: 0,
        mode: Mode::Line,
        line: Vec::new(),
        sockets: HashMap::new(),
        pdp_active: false,
        mr: 0,
        resetting: false,
        generation: 0,
        tx_next: Instant::now(),
        rx_next: Instant::now(),
    };
    let task = tokio::spawn(emu.run(cancel));
    Ok((
        EmulatorHandle {
            knobs,
            record,
            ctl,
            path,
        },
        task,
    ))
}

impl EmulatorHandle {
    /// The serial device path to give the driver.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets the `+CSQ` rssi (0–31, 99 unknown).
    pub fn set_signal(&self, rssi: u8) {
        lock(&self.knobs).rssi = rssi;
    }

    /// Sets circuit and packet registration status (0–5); with `urc`, announces it with
    /// `+CREG`/`+CGREG` URCs (if the driver enabled them).
    pub fn set_registration(&self, stat: u8, urc: bool) {
        lock(&self.knobs).reg_stat = stat;
        if urc {
            let _ = self.ctl.send(Control::RegistrationChanged);
        }
    }

    /// Inserts or removes the SIM.
    pub fn set_sim_present(&self, present: bool) {
        lock(&self.knobs).sim_present = present;
    }

    /// Makes the SIM ask for its PIN (true) or be unlocked (false).
    pub fn set_sim_pin(&self, pin: bool) {
        lock(&self.knobs).sim_pin = pin;
    }

    /// The operator name the module reports while registered.
    pub fn set_operator(&self, name: &str) {
        lock(&self.knobs).operator = name.to_owned();
    }

    /// Sets the network's clock `secs` ahead of the real one (negative: behind).
    pub fn set_clock_offset(&self, secs: i64) {
        lock(&self.knobs).clock_offset_secs = secs;
    }

    /// Delay before every reply.
    pub fn set_reply_delay(&self, delay: Duration) {
        lock(&self.knobs).reply_delay = delay;
    }

    /// Emits a line of noise before every reply.
    pub fn set_garbled(&self, garbled: bool) {
        lock(&self.knobs).garbled = garbled;
    }

    /// Makes the module stop answering (or answer again with [`Hang::No`]).
    pub fn set_hang(&self, hang: Hang) {
        lock(&self.knobs).hang = hang;
    }

    /// The next `AT+CMGS` fails with `+CMS ERROR: <code>`.
    pub fn fail_next_sms(&self, code: u16) {
        lock(&self.knobs).next_sms_error = Some(code);
    }

    /// The next part numbered `seq` (1-based) of a concatenated SMS fails with
    /// `+CMS ERROR: <code>`, once; the other parts go through.
    pub fn fail_sms_part(&self, seq: u8, code: u16) {
        lock(&self.knobs).part_error = Some((seq, code));
    }

    /// Bytes per second on the serial line each way; `None` is unpaced.
    pub fn set_pace(&self, bytes_per_sec: Option<u32>) {
        lock(&self.knobs).bytes_per_sec = bytes_per_sec;
    }

    /// How long a `AT+CFUN=1,1` keeps the module silent.
    pub fn set_reset_time(&self, t: Duration) {
        lock(&self.knobs).reset_time = t;
    }

    /// Sends a raw URC line (e.g. `+QIURC: "pdpdeact",1`).
    pub fn inject_urc(&self, line: &str) {
        let _ = self.ctl.send(Control::Urc(line.to_owned()));
    }

    /// Every SMS part accepted so far.
    pub fn sent_sms(&self) -> Vec<RecordedSms> {
        lock(&self.record).sms.clone()
    }

    /// Accepted messages with concatenated parts joined, in order of their first part.
    pub fn sent_messages(&self) -> Vec<(PhoneNumber, String)> {
        let parts = self.sent_sms();
        let mut out: Vec<(PhoneNumber, String)> = Vec::new();
        let mut groups: Vec<(PhoneNumber, u16, Vec<DecodedSubmit>)> = Vec::new();
        for p in parts {
            let d = p.decoded;
            match d.concat {
                None => out.push((d.to.clone(), d.text.clone())),
                Some(c) => {
                    if let Some(g) = groups
                        .iter_mut()
                        .find(|g| g.0 == d.to && g.1 == c.reference)
                    {
                        g.2.push(d);
                    } else {
                        groups.push((d.to.clone(), c.reference, vec![d]));
                    }
                }
            }
        }
        for (to, _, parts) in groups {
            if let Some(text) = join_parts(&parts) {
                out.push((to, text));
            }
        }
        out
    }

    /// Number of `AT+CFUN=1,1` resets performed.
    pub fn resets(&self) -> u32 {
        lock(&self.record).resets
    }

    /// Every command line received (answered or not), oldest first.
    pub fn commands(&self) -> Vec<String> {
        lock(&self.record).commands.clone()
    }
}

enum Mode {
    Line,
    Pdu {
        len: usize,
        buf: Vec<u8>,
    },
    SocketData {
        id: u8,
        remaining: usize,
        buf: Vec<u8>,
    },
}

struct EmuSocket {
    generation: u64,
    to_tcp: mpsc::UnboundedSender<Vec<u8>>,
    rx_buf: Vec<u8>,
    notified: bool,
    connected: bool,
    task: JoinHandle<()>,
}

struct Emu {
    master: PtyMaster,
    knobs: Arc<Mutex<Knobs>>,
    record: Arc<Mutex<Record>>,
    ctl_tx: mpsc::UnboundedSender<Control>,
    ctl_rx: mpsc::UnboundedReceiver<Control>,
    echo: bool,
    cmee: u8,
    creg_n: u8,
    cgreg_n: u8,
    cmgf: u8,
    mode: Mode,
    line: Vec<u8>,
    sockets: HashMap<u8, EmuSocket>,
    pdp_active: bool,
    mr: u8,
    resetting: bool,
    generation: u64,
    tx_next: Instant,
    rx_next: Instant,
}

async fn pace(next: &mut Instant, n: usize, rate: Option<u32>) {
    let Some(rate) = rate.filter(|r| *r > 0) else {
        return;
    };
    let now = Instant::now();
    if *next < now {
        *next = now;
    }
    *next += Duration::from_secs_f64(n as f64 / f64::from(rate));
    sleep_until(*next).await;
}

const NOISE: &[u8] = b"#$%&*~^!?_=:;";

impl Emu {
    async fn run(mut self, cancel: CancellationToken) {
        let mut buf = vec![0u8; 1024];
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.master.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let rate = self.knobs().bytes_per_sec;
                        pace(&mut self.rx_next, n, rate).await;
                        if self.resetting {
                            continue;
                        }
                        let bytes = buf[..n].to_vec();
                        for b in bytes {
                            if self.on_byte(b).await.is_err() {
                                return;
                            }
                        }
                    }
                },
                Some(c) = self.ctl_rx.recv() => {
                    if self.on_control(c).await.is_err() {
                        break;
                    }
                }
            }
        }
        for (_, s) in self.sockets.drain() {
            s.task.abort();
        }
    }

    fn knobs(&self) -> MutexGuard<'_, Knobs> {
        lock(&self.knobs)
    }

    fn hung(&self) -> bool {
        self.knobs().hang != Hang::No
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        for chunk in bytes.chunks(64) {
            self.master.write_all(chunk).await?;
            let rate = self.knobs().bytes_per_sec;
            pace(&mut self.tx_next, chunk.len(), rate).await;
        }
        Ok(())
    }

    async fn urc(&mut self, line: &str) -> io::Result<()> {
        if self.resetting || self.hung() {
            return Ok(());
        }
        self.write(format!("\r\n{line}\r\n").as_bytes()).await
    }

    /// Delay and noise that precede every reply.
    async fn before_reply(&mut self) -> io::Result<()> {
        let (delay, garbled) = {
            let k = self.knobs();
            (k.reply_delay, k.garbled)
        };
        if !delay.is_zero() {
            sleep(delay).await;
        }
        if garbled {
            let noise: Vec<u8> = {
                let mut rng = rand::rng();
                let n = rng.random_range(3..12);
                (0..n)
                    .map(|_| {
                        if rng.random_bool(0.3) {
                            rng.random_range(0x80..=0xFF)
                        } else {
                            NOISE[rng.random_range(0..NOISE.len())]
                        }
                    })
                    .collect()
            };
            let mut out = b"\r\n".to_vec();
            out.extend(noise);
            out.extend(b"\r\n");
            self.write(&out).await?;
        }
        Ok(())
    }

    async fn ok(&mut self) -> io::Result<()> {
        self.write(b"\r\nOK\r\n").await
    }

    async fn info(&mut self, lines: &[String]) -> io::Result<()> {
        let mut out = String::new();
        for l in lines {
            out.push_str("\r\n");
            out.push_str(l);
            out.push_str("\r\n");
        }
        out.push_str("\r\nOK\r\n");
        self.write(out.as_bytes()).await
    }

    async fn cme(&mut self, code: u16) -> io::Result<()> {
        if self.cmee == 0 {
            self.write(b"\r\nERROR\r\n").await
        } else {
            self.write(format!("\r\n+CME ERROR: {code}\r\n").as_bytes())
                .await
        }
    }

    async fn error(&mut self) -> io::Result<()> {
        self.write(b"\r\nERROR\r\n").await
    }

    async fn on_byte(&mut self, b: u8) -> io::Result<()> {
        match &mut self.mode {
            Mode::Line => match b {
                b'\r' => {
                    let line =
                        String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    self.on_command(line).await?;
                }
                b'\n' => {}
                _ => {
                    if self.line.len() < 2048 {
                        self.line.push(b);
                    }
                }
            },
            Mode::Pdu { buf, .. } => match b {
                0x1A => {
                    let Mode::Pdu { len, buf } = std::mem::replace(&mut self.mode, Mode::Line)
                    else {
                        return Ok(());
                    };
                    self.finish_sms(len, &buf).await?;
                }
                0x1B => self.mode = Mode::Line,
                _ if buf.len() < 1024 => buf.push(b),
                _ => {}
            },
            Mode::SocketData { remaining, buf, .. } => {
                buf.push(b);
                *remaining -= 1;
                if *remaining == 0 {
                    let Mode::SocketData { id, buf, .. } =
                        std::mem::replace(&mut self.mode, Mode::Line)
                    else {
                        return Ok(());
                    };
                    let sent = self
                        .sockets
                        .get(&id)
                        .is_some_and(|s| s.connected && s.to_tcp.send(buf).is_ok());
                    let reply: &[u8] = if sent {
                        b"\r\nSEND OK\r\n"
                    } else {
                        b"\r\nSEND FAIL\r\n"
                    };
                    self.write(reply).await?;
                }
            }
        }
        Ok(())
    }

    fn registered(&self) -> bool {
        let k = self.knobs();
        k.sim_present && !k.sim_pin && matches!(k.reg_stat, 1 | 5)
    }

    fn reg_stat(&self) -> u8 {
        let k = self.knobs();
        if k.sim_present && !k.sim_pin {
            k.reg_stat
        } else {
            0
        }
    }

    /// `stat[,"lac","ci",act]`, the location part only when asked and registered.
    fn reg_fields(&self, with_location: bool) -> String {
        let stat = self.reg_stat();
        if with_location && matches!(stat, 1 | 5) {
            format!("{stat},\"1A2B\",\"00C3F1\",2")
        } else {
            stat.to_string()
        }
    }

    async fn on_command(&mut self, raw: String) -> io::Result<()> {
        let line = raw.trim().to_owned();
        if line.is_empty() {
            return Ok(());
        }
        lock(&self.record).commands.push(line.clone());
        let upper = line.to_ascii_uppercase();
        match self.knobs().hang {
            Hang::Forever => return Ok(()),
            Hang::UntilReset if upper != "AT+CFUN=1,1" => return Ok(()),
            _ => {}
        }
        if self.echo {
            self.write(format!("{raw}\r").as_bytes()).await?;
        }
        self.before_reply().await?;
        let arg = line
            .split_once('=')
            .map(|x| x.1.trim().to_owned())
            .unwrap_or_default();
        let num = |s: &str| s.trim().trim_matches('"').parse::<u32>().ok();
        match upper.as_str() {
            "AT" => self.ok().await,
            "ATE0" => {
                self.echo = false;
                self.ok().await
            }
            "ATE1" => {
                self.echo = true;
                self.ok().await
            }
            "ATI" => {
                self.info(&[
                    "Quectel".into(),
                    "UC20".into(),
                    "Revision: MARKAZ-EMU".into(),
                ])
                .await
            }
            "AT+CPIN?" => {
                let (present, pin) = {
                    let k = self.knobs();
                    (k.sim_present, k.sim_pin)
                };
                match (present, pin) {
                    (false, _) => self.cme(10).await,
                    (true, true) => self.info(&["+CPIN: SIM PIN".into()]).await,
                    (true, false) => self.info(&["+CPIN: READY".into()]).await,
                }
            }
            "AT+CSQ" => {
                let rssi = self.knobs().rssi;
                self.info(&[format!("+CSQ: {rssi},99")]).await
            }
            "AT+CREG?" => {
                let l = format!(
                    "+CREG: {},{}",
                    self.creg_n,
                    self.reg_fields(self.creg_n == 2)
                );
                self.info(&[l]).await
            }
            "AT+CGREG?" => {
                let l = format!(
                    "+CGREG: {},{}",
                    self.cgreg_n,
                    self.reg_fields(self.cgreg_n == 2)
                );
                self.info(&[l]).await
            }
            "AT+COPS?" => {
                let l = if self.registered() {
                    format!("+COPS: 0,0,\"{}\",2", self.knobs().operator)
                } else {
                    "+COPS: 0".to_owned()
                };
                self.info(&[l]).await
            }
            "AT+CCLK?" => {
                let tz = TimeZone::fixed(Offset::constant(3));
                let offset = SignedDuration::from_secs(self.knobs().clock_offset_secs);
                let now = (Timestamp::now() + offset).to_zoned(tz);
                let l = format!("+CCLK: \"{}+12\"", now.strftime("%y/%m/%d,%H:%M:%S"));
                self.info(&[l]).await
            }
            "AT+CFUN?" => self.info(&["+CFUN: 1".into()]).await,
            "AT+CFUN=1,1" => {
                self.ok().await?;
                self.reset();
                Ok(())
            }
            "AT+QIACT=1" => {
                if self.registered() {
                    self.pdp_active = true;
                    self.ok().await
                } else {
                    self.cme(30).await
                }
            }
            "AT+QIACT?" => {
                if self.pdp_active {
                    self.info(&["+QIACT: 1,1,1,\"10.64.0.2\"".into()]).await
                } else {
                    self.ok().await
                }
            }
            "AT+QIDEACT=1" => {
                self.close_all_sockets();
                self.pdp_active = false;
                self.ok().await
            }
            _ if upper.starts_with("AT+CMEE=") => {
                self.cmee = num(&arg).unwrap_or(0) as u8;
                self.ok().await
            }
            _ if upper.starts_with("AT+CREG=") => {
                self.creg_n = num(&arg).unwrap_or(0) as u8;
                self.ok().await
            }
            _ if upper.starts_with("AT+CGREG=") => {
                self.cgreg_n = num(&arg).unwrap_or(0) as u8;
                self.ok().await
            }
            _ if upper.starts_with("AT+CMGF=") => {
                self.cmgf = num(&arg).unwrap_or(0) as u8;
                self.ok().await
            }
            _ if upper.starts_with("AT+CMGS=") => match num(&arg) {
                Some(len) if self.cmgf == 0 => {
                    self.write(b"\r\n> ").await?;
                    self.mode = Mode::Pdu {
                        len: len as usize,
                        buf: Vec::new(),
                    };
                    Ok(())
                }
                _ => self.error().await,
            },
            _ if upper.starts_with("AT+QICSGP=") => self.ok().await,
            _ if upper.starts_with("AT+QIOPEN=") => self.qiopen(&arg).await,
            _ if upper.starts_with("AT+QISEND=") => {
                let mut it = arg.split(',').map(num);
                match (it.next().flatten(), it.next().flatten()) {
                    (Some(id), Some(len))
                        if (1..=1460).contains(&len)
                            && self.sockets.get(&(id as u8)).is_some_and(|s| s.connected) =>
                    {
                        self.write(b"\r\n> ").await?;
                        self.mode = Mode::SocketData {
                            id: id as u8,
                            remaining: len as usize,
                            buf: Vec::with_capacity(len as usize),
                        };
                        Ok(())
                    }
                    _ => self.error().await,
                }
            }
            _ if upper.starts_with("AT+QIRD=") => {
                let mut it = arg.split(',').map(num);
                let id = it.next().flatten().map(|i| i as u8);
                let want = it.next().flatten().unwrap_or(1500).min(1500) as usize;
                let Some(s) = id.and_then(|id| self.sockets.get_mut(&id)) else {
                    return self.error().await;
                };
                let n = want.min(s.rx_buf.len());
                let data: Vec<u8> = s.rx_buf.drain(..n).collect();
                if n == 0 {
                    s.notified = false;
                }
                let mut out = format!("\r\n+QIRD: {n}\r\n").into_bytes();
                if n > 0 {
                    out.extend(data);
                    out.extend(b"\r\n");
                }
                out.extend(b"\r\nOK\r\n");
                self.write(&out).await
            }
            _ if upper.starts_with("AT+QICLOSE=") => {
                if let Some(id) = num(&arg)
                    && let Some(s) = self.sockets.remove(&(id as u8))
                {
                    s.task.abort();
                }
                self.ok().await
            }
            _ => self.error().await,
        }
    }

    async fn qiopen(&mut self, arg: &str) -> io::Result<()> {
        let fields: Vec<&str> = arg.split(',').map(|f| f.trim().trim_matches('"')).collect();
        let parsed = match fields.as_slice() {
            [_ctx, id, proto, host, port, ..] if proto.eq_ignore_ascii_case("TCP") => {
                match (id.parse::<u8>(), port.parse::<u16>()) {
                    (Ok(id), Ok(port)) if id < 12 => Some((id, host.to_string(), port)),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some((id, host, port)) = parsed else {
            return self.error().await;
        };
        self.ok().await?;
        if !self.pdp_active {
            return self.urc(&format!("+QIOPEN: {id},561")).await;
        }
        if self.sockets.contains_key(&id) {
            return self.urc(&format!("+QIOPEN: {id},563")).await;
        }
        self.generation += 1;
        let generation = self.generation;
        let (to_tcp, from_modem) = mpsc::unbounded_channel();
        let ctl = self.ctl_tx.clone();
        let task = tokio::spawn(passthrough(id, generation, host, port, from_modem, ctl));
        self.sockets.insert(
            id,
            EmuSocket {
                generation,
                to_tcp,
                rx_buf: Vec::new(),
                notified: false,
                connected: false,
                task,
            },
        );
        Ok(())
    }

    async fn finish_sms(&mut self, len: usize, buf: &[u8]) -> io::Result<()> {
        let hex = String::from_utf8_lossy(buf).trim().to_owned();
        let seq = decode_submit(&hex)
            .ok()
            .and_then(|d| d.concat.map(|c| c.seq));
        let (forced, sim, registered) = {
            let mut k = self.knobs();
            let part = match (k.part_error, seq) {
                (Some((want, code)), Some(seq)) if want == seq => {
                    k.part_error = None;
                    Some(code)
                }
                _ => None,
            };
            (
                k.next_sms_error.take().or(part),
                k.sim_present,
                matches!(k.reg_stat, 1 | 5),
            )
        };
        let code = if let Some(code) = forced {
            Some(code)
        } else if !sim {
            Some(310)
        } else if !registered {
            Some(331)
        } else {
            None
        };
        if let Some(code) = code {
            return self
                .write(format!("\r\n+CMS ERROR: {code}\r\n").as_bytes())
                .await;
        }
        let sca_octets = hex
            .get(..2)
            .and_then(|s| u8::from_str_radix(s, 16).ok())
            .map_or(0, |n| 1 + usize::from(n));
        let decoded = decode_submit(&hex)
            .ok()
            .filter(|_| hex.len() / 2 == len + sca_octets);
        let Some(decoded) = decoded else {
            return self.write(b"\r\n+CMS ERROR: 304\r\n").await;
        };
        self.mr = self.mr.wrapping_add(1);
        let reference = self.mr;
        lock(&self.record).sms.push(RecordedSms {
            hex,
            cmgs_len: len,
            reference,
            decoded,
        });
        self.info(&[format!("+CMGS: {reference}")]).await
    }

    fn close_all_sockets(&mut self) {
        for (_, s) in self.sockets.drain() {
            s.task.abort();
        }
    }

    fn reset(&mut self) {
        let reset_time = {
            let mut k = self.knobs();
            if k.hang == Hang::UntilReset {
                k.hang = Hang::No;
            }
            k.reset_time
        };
        lock(&self.record).resets += 1;
        self.close_all_sockets();
        self.pdp_active = false;
        self.echo = true;
        self.cmee = 0;
        self.creg_n = 0;
        self.cgreg_n = 0;
        self.cmgf = 0;
        self.mode = Mode::Line;
        self.line.clear();
        self.resetting = true;
        let ctl = self.ctl_tx.clone();
        tokio::spawn(async move {
            sleep(reset_time).await;
            let _ = ctl.send(Control::ResetDone);
        });
    }

    async fn on_control(&mut self, c: Control) -> io::Result<()> {
        match c {
            Control::ResetDone => {
                self.resetting = false;
                self.urc("RDY").await?;
            }
            Control::Urc(line) => self.urc(&line).await?,
            Control::RegistrationChanged => {
                if self.creg_n > 0 {
                    let l = format!("+CREG: {}", self.reg_fields(self.creg_n == 2));
                    self.urc(&l).await?;
                }
                if self.cgreg_n > 0 {
                    let l = format!("+CGREG: {}", self.reg_fields(self.cgreg_n == 2));
                    self.urc(&l).await?;
                }
            }
            Control::TcpOpened { id, generation, ok } => {
                let Some(s) = self
                    .sockets
                    .get_mut(&id)
                    .filter(|s| s.generation == generation)
                else {
                    return Ok(());
                };
                if ok {
                    s.connected = true;
                    self.urc(&format!("+QIOPEN: {id},0")).await?;
                } else {
                    self.sockets.remove(&id);
                    self.urc(&format!("+QIOPEN: {id},566")).await?;
                }
            }
            Control::TcpData {
                id,
                generation,
                data,
            } => {
                let Some(s) = self
                    .sockets
                    .get_mut(&id)
                    .filter(|s| s.generation == generation)
                else {
                    return Ok(());
                };
                s.rx_buf.extend(data);
                if !s.notified {
                    s.notified = true;
                    self.urc(&format!("+QIURC: \"recv\",{id}")).await?;
                }
            }
            Control::TcpClosed { id, generation } => {
                let Some(s) = self
                    .sockets
                    .get_mut(&id)
                    .filter(|s| s.generation == generation)
                else {
                    return Ok(());
                };
                s.connected = false;
                self.urc(&format!("+QIURC: \"closed\",{id}")).await?;
            }
        }
        Ok(())
    }
}

/// One emulated socket: a real TCP connection to a loopback address.
async fn passthrough(
    id: u8,
    generation: u64,
    host: String,
    port: u16,
    mut from_modem: mpsc::UnboundedReceiver<Vec<u8>>,
    ctl: mpsc::UnboundedSender<Control>,
) {
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(a) => a.filter(|a| a.ip().is_loopback()).collect(),
        Err(_) => Vec::new(),
    };
    let stream = match addrs.first() {
        Some(addr) => tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .ok()
            .and_then(Result::ok),
        None => None,
    };
    let Some(stream) = stream else {
        let _ = ctl.send(Control::TcpOpened {
            id,
            generation,
            ok: false,
        });
        return;
    };
    let _ = ctl.send(Control::TcpOpened {
        id,
        generation,
        ok: true,
    });
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 4096];
    let mut writing = true;
    loop {
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = ctl.send(Control::TcpData { id, generation, data: buf[..n].to_vec() });
                }
            },
            m = from_modem.recv(), if writing => match m {
                Some(data) => {
                    if wr.write_all(&data).await.is_err() {
                        break;
                    }
                }
                None => {
                    writing = false;
                    let _ = wr.shutdown().await;
                }
            },
        }
    }
    let _ = ctl.send(Control::TcpClosed { id, generation });
}
