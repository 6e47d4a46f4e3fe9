//! The generator driver against an emulated controller of each preset family (Deep Sea,
//! SmartGen, Datakom) and a custom map using every table, a signed value, a low-word-
//! first counter and separate start/stop registers — each served by tokio-modbus's RTU
//! server on a real pseudo-terminal. Then the failed starts: an exception reply retried
//! with backoff until the attempts run out, a retry that succeeds, and a start that is
//! accepted but never runs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use markaz_hardware::power::controller::{EmulatedController, Engine as _, SimpleEngine};
use markaz_hardware::power::driver::{
    GeneratorDriver, GeneratorHandle, GeneratorSettings, GeneratorState, StartSettings,
};
use markaz_hardware::power::generator::{
    Control, EngineState, GeneratorCommand, GeneratorMap, Point, Preset, Table, WordOrder,
};
use markaz_hardware::power::start::{StartFailure, StartPhase};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

struct Rig {
    cancel: CancellationToken,
    engine: Arc<SimpleEngine>,
    controller: EmulatedController,
    handle: GeneratorHandle,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn fast_start() -> StartSettings {
    StartSettings {
        attempts: 3,
        retry_after: Duration::from_millis(150),
        confirm_within: Duration::from_millis(800),
    }
}

fn rig(map: GeneratorMap, start: StartSettings) -> Result<Rig> {
    let cancel = CancellationToken::new();
    // 100 h of running, a multiple of every preset's run-time unit.
    let engine = Arc::new(SimpleEngine::new(73, 12_800, 360_000, 412));
    let controller = EmulatedController::start(map.clone(), engine.clone(), &cancel)
        .context("while starting the emulated controller")?;
    let (driver, handle) = GeneratorDriver::new(GeneratorSettings {
        map,
        poll_every: Duration::from_millis(60),
        request_timeout: Duration::from_millis(400),
        stale_after: Duration::from_millis(800),
        retry_after: Duration::from_millis(100),
        start,
        ..GeneratorSettings::new(controller.path())
    });
    tokio::spawn(driver.run(cancel.child_token()));
    Ok(Rig {
        cancel,
        engine,
        controller,
        handle,
    })
}

async fn until(
    rx: &mut watch::Receiver<GeneratorState>,
    what: &str,
    f: impl FnMut(&GeneratorState) -> bool,
) -> Result<GeneratorState> {
    let v = tokio::time::timeout(WAIT, rx.wait_for(f))
        .await
        .with_context(|| format!("timed out waiting for {what}"))?
        .with_context(|| format!("driver stopped while waiting for {what}"))?;
    Ok(v.clone())
}

/// Reads the family's values, starts and stops the engine by its method.
async fn reads_starts_and_stops(map: GeneratorMap, has_starts: bool) -> Result<()> {
    let r = rig(map, fast_start())?;
    let mut rx = r.handle.state.clone();
    let st = until(&mut rx, "first reading", |s| s.reading.is_some()).await?;
    let reading = st.reading.context("reading")?;
    ensure!(reading.fuel_percent == Some(73), "{reading:?}");
    ensure!(reading.battery_mv == Some(12_800), "{reading:?}");
    ensure!(reading.run_seconds == Some(360_000), "{reading:?}");
    ensure!(reading.starts == has_starts.then_some(412), "{reading:?}");
    ensure!(reading.engine == Some(EngineState::Stopped), "{reading:?}");
    ensure!(!reading.running());

    r.handle.command(GeneratorCommand::Start).await?;
    let st = until(&mut rx, "running", |s| {
        s.reading.as_ref().is_some_and(|r| r.running())
    })
    .await?;
    ensure!(r.engine.reading().running(), "the emulated engine runs");
    ensure!(st.reading.as_ref().and_then(|r| r.generator_available) == Some(true));
    until(&mut rx, "start confirmed", |s| {
        s.start == Some(StartPhase::Running)
    })
    .await?;
    if has_starts {
        ensure!(st.reading.as_ref().and_then(|r| r.starts) == Some(413));
    }

    r.handle.command(GeneratorCommand::Stop).await?;
    let st = until(&mut rx, "stopped", |s| {
        s.reading.as_ref().is_some_and(|r| !r.running())
    })
    .await?;
    ensure!(st.start.is_none(), "a stop ends the start: {:?}", st.start);
    ensure!(r.controller.faults().starts_received() == 1);
    Ok(())
}

#[tokio::test]
async fn deep_sea_preset_against_its_controller() -> Result<()> {
    reads_starts_and_stops(GeneratorMap::preset(Preset::DeepSea), true).await
}

#[tokio::test]
async fn smartgen_preset_against_its_controller() -> Result<()> {
    reads_starts_and_stops(GeneratorMap::preset(Preset::SmartGen), true).await
}

#[tokio::test]
async fn datakom_preset_against_its_controller() -> Result<()> {
    reads_starts_and_stops(GeneratorMap::preset(Preset::Datakom), false).await
}

#[tokio::test]
async fn a_custom_map_with_every_table_and_format() -> Result<()> {
    let map = GeneratorMap {
        slave: 9,
        sentinels: false,
        fuel_percent: Some(Point::holding(30).in_table(Table::Input).scaled(1, 10)),
        battery_volts: Some(
            Point::holding(31)
                .in_table(Table::Input)
                .signed()
                .scaled(1, 100),
        ),
        engine_state: Some(Point::holding(2).in_table(Table::Discrete)),
        engine_codes: Vec::new(),
        run_time_seconds: Some(
            Point::holding(40)
                .in_table(Table::Input)
                .wide(WordOrder::LowFirst)
                .scaled(60, 1),
        ),
        starts: Some(Point::holding(50).wide(WordOrder::HighFirst)),
        generator_hz: Some(Point::holding(5).in_table(Table::Coil)),
        mains_hz: None,
        available_above_decihertz: 0,
        control: Control::Registers {
            start: 100,
            start_value: 7,
            stop: 101,
            stop_value: 9,
        },
    };
    ensure!(map.check().is_empty());
    reads_starts_and_stops(map, true).await
}

#[tokio::test]
async fn a_refused_start_is_retried_with_backoff_then_reported_failed() -> Result<()> {
    let r = rig(GeneratorMap::default(), fast_start())?;
    let mut rx = r.handle.state.clone();
    until(&mut rx, "first reading", |s| s.reading.is_some()).await?;
    r.controller.faults().refuse_starts(3);
    let first = r.handle.command(GeneratorCommand::Start).await;
    ensure!(first.is_err(), "the first attempt's exception is returned");
    until(&mut rx, "retrying", |s| {
        matches!(&s.start, Some(StartPhase::Retrying { attempt: 1, reason }) if reason.contains("exception"))
    })
    .await?;
    let st = until(&mut rx, "failed", |s| {
        matches!(s.start, Some(StartPhase::Failed(_)))
    })
    .await?;
    match st.start {
        Some(StartPhase::Failed(StartFailure::Refused {
            attempts,
            last_error,
        })) => {
            ensure!(attempts == 3);
            ensure!(last_error.contains("exception"), "{last_error}");
        }
        other => anyhow::bail!("unexpected {other:?}"),
    }
    ensure!(
        r.controller.faults().starts_received() == 3,
        "exactly three commands"
    );
    ensure!(!r.engine.reading().running());
    Ok(())
}

#[tokio::test]
async fn a_start_refused_once_then_accepted_runs() -> Result<()> {
    let r = rig(GeneratorMap::preset(Preset::SmartGen), fast_start())?;
    let mut rx = r.handle.state.clone();
    until(&mut rx, "first reading", |s| s.reading.is_some()).await?;
    r.controller.faults().refuse_starts(1);
    let _ = r.handle.command(GeneratorCommand::Start).await;
    until(&mut rx, "running", |s| s.start == Some(StartPhase::Running)).await?;
    ensure!(r.controller.faults().starts_received() == 2);
    Ok(())
}

#[tokio::test]
async fn an_accepted_start_that_never_runs_is_reported_failed() -> Result<()> {
    let r = rig(GeneratorMap::default(), fast_start())?;
    let mut rx = r.handle.state.clone();
    until(&mut rx, "first reading", |s| s.reading.is_some()).await?;
    r.controller.faults().ignore_starts(true);
    r.handle.command(GeneratorCommand::Start).await?;
    until(&mut rx, "waiting for run", |s| {
        s.start == Some(StartPhase::Confirming)
    })
    .await?;
    let st = until(&mut rx, "failed", |s| {
        matches!(s.start, Some(StartPhase::Failed(_)))
    })
    .await?;
    ensure!(
        st.start
            == Some(StartPhase::Failed(StartFailure::NeverRan {
                waited: Duration::from_millis(800)
            })),
        "{:?}",
        st.start
    );
    ensure!(
        r.controller.faults().starts_received() == 1,
        "accepted: not resent"
    );
    Ok(())
}
