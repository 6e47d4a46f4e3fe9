//! The power device tasks: a VE.Direct reader, a Voltronic inverter poller and a Modbus
//! generator poller. Each owns its serial port, publishes its latest state on a
//! `tokio::sync::watch` channel, and stops when its `CancellationToken` is cancelled.
//!
//! Shape: `XDriver::new(settings)` returns the driver and a receiver (the generator also
//! a [`GeneratorHandle`] for commands); the caller spawns `driver.run(cancel)` on its
//! `TaskTracker`. Guarantees: every await on the device has a timeout; a device that says
//! nothing valid for `stale_after` is published as `stale` (its last reading is kept, so
//! the UI can show what it last said and since when); a port that cannot be opened or
//! fails is retried after `retry_after`, the error being published; nobody ever waits on
//! a device except a generator command's caller, and that wait is bounded too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior, timeout, timeout_at};
use tokio_serial::{SerialPort, SerialPortBuilderExt, SerialStream};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use super::generator::{self, GeneratorCommand, GeneratorError, GeneratorMap, GeneratorReading};
use super::model::{Devices, PowerSample, PvFigures};
pub use super::start::StartSettings;
use super::start::{StartAction, StartPhase, StartSupervisor};
use super::vedirect::{BmvReading, MpptReading, Parser, ParserStats, Reading};
use super::voltronic::{self, Command, Framer, Mode, Qpigs, VoltronicError};

fn open(port: &Path, baud: u32) -> Result<SerialStream, String> {
    tokio_serial::new(port.to_string_lossy(), baud)
        .open_native_async()
        .map_err(|e| format!("{}: {e}", port.display()))
}

/// Sleeps, unless cancelled first; returns false if cancelled.
async fn pause(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// The power sample of this moment from the drivers' latest states (pass clones of what
/// the watch receivers hold). Stale devices are left out, so a silent device never passes
/// for a live one; when several VE.Direct ports are given, the first fresh MPPT and the
/// first fresh battery monitor are used.
pub fn sample(
    at: Timestamp,
    vedirect: &[VeDirectState],
    inverter: Option<&InverterState>,
    generator: Option<&GeneratorState>,
) -> PowerSample {
    let fresh = || vedirect.iter().filter(|s| !s.stale);
    let inverter = inverter
        .filter(|s| !s.stale)
        .and_then(|s| s.status.as_ref().map(|q| (q, s.mode)));
    PowerSample::derive(
        at,
        &Devices {
            mppt: fresh().find_map(|s| s.mppt.as_ref()),
            bmv: fresh().find_map(|s| s.bmv.as_ref()),
            inverter,
            generator: generator
                .filter(|s| !s.stale)
                .and_then(|s| s.reading.as_ref()),
        },
    )
}

/// PV power per charger from the fresh devices (the same choice as [`sample`]).
pub fn pv_figures(vedirect: &[VeDirectState], inverter: Option<&InverterState>) -> PvFigures {
    let mppt = vedirect
        .iter()
        .filter(|s| !s.stale)
        .find_map(|s| s.mppt.as_ref());
    let inverter = inverter
        .filter(|s| !s.stale)
        .and_then(|s| s.status.as_ref().map(|q| (q, s.mode)));
    PvFigures::of(&Devices {
        mppt,
        inverter,
        ..Devices::default()
    })
}

// ---------------------------------------------------------------- VE.Direct

/// Settings of a VE.Direct port (one MPPT or one battery monitor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeDirectSettings {
    /// Serial device, e.g. `/dev/ttyUSB1`.
    pub port: PathBuf,
    /// 19200 for VE.Direct.
    pub baud: u32,
    /// No verified block for this long → stale.
    pub stale_after: Duration,
    /// Wait before reopening a failed port; a port silent for three `stale_after` is
    /// also reopened (USB adapters hang).
    pub retry_after: Duration,
}

