//! Health of the primary (laser) link and the choice of uplink, after OpenWrt mwan3.
//!
//! [`probe`] is the sans-IO hysteresis (down after N failed rounds, up after M good
//! ones); [`uplink`] picks Primary, Modem or Offline with a failback hold, and runs the
//! probe task that publishes [`uplink::LinkStatus`] on a watch channel; [`connect`]
//! opens a stream to the hub over whichever uplink was chosen.

pub mod connect;
pub mod probe;
pub mod uplink;

pub use probe::{LinkHealth, ProbeResult, ProbeTracker, Thresholds};
pub use uplink::{
    ChangeReason, LinkMonitor, LinkSettings, LinkStatus, Uplink, UplinkChange, UplinkSelector,
};
