//! The modem driver: one task that owns the serial port.
//!
//! It runs the init sequence (`AT`, `ATE0`, `AT+CMEE=1`, `AT+CMGF=0`, registration
//! URCs on), polls status on a schedule, sends SMS, and multiplexes TCP sockets
//! ([`super::tcp`]) over the same port, one AT exchange at a time. Callers hold a
//! [`ModemHandle`]: they read the latest [`ModemStatus`] from a watch channel and send
//! requests that carry oneshot replies and are bounded by timeouts on both sides.
//!
//! Recovery: the rule (hung after `hung_after_timeouts` AT timeouts in a row, then
//! `AT+CFUN=1,1`, settle, re-initialise; `Dead` after `resets_before_dead` failed
//! recoveries, then retry every `dead_retry_interval`) is the pure machine
//! [`super::recovery::Recovery`]; the driver feeds it events and carries out its actions.
//! Every await on the port has a timeout; requests that arrive while the modem is down
//! are refused at once.
//!
//! Sockets: received data is read (`QIRD`) a few chunks per round so polls and SMS keep
//! their turn, and only while the stream's queue has room, so a reader that stalls
//! leaves the data in the module instead of in memory.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_serial::{SerialPortBuilderExt, SerialStream};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn};

use super::at::{AtCommand, AtEngine, FinalResult, Output, Response};
use super::recovery::{Action, Failure, Recovery, RecoveryRules, ResetRequest, Why};
use super::sms::{PhoneNumber, SmsError, SubmitPdu, encode_submit};
use super::status::{
    ModemState, ModemStatus, NetworkTime, Operator, Registration, Signal, SimState, parse_cclk,
};
use super::tcp::{Apn, ModemTcpStream, SocketDialect, SocketUrc, TcpError};

/// How to reach and drive the modem. Plain values: the node maps its config onto this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemSettings {
    /// Serial device, e.g. `/dev/ttyUSB2`.
    pub port: PathBuf,
    /// Baud rate.
    pub baud: u32,
    /// Access point name for data.
    pub apn: String,
    /// APN user (may be empty).
    pub apn_user: String,
    /// APN password (may be empty).
    pub apn_password: String,
    /// Time between status polls.
    pub poll_interval: Duration,
    /// Timeout of an ordinary AT command.
    pub command_timeout: Duration,
    /// Timeout of one `AT+CMGS` (the network can be slow).
    pub sms_timeout: Duration,
    /// AT timeouts in a row after which the modem is considered hung and reset.
    pub hung_after_timeouts: u32,
    /// Wait after `AT+CFUN=1,1` before reopening the port.
    pub reset_settle: Duration,
    /// Failed recoveries before the modem is declared dead.
    pub resets_before_dead: u32,
    /// Retry interval once dead.
    pub dead_retry_interval: Duration,
    /// Timeout of data context activation (`AT+QIACT`, up to 150 s).
    pub pdp_timeout: Duration,
    /// Time allowed for a socket open to report its result.
    pub connect_timeout: Duration,
}

impl ModemSettings {
    /// Settings with ModemManager-like defaults for the given port.
    pub fn new(port: impl Into<PathBuf>) -> Self {
        Self {
            port: port.into(),
            baud: 115_200,
            apn: String::new(),
            apn_user: String::new(),
            apn_password: String::new(),
            poll_interval: Duration::from_secs(30),
            command_timeout: Duration::from_secs(5),
            sms_timeout: Duration::from_secs(60),
            hung_after_timeouts: 10,
            reset_settle: Duration::from_secs(10),
            resets_before_dead: 3,
            dead_retry_interval: Duration::from_secs(300),
            pdp_timeout: Duration::from_secs(150),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// Why an SMS was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsSendError {
    /// The text or number could not be encoded.
    #[error(transparent)]
    Encode(#[from] SmsError),
    /// The modem is not in a state to send (no SIM, resetting, dead, not configured).
    #[error("modem unavailable: {0}")]
    Unavailable(String),
    /// The module refused with `+CMS ERROR: <code>`.
    #[error("+CMS ERROR: {0}")]
    Cms(u16),
    /// The module refused without a CMS code.
    #[error("rejected: {0}")]
    Rejected(String),
    /// No answer in time; the message may or may not have gone out.
    #[error("timed out")]
    Timeout,
}

/// What sending some parts of a message achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartsSent {
    /// Parts of the whole message.
    pub total: u8,
    /// Parts the network accepted in this call: (part number from 1, message reference).
    pub accepted: Vec<(u8, u8)>,
    /// Why the rest were not sent; `None` when every part asked for went out.
    pub error: Option<SmsSendError>,
}

/// Identifies one socket across id reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SocketKey {
    pub(crate) id: u8,
    pub(crate) generation: u64,
}

/// What handles and streams ask of the driver task.
pub(crate) enum Request {
    SendSms {
        pdus: Vec<SubmitPdu>,
        /// The message references of the parts accepted (a prefix of `pdus`), and the
        /// error that stopped the rest, if any.
        reply: oneshot::Sender<(Vec<u8>, Option<SmsSendError>)>,
    },
    Connect {
        host: String,
        port: u16,
        reply: oneshot::Sender<Result<ModemTcpStream, TcpError>>,
    },
    SocketSend {
        key: SocketKey,
        data: Bytes,
        reply: oneshot::Sender<Result<(), TcpError>>,
    },
    SocketClose {
        key: SocketKey,
    },
    PollNow {
        reply: oneshot::Sender<()>,
    },
    Reset {
        reply: oneshot::Sender<ResetOutcome>,
    },
}

/// What a requested reset ([`ModemHandle::reset`]) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetOutcome {
    /// `AT+CFUN=1,1` was written to the module; the driver closed the port and reopens
    /// it after `reset_settle`, then runs the init sequence again.
    PowerCycled,
    /// The port was not open (the modem was resetting or dead): a bring-up is tried at
    /// once, which power-cycles the module itself if it does not answer.
    BringUpRetried,
    /// The driver is not running (or did not answer in time).
    Unavailable,
}

