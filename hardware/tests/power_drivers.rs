//! Each power driver against its emulator on a real pseudo-terminal: correct values,
//! bad checksums counted and dropped, split/cut frames and HEX interleaving, a silent
//! device going stale and coming back, generator start/stop through Modbus.

use std::time::Duration;

use anyhow::{Context, Result};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use markaz_hardware::power::driver::{
    GeneratorDriver, GeneratorHandle, GeneratorSettings, GeneratorState, InverterDriver,
    InverterSettings, InverterState, VeDirectDriver, VeDirectSettings, VeDirectState,
};
use markaz_hardware::power::emulator::{DayProfile, EmulatorOptions, PowerEmulator};
use markaz_hardware::power::generator::{EngineState, GeneratorCommand};
use markaz_hardware::power::voltronic::Mode;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(5);

/// The emulated center plus the tasks under test; everything stops when dropped.
struct Center {
    cancel: CancellationToken,
    emu: PowerEmulator,
}

impl Drop for Center {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Center {
    /// A center at `hh:mm` UTC on the Damascus summer profile, real-time clock, fast
    /// VE.Direct blocks.
    fn start_at(hhmm: &str) -> Result<Self> {
        let cancel = CancellationToken::new();
        let start: Timestamp = format!("2026-06-01T{hhmm}:00Z").parse()?;
        let emu = PowerEmulator::start(
            DayProfile {
                // The inverter has an array of its own beside the solar charger's.
                inverter_pv_percent: 40,
                ..DayProfile::damascus_summer()
            },
            EmulatorOptions {
                start,
                tz: TimeZone::UTC,
                time_scale: 1.0,
                block_interval: Duration::from_millis(40),
                ..EmulatorOptions::default()
            },
            &cancel,
        )
        .context("while starting the emulators")?;
        Ok(Self { cancel, emu })
    }

    fn vedirect(&self, path: &std::path::Path) -> watch::Receiver<VeDirectState> {
        let (driver, rx) = VeDirectDriver::new(VeDirectSettings {
            stale_after: Duration::from_millis(400),
            retry_after: Duration::from_millis(100),
            ..VeDirectSettings::new(path)
        });
        tokio::spawn(driver.run(self.cancel.child_token()));
        rx
    }

    fn inverter(&self) -> watch::Receiver<InverterState> {
        let (driver, rx) = InverterDriver::new(InverterSettings {
            poll_every: Duration::from_millis(50),
            reply_timeout: Duration::from_millis(300),
            stale_after: Duration::from_millis(500),
            retry_after: Duration::from_millis(100),
            ..InverterSettings::new(self.emu.inverter.path())
        });
        tokio::spawn(driver.run(self.cancel.child_token()));
        rx
    }