impl VeDirectSettings {
    /// Defaults for a device on `port`: 19200 baud, stale after 5 s, retry after 2 s.
    pub fn new(port: impl Into<PathBuf>) -> Self {
        Self {
            port: port.into(),
            baud: 19_200,
            stale_after: Duration::from_secs(5),
            retry_after: Duration::from_secs(2),
        }
    }
}

/// What a VE.Direct port last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeDirectState {
    /// Latest MPPT reading, if the device is a solar charger.
    pub mppt: Option<MpptReading>,
    /// Latest battery monitor reading, if the device is a BMV/SmartShunt.
    pub bmv: Option<BmvReading>,
    /// When the last verified block arrived.
    pub updated_at: Option<Timestamp>,
    /// No verified block within `stale_after` (true until the first one).
    pub stale: bool,
    /// Parser counters (bad checksums, HEX frames…).
    pub stats: ParserStats,
    /// Verified blocks whose fields could not be read.
    pub field_errors: u64,
    /// Last port error, cleared when the port opens.
    pub port_error: Option<String>,
}

impl Default for VeDirectState {
    fn default() -> Self {
        Self {
            mppt: None,
            bmv: None,
            updated_at: None,
            stale: true,
            stats: ParserStats::default(),
            field_errors: 0,
            port_error: None,
        }
    }
}

/// The task that owns a VE.Direct port.
#[derive(Debug)]
pub struct VeDirectDriver {
    settings: VeDirectSettings,
    tx: watch::Sender<VeDirectState>,
}

impl VeDirectDriver {
    /// A driver and the receiver of its state.
    pub fn new(settings: VeDirectSettings) -> (Self, watch::Receiver<VeDirectState>) {
        let (tx, rx) = watch::channel(VeDirectState::default());
        (Self { settings, tx }, rx)
    }

    /// Runs until cancelled, in a `vedirect` tracing span carrying the port.
    pub async fn run(self, cancel: CancellationToken) {
        let span = info_span!("vedirect", port = %self.settings.port.display());
        self.serve(cancel).instrument(span).await
    }