/// The node's way to use the modem. Cheap to clone.
#[derive(Clone)]
pub struct ModemHandle {
    tx: mpsc::Sender<Request>,
    status: watch::Receiver<ModemStatus>,
    sms_timeout: Duration,
    connect_budget: Duration,
    command_timeout: Duration,
}

impl std::fmt::Debug for ModemHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModemHandle")
            .field("state", &self.status.borrow().state)
            .finish_non_exhaustive()
    }
}

impl ModemHandle {
    /// Starts the driver task. It runs until `cancel` fires or every handle is dropped.
    pub fn spawn(
        settings: ModemSettings,
        dialect: Arc<dyn SocketDialect>,
        cancel: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(64);
        let (status_tx, status) = watch::channel(ModemStatus::starting());
        let handle = Self {
            tx: tx.clone(),
            status,
            sms_timeout: settings.sms_timeout,
            connect_budget: settings.connect_timeout
                + settings.pdp_timeout
                + settings.command_timeout * 4,
            command_timeout: settings.command_timeout,
        };
        let now = Instant::now();
        let rules = RecoveryRules {
            hung_after_timeouts: settings.hung_after_timeouts,
            resets_before_dead: settings.resets_before_dead,
            reset_settle: settings.reset_settle,
            dead_retry_interval: settings.dead_retry_interval,
        };
        let driver = Driver {
            next_poll: now + settings.poll_interval,
            s: settings,
            dialect,
            status: ModemStatus::starting(),
            status_tx,
            rx,
            self_tx: tx.downgrade(),
            port: None,
            engine: AtEngine::new(),
            cancel,
            sockets: HashMap::new(),
            pending_opens: HashMap::new(),
            to_close: Vec::new(),
            pdp_active: false,
            generation: 0,
            recovery: Recovery::new(rules, now),
            needs_init: false,
        };
        let span = tracing::info_span!("modem", port = %driver.s.port.display());
        (handle, tokio::spawn(driver.run().instrument(span)))
    }

    /// A handle for a node without a modem: status `NotConfigured`, requests refused.
    pub fn not_configured() -> Self {
        let (tx, _) = mpsc::channel(1);
        let (_, status) = watch::channel(ModemStatus::not_configured());
        Self {
            tx,
            status,
            sms_timeout: Duration::ZERO,
            connect_budget: Duration::ZERO,
            command_timeout: Duration::ZERO,
        }
    }

    /// The latest status; `changed()` on it wakes on every update.
    pub fn status(&self) -> watch::Receiver<ModemStatus> {
        self.status.clone()
    }

    /// Sends `text` to `to` (several parts if needed); returns the message reference of
    /// each part.
    pub async fn send_sms(&self, to: &PhoneNumber, text: &str) -> Result<Vec<u8>, SmsSendError> {
        let sent = self
            .send_sms_parts(to, text, rand::random::<u8>(), &[])
            .await?;
        match sent.error {
            None => Ok(sent.accepted.into_iter().map(|(_, mr)| mr).collect()),
            Some(e) => Err(e),
        }
    }

    /// Sends the parts of `text` to `to` whose numbers (from 1) are not in `done`, under
    /// the concatenation reference `concat_ref` — so a message whose part failed is
    /// completed later by resending only the missing parts under the same reference,
    /// and the phone joins them with the parts it already has. Stops at the first part
    /// that fails and says which went out.
    pub async fn send_sms_parts(
        &self,
        to: &PhoneNumber,
        text: &str,
        concat_ref: u8,
        done: &[u8],
    ) -> Result<PartsSent, SmsSendError> {
        let all = encode_submit(to, text, concat_ref)?;
        let total = u8::try_from(all.len()).map_err(|_| SmsError::TooLong)?;
        let (numbers, pdus): (Vec<u8>, Vec<SubmitPdu>) = all
            .into_iter()
            .zip(1..=total)
            .filter(|(_, n)| !done.contains(n))
            .map(|(p, n)| (n, p))
            .unzip();
        if pdus.is_empty() {
            return Ok(PartsSent {
                total,
                accepted: Vec::new(),
                error: None,
            });
        }
        let budget = self.sms_timeout * (pdus.len() as u32 + 1) + self.command_timeout * 8;
        let (reply, rx) = oneshot::channel();
        let unavailable = || SmsSendError::Unavailable("modem driver not running".into());
        self.tx
            .try_send(Request::SendSms { pdus, reply })
            .map_err(|_| unavailable())?;
        let (refs, error) = match timeout(budget, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => (Vec::new(), Some(unavailable())),
            Err(_) => (Vec::new(), Some(SmsSendError::Timeout)),
        };
        Ok(PartsSent {
            total,
            accepted: numbers.into_iter().zip(refs).collect(),
            error,
        })
    }

