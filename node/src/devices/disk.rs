//! The disk guard: watches the free space of the data disk and, below
//! `storage.min_free_mb`, alerts the technician (node log and SMS, like the power
//! alerts) and makes the writer refuse low-value writes — power samples, energy and
//! statistics documents (`Writer::write_low_value`) — so the room left goes to citizens'
//! cases and the desk keeps working. Above the threshold plus a margin, low-value writes
//! are taken again and the node log says so.
//!
//! The decision is a pure state machine ([`DiskGuard`]); the task around it only reads
//! `statvfs` and carries out what it says.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::outbox::{AlertKind, Alerter};
use crate::app::App;

/// How often the free space is read.
pub const CHECK_EVERY: Duration = Duration::from_secs(15);

const MIB: u64 = 1024 * 1024;

/// What the guard decided from a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Free space fell below the threshold: alert, refuse low-value writes.
    Low { free: u64 },
    /// Free space is back above the threshold and its margin: accept them again.
    Recovered { free: u64 },
}

/// Whether the disk is low, with a margin so a disk at the threshold does not flap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskGuard {
    min_free: u64,
    low: bool,
}

impl DiskGuard {
    /// A guard for `min_free` bytes (0: never low).
    pub fn new(min_free: u64) -> Self {
        Self {
            min_free,
            low: false,
        }
    }

    /// Free space needed to leave the low state: the threshold plus a tenth (at least
    /// 16 MiB).
    pub fn recover_at(&self) -> u64 {
        self.min_free + (self.min_free / 10).max(16 * MIB)
    }

    pub fn is_low(&self) -> bool {
        self.low
    }

    /// Takes one reading of the free bytes.
    pub fn on_reading(&mut self, free: u64) -> Option<Change> {
        if self.min_free == 0 {
            return None;
        }
        if !self.low && free < self.min_free {
            self.low = true;
            Some(Change::Low { free })
        } else if self.low && free >= self.recover_at() {
            self.low = false;
            Some(Change::Recovered { free })
        } else {
            None
        }
    }
}

/// Runs the guard on the data directory of `app` until `cancel`.
pub async fn supervise(app: App, min_free: u64, alerter: Alerter, cancel: CancellationToken) {
    let Some(dir) = app.db.path().parent().map(PathBuf::from) else {
        return;
    };
    let mut guard = DiskGuard::new(min_free);
    loop {
        match markaz_web::metrics::disk_space(&dir) {
            Ok(d) => match guard.on_reading(d.free) {
                Some(Change::Low { free }) => {
                    let why = format!(
                        "the data disk has {} MiB free, below storage.min_free_mb ({} MiB): \
                         power samples and statistics are not stored until there is room",
                        free / MIB,
                        min_free / MIB
                    );
                    app.db.writer.refuse_low_value(Some(&why));
                    error!(
                        free_mib = free / MIB,
                        min_free_mib = min_free / MIB,
                        "{why}"
                    );
                    let text = format!(
                        "قرص المركز شبه ممتلئ: {} م.ب حرة فقط (الحد {} م.ب). توقف حفظ بيانات الطاقة والإحصاءات؛ أفرغ مساحة.",
                        free / MIB,
                        min_free / MIB
                    );
                    if let Err(e) = alerter.raise(AlertKind::DiskLow, text).await {
                        warn!(error = %e, "cannot raise the disk alert");
                    }
                }
                Some(Change::Recovered { free }) => {
                    app.db.writer.refuse_low_value(None);
                    let msg = format!(
                        "the data disk has {} MiB free again: power samples and statistics are stored again",
                        free / MIB
                    );
                    info!("{msg}");
                    if let Err(e) = super::log(&app, "info", "disk", &msg).await {
                        warn!(error = %e, "cannot write the node log");
                    }
                }
                None => {}
            },
            Err(e) => warn!(error = %e, dir = %dir.display(), "cannot read the free space"),
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_below_the_threshold_and_back_only_above_its_margin() {
        let mut g = DiskGuard::new(512 * MIB);
        assert_eq!(g.on_reading(600 * MIB), None);
        assert_eq!(
            g.on_reading(500 * MIB),
            Some(Change::Low { free: 500 * MIB })
        );
        assert_eq!(g.on_reading(400 * MIB), None, "one alert per episode");
        assert_eq!(
            g.on_reading(520 * MIB),
            None,
            "within the margin: still low"
        );
        assert!(g.is_low());
        assert_eq!(
            g.on_reading(600 * MIB),
            Some(Change::Recovered { free: 600 * MIB })
        );
        assert_eq!(
            g.on_reading(100 * MIB),
            Some(Change::Low { free: 100 * MIB })
        );
        let mut off = DiskGuard::new(0);
        assert_eq!(off.on_reading(0), None);
    }
}