    async fn serve(self, cancel: CancellationToken) {
        let s = &self.settings;
        let mut parser = Parser::new();
        let mut buf = [0u8; 512];
        while !cancel.is_cancelled() {
            let mut port = match open(&s.port, s.baud) {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %e, "VE.Direct port failed to open");
                    self.tx.send_modify(|st| {
                        st.port_error = Some(e);
                        st.stale = true;
                    });
                    if !pause(&cancel, s.retry_after).await {
                        return;
                    }
                    continue;
                }
            };
            self.tx.send_modify(|st| st.port_error = None);
            let mut last_good = Instant::now();
            loop {
                let deadline = last_good + s.stale_after;
                let silent_too_long = last_good + s.stale_after * 3;
                let read = tokio::select! {
                    () = cancel.cancelled() => return,
                    r = timeout_at(deadline.max(Instant::now() + s.stale_after / 4), port.read(&mut buf)) => r,
                };
                let n = match read {
                    Err(_elapsed) => {
                        self.tx
                            .send_if_modified(|st| !std::mem::replace(&mut st.stale, true));
                        if Instant::now() >= silent_too_long {
                            debug!("VE.Direct silent, reopening");
                            break;
                        }
                        continue;
                    }
                    Ok(Ok(0)) => Err("end of stream".to_owned()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Ok(Ok(n)) => Ok(n),
                };
                match n {
                    Err(e) => {
                        self.tx.send_modify(|st| {
                            st.port_error = Some(e);
                            st.stale = true;
                        });
                        if !pause(&cancel, s.retry_after).await {
                            return;
                        }
                        break;
                    }
                    Ok(n) => {
                        let blocks = parser.feed(&buf[..n]);
                        let now = Timestamp::now();
                        let mut good = false;
                        let mut field_errors = 0;
                        let mut mppt = None;
                        let mut bmv = None;
                        for block in &blocks {
                            match Reading::from_block(block) {
                                Ok(Reading::Mppt(r)) => {
                                    mppt = Some(r);
                                    good = true;
                                }
                                Ok(Reading::Bmv(r)) => {
                                    bmv = Some(r);
                                    good = true;
                                }
                                Ok(Reading::Other) => good = true,
                                Err(e) => {
                                    debug!(error = %e, "VE.Direct field error");
                                    field_errors += 1;
                                }
                            }
                        }
                        if good {
                            last_good = Instant::now();
                        }
                        let stats = parser.stats();
                        self.tx.send_if_modified(|st| {
                            let changed = good || field_errors > 0 || st.stats != stats;
                            st.stats = stats;
                            st.field_errors += field_errors;
                            if good {
                                st.updated_at = Some(now);
                                st.stale = false;
                            }
                            if mppt.is_some() {
                                st.mppt = mppt;
                            }
                            if bmv.is_some() {
                                st.bmv = bmv;
                            }
                            changed
                        });
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- Inverter

/// Settings of a Voltronic/Axpert inverter port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InverterSettings {
    /// Serial device.
    pub port: PathBuf,
    /// Usually 2400.
    pub baud: u32,
    /// Poll QPIGS and QMOD this often.
    pub poll_every: Duration,
    /// Wait this long for each reply.
    pub reply_timeout: Duration,
    /// No valid QPIGS for this long → stale.
    pub stale_after: Duration,
    /// Wait before reopening a failed port.
    pub retry_after: Duration,
}

impl InverterSettings {
    /// Defaults: 2400 baud, poll every 5 s, 2 s reply timeout, stale after 20 s.
    pub fn new(port: impl Into<PathBuf>) -> Self {
        Self {
            port: port.into(),
            baud: 2400,
            poll_every: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(2),
            stale_after: Duration::from_secs(20),
            retry_after: Duration::from_secs(2),
        }
    }
}

/// Inverter exchange counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InverterStats {
    /// Valid replies.
    pub replies: u64,
    /// `(NAK` replies.
    pub naks: u64,
    /// Replies with a bad CRC.
    pub bad_crc: u64,
    /// Replies that could not be decoded.
    pub malformed: u64,
    /// Requests without a reply in time.
    pub timeouts: u64,
}

/// What the inverter last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InverterState {
    /// Latest general status.
    pub status: Option<Qpigs>,
    /// Latest mode.
    pub mode: Option<Mode>,
    /// When the last valid QPIGS arrived.
    pub updated_at: Option<Timestamp>,
    /// No valid QPIGS within `stale_after` (true until the first one).
    pub stale: bool,
    /// Counters.
    pub stats: InverterStats,
    /// Last port error.
    pub port_error: Option<String>,
}

impl Default for InverterState {
    fn default() -> Self {
        Self {
            status: None,
            mode: None,
            updated_at: None,
            stale: true,
            stats: InverterStats::default(),
            port_error: None,
        }
    }
}

/// The task that owns an inverter port.
#[derive(Debug)]
pub struct InverterDriver {
    settings: InverterSettings,
    tx: watch::Sender<InverterState>,
}

enum Exchange {
    Reply(Vec<u8>),
    Timeout,
    PortError(String),
}

async fn exchange(port: &mut SerialStream, cmd: Command, reply_timeout: Duration) -> Exchange {
    // Drop late bytes of an earlier reply so they cannot answer this request.
    let _ = port.clear(tokio_serial::ClearBuffer::Input);
    let deadline = Instant::now() + reply_timeout;
    match timeout_at(deadline, port.write_all(&cmd.encode())).await {
        Err(_) => return Exchange::Timeout,
        Ok(Err(e)) => return Exchange::PortError(e.to_string()),
        Ok(Ok(())) => {}
    }
    let mut framer = Framer::new();
    let mut buf = [0u8; 256];
    loop {
        match timeout_at(deadline, port.read(&mut buf)).await {
            Err(_) => return Exchange::Timeout,
            Ok(Err(e)) => return Exchange::PortError(e.to_string()),
            Ok(Ok(0)) => return Exchange::PortError("end of stream".to_owned()),
            Ok(Ok(n)) => {
                if let Some(line) = framer.feed(&buf[..n]).into_iter().next() {
                    return Exchange::Reply(line);
                }
            }
        }
    }
}

impl InverterDriver {
    /// A driver and the receiver of its state.
    pub fn new(settings: InverterSettings) -> (Self, watch::Receiver<InverterState>) {
        let (tx, rx) = watch::channel(InverterState::default());
        (Self { settings, tx }, rx)
    }

    /// Runs until cancelled, in a `inverter` tracing span carrying the port.
    pub async fn run(self, cancel: CancellationToken) {
        let span = info_span!("inverter", port = %self.settings.port.display());
        self.serve(cancel).instrument(span).await
    }

    async fn serve(self, cancel: CancellationToken) {
        let s = &self.settings;
        let mut last_good = Instant::now();
        while !cancel.is_cancelled() {
            let mut port = match open(&s.port, s.baud) {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %e, "inverter port failed to open");
                    self.tx.send_modify(|st| {
                        st.port_error = Some(e);
                        st.stale = true;
                    });
                    if !pause(&cancel, s.retry_after).await {
                        return;
                    }
                    continue;
                }
            };
            self.tx.send_modify(|st| st.port_error = None);
            let mut tick = tokio::time::interval(s.poll_every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            'poll: loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                for cmd in [Command::Qpigs, Command::Qmod] {
                    let ex = tokio::select! {
                        () = cancel.cancelled() => return,
                        ex = exchange(&mut port, cmd, s.reply_timeout) => ex,
                    };
                    match ex {
                        Exchange::PortError(e) => {
                            self.tx.send_modify(|st| {
                                st.port_error = Some(e);
                                st.stale = true;
                            });
                            if !pause(&cancel, s.retry_after).await {
                                return;
                            }
                            break 'poll;
                        }
                        Exchange::Timeout => self.tx.send_modify(|st| st.stats.timeouts += 1),
                        Exchange::Reply(line) => {
                            let decoded =
                                voltronic::decode_reply(&line).and_then(|data| match cmd {
                                    Command::Qpigs => Qpigs::parse(data).map(Ok),
                                    Command::Qmod => Mode::parse(data).map(Err),
                                });
                            let now = Timestamp::now();
                            if matches!(decoded, Ok(Ok(_))) {
                                last_good = Instant::now();
                            }
                            self.tx.send_modify(|st| match decoded {
                                Ok(Ok(q)) => {
                                    st.stats.replies += 1;
                                    st.status = Some(q);
                                    st.updated_at = Some(now);
                                    st.stale = false;
                                }
                                Ok(Err(mode)) => {
                                    st.stats.replies += 1;
                                    st.mode = Some(mode);
                                }
                                Err(VoltronicError::Nak) => st.stats.naks += 1,
                                Err(VoltronicError::BadCrc { .. }) => st.stats.bad_crc += 1,
                                Err(e) => {
                                    debug!(error = %e, "inverter reply unreadable");
                                    st.stats.malformed += 1;
                                }
                            });
                        }
                    }
                }
                if last_good.elapsed() >= s.stale_after {
                    self.tx
                        .send_if_modified(|st| !std::mem::replace(&mut st.stale, true));
                }
            }
        }
    }
}