    /// Opens a TCP connection through the modem's IP stack.
    pub async fn connect(&self, host: &str, port: u16) -> Result<ModemTcpStream, TcpError> {
        let (reply, rx) = oneshot::channel();
        let unavailable = || TcpError::Unavailable("modem driver not running".into());
        self.tx
            .try_send(Request::Connect {
                host: host.to_owned(),
                port,
                reply,
            })
            .map_err(|_| unavailable())?;
        match timeout(self.connect_budget, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(unavailable()),
            Err(_) => Err(TcpError::Timeout),
        }
    }

    /// Power-cycles the module with `AT+CFUN=1,1` now (the technician's reset), or, if
    /// the port is not open, retries the bring-up at once; bounded by the command timeout.
    pub async fn reset(&self) -> ResetOutcome {
        let (reply, rx) = oneshot::channel();
        if self.tx.try_send(Request::Reset { reply }).is_err() {
            return ResetOutcome::Unavailable;
        }
        match timeout(self.command_timeout * 4, rx).await {
            Ok(Ok(o)) => o,
            _ => ResetOutcome::Unavailable,
        }
    }

    /// Asks for a status poll now and waits (bounded) until it is done.
    pub async fn poll_now(&self) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.tx.try_send(Request::PollNow { reply }).is_err() {
            return false;
        }
        matches!(timeout(self.command_timeout * 8, rx).await, Ok(Ok(())))
    }
}

struct Socket {
    key: SocketKey,
    data_tx: mpsc::Sender<Result<Bytes, TcpError>>,
    needs_read: bool,
    remote_closed: bool,
}

struct PendingOpen {
    key: SocketKey,
    reply: oneshot::Sender<Result<ModemTcpStream, TcpError>>,
    deadline: Instant,
}

#[derive(Debug)]
enum ExecError {
    Timeout,
    Rejected(super::at::AtError),
    Io(io::Error),
    NoPort,
}

struct Driver {
    s: ModemSettings,
    dialect: Arc<dyn SocketDialect>,
    status: ModemStatus,
    status_tx: watch::Sender<ModemStatus>,
    rx: mpsc::Receiver<Request>,
    self_tx: mpsc::WeakSender<Request>,
    port: Option<SerialStream>,
    engine: AtEngine,
    cancel: CancellationToken,
    sockets: HashMap<u8, Socket>,
    pending_opens: HashMap<u8, PendingOpen>,
    to_close: Vec<u8>,
    pdp_active: bool,
    generation: u64,
    recovery: Recovery,
    next_poll: Instant,
    needs_init: bool,
}

async fn read_port(port: &mut Option<SerialStream>, buf: &mut [u8]) -> io::Result<usize> {
    match port {
        Some(p) => match p.read(buf).await {
            Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
            r => r,
        },
        None => std::future::pending().await,
    }
}

/// Reads handled per socket per round, so polls and SMS are not starved by a download.
const READS_PER_ROUND: usize = 8;
/// Chunks (up to 1500 bytes each) queued towards a stream before the driver stops
/// reading that socket: a reader that stalls leaves the data in the module's buffer.
const SOCKET_QUEUE: usize = 8;

/// Waits until one of `senders` has room for a chunk.
async fn any_capacity(senders: Vec<mpsc::Sender<Result<Bytes, TcpError>>>) {
    let waits = senders.iter().map(|s| Box::pin(s.reserve()));
    let _ = futures::future::select_all(waits).await;
}

