//! The 3G modem: a sans-IO AT engine, typed status parsers, PDU-mode SMS, a driver
//! task that owns the serial port, TCP sockets through the module's IP stack, and a
//! pty emulator that speaks the same dialect.
//!
//! Nothing outside the driver ever waits on the device: callers read the latest
//! [`status::ModemStatus`] from a watch channel and send commands that carry their own
//! timeouts.

pub mod at;
pub mod driver;
pub mod recovery;
pub mod sms;
pub mod status;
pub mod tcp;

pub use driver::{ModemHandle, ModemSettings, PartsSent, ResetOutcome, SmsSendError};
pub use status::{ModemState, ModemStatus};
pub use tcp::{ModemTcpStream, Quectel, SocketDialect, TcpError};
pub mod emulator;
