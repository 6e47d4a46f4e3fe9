//! `bench failover` (issue 8, target 6): cut the primary link, time until a sync session
//! succeeds over the 3G modem; and whether a lossy primary link flaps.
//!
//! Failover, measured for real: the hub ([`super::rig`]) behind an emulated primary link
//! (a [`Shaper`] proxy whose port closes when cut), the hardware crate's `LinkMonitor`
//! probing that port with TCP connects, the modem emulator on a pseudo-terminal driven by
//! the real modem driver (`ModemHandle`, Quectel socket commands, 115200-baud UART
//! pacing), and a center whose client switches to a `ModemConnector` when the monitor
//! says so and syncs at once, pushing the work done since the cut. Measured from the cut:
//! when the monitor changes the uplink to the modem, and when the session over the modem
//! has succeeded. Run for each probe setting asked.
//!
//! Flapping, simulated: the monitor's decisions are the sans-IO `UplinkSelector`, fed
//! here with 24 h of probe rounds at the setting's interval, the primary dropping one
//! probe in five — every fifth round, and independently at random with p = 0.2 — with
//! the modem registered throughout. Counted: changes of uplink per day.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use markaz_hardware::link::{
    LinkMonitor, LinkSettings, ProbeResult, Thresholds, Uplink, UplinkSelector,
};
use markaz_hardware::modem::emulator::{self, UART_115200};
use markaz_hardware::modem::{ModemHandle, ModemSettings, ModemState, Quectel};
use markaz_sync::model::ids::CenterId;
use markaz_uplink::{BoxedStream, Connector, ModemConnector, TcpConnector};
use tokio_util::sync::CancellationToken;

use super::rig::{Center, HubRig};
use super::shaper::{LinkShape, Shaper};
use super::workload::{self, Rng, Shape};
use super::{machine, median};

/// Probe settings of one configuration.
#[derive(Debug, Clone)]
pub struct Probing {
    pub label: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub down_after: u32,
    pub up_after: u32,
    pub failback_hold: Duration,
}

impl Probing {
    /// The node's `[link]` defaults.
    pub fn node_defaults() -> Probing {
        let l = markaz_config::NodeConfig::default().link;
        Probing {
            label: "node defaults".into(),
            interval: l.probe_interval_secs.duration(),
            timeout: l.probe_timeout_secs.duration(),
            down_after: l.down_after,
            up_after: l.up_after,
            failback_hold: Duration::from_secs(u64::from(l.failback_hold_secs)),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{}: probe every {} s, timeout {} s, down after {}, up after {}, failback hold {} s",
            self.label,
            self.interval.as_secs_f64(),
            self.timeout.as_secs_f64(),
            self.down_after,
            self.up_after,
            self.failback_hold.as_secs()
        )
    }
}

/// Arguments of `bench failover`.
#[derive(Debug, Clone)]
pub struct Args {
    pub runs: usize,
    pub seed: u64,
    pub settings: Vec<Probing>,
}

/// A connector that always dials one fixed port (the emulated primary link in front of
/// the hub), whatever port the client targets.
#[derive(Debug)]
struct Via {
    inner: TcpConnector,
    port: u16,
}

impl Connector for Via {
    fn name(&self) -> &str {
        "primary"
    }

    fn connect<'a>(
        &'a self,
        host: &'a str,
        _port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<BoxedStream>> + Send + 'a>> {
        self.inner.connect(host, self.port)
    }
}

#[derive(Debug, Clone)]
struct FailoverRun {
    detect: Duration,
    synced: Duration,
    session: Duration,
    pushed: usize,
}