// ---------------------------------------------------------------- Generator

/// Settings of a generator controller port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorSettings {
    /// Serial device.
    pub port: PathBuf,
    /// Baud rate (Deep Sea default 115200; many installs use 9600).
    pub baud: u32,
    /// Register map.
    pub map: GeneratorMap,
    /// Poll this often.
    pub poll_every: Duration,
    /// Timeout of each Modbus request.
    pub request_timeout: Duration,
    /// No complete read for this long → stale.
    pub stale_after: Duration,
    /// Wait before reopening a failed port.
    pub retry_after: Duration,
    /// Retries of a start and the wait for a running engine.
    pub start: StartSettings,
}

impl GeneratorSettings {
    /// Defaults: 9600 baud, GenComm map, poll every 5 s, 1 s per request, stale after 20 s.
    pub fn new(port: impl Into<PathBuf>) -> Self {
        Self {
            port: port.into(),
            baud: 9600,
            map: GeneratorMap::default(),
            poll_every: Duration::from_secs(5),
            request_timeout: Duration::from_secs(1),
            stale_after: Duration::from_secs(20),
            retry_after: Duration::from_secs(2),
            start: StartSettings::default(),
        }
    }
}

/// What the generator controller last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorState {
    /// Latest complete reading.
    pub reading: Option<GeneratorReading>,
    /// When it was read.
    pub updated_at: Option<Timestamp>,
    /// No complete read within `stale_after` (true until the first one).
    pub stale: bool,
    /// Failed polls.
    pub errors: u64,
    /// Last failure (port or protocol).
    pub last_error: Option<String>,
    /// The last start asked for and where it stands (`None`: none, or stopped since).
    pub start: Option<StartPhase>,
}