    fn generator(&self) -> GeneratorHandle {
        let (driver, handle) = GeneratorDriver::new(GeneratorSettings {
            poll_every: Duration::from_millis(50),
            request_timeout: Duration::from_millis(300),
            stale_after: Duration::from_millis(500),
            retry_after: Duration::from_millis(100),
            ..GeneratorSettings::new(self.emu.generator.path())
        });
        tokio::spawn(driver.run(self.cancel.child_token()));
        handle
    }
}

async fn until<T: Clone>(
    rx: &mut watch::Receiver<T>,
    what: &str,
    f: impl FnMut(&T) -> bool,
) -> Result<T> {
    let v = tokio::time::timeout(WAIT, rx.wait_for(f))
        .await
        .with_context(|| format!("timed out waiting for {what}"))?
        .with_context(|| format!("driver stopped while waiting for {what}"))?;
    Ok(v.clone())
}

#[tokio::test]
async fn vedirect_driver_reads_the_solar_charger_and_battery_monitor() -> Result<()> {
    let c = Center::start_at("12:30")?;
    let mut mppt = c.vedirect(c.emu.mppt.path());
    let mut bmv = c.vedirect(c.emu.bmv.path());

    let st = until(&mut mppt, "an MPPT reading", |s| s.mppt.is_some()).await?;
    let m = st.mppt.context("mppt")?;
    let truth = c.emu.snapshot();
    assert!(!st.stale);
    assert!(
        m.pv_w.abs_diff(truth.pv_w) <= 2,
        "{} vs {}",
        m.pv_w,
        truth.pv_w
    );
    assert!(m.pv_w > 1400, "solar noon on the profile: {}", m.pv_w);
    assert!((i64::from(m.battery_mv) - i64::from(truth.battery_mv)).abs() <= 8);
    assert!(st.bmv.is_none());

    let st = until(&mut bmv, "a BMV reading", |s| s.bmv.is_some()).await?;
    let b = st.bmv.context("bmv")?;
    let truth = c.emu.snapshot();
    let soc = b.soc_permille.context("soc")?;
    assert!(
        soc.abs_diff(truth.soc_permille) <= 1,
        "{soc} vs {}",
        truth.soc_permille
    );
    let p = b.power_w.context("power")?;
    assert!(
        (p - truth.battery_w).abs() <= 2,
        "{p} vs {}",
        truth.battery_w
    );
    assert_eq!(st.stats.bad_checksum, 0);
    Ok(())
}

#[tokio::test]
async fn vedirect_bad_checksums_are_dropped_and_counted() -> Result<()> {
    let c = Center::start_at("12:00")?;
    let mut rx = c.vedirect(c.emu.mppt.path());
    let first = until(&mut rx, "first block", |s| s.stats.blocks >= 2).await?;
    c.emu.mppt.knobs().inject_bad_checksums(3);
    let st = until(&mut rx, "three bad checksums", |s| {
        s.stats.bad_checksum >= 3
    })
    .await?;
    assert_eq!(st.stats.bad_checksum, 3);
    let blocks = st.stats.blocks;
    let st = until(&mut rx, "good blocks after", |s| {
        s.stats.blocks >= blocks + 3
    })
    .await?;
    assert_eq!(st.stats.bad_checksum, 3);
    assert_eq!(st.field_errors, 0);
    assert!(!st.stale);
    assert!(st.stats.blocks > first.stats.blocks);
    Ok(())
}

#[tokio::test]
async fn vedirect_split_cut_and_hex_interleaved_frames() -> Result<()> {
    let c = Center::start_at("12:00")?;
    let mut rx = c.vedirect(c.emu.bmv.path());
    until(&mut rx, "first block", |s| s.stats.blocks >= 1).await?;

    // Split across writes and reads, with HEX frames before and inside: all good.
    c.emu.bmv.knobs().split_frames(3);
    c.emu.bmv.knobs().inject_hex_frames(2);
    let before = rx.borrow().stats.blocks;
    let st = until(&mut rx, "blocks after split frames", |s| {
        s.stats.blocks >= before + 5
    })
    .await?;
    assert_eq!(st.stats.hex_frames, 4);
    assert_eq!(st.stats.bad_checksum, 0);
    assert_eq!(st.stats.framing_errors, 0);

    // A cut block spoils itself (and the block it runs into); the stream recovers.
    c.emu.bmv.knobs().cut_frames(1);
    let lost_before = st.stats.bad_checksum + st.stats.framing_errors;
    let st = until(&mut rx, "a dropped cut block", |s| {
        s.stats.bad_checksum + s.stats.framing_errors > lost_before
    })
    .await?;
    let blocks = st.stats.blocks;
    let st = until(&mut rx, "recovery", |s| s.stats.blocks >= blocks + 3).await?;
    assert!(st.bmv.is_some() && !st.stale);
    Ok(())
}

#[tokio::test]
async fn vedirect_silent_device_goes_stale_and_comes_back() -> Result<()> {
    let c = Center::start_at("12:00")?;
    let mut rx = c.vedirect(c.emu.mppt.path());
    until(&mut rx, "fresh reading", |s| !s.stale && s.mppt.is_some()).await?;
    c.emu.mppt.knobs().set_silent(true);
    let st = until(&mut rx, "stale", |s| s.stale).await?;
    assert!(st.mppt.is_some(), "the last reading is kept");
    let last = st.updated_at;
    c.emu.mppt.knobs().set_silent(false);
    let st = until(&mut rx, "fresh again", |s| !s.stale).await?;
    assert!(st.updated_at > last);
    Ok(())
}

#[tokio::test]
async fn inverter_driver_reads_status_and_mode() -> Result<()> {
    // 12:00: grid on → line mode. 07:00: grid cut → battery mode.
    for (at, mode) in [("12:00", Mode::Line), ("07:00", Mode::Battery)] {
        let c = Center::start_at(at)?;
        let mut rx = c.inverter();
        let st = until(&mut rx, "status and mode", |s| {
            s.status.is_some() && s.mode.is_some()
        })
        .await?;
        let q = st.status.context("status")?;
        let truth = c.emu.snapshot();
        assert_eq!(st.mode, Some(mode), "at {at}");
        assert!(q.output_w.abs_diff(truth.load_w) <= 1);
        assert!(q.battery_mv.abs_diff(truth.battery_mv) <= 20);
        assert!(
            q.battery_percent
                .abs_diff(u32::from(truth.soc_permille / 10))
                <= 1
        );
        assert!(q.pv_charging_w.context("pv")?.abs_diff(truth.pv_inverter_w) <= 2);
        assert_eq!(q.grid_mv > 0, mode == Mode::Line);
        assert_eq!(st.stats.bad_crc + st.stats.naks, 0);
    }
    Ok(())
}

#[tokio::test]
async fn inverter_bad_crc_is_counted_and_silence_goes_stale() -> Result<()> {
    let c = Center::start_at("12:00")?;
    let mut rx = c.inverter();
    until(&mut rx, "first status", |s| s.status.is_some()).await?;
    c.emu.inverter.knobs().inject_bad_checksums(2);
    until(&mut rx, "two bad CRCs", |s| s.stats.bad_crc == 2).await?;
    c.emu.inverter.knobs().split_frames(2);
    let replies = rx.borrow().stats.replies;
    until(&mut rx, "split replies read", |s| {
        s.stats.replies >= replies + 4
    })
    .await?;

    c.emu.inverter.knobs().set_silent(true);
    let st = until(&mut rx, "stale", |s| s.stale).await?;
    assert!(st.stats.timeouts > 0);
    assert!(st.status.is_some());
    c.emu.inverter.knobs().set_silent(false);
    until(&mut rx, "fresh again", |s| !s.stale).await?;
    Ok(())
}

#[tokio::test]
async fn generator_driver_reads_and_starts_and_stops_the_engine() -> Result<()> {
    let c = Center::start_at("12:00")?;
    let handle = c.generator();
    let mut rx = handle.state.clone();
    let st: GeneratorState = until(&mut rx, "first reading", |s| s.reading.is_some()).await?;
    let r = st.reading.context("reading")?;
    assert_eq!(r.engine, Some(EngineState::Stopped));
    assert_eq!(r.fuel_percent, Some(80));
    assert_eq!(r.battery_mv, Some(12_800));
    assert_eq!(r.mains_available, Some(true));
    assert_eq!(r.generator_available, Some(false));
    assert_eq!(r.starts, Some(0));

    handle.command(GeneratorCommand::Start).await?;
    assert!(
        c.emu.snapshot().generator_running,
        "the emulated engine runs"
    );
    let st = until(&mut rx, "running", |s| {
        s.reading.as_ref().is_some_and(|r| r.running())
    })
    .await?;
    let r = st.reading.context("reading")?;
    assert_eq!(r.starts, Some(1));
    assert_eq!(r.generator_available, Some(true));

    handle.command(GeneratorCommand::Stop).await?;
    assert!(!c.emu.snapshot().generator_running);
    until(&mut rx, "stopped", |s| {
        s.reading.as_ref().is_some_and(|r| !r.running())
    })
    .await?;

    c.emu.generator.knobs().set_silent(true);
    let st = until(&mut rx, "stale", |s| s.stale).await?;
    assert!(st.errors > 0);
    assert!(
        tokio::time::timeout(WAIT, handle.command(GeneratorCommand::Start))
            .await?
            .is_err(),
        "a command to a silent controller fails, bounded"
    );
    c.emu.generator.knobs().set_silent(false);
    until(&mut rx, "fresh again", |s| !s.stale).await?;
    Ok(())
}

#[tokio::test]
async fn accelerated_day_the_driver_sees_the_grid_cut_and_the_sun() -> Result<()> {
    // 10 emulated minutes per real second from 05:50: the 06:00 grid cut arrives after
    // about a second, and the sun rises (05:30) further along.
    let cancel = CancellationToken::new();
    let emu = PowerEmulator::start(
        DayProfile::damascus_summer(),
        EmulatorOptions {
            start: "2026-06-01T05:50:00Z".parse()?,
            time_scale: 600.0,
            block_interval: Duration::from_millis(40),
            ..EmulatorOptions::default()
        },
        &cancel,
    )?;
    let c = Center { cancel, emu };
    let mut inv = c.inverter();
    let mut mppt = c.vedirect(c.emu.mppt.path());
    until(&mut inv, "line mode before the cut", |s| {
        s.mode == Some(Mode::Line)
    })
    .await?;
    let st = until(&mut inv, "battery mode in the cut", |s| {
        s.mode == Some(Mode::Battery)
    })
    .await?;
    assert!(c.emu.now() >= "2026-06-01T06:00:00Z".parse::<Timestamp>()?);
    assert_eq!(st.status.map(|q| q.grid_mv), Some(0));
    let first = until(&mut mppt, "PV", |s| s.mppt.is_some()).await?;
    let pv0 = first.mppt.map_or(0, |m| m.pv_w);
    until(&mut mppt, "rising PV", |s| {
        s.mppt.as_ref().is_some_and(|m| m.pv_w > pv0 + 20)
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn inverter_emulator_naks_unknown_commands_and_bad_crcs() -> Result<()> {
    use markaz_hardware::power::voltronic::{self, VoltronicError};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_serial::SerialPortBuilderExt;

    let c = Center::start_at("12:00")?;
    let mut port =
        tokio_serial::new(c.emu.inverter.path().to_string_lossy(), 2400).open_native_async()?;
    let mut qpigs = voltronic::frame(b"QPIGS");
    qpigs[5] ^= 0x01;
    for request in [voltronic::frame(b"QPIRI"), qpigs] {
        port.write_all(&request).await?;
        let mut reply = Vec::new();
        while !reply.ends_with(b"\r") {
            let mut b = [0u8; 32];
            let n = tokio::time::timeout(WAIT, port.read(&mut b)).await??;
            reply.extend_from_slice(&b[..n]);
        }
        assert_eq!(voltronic::decode_reply(&reply), Err(VoltronicError::Nak));
    }
    Ok(())
}

#[tokio::test]
async fn generator_bad_crc_and_split_replies_are_survived() -> Result<()> {
    let c = Center::start_at("12:00")?;
    let handle = c.generator();
    let mut rx = handle.state.clone();
    until(&mut rx, "first reading", |s| s.reading.is_some()).await?;
    c.emu.generator.knobs().split_frames(4);
    c.emu.generator.knobs().inject_bad_checksums(1);
    let st = until(&mut rx, "an error", |s| s.errors >= 1).await?;
    assert!(st.last_error.is_some());
    let at = st.updated_at;
    let st = until(&mut rx, "a good read after", |s| {
        s.updated_at > at && s.last_error.is_none()
    })
    .await?;
    assert!(!st.stale);
    assert_eq!(st.reading.and_then(|r| r.fuel_percent), Some(80));
    Ok(())
}

#[tokio::test]
async fn the_power_sample_leaves_stale_devices_out() -> Result<()> {
    use markaz_hardware::power::driver::sample;
    use markaz_hardware::power::model::Source;

    let c = Center::start_at("12:00")?;
    let mut mppt = c.vedirect(c.emu.mppt.path());
    let mut bmv = c.vedirect(c.emu.bmv.path());
    let mut inv = c.inverter();
    let handle = c.generator();
    let mut generator = handle.state.clone();
    let m = until(&mut mppt, "mppt", |s| !s.stale).await?;
    let b = until(&mut bmv, "bmv", |s| !s.stale && s.bmv.is_some()).await?;
    let i = until(&mut inv, "inverter", |s| !s.stale && s.mode.is_some()).await?;
    let g = until(&mut generator, "generator", |s| !s.stale).await?;
    let s = sample(Timestamp::now(), &[m.clone(), b], Some(&i), Some(&g));
    assert_eq!(s.source, Source::Grid);
    assert_eq!(s.grid_available, Some(true));
    assert_eq!(s.fuel_percent, Some(80));
    // Two arrays: the sample's PV is the charger's plus the inverter's.
    let inverter_pv = i.status.as_ref().map(|q| q.pv_w()).context("inverter pv")?;
    assert!(inverter_pv > 0, "the inverter's array at noon");
    assert_eq!(s.pv_w, m.mppt.as_ref().map(|r| r.pv_w + inverter_pv));
    let bmv_soc = s.soc_percent.context("soc")?;

    // The battery monitor falls silent: the charge now comes from the inverter.
    c.emu.bmv.knobs().set_silent(true);
    let b = until(&mut bmv, "stale bmv", |s| s.stale).await?;
    let s = sample(Timestamp::now(), &[m, b], Some(&i), Some(&g));
    let inv_soc = i.status.as_ref().map(|q| q.battery_percent);
    assert_eq!(s.soc_percent.map(u32::from), inv_soc);
    assert!(bmv_soc.abs_diff(s.soc_percent.unwrap_or(0)) <= 1);
    Ok(())
}

#[tokio::test]
async fn a_battery_first_inverter_with_the_grid_present_means_battery() -> Result<()> {
    use markaz_hardware::power::driver::sample;
    use markaz_hardware::power::model::Source;

    // 11:00: the grid is on; the office load is 900 W.
    let c = Center::start_at("11:00")?;
    let mut inv = c.inverter();
    let i = until(&mut inv, "line mode", |s| {
        !s.stale && s.mode == Some(Mode::Line)
    })
    .await?;
    assert_eq!(
        sample(Timestamp::now(), &[], Some(&i), None).source,
        Source::Grid
    );
    c.emu.set_battery_first(true);
    let i = until(&mut inv, "battery mode", |s| s.mode == Some(Mode::Battery)).await?;
    let s = sample(Timestamp::now(), &[], Some(&i), None);
    assert_eq!(s.grid_available, Some(true), "the grid is still there");
    let q = i.status.as_ref().context("status")?;
    let want = if q.pv_w() > 0 && q.pv_w() >= q.output_w {
        Source::Solar
    } else {
        Source::Battery
    };
    assert_eq!(s.source, want, "the inverter's mode decides, not the grid");
    assert_ne!(s.source, Source::Grid);
    Ok(())
}