async fn failover_once(dir: &Path, p: &Probing, seed: u64) -> anyhow::Result<FailoverRun> {
    let cancel = CancellationToken::new();
    let _guard = cancel.clone().drop_guard();
    let hub = HubRig::start(dir).await?;
    let id: CenterId = "midan".parse()?;
    let bundle = hub.bundle(&id)?;
    let mut center = Center::open(&dir.join("center.db"), id.clone(), &bundle)?;
    let mut primary = Shaper::start(hub.sync_port(), LinkShape::UNSHAPED).await?;

    let (emu, _) = emulator::start(cancel.clone()).context("while starting the modem emulator")?;
    emu.set_pace(Some(UART_115200));
    let mut settings = ModemSettings::new(emu.path());
    settings.apn = "internet".into();
    settings.poll_interval = Duration::from_secs(5);
    settings.connect_timeout = Duration::from_secs(10);
    let (modem, _) = ModemHandle::spawn(settings, Arc::new(Quectel), cancel.clone());
    let mut status = modem.status();
    tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_for(|s| s.state == ModemState::Ready),
    )
    .await
    .context("the modem never became ready")??;

    let link = LinkSettings {
        targets: vec![format!("127.0.0.1:{}", primary.port())],
        interval: p.interval,
        timeout: p.timeout,
        thresholds: Thresholds {
            down_after: p.down_after,
            up_after: p.up_after,
        },
        failback_hold: p.failback_hold,
        primary_initially_up: Some(true),
    };
    let (monitor, _) = LinkMonitor::spawn(link, modem.status(), cancel.clone());
    let mut st = monitor.status();
    tokio::time::timeout(
        Duration::from_secs(30),
        st.wait_for(|s| s.modem_registered && s.uplink == Uplink::Primary),
    )
    .await
    .context("the monitor never saw the modem registered")??;

    let primary_connector: Arc<dyn Connector> = Arc::new(Via {
        inner: TcpConnector::new("primary", Duration::from_secs(5)),
        port: primary.port(),
    });
    let mut client = center.client_via(hub.sync_port(), primary_connector)?;
    center
        .sync(&mut client)
        .await
        .context("while syncing over the primary link")?;

    let mut changes = monitor.subscribe();
    let cut_at = Instant::now();
    primary.cut();
    // The clerks keep working after the cut.
    let shape = Shape {
        cases: 5,
        citizens: 4,
        citizen_update_pct: 25,
    };
    let ops = workload::generate(seed, &id, 0, shape)?;
    tokio::task::block_in_place(|| {
        workload::apply(&mut center.conn, &mut center.docs, &id, &ops, 100)
    })?;
    let detect = loop {
        let c = tokio::time::timeout(Duration::from_secs(300), changes.recv())
            .await
            .context("no change of uplink within 300 s of the cut")??;
        if c.to == Uplink::Modem {
            break cut_at.elapsed();
        }
    };
    // What the node's sync task does on a change of uplink: switch and sync.
    client.set_connector(Arc::new(ModemConnector::new(
        modem.clone(),
        Duration::from_secs(30),
    )));
    let started = Instant::now();
    let cost = center
        .sync(&mut client)
        .await
        .context("while syncing over the modem")?;
    let synced = cut_at.elapsed();
    anyhow::ensure!(
        client.uplink() == "modem",
        "the session did not use the modem"
    );
    drop(client);
    cancel.cancel();
    hub.stop().await?;
    Ok(FailoverRun {
        detect,
        synced,
        session: started.elapsed(),
        pushed: cost.report.pushed,
    })
}

/// Uplink changes in `days` simulated days of probe rounds at `p`'s interval, with the
/// modem registered throughout; `fails(round)` says which rounds fail.
fn simulate(p: &Probing, days: u32, mut fails: impl FnMut(u64) -> bool) -> u64 {
    let mut sel = UplinkSelector::new(
        Thresholds {
            down_after: p.down_after,
            up_after: p.up_after,
        },
        p.failback_hold,
        Some(true),
    );
    let t0 = Instant::now();
    let mut changes = 0;
    if sel.on_modem(true, t0).is_some() {
        changes += 1;
    }
    let rounds = u64::from(days) * 86_400_000 / (p.interval.as_millis().max(1) as u64);
    for k in 0..rounds {
        let now = t0 + p.interval * (k as u32);
        let r = if fails(k) {
            ProbeResult::Failure
        } else {
            ProbeResult::Success
        };
        if sel.on_probe(r, now).is_some() {
            changes += 1;
        }
        if sel.tick(now).is_some() {
            changes += 1;
        }
    }
    changes
}

