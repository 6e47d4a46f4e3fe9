//! Emulated devices for `markaz demo`: a 3G modem and a center's power devices (solar
//! charger, battery monitor, inverter, generator controller) on pseudo-terminals, and a
//! config that points the node at them. The power world follows a sunny Damascus day
//! accelerated [`DEMO_TIME_SCALE`] times (a day in 24 minutes), starting at the real
//! local time, so the technician page visibly changes: the sun rises, the grid is cut,
//! the battery drains and the generator starts.

use std::time::Duration;

use markaz_config::{NodeConfig, VeDirectConfig, VeDirectRole};
use markaz_hardware::modem::emulator::{self as modem_emulator, EmulatorHandle};
use markaz_hardware::power::emulator::{DayProfile, EmulatorOptions, PowerEmulator};
use tokio_util::sync::CancellationToken;

/// Emulated seconds per real second in the demo.
pub const DEMO_TIME_SCALE: f64 = 60.0;

/// The technician's number in the demo (SMS go to the emulator, which records them).
pub const DEMO_TECHNICIAN_PHONE: &str = "+963944000000";

/// The running emulators; turn their knobs to show failures (`modem.set_signal`,
/// `power.bmv.knobs().set_silent`, …). They stop when the token given to [`emulate`] is
/// cancelled.
#[derive(Debug)]
pub struct DemoDevices {
    /// The modem emulator.
    pub modem: EmulatorHandle,
    /// The power devices' emulators and their simulated world.
    pub power: PowerEmulator,
}

/// Starts the emulators and fills `cfg` so the node uses them: the modem enabled on its
/// pty, VE.Direct MPPT and BMV, the inverter, the generator (auto start on), and a
/// technician phone when none is set. The shutdown command becomes a harmless `echo`. Must be called inside a tokio runtime.
pub fn emulate(cfg: &mut NodeConfig, cancel: CancellationToken) -> anyhow::Result<DemoDevices> {
    use anyhow::Context;
    let (modem, _task) = modem_emulator::start(cancel.clone())
        .context("while starting the modem emulator on a pty")?;
    let options = EmulatorOptions {
        start: jiff::Timestamp::now(),
        tz: cfg.center.timezone.time_zone(),
        time_scale: DEMO_TIME_SCALE,
        block_interval: Duration::from_secs(1),
        ..EmulatorOptions::default()
    };
    let power = PowerEmulator::start(DayProfile::damascus_summer(), options, &cancel)
        .context("while starting the power emulators on ptys")?;

    let path = |p: &std::path::Path| p.display().to_string();
    cfg.modem.enabled = true;
    cfg.modem.port = path(modem.path());
    cfg.modem.poll_interval_secs = 10;
    cfg.power.vedirect = vec![
        VeDirectConfig {
            port: path(power.mppt.path()),
            role: VeDirectRole::Mppt,
        },
        VeDirectConfig {
            port: path(power.bmv.path()),
            role: VeDirectRole::Bmv,
        },
    ];
    cfg.power.inverter.enabled = true;
    cfg.power.inverter.port = Some(path(power.inverter.path()));
    cfg.power.inverter.baud = 2400;
    cfg.power.inverter.poll_interval_secs = 2;
    cfg.power.generator.enabled = true;
    cfg.power.generator.port = Some(path(power.generator.path()));
    cfg.power.generator.auto_start = true;
    // A sample every 10 s is ten emulated minutes: the daily summary fills up visibly.
    cfg.power.sample_interval_secs = 10;
    // Never power off the machine running a demo: the critical level stops the node only.
    cfg.power.shutdown_command =
        "echo 'markaz demo: battery critical, the node would power off now'".into();
    if cfg.center.technician_phone.is_none() {
        cfg.center.technician_phone = Some(
            DEMO_TECHNICIAN_PHONE
                .parse()
                .map_err(|e| anyhow::anyhow!("demo phone: {e:?}"))?,
        );
    }
    Ok(DemoDevices { modem, power })
}