impl Driver {
    async fn run(mut self) {
        let mut buf = vec![0u8; 4096];
        loop {
            if self.cancel.is_cancelled() {
                break;
            }
            match self.recovery.poll_action(Instant::now()) {
                Some(Action::BringUp) => {
                    self.bring_up().await;
                    continue;
                }
                Some(Action::PowerCycle(why)) => {
                    self.power_cycle(why).await;
                    continue;
                }
                None => {}
            }
            let retry_at = self.recovery.poll_timeout();
            let open_deadline = self.pending_opens.values().map(|p| p.deadline).min();
            // A stream dropped without a close request (queue full): forget it.
            let gone: Vec<u8> = self
                .sockets
                .iter()
                .filter(|(_, s)| s.data_tx.is_closed())
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                self.sockets.remove(&id);
                self.to_close.push(id);
            }
            let has_work = self.up() && self.has_follow_up();
            let throttled: Vec<_> = self
                .sockets
                .values()
                .filter(|s| s.needs_read && s.data_tx.capacity() == 0)
                .map(|s| s.data_tx.clone())
                .collect();
            let is_throttled = self.up() && !throttled.is_empty();
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                req = self.rx.recv() => match req {
                    Some(r) => self.handle(r).await,
                    None => break,
                },
                r = read_port(&mut self.port, &mut buf) => match r {
                    Ok(n) => {
                        let bytes = buf[..n].to_vec();
                        self.on_bytes(&bytes);
                    }
                    Err(e) => self.port_failed(e),
                },
                _ = sleep_until(self.next_poll), if self.up() => {
                    self.poll_status().await;
                    self.next_poll = Instant::now() + self.s.poll_interval;
                }
                _ = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {}
                _ = sleep_until(open_deadline.unwrap_or_else(Instant::now)), if open_deadline.is_some() => {
                    self.expire_opens();
                }
                _ = std::future::ready(()), if has_work => {}
                _ = any_capacity(throttled), if is_throttled => {}
            }
            if self.up() {
                self.follow_up().await;
            }
        }
        self.take_down("modem driver stopped");
        debug!("modem driver stopped");
    }

    /// The port is open (initialising or ready).
    fn up(&self) -> bool {
        self.recovery.is_open()
    }

    fn publish(&self) {
        self.status_tx.send_replace(self.status.clone());
    }

    async fn exec(&mut self, cmd: AtCommand, limit: Duration) -> Result<Response, ExecError> {
        let mut port = self.port.take().ok_or(ExecError::NoPort)?;
        let line = cmd.line.clone();
        let r = self.exec_on(&mut port, cmd, limit).await;
        self.port = Some(port);
        match &r {
            Ok(_) => {
                self.status.last_ok = Some(Timestamp::now());
                if self.recovery.on_answer() {
                    self.status.consecutive_timeouts = 0;
                    self.publish();
                }
            }
            Err(ExecError::Timeout) => {
                self.recovery.on_timeout(Instant::now());
                self.status.consecutive_timeouts = self.recovery.consecutive_timeouts();
                self.status.last_error = Some(format!("no answer to {line}"));
                debug!(command = %line, timeouts = self.status.consecutive_timeouts, "AT timeout");
                self.publish();
            }
            Err(ExecError::Io(e)) => {
                let msg = format!("port error during {line}: {e}");
                warn!(command = %line, error = %e, "modem port error");
                self.fail_bringup(msg);
            }
            Err(ExecError::Rejected(e)) => warn!(command = %line, error = %e, "command not sent"),
            Err(ExecError::NoPort) => {}
        }
        r
    }

    async fn exec_on(
        &mut self,
        port: &mut SerialStream,
        cmd: AtCommand,
        limit: Duration,
    ) -> Result<Response, ExecError> {
        let deadline = Instant::now() + limit;
        if self.engine.is_busy() {
            // Cannot happen (every exchange ends before the next starts), but a stale
            // command must not answer for this one.
            self.engine.timeout();
            while let Some(out) = self.engine.poll_output() {
                if let Output::Urc(line) = out {
                    self.on_urc(&line);
                }
            }
        }
        self.engine.submit(cmd).map_err(ExecError::Rejected)?;
        let mut buf = [0u8; 2048];
        loop {
            while let Some(out) = self.engine.poll_output() {
                match out {
                    Output::Write(bytes) => {
                        match timeout_at(deadline, port.write_all(&bytes)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return Err(ExecError::Io(e)),
                            Err(_) => self.engine.timeout(),
                        }
                    }
                    Output::Response(r) if r.result == FinalResult::Timeout => {
                        return Err(ExecError::Timeout);
                    }
                    Output::Response(r) => return Ok(r),
                    Output::Urc(line) => self.on_urc(&line),
                    Output::Discarded(line) => debug!(line = %line, "discarded modem line"),
                }
            }
            match timeout_at(deadline, port.read(&mut buf)).await {
                Ok(Ok(0)) => return Err(ExecError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(Ok(n)) => self.engine.feed(&buf[..n]),
                Ok(Err(e)) => return Err(ExecError::Io(e)),
                Err(_) => self.engine.timeout(),
            }
        }
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        self.engine.feed(bytes);
        while let Some(out) = self.engine.poll_output() {
            match out {
                Output::Urc(line) => self.on_urc(&line),
                Output::Discarded(line) => debug!(line = %line, "discarded modem line"),
                Output::Write(_) | Output::Response(_) => {}
            }
        }
    }

    fn on_urc(&mut self, line: &str) {
        debug!(urc = %line, "modem URC");
        if let Some(u) = self.dialect.parse_urc(line) {
            self.on_socket_urc(u);
            return;
        }
        if let Some(p) = line.strip_prefix("+CREG:") {
            if let Ok((_, r)) = Registration::parse(p) {
                self.status.registration_cs = Some(r);
                self.rederive();
            }
        } else if let Some(p) = line.strip_prefix("+CGREG:") {
            if let Ok((_, r)) = Registration::parse(p) {
                self.status.registration_ps = Some(r);
                self.rederive();
            }
        } else if let Some(p) = line.strip_prefix("+CPIN:") {
            self.status.sim = SimState::parse_cpin(p);
            self.rederive();
        } else if line == "RDY" && self.up() {
            info!("modem restarted on its own; re-initialising");
            self.needs_init = true;
        }
    }

    fn rederive(&mut self) {
        if self.up() {
            let before = self.status.state;
            self.status.derive_state();
            if before != self.status.state {
                info!(from = ?before, to = ?self.status.state, "modem state");
            }
            self.publish();
        }
    }

    fn on_socket_urc(&mut self, u: SocketUrc) {
        match u {
            SocketUrc::Opened { id, error } => {
                let Some(p) = self.pending_opens.remove(&id) else {
                    debug!(id, error, "open result for no pending open");
                    return;
                };
                if error != 0 {
                    let _ = p.reply.send(Err(TcpError::ConnectFailed(error)));
                    self.to_close.push(id);
                    return;
                }
                let Some(tx) = self.self_tx.upgrade() else {
                    self.to_close.push(id);
                    return;
                };
                let (data_tx, data_rx) = mpsc::channel(SOCKET_QUEUE);
                let stream = ModemTcpStream::new(p.key, self.dialect.max_send(), tx, data_rx);
                if p.reply.send(Ok(stream)).is_err() {
                    // The caller gave up; the stream's drop already asked for a close of
                    // a socket we do not track yet, so close it here.
                    self.to_close.push(id);
                    return;
                }
                self.sockets.insert(
                    id,
                    Socket {
                        key: p.key,
                        data_tx,
                        needs_read: false,
                        remote_closed: false,
                    },
                );
            }
            SocketUrc::DataReady { id } => {
                if let Some(s) = self.sockets.get_mut(&id) {
                    s.needs_read = true;
                }
            }
            SocketUrc::Closed { id } => {
                if let Some(s) = self.sockets.get_mut(&id) {
                    s.remote_closed = true;
                    s.needs_read = true;
                } else {
                    self.to_close.push(id);
                }
            }
            SocketUrc::ContextLost => {
                warn!("modem data context dropped");
                self.pdp_active = false;
                for (id, s) in self.sockets.drain() {
                    let _ = s.data_tx.try_send(Err(TcpError::Closed));
                    self.to_close.push(id);
                }
            }
        }
    }

    fn has_follow_up(&self) -> bool {
        self.needs_init
            || !self.to_close.is_empty()
            || self.sockets.values().any(|s| {
                (s.needs_read && s.data_tx.capacity() > 0) || (s.remote_closed && !s.needs_read)
            })
    }

    async fn follow_up(&mut self) {
        if self.needs_init {
            self.needs_init = false;
            self.fail_sockets("modem restarted");
            if self.init_sequence().await.is_err() {
                return;
            }
            self.poll_status().await;
        }
        let ids: Vec<u8> = self
            .sockets
            .iter()
            .filter(|(_, s)| s.needs_read && s.data_tx.capacity() > 0)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            for _ in 0..READS_PER_ROUND {
                if !self.up() {
                    return;
                }
                if self
                    .sockets
                    .get(&id)
                    .is_none_or(|s| s.data_tx.capacity() == 0)
                {
                    break;
                }
                let r = self
                    .exec(self.dialect.read(id), self.s.command_timeout)
                    .await;
                let data = match r.map(|r| self.dialect.read_data(&r)) {
                    Ok(Ok(d)) => d,
                    Ok(Err(e)) => {
                        warn!(id, error = %e, "socket read failed");
                        Vec::new()
                    }
                    Err(_) => Vec::new(),
                };
                let Some(s) = self.sockets.get_mut(&id) else {
                    break;
                };
                if data.is_empty() {
                    s.needs_read = false;
                    break;
                }
                if s.data_tx.try_send(Ok(Bytes::from(data))).is_err() {
                    // Reader gone: the stream was dropped.
                    self.sockets.remove(&id);
                    self.to_close.push(id);
                    break;
                }
            }
        }
        let closed: Vec<u8> = self
            .sockets
            .iter()
            .filter(|(_, s)| s.remote_closed && !s.needs_read)
            .map(|(id, _)| *id)
            .collect();
        for id in closed {
            // Dropping the sender ends the stream's reads with EOF.
            self.sockets.remove(&id);
            self.to_close.push(id);
        }
        while let Some(id) = self.to_close.pop() {
            if !self.up() {
                return;
            }
            let _ = self
                .exec(self.dialect.close(id), self.s.command_timeout)
                .await;
        }
    }

    async fn handle(&mut self, req: Request) {
        match req {
            Request::SendSms { pdus, reply } => {
                let r = self.send_sms(pdus).await;
                if let Some(e) = &r.1 {
                    warn!(error = %e, accepted = r.0.len(), "SMS not sent");
                }
                let _ = reply.send(r);
            }
            Request::Connect { host, port, reply } => self.connect(host, port, reply).await,
            Request::SocketSend { key, data, reply } => {
                let r = self.socket_send(key, data).await;
                let _ = reply.send(r);
            }
            Request::SocketClose { key } => {
                if self.sockets.get(&key.id).is_some_and(|s| s.key == key) {
                    self.sockets.remove(&key.id);
                    self.to_close.push(key.id);
                }
            }
            Request::PollNow { reply } => {
                if self.up() {
                    self.poll_status().await;
                    self.next_poll = Instant::now() + self.s.poll_interval;
                }
                let _ = reply.send(());
            }
            Request::Reset { reply } => {
                let outcome = match self.recovery.on_reset_requested(Instant::now()) {
                    ResetRequest::PowerCycle => {
                        if let Some(Action::PowerCycle(why)) =
                            self.recovery.poll_action(Instant::now())
                        {
                            self.power_cycle(why).await;
                        }
                        ResetOutcome::PowerCycled
                    }
                    // Out of `Dead` too: the count starts afresh and a bring-up is due now.
                    ResetRequest::BringUpNow => ResetOutcome::BringUpRetried,
                };
                let _ = reply.send(outcome);
            }
        }
    }

    fn unavailable_reason(&self) -> String {
        let mut s = format!("{:?}", self.status.state);
        if let Some(e) = &self.status.last_error {
            s.push_str(": ");
            s.push_str(e);
        }
        s
    }

    /// Sends the parts in order, stopping at the first that fails: the references of
    /// those accepted, and the error.
    async fn send_sms(&mut self, pdus: Vec<SubmitPdu>) -> (Vec<u8>, Option<SmsSendError>) {
        if !self.up() || self.status.sim != SimState::Ready {
            return (
                Vec::new(),
                Some(SmsSendError::Unavailable(self.unavailable_reason())),
            );
        }
        let mut refs = Vec::with_capacity(pdus.len());
        for pdu in pdus {
            let r = match self.exec(pdu.at_command(), self.s.sms_timeout).await {
                Ok(r) => r,
                Err(ExecError::Timeout) => return (refs, Some(SmsSendError::Timeout)),
                Err(_) => {
                    let e = SmsSendError::Unavailable(self.unavailable_reason());
                    return (refs, Some(e));
                }
            };
            match &r.result {
                FinalResult::Ok => {
                    let mr = r
                        .info("+CMGS:")
                        .and_then(|s| s.split(',').next())
                        .and_then(|s| s.trim().parse::<u8>().ok());
                    match mr {
                        Some(mr) => refs.push(mr),
                        None => {
                            let e = SmsSendError::Rejected("OK without +CMGS".into());
                            return (refs, Some(e));
                        }
                    }
                }
                FinalResult::CmsError(code) => return (refs, Some(SmsSendError::Cms(*code))),
                other => return (refs, Some(SmsSendError::Rejected(format!("{other:?}")))),
            }
        }
        info!(parts = refs.len(), "SMS sent");
        (refs, None)
    }

    async fn ensure_context(&mut self) -> Result<(), TcpError> {
        if self.pdp_active {
            return Ok(());
        }
        let apn = Apn {
            name: self.s.apn.clone(),
            user: self.s.apn_user.clone(),
            password: self.s.apn_password.clone(),
        };
        let t = self.s.command_timeout;
        let fail = |what: &str| TcpError::ContextFailed(what.to_owned());
        match self.exec(self.dialect.configure_context(&apn), t).await {
            Ok(r) if r.is_ok() => {}
            _ => return Err(fail("APN configuration refused")),
        }
        if let Ok(r) = self.exec(self.dialect.query_context(), t).await
            && self.dialect.context_active(&r)
        {
            self.pdp_active = true;
            return Ok(());
        }
        match self
            .exec(self.dialect.activate_context(), self.s.pdp_timeout)
            .await
        {
            Ok(r) if r.is_ok() => {
                info!(apn = %apn.name, "data context active");
                self.pdp_active = true;
                Ok(())
            }
            Ok(r) => Err(fail(&format!("activation refused: {:?}", r.result))),
            Err(_) => Err(TcpError::Timeout),
        }
    }

    async fn connect(
        &mut self,
        host: String,
        port: u16,
        reply: oneshot::Sender<Result<ModemTcpStream, TcpError>>,
    ) {
        if !self.up() || self.status.state != ModemState::Ready {
            let _ = reply.send(Err(TcpError::Unavailable(self.unavailable_reason())));
            return;
        }
        if let Err(e) = self.ensure_context().await {
            let _ = reply.send(Err(e));
            return;
        }
        let Some(id) = (0..self.dialect.max_sockets()).find(|id| {
            !self.sockets.contains_key(id)
                && !self.pending_opens.contains_key(id)
                && !self.to_close.contains(id)
        }) else {
            let _ = reply.send(Err(TcpError::NoFreeSocket));
            return;
        };
        self.generation += 1;
        let key = SocketKey {
            id,
            generation: self.generation,
        };
        // Register before the command: the result URC may come right behind the OK.
        self.pending_opens.insert(
            id,
            PendingOpen {
                key,
                reply,
                deadline: Instant::now() + self.s.connect_timeout,
            },
        );
        let r = self
            .exec(self.dialect.open(id, &host, port), self.s.command_timeout)
            .await;
        let err = match r {
            Ok(r) if r.is_ok() => return,
            Ok(r) => TcpError::Protocol(format!("open refused: {:?}", r.result)),
            Err(ExecError::Timeout) => TcpError::Timeout,
            Err(_) => TcpError::Unavailable(self.unavailable_reason()),
        };
        if let Some(p) = self.pending_opens.remove(&id) {
            let _ = p.reply.send(Err(err));
        }
    }

    async fn socket_send(&mut self, key: SocketKey, data: Bytes) -> Result<(), TcpError> {
        for chunk in data.chunks(self.dialect.max_send()) {
            if !self.sockets.get(&key.id).is_some_and(|s| s.key == key) {
                return Err(TcpError::Closed);
            }
            match self
                .exec(self.dialect.send(key.id, chunk), self.s.command_timeout)
                .await
            {
                Ok(r) if self.dialect.send_ok(&r.result) => {}
                Ok(_) => return Err(TcpError::SendFailed),
                Err(ExecError::Timeout) => return Err(TcpError::Timeout),
                Err(_) => return Err(TcpError::Closed),
            }
        }
        Ok(())
    }

    fn expire_opens(&mut self) {
        let now = Instant::now();
        let expired: Vec<u8> = self
            .pending_opens
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(p) = self.pending_opens.remove(&id) {
                let _ = p.reply.send(Err(TcpError::Timeout));
                self.to_close.push(id);
            }
        }
    }

    async fn poll_status(&mut self) {
        let t = self.s.command_timeout;
        let Ok(r) = self.exec(AtCommand::new("AT+CPIN?"), t).await else {
            return;
        };
        self.status.sim = match &r.result {
            FinalResult::Ok => r
                .info("+CPIN:")
                .map_or(SimState::Other("no +CPIN".into()), SimState::parse_cpin),
            FinalResult::CmeError(code) => SimState::from_cme(*code),
            other => SimState::Other(format!("{other:?}")),
        };
        if let Ok(r) = self.exec(AtCommand::new("AT+CSQ"), t).await {
            self.status.signal = r.info("+CSQ:").and_then(|p| Signal::parse(p).ok());
        } else {
            return;
        }
        if self.status.sim == SimState::Ready {
            for (cmd, prefix) in [("AT+CREG?", "+CREG:"), ("AT+CGREG?", "+CGREG:")] {
                let Ok(r) = self.exec(AtCommand::new(cmd), t).await else {
                    return;
                };
                let reg = r
                    .info(prefix)
                    .and_then(|p| Registration::parse(p).ok())
                    .map(|x| x.1);
                if prefix == "+CREG:" {
                    self.status.registration_cs = reg;
                } else {
                    self.status.registration_ps = reg;
                }
            }
            let Ok(r) = self.exec(AtCommand::new("AT+COPS?"), t).await else {
                return;
            };
            self.status.operator = r.info("+COPS:").and_then(|p| Operator::parse(p).ok());
            let Ok(r) = self.exec(AtCommand::new("AT+CCLK?"), t).await else {
                return;
            };
            if let Some(ts) = r.info("+CCLK:").and_then(|p| parse_cclk(p).ok()) {
                self.status.network_time = Some(NetworkTime {
                    network: ts,
                    read_at: Timestamp::now(),
                });
            }
        } else {
            self.status.registration_cs = None;
            self.status.registration_ps = None;
            self.status.operator = None;
        }
        let before = self.status.state;
        self.status.derive_state();
        if before != self.status.state {
            info!(from = ?before, to = ?self.status.state, "modem state");
        }
        if self.status.state == ModemState::Ready {
            self.status.last_error = None;
        } else if self.status.state == ModemState::NoSim {
            self.status.last_error = Some(format!("SIM: {:?}", self.status.sim));
        }
        self.publish();
    }

    async fn init_sequence(&mut self) -> Result<(), String> {
        let t = self.s.command_timeout;
        let mut answered = false;
        for _ in 0..2 {
            match self.exec(AtCommand::new("AT"), t).await {
                Ok(_) => {
                    answered = true;
                    break;
                }
                Err(ExecError::Timeout) => continue,
                Err(e) => return Err(format!("port error: {e:?}")),
            }
        }
        if !answered {
            return Err("no answer to AT".into());
        }
        for cmd in ["ATE0", "AT+CMEE=1", "AT+CMGF=0", "AT+CREG=2", "AT+CGREG=2"] {
            match self.exec(AtCommand::new(cmd), t).await {
                Ok(r) if r.is_ok() => {}
                Ok(r) => warn!(command = cmd, result = ?r.result, "init command refused"),
                Err(_) => return Err(format!("no answer to {cmd}")),
            }
        }
        Ok(())
    }

    async fn bring_up(&mut self) {
        let path = self.s.port.display().to_string();
        self.recovery.on_bring_up_started();
        match tokio_serial::new(path.clone(), self.s.baud).open_native_async() {
            Ok(p) => self.port = Some(p),
            Err(e) => {
                self.fail_bringup(format!("cannot open {path}: {e}"));
                return;
            }
        }
        self.engine.reset();
        if let Err(reason) = self.init_sequence().await {
            if self.port.is_some() {
                self.fail_bringup(reason);
            }
            return;
        }
        if !self.up() {
            return;
        }
        if self.recovery.on_ready() {
            info!("modem answering again");
        }
        self.status.consecutive_timeouts = 0;
        // A `RDY` read during init is the restart we just recovered from.
        self.needs_init = false;
        self.poll_status().await;
        self.next_poll = Instant::now() + self.s.poll_interval;
    }

    /// A bring-up (or the port) failed: reset the module if we can, and decide whether
    /// it is dead.
    fn fail_bringup(&mut self, reason: String) {
        if let Some(port) = &mut self.port {
            // Best effort, never awaited: a hung module may not read it.
            let _ = port.try_write(b"AT+CFUN=1,1\r");
        }
        self.take_down("modem reset");
        self.status.last_error = Some(reason.clone());
        match self.recovery.on_failure(Instant::now()) {
            Failure::Dead { attempts, newly } => {
                if newly {
                    error!(reason = %reason, attempts, "modem is dead");
                }
                self.status.state = ModemState::Dead;
            }
            Failure::Resetting { attempt } => {
                warn!(reason = %reason, attempt, "modem not answering; resetting");
                self.status.state = ModemState::Resetting;
            }
        }
        self.publish();
    }

    fn port_failed(&mut self, e: io::Error) {
        warn!(error = %e, "modem port failed");
        self.fail_bringup(format!("port error: {e}"));
    }

    /// Sends `AT+CFUN=1,1` (its answer is not needed: the module restarts), closes the
    /// port and lets the machine schedule the bring-up after `reset_settle`.
    async fn power_cycle(&mut self, why: Why) {
        if why == Why::Hung {
            warn!(
                timeouts = self.recovery.consecutive_timeouts(),
                "modem stopped answering; AT+CFUN=1,1"
            );
        }
        let why = why.as_str();
        info!(why, "AT+CFUN=1,1");
        self.status.state = ModemState::Resetting;
        self.publish();
        let _ = self
            .exec(AtCommand::new("AT+CFUN=1,1"), self.s.command_timeout)
            .await;
        self.take_down(why);
        self.recovery.on_power_cycled(Instant::now());
        self.status.state = ModemState::Resetting;
        self.publish();
    }

    fn fail_sockets(&mut self, why: &str) {
        for (_, s) in self.sockets.drain() {
            let _ = s
                .data_tx
                .try_send(Err(TcpError::Unavailable(why.to_owned())));
        }
        for (_, p) in self.pending_opens.drain() {
            let _ = p.reply.send(Err(TcpError::Unavailable(why.to_owned())));
        }
        self.to_close.clear();
        self.pdp_active = false;
    }

    fn take_down(&mut self, why: &str) {
        self.fail_sockets(why);
        self.port = None;
        self.engine.reset();
        self.needs_init = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modem::Quectel;
    use crate::modem::emulator;

    async fn wait_state(h: &ModemHandle, want: ModemState, limit: Duration) -> bool {
        let mut rx = h.status();
        timeout(limit, rx.wait_for(|s| s.state == want))
            .await
            .is_ok()
    }

    /// The technician's reset reaches the module as `AT+CFUN=1,1` (the emulator counts
    /// it), the port is reopened and the modem is ready again; without an open port the
    /// reset retries the bring-up at once; without a driver it says so.
    #[tokio::test]
    async fn reset_power_cycles_the_module_on_a_pty() {
        let cancel = CancellationToken::new();
        let (emu, _) = emulator::start(cancel.clone()).expect("emulator");
        emu.set_pace(None);
        let mut s = ModemSettings::new(emu.path());
        s.poll_interval = Duration::from_millis(300);
        s.command_timeout = Duration::from_millis(500);
        s.reset_settle = Duration::from_millis(300);
        let (modem, _) = ModemHandle::spawn(s, Arc::new(Quectel), cancel.clone());
        assert!(wait_state(&modem, ModemState::Ready, Duration::from_secs(10)).await);
        assert_eq!(emu.resets(), 0);
        assert_eq!(modem.reset().await, ResetOutcome::PowerCycled);
        assert_eq!(emu.resets(), 1);
        assert!(emu.commands().iter().any(|c| c == "AT+CFUN=1,1"));
        assert_eq!(modem.status().borrow().state, ModemState::Resetting);
        assert!(wait_state(&modem, ModemState::Ready, Duration::from_secs(10)).await);

        // Asked again while the port is closed (settling): the bring-up runs at once.
        emu.set_reset_time(Duration::from_millis(50));
        assert_eq!(modem.reset().await, ResetOutcome::PowerCycled);
        assert_eq!(modem.reset().await, ResetOutcome::BringUpRetried);
        assert!(wait_state(&modem, ModemState::Ready, Duration::from_secs(10)).await);

        assert_eq!(
            ModemHandle::not_configured().reset().await,
            ResetOutcome::Unavailable
        );
        cancel.cancel();
    }
}
