//! Serial devices of a center: the 3G modem, the power monitors, link health, and
//! faithful emulators of each on a pseudo-terminal.
//!
//! This crate knows nothing of the node: drivers publish their latest state on watch
//! channels and take commands on mpsc channels; wire formats are sans-IO modules.

pub mod link;
pub mod modem;
pub mod power;
pub mod pty;