/// Runs `bench failover`; returns the markdown section.
pub async fn failover(args: &Args, command: &str) -> anyhow::Result<String> {
    let machine = machine();
    let root = super::scratch_dir("failover")?;
    let mut md = String::new();
    md.push_str(&format!(
        "Command: `{command}` — {} runs per setting; machine: {machine}.\n\n",
        args.runs
    ));
    md.push_str("| probe setting | cut → uplink = modem, s (median) | cut → session over the modem succeeded, s (median) | runs (detect / synced / session) | target ≤ 10 s |\n| --- | ---: | ---: | --- | --- |\n");
    let mut flaps = String::new();
    for p in &args.settings {
        let mut runs = Vec::new();
        for k in 0..args.runs {
            let dir = root.join(format!("{}-{k}", p.label.replace(' ', "-")));
            std::fs::create_dir_all(&dir)?;
            let r = failover_once(&dir, p, args.seed + k as u64).await;
            let _ = std::fs::remove_dir_all(&dir);
            let r = r.with_context(|| format!("failover with {}", p.label))?;
            eprintln!(
                "failover ({}) run {}: uplink → modem after {:.1} s, synced over the modem after {:.1} s (session {:.1} s, {} changes pushed)",
                p.label,
                k + 1,
                r.detect.as_secs_f64(),
                r.synced.as_secs_f64(),
                r.session.as_secs_f64(),
                r.pushed
            );
            runs.push(r);
        }
        let synced = median(runs.iter().map(|r| r.synced.as_secs_f64()).collect());
        md.push_str(&format!(
            "| {} | {:.1} | {:.1} | {} | **{}** |\n",
            p.describe(),
            median(runs.iter().map(|r| r.detect.as_secs_f64()).collect()),
            synced,
            runs.iter()
                .map(|r| format!(
                    "{:.1} / {:.1} / {:.1}",
                    r.detect.as_secs_f64(),
                    r.synced.as_secs_f64(),
                    r.session.as_secs_f64()
                ))
                .collect::<Vec<_>>()
                .join(", "),
            if synced <= 10.0 { "met" } else { "NOT met" }
        ));
        let every_fifth = simulate(p, 1, |k| k % 5 == 4);
        let mut rng = Rng::new(args.seed);
        let days = 30;
        let random = simulate(p, days, |_| rng.below(5) == 0);
        flaps.push_str(&format!(
            "| {} | {every_fifth} | {:.1} | {} |\n",
            p.label,
            random as f64 / f64::from(days),
            if every_fifth == 0 && random == 0 {
                "met"
            } else if every_fifth == 0 {
                "met for a regular 1-in-5 loss; NOT met for random 20% loss"
            } else {
                "NOT met"
            }
        ));
    }
    let _ = std::fs::remove_dir_all(&root);
    md.push_str("\nFlapping on a primary link that drops 1 probe in 5 (simulated day of probe rounds through the monitor's `UplinkSelector`, modem registered; random loss averaged over 30 days, seeded):\n\n");
    md.push_str("| probe setting | uplink changes per day, every 5th probe lost | uplink changes per day, each probe lost with p = 0.2 | no flapping |\n| --- | ---: | ---: | --- |\n");
    md.push_str(&flaps);
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Probing {
        Probing {
            label: "t".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            down_after: 3,
            up_after: 3,
            failback_hold: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_regular_one_in_five_loss_never_changes_the_uplink() {
        assert_eq!(simulate(&fast(), 1, |k| k % 5 == 4), 0);
    }

    #[test]
    fn a_dead_primary_goes_to_the_modem_once() {
        // Down after 3 rounds and stays on the modem.
        assert_eq!(simulate(&fast(), 1, |_| true), 1);
    }
}