impl Default for GeneratorState {
    fn default() -> Self {
        Self {
            reading: None,
            updated_at: None,
            stale: true,
            errors: 0,
            last_error: None,
            start: None,
        }
    }
}

/// A command for the generator task, with where to send the outcome.
#[derive(Debug)]
pub struct GeneratorRequest {
    /// What to do.
    pub command: GeneratorCommand,
    /// The outcome.
    pub reply: oneshot::Sender<Result<(), GeneratorError>>,
}

/// What the rest of the node holds to watch and command the generator.
#[derive(Debug, Clone)]
pub struct GeneratorHandle {
    /// Latest state.
    pub state: watch::Receiver<GeneratorState>,
    commands: mpsc::Sender<GeneratorRequest>,
    wait: Duration,
}

impl GeneratorHandle {
    /// Sends a command and waits (bounded) for the controller to acknowledge it.
    pub async fn command(&self, command: GeneratorCommand) -> Result<(), GeneratorError> {
        let (reply, rx) = oneshot::channel();
        timeout(
            self.wait,
            self.commands.send(GeneratorRequest { command, reply }),
        )
        .await
        .map_err(|_| GeneratorError::Timeout(self.wait))?
        .map_err(|_| GeneratorError::DriverGone)?;
        timeout(self.wait, rx)
            .await
            .map_err(|_| GeneratorError::Timeout(self.wait))?
            .map_err(|_| GeneratorError::DriverGone)?
    }
}

/// The task that owns a generator controller port.
#[derive(Debug)]
pub struct GeneratorDriver {
    settings: GeneratorSettings,
    tx: watch::Sender<GeneratorState>,
    commands: mpsc::Receiver<GeneratorRequest>,
}

impl GeneratorDriver {
    /// A driver and the handle to watch and command it.
    pub fn new(settings: GeneratorSettings) -> (Self, GeneratorHandle) {
        let (tx, rx) = watch::channel(GeneratorState::default());
        let (ctx, crx) = mpsc::channel(8);
        // A command waits for at most a queued poll (one request per value) plus its own
        // writes and a pulse's hold.
        let hold = match &settings.map.control {
            generator::Control::Pulse { hold, .. } => *hold,
            _ => Duration::ZERO,
        };
        let wait = settings.request_timeout * 12 + settings.retry_after + hold;
        (
            Self {
                settings,
                tx,
                commands: crx,
            },
            GeneratorHandle {
                state: rx,
                commands: ctx,
                wait,
            },
        )
    }

    fn failed(&self, e: &GeneratorError, last_good: Instant) {
        let stale = last_good.elapsed() >= self.settings.stale_after;
        self.tx.send_modify(|st| {
            st.errors += 1;
            st.last_error = Some(e.to_string());
            st.stale |= stale;
        });
    }

    /// Runs until cancelled, in a `generator` tracing span carrying the port.
    pub async fn run(self, cancel: CancellationToken) {
        let span = info_span!("generator", port = %self.settings.port.display());
        self.serve(cancel).instrument(span).await
    }

    fn publish_start(&self, sup: &StartSupervisor) {
        let phase = sup.phase().cloned();
        self.tx.send_if_modified(|st| {
            let changed = st.start != phase;
            st.start = phase;
            changed
        });
    }

