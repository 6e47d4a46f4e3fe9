//! An emulated generator controller of any family, answering through `tokio-modbus`'s
//! RTU server on a pseudo-terminal: the register map it serves is a [`GeneratorMap`]
//! (a preset or a custom map), so each preset is tested against a controller that keeps
//! its values where that family does, in its tables, scales and word orders, and obeys
//! only that family's start/stop method.
//!
//! Shape: the driver opens one pty; the server opens the slave of a second pty with
//! `tokio-serial`, as it would open an RS-485 adapter; a pump carries bytes between the
//! two masters and applies the port's [`Knobs`] (silence, corrupted, split or cut
//! replies). [`ControllerFaults`] add what only a controller does: refuse a start with
//! an exception reply, or accept it and never run.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_util::sync::CancellationToken;

use super::emulator::{Knobs, write_frame};
use super::generator::{
    Control, EngineState, GeneratorCommand, GeneratorMap, GeneratorReading, Point, Table,
};
use crate::pty::PtyMaster;

/// The engine behind an emulated controller: what it reads and what a command does.
pub trait Engine: Send + Sync + 'static {
    /// The values now.
    fn reading(&self) -> GeneratorReading;
    /// A command the controller accepted.
    fn command(&self, c: GeneratorCommand);
}

/// Controller faults; counters are consumed one per start command.
#[derive(Debug, Default)]
pub struct ControllerFaults {
    refuse_starts: AtomicU32,
    ignore_starts: AtomicBool,
    starts_received: AtomicU32,
}

impl ControllerFaults {
    /// The next `n` start commands get an exception reply (server device failure).
    pub fn refuse_starts(&self, n: u32) {
        self.refuse_starts.fetch_add(n, Ordering::SeqCst);
    }
    /// Start commands are acknowledged but the engine never turns (no fuel, a fault).
    pub fn ignore_starts(&self, on: bool) {
        self.ignore_starts.store(on, Ordering::SeqCst);
    }
    /// Start commands received, refused ones included.
    pub fn starts_received(&self) -> u32 {
        self.starts_received.load(Ordering::SeqCst)
    }
}

/// A simple engine: a running flag and settable values (for tests of one controller).
#[derive(Debug)]
pub struct SimpleEngine {
    reading: std::sync::Mutex<GeneratorReading>,
}

impl SimpleEngine {
    /// Stopped, with the given fuel, battery, run time and starts.
    pub fn new(fuel_percent: u16, battery_mv: u32, run_seconds: u32, starts: u32) -> Self {
        Self {
            reading: std::sync::Mutex::new(GeneratorReading {
                engine: Some(EngineState::Stopped),
                fuel_percent: Some(fuel_percent),
                battery_mv: Some(battery_mv),
                run_seconds: Some(run_seconds),
                starts: Some(starts),
                generator_available: Some(false),
                mains_available: Some(true),
            }),
        }
    }
    /// Changes the values.
    pub fn update(&self, f: impl FnOnce(&mut GeneratorReading)) {
        f(&mut self.reading.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

impl Engine for SimpleEngine {
    fn reading(&self) -> GeneratorReading {
        self.reading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    fn command(&self, c: GeneratorCommand) {
        self.update(|r| {
            let on = match c {
                GeneratorCommand::Start => true,
                GeneratorCommand::Stop => false,
                GeneratorCommand::Auto => return,
            };
            if on && !r.running() {
                r.starts = r.starts.map(|s| s + 1);
            }
            r.engine = Some(if on {
                EngineState::Running
            } else {
                EngineState::Stopped
            });
            r.generator_available = Some(on);
        });
    }
}

/// A running emulated controller.
#[derive(Debug, Clone)]
pub struct EmulatedController {
    path: PathBuf,
    knobs: Arc<Knobs>,
    faults: Arc<ControllerFaults>,
}

impl EmulatedController {
    /// Starts a controller serving `map` for `engine`; stops on `cancel`. Must be called
    /// inside a tokio runtime.
    pub fn start(
        map: GeneratorMap,
        engine: Arc<dyn Engine>,
        cancel: &CancellationToken,
    ) -> io::Result<Self> {
        let driver_side = PtyMaster::open()?;
        let server_side = PtyMaster::open()?;
        let path = driver_side.path().to_path_buf();
        let server_path = server_side.path().to_path_buf();
        let knobs = Arc::new(Knobs::default());
        let faults = Arc::new(ControllerFaults::default());
        tokio::spawn(pump(
            driver_side,
            server_side,
            knobs.clone(),
            cancel.clone(),
        ));
        let service = Arc::new(ControllerService {
            map,
            engine,
            faults: faults.clone(),
        });
        tokio::spawn(serve(server_path, service, cancel.clone()));
        Ok(Self {
            path,
            knobs,
            faults,
        })
    }

    /// The tty a driver opens.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Port faults.
    pub fn knobs(&self) -> &Knobs {
        &self.knobs
    }
    /// Controller faults.
    pub fn faults(&self) -> &ControllerFaults {
        &self.faults
    }
}

async fn serve(path: PathBuf, service: Arc<ControllerService>, cancel: CancellationToken) {
    while !cancel.is_cancelled() {
        let builder = tokio_serial::new(path.to_string_lossy(), 9600);
        let serial = match tokio_serial::SerialStream::open(&builder) {
            Ok(s) => s,
            Err(_) => return,
        };
        let server = tokio_modbus::server::rtu::Server::new(serial);
        // A garbled request ends `serve_until` with an error: serve again.
        let _ = server
            .serve_until(service.clone(), cancel.clone().cancelled_owned())
            .await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Carries bytes between the driver's pty and the server's, applying the knobs to the
/// controller's replies.
async fn pump(
    mut driver: PtyMaster,
    mut server: PtyMaster,
    knobs: Arc<Knobs>,
    cancel: CancellationToken,
) {
    let mut from_driver = [0u8; 256];
    let mut from_server = [0u8; 256];
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            r = driver.read(&mut from_driver) => {
                let Ok(n) = r else { return };
                if knobs.is_silent() {
                    continue;
                }
                if server.write_all(&from_driver[..n]).await.is_err() {
                    return;
                }
            }
            r = server.read(&mut from_server) => {
                let Ok(n) = r else { return };
                if knobs.is_silent() {
                    continue;
                }
                let mut reply = from_server[..n].to_vec();
                if knobs.take_bad_checksum() && let Some(last) = reply.last_mut() {
                    *last ^= 0xFF;
                }
                if write_frame(&mut driver, &reply, &knobs, Duration::from_millis(20)).await.is_err() {
                    return;
                }
            }
        }
    }
}

struct ControllerService {
    map: GeneratorMap,
    engine: Arc<dyn Engine>,
    faults: Arc<ControllerFaults>,
}

type Answer = Result<Option<Response>, ExceptionCode>;

impl tokio_modbus::server::Service for ControllerService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = std::future::Ready<Answer>;

    fn call(&self, req: Self::Request) -> Self::Future {
        std::future::ready(self.answer(req))
    }
}

impl ControllerService {
    /// The words the controller serves at `(table, address)`, from the engine's
    /// values encoded by the map.
    fn bank(&self) -> Vec<(Table, u16, u16)> {
        let r = self.engine.reading();
        let m = &self.map;
        let hz = |on: Option<bool>| if on == Some(true) { 500 } else { 0 };
        let mut out = Vec::new();
        let mut put = |p: Option<Point>, words: Vec<u16>| {
            if let Some(p) = p {
                for (i, w) in words.into_iter().enumerate() {
                    out.push((p.table, p.address.wrapping_add(i as u16), w));
                }
            }
        };
        let enc = |p: Option<Point>, v: Option<i64>, unit: i64| match (p, v) {
            (Some(p), Some(v)) => p.encode(v, unit),
            (Some(p), None) => vec![0xFFFF; usize::from(p.words)],
            _ => Vec::new(),
        };
        put(
            m.fuel_percent,
            enc(m.fuel_percent, r.fuel_percent.map(i64::from), 1),
        );
        put(
            m.battery_volts,
            enc(m.battery_volts, r.battery_mv.map(i64::from), 1000),
        );
        put(
            m.run_time_seconds,
            enc(m.run_time_seconds, r.run_seconds.map(i64::from), 1),
        );
        put(m.starts, enc(m.starts, r.starts.map(i64::from), 1));
        put(
            m.generator_hz,
            enc(m.generator_hz, Some(hz(r.generator_available)), 10),
        );
        put(m.mains_hz, enc(m.mains_hz, Some(hz(r.mains_available)), 10));
        if let Some(p) = m.engine_state {
            let state = r.engine.unwrap_or(EngineState::Stopped);
            let w = if p.table.is_bit() {
                u16::from(state.is_running())
            } else {
                m.engine_code(state)
            };
            put(Some(p), vec![w]);
        }
        out
    }

    fn read(&self, table: Table, addr: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        if count == 0 || count > 125 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let bank = self.bank();
        (addr..addr.saturating_add(count))
            .map(|a| {
                bank.iter()
                    .find(|(t, at, _)| *t == table && *at == a)
                    .map(|(_, _, w)| *w)
                    .ok_or(ExceptionCode::IllegalDataAddress)
            })
            .collect()
    }

    fn command(&self, c: GeneratorCommand) -> Result<(), ExceptionCode> {
        if c == GeneratorCommand::Start {
            self.faults.starts_received.fetch_add(1, Ordering::SeqCst);
            let refused = self
                .faults
                .refuse_starts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if refused {
                return Err(ExceptionCode::ServerDeviceFailure);
            }
            if self.faults.ignore_starts.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
        self.engine.command(c);
        Ok(())
    }

    fn answer(&self, req: SlaveRequest<'static>) -> Answer {
        if req.slave != self.map.slave {
            return Ok(None);
        }
        use GeneratorCommand::{Auto, Start, Stop};
        let bad_addr = ExceptionCode::IllegalDataAddress;
        let resp = match (req.request, &self.map.control) {
            (Request::ReadHoldingRegisters(a, n), _) => {
                Response::ReadHoldingRegisters(self.read(Table::Holding, a, n)?)
            }
            (Request::ReadInputRegisters(a, n), _) => {
                Response::ReadInputRegisters(self.read(Table::Input, a, n)?)
            }
            (Request::ReadCoils(a, n), _) => Response::ReadCoils(
                self.read(Table::Coil, a, n)?
                    .into_iter()
                    .map(|w| w != 0)
                    .collect(),
            ),
            (Request::ReadDiscreteInputs(a, n), _) => Response::ReadDiscreteInputs(
                self.read(Table::Discrete, a, n)?
                    .into_iter()
                    .map(|w| w != 0)
                    .collect(),
            ),
            (
                Request::WriteMultipleRegisters(a, words),
                Control::Key {
                    register,
                    start,
                    stop,
                    auto,
                },
            ) if a == *register => {
                let [key, complement] = words[..] else {
                    return Err(ExceptionCode::IllegalDataValue);
                };
                if complement != u16::MAX - key {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                let c = if key == *start {
                    Start
                } else if key == *stop {
                    Stop
                } else if Some(key) == *auto {
                    Auto
                } else {
                    return Err(ExceptionCode::IllegalDataValue);
                };
                self.command(c)?;
                Response::WriteMultipleRegisters(a, 2)
            }
            (Request::WriteSingleCoil(a, on), Control::Coils { start, stop }) => {
                let c = match (a == *start, Some(a) == *stop, on) {
                    (true, _, true) => Start,
                    (true, _, false) if stop.is_none() => Stop,
                    (_, true, true) => Stop,
                    (true, _, false) | (_, true, false) => {
                        return Ok(Some(Response::WriteSingleCoil(a, on)));
                    }
                    _ => return Err(bad_addr),
                };
                self.command(c)?;
                Response::WriteSingleCoil(a, on)
            }
            (
                Request::WriteSingleRegister(a, v),
                Control::Pulse {
                    start, stop, value, ..
                },
            ) if a == *start || a == *stop => {
                if v == *value {
                    self.command(if a == *start { Start } else { Stop })?;
                } else if v != 0 {
                    return Err(ExceptionCode::IllegalDataValue);
                }
                Response::WriteSingleRegister(a, v)
            }
            (
                Request::WriteSingleRegister(a, v),
                Control::Registers {
                    start,
                    start_value,
                    stop,
                    stop_value,
                },
            ) if a == *start || a == *stop => {
                let c = if a == *start && v == *start_value {
                    Start
                } else if a == *stop && v == *stop_value {
                    Stop
                } else {
                    return Err(ExceptionCode::IllegalDataValue);
                };
                self.command(c)?;
                Response::WriteSingleRegister(a, v)
            }
            (
                Request::WriteSingleRegister(..)
                | Request::WriteMultipleRegisters(..)
                | Request::WriteSingleCoil(..)
                | Request::WriteMultipleCoils(..),
                _,
            ) => return Err(bad_addr),
            _ => return Err(ExceptionCode::IllegalFunction),
        };
        Ok(Some(resp))
    }
}