    async fn serve(mut self, cancel: CancellationToken) {
        let mut last_good = Instant::now();
        let mut commands_open = true;
        let mut sup = StartSupervisor::new(self.settings.start);
        while !cancel.is_cancelled() {
            let s = self.settings.clone();
            let port = match open(&s.port, s.baud) {
                Ok(p) => p,
                Err(e) => {
                    // A start due now fails on the port; the supervisor paces retries.
                    sup.on_timeout(Instant::now());
                    if sup.poll_action().is_some() {
                        sup.on_send_result(Instant::now(), Err(format!("port: {e}")));
                    }
                    self.publish_start(&sup);
                    self.failed(&GeneratorError::Open(e), last_good);
                    if !pause(&cancel, s.retry_after).await {
                        return;
                    }
                    continue;
                }
            };
            let mut ctx =
                tokio_modbus::client::rtu::attach_slave(port, tokio_modbus::Slave(s.map.slave));
            let mut tick = tokio::time::interval(s.poll_every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                let mut poll_now = false;
                let mut first_reply = None;
                let start_due = sup.poll_timeout();
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = tick.tick() => poll_now = true,
                    () = async {
                        match start_due {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    } => sup.on_timeout(Instant::now()),
                    req = self.commands.recv(), if commands_open => match req {
                        None => commands_open = false,
                        Some(GeneratorRequest { command: GeneratorCommand::Start, reply }) => {
                            sup.request(Instant::now());
                            first_reply = Some(reply);
                        }
                        Some(GeneratorRequest { command, reply }) => {
                            sup.cancel();
                            self.publish_start(&sup);
                            let r = generator::send(&mut ctx, &s.map, command, s.request_timeout).await;
                            let broken = matches!(r, Err(GeneratorError::Timeout(_) | GeneratorError::Transport(_)));
                            if let Err(e) = &r {
                                self.failed(e, last_good);
                            }
                            let _ = reply.send(r);
                            if broken {
                                break;
                            }
                            poll_now = true;
                        }
                    },
                }
                let mut broken = false;
                while let Some(StartAction::SendStart) = sup.poll_action() {
                    let r = generator::send(
                        &mut ctx,
                        &s.map,
                        GeneratorCommand::Start,
                        s.request_timeout,
                    )
                    .await;
                    broken |= matches!(
                        r,
                        Err(GeneratorError::Timeout(_) | GeneratorError::Transport(_))
                    );
                    match &r {
                        Ok(()) => debug!("generator start accepted"),
                        Err(e) => {
                            warn!(error = %e, "generator start command failed");
                            self.failed(e, last_good);
                        }
                    }
                    sup.on_send_result(
                        Instant::now(),
                        r.as_ref().map(|_| ()).map_err(ToString::to_string),
                    );
                    if let Some(reply) = first_reply.take() {
                        let _ = reply.send(r);
                    }
                    poll_now = true;
                }
                if let Some(reply) = first_reply.take() {
                    // An attempt was already under way: this request joins it.
                    let _ = reply.send(Ok(()));
                }
                self.publish_start(&sup);
                if broken {
                    break;
                }
                if !poll_now {
                    continue;
                }
                match generator::read(&mut ctx, &s.map, s.request_timeout).await {
                    Ok(reading) => {
                        last_good = Instant::now();
                        let now = Timestamp::now();
                        sup.on_reading(Instant::now(), reading.running());
                        let phase = sup.phase().cloned();
                        self.tx.send_modify(|st| {
                            st.reading = Some(reading);
                            st.updated_at = Some(now);
                            st.stale = false;
                            st.last_error = None;
                            st.start = phase;
                        });
                    }
                    Err(e) => {
                        self.failed(&e, last_good);
                        // A timed-out RTU exchange may leave half a frame in the codec:
                        // start from a fresh port.
                        if matches!(e, GeneratorError::Timeout(_) | GeneratorError::Transport(_)) {
                            if !pause(&cancel, s.retry_after.min(s.poll_every)).await {
                                return;
                            }
                            break;
                        }
                    }
                }
            }
        }
    }
}
