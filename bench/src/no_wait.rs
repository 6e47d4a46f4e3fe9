//! `bench no-wait` (issue 20, target 2): clerks never wait on sync.
//!
//! A real node ([`App`] on its SQLite file, its writer thread, its use cases) in this
//! process, and a real hub ([`HubRig`]) on loopback. The center synced once (it holds
//! the hub's epoch and catalog), then worked a center-day offline: 1,200 citizens and
//! 1,500 cases, each created, paid, started, made ready, notified and delivered through
//! the use cases. Meanwhile another center's cases for pickup at this one reached the
//! hub (`--routed`, each with its day of six changes): the hub routes them to this
//! center's feed.
//!
//! Then, in one run: `--terminals` clerks' terminals (tasks) issue tickets and move
//! cases along (start, ready, notify, deliver — cases created and paid beforehand)
//! as fast as the node answers,
//! - first for `--secs` seconds without sync (the baseline),
//! - then while the node's own sync session ([`markaz_node::sync::sync_once`], the
//!   session the sync task runs) pushes the whole backlog and merges the large pull,
//!   until the session ends.
//!
//! Reported: the terminals' p50/p99/max latency and operations per second in both
//! phases, the longest single writer job of each phase (from the writer's own timing,
//! [`markaz_node::storage::WriterMetrics::take_longest_job`]: what a terminal's write
//! waited behind), and what the session moved. Target: p99 under 50 ms during the sync,
//! and throughput within 20% of the baseline.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use markaz_node::app::cases::{CaseAction, DeliveryInput, NewCase, PaymentInput};
use markaz_node::app::queue::IssueTicket;
use markaz_node::app::{Actor, App, Clock};
use markaz_node::storage::{Db, StorageOptions};
use markaz_node::sync::{SyncOptions, sync_once};
use markaz_sync::model::case::Delivery;
use markaz_sync::model::ids::CenterId;
use markaz_sync::protocol::Limits;
use markaz_uplink::{
    ClientOptions, ClientTlsFiles, HubClient, HubTarget, TcpConnector, client_config,
};

use super::million::bench_clerk;
use super::rig::{Center, HubRig};
use super::workload::{self, Rng, Shape};
use super::{machine, median, quantile, scratch_dir, thousands};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Args {
    pub runs: usize,
    pub seed: u64,
    /// Concurrent terminals.
    pub terminals: usize,
    /// Another center's cases routed to this one (the large pull).
    pub routed: u32,
    /// Length of the baseline phase, in seconds.
    pub secs: f64,
}

/// Cases each terminal moves along in one phase (four steps each).
const CASES_PER_TERMINAL: usize = 40;
/// Writers that build the backlog.
const BUILDERS: usize = 16;
/// The targets.
const P99_TARGET_MS: f64 = 50.0;
const THROUGHPUT_FLOOR: f64 = 0.8;

/// The terminals' figures of one phase.
#[derive(Debug, Clone, Default)]
struct Phase {
    ops: usize,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The longest single writer job during the phase.
    longest_job_ms: f64,
}

impl Phase {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs.max(f64::MIN_POSITIVE)
    }
}

/// One run.
#[derive(Debug, Clone)]
struct Run {
    baseline: Phase,
    during: Phase,
    backlog_changes: u64,
    changes_up: u64,
    changes_down: u64,
    bytes_up: u64,
    bytes_down: u64,
    sync_secs: f64,
}

/// A ready center: the node, its clerk and the cases each terminal moves in each phase.
struct Setup {
    hub: HubRig,
    app: App,
    clerk: Actor,
    opts: SyncOptions,
    client: HubClient,
    /// Per phase, per terminal: (case number, the citizen's national id).
    cases: [Vec<Vec<(String, String)>>; 2],
}

/// Runs the benchmark; the markdown section for docs/BENCHMARKS.md.
pub async fn no_wait(args: &Args, command: &str) -> anyhow::Result<String> {
    anyhow::ensure!(args.runs > 0 && args.terminals > 0 && args.secs > 0.0);
    let mut runs = Vec::new();
    for run in 0..args.runs {
        let dir = scratch_dir(&format!("no-wait-{run}"))?;
        let r = one_run(&dir, args, run).await;
        let _ = std::fs::remove_dir_all(&dir);
        let r = r?;
        eprintln!(
            "no-wait run {}: baseline {:.0} ops/s p99 {:.1} ms; during sync {:.0} ops/s p99 {:.1} ms, longest job {:.1} ms",
            run + 1,
            r.baseline.ops_per_sec(),
            r.baseline.p99_ms,
            r.during.ops_per_sec(),
            r.during.p99_ms,
            r.during.longest_job_ms
        );
        runs.push(r);
    }
    Ok(markdown(args, &runs, command))
}

async fn one_run(dir: &Path, args: &Args, run: usize) -> anyhow::Result<Run> {
    let mut s = setup(dir, args, run).await?;
    let groups: Vec<String> = s.app.settings.groups.iter().map(|g| g.id.clone()).collect();
    anyhow::ensure!(!groups.is_empty(), "the default config has queue groups");
    let backlog_changes = markaz_node::sync::backlog(&s.app).await?;

    // The baseline: no sync.
    let _ = s.app.db.writer.metrics().take_longest_job();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    let terminals = start_terminals(&s, &groups, 0, &stop);
    tokio::time::sleep(Duration::from_secs_f64(args.secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut baseline = join_terminals(terminals, started).await?;
    baseline.longest_job_ms = ms(s.app.db.writer.metrics().take_longest_job());

    // The same terminals while the session pushes the backlog and merges the pull.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    let terminals = start_terminals(&s, &groups, 1, &stop);
    let record = sync_once(&s.app, &mut s.client, &s.opts).await;
    let sync_secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut during = join_terminals(terminals, started).await?;
    during.longest_job_ms = ms(s.app.db.writer.metrics().take_longest_job());
    anyhow::ensure!(record.ok(), "the sync session failed: {}", record.result);
    anyhow::ensure!(
        record.changes_down >= u64::from(args.routed),
        "the session pulled {} changes, fewer than the {} routed cases",
        record.changes_down,
        args.routed
    );
    let routed_here = routed_cases(&s.app).await?;
    anyhow::ensure!(
        routed_here >= u64::from(args.routed),
        "{routed_here} routed cases at the center after the session, {} sent",
        args.routed
    );
    s.hub.stop().await?;
    Ok(Run {
        baseline,
        during,
        backlog_changes,
        changes_up: record.changes_up,
        changes_down: record.changes_down,
        bytes_up: record.bytes_up,
        bytes_down: record.bytes_down,
        sync_secs,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn setup(dir: &Path, args: &Args, run: usize) -> anyhow::Result<Setup> {
    let hub = HubRig::start(dir).await?;
    let here: CenterId = "midan".parse()?;
    let mut cfg = markaz_config::NodeConfig::default();
    cfg.center.id = here.clone();
    let settings = markaz_node::center::settings_from(&cfg)?;
    let db = Db::open(
        &dir.join("node.db"),
        &StorageOptions {
            center: here.clone(),
            ..StorageOptions::default()
        },
    )?;
    let app = App::new(db, settings, Clock::System);
    let (clerk, services) = bench_clerk(&app).await?;
    let opts = SyncOptions {
        center: here.clone(),
        hubs: vec![HubTarget::new("127.0.0.1", hub.sync_port())?],
        tls: ClientTlsFiles::in_bundle(&hub.bundle(&here)?),
        interval: Duration::from_secs(3600),
        // As a node configures its sessions: pulled batches merged in parts.
        limits: Limits {
            merge_bytes: markaz_node::sync::MERGE_PART_BYTES,
            ..Limits::default()
        },
        client: ClientOptions {
            handshake_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
            max_response_bytes: 64 << 20,
        },
        connect_timeout: Duration::from_secs(10),
        writer_timeout: Duration::from_secs(120),
        modem_daily_budget: u64::MAX,
    };
    let mut client = HubClient::new(
        client_config(&opts.tls)?,
        Arc::new(TcpConnector::new("primary", Duration::from_secs(10))),
        opts.hubs[0].clone(),
        opts.client,
    );
    // In sync once: the hub's epoch and catalog.
    let first = sync_once(&app, &mut client, &opts).await;
    anyhow::ensure!(first.ok(), "the first session failed: {}", first.result);

    // Another center's cases for pickup here reach the hub.
    let started = Instant::now();
    routed_from_elsewhere(dir, &hub, &here, args.routed, args.seed ^ run as u64).await?;
    eprintln!(
        "no-wait: {} routed cases at the hub in {:.0} s",
        thousands(u64::from(args.routed)),
        started.elapsed().as_secs_f64()
    );

    // The center-day, offline.
    let started = Instant::now();
    let services = Arc::new(services);
    center_day(&app, &clerk, &services, args.seed ^ run as u64).await?;
    // The cases the terminals move along, created and paid now (part of the backlog).
    let mut cases = [Vec::new(), Vec::new()];
    for (phase, list) in cases.iter_mut().enumerate() {
        for t in 0..args.terminals {
            let mut mine = Vec::with_capacity(CASES_PER_TERMINAL);
            for k in 0..CASES_PER_TERMINAL {
                let i = (phase * args.terminals + t) * CASES_PER_TERMINAL + k;
                let nid = workload::national_id(0, i as u32 % 1_200);
                let no = new_paid_case(&app, &clerk, &services[i % services.len()], &nid).await?;
                mine.push((no, nid));
            }
            list.push(mine);
        }
    }
    eprintln!(
        "no-wait: the center-day and {} terminal cases in {:.0} s",
        thousands((2 * args.terminals * CASES_PER_TERMINAL) as u64),
        started.elapsed().as_secs_f64()
    );
    Ok(Setup {
        hub,
        app,
        clerk,
        opts,
        client,
        cases,
    })
}

/// `count` cases of the center `elsewhere`, each with its six changes, all for pickup
/// at `here`, pushed to the hub.
async fn routed_from_elsewhere(
    dir: &Path,
    hub: &HubRig,
    here: &CenterId,
    count: u32,
    seed: u64,
) -> anyhow::Result<()> {
    let id: CenterId = "elsewhere".parse()?;
    let mut other = Center::open(&dir.join("elsewhere.db"), id.clone(), &hub.bundle(&id)?)?;
    let shape = Shape {
        cases: count,
        citizens: (count / 5).max(1),
        citizen_update_pct: 0,
    };
    let mut ops = workload::generate(seed, &id, 1, shape)?;
    for op in &mut ops {
        if let workload::Op::CreateCase(c) = op {
            c.delivery = Delivery::Pickup {
                center: here.clone(),
            };
        }
    }
    workload::apply(&mut other.conn, &mut other.docs, &id, &ops, 1_000)?;
    let mut client = other.client(hub.sync_port(), "primary")?;
    for _ in 0..20 {
        let cost = other.sync(&mut client).await?;
        if cost.report.pushed == 0 {
            return Ok(());
        }
    }
    anyhow::bail!("the other center was still pushing after 20 sessions")
}

/// Claims indexes `0..count` from `tasks` concurrent tasks, each running `f(i)`.
async fn concurrently<F, Fut>(tasks: usize, count: usize, f: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (next, f) = (next.clone(), f.clone());
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                f(i).await?;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// A center-day through the use cases: 1,200 citizens, 1,500 cases through their whole
/// lifecycle.
async fn center_day(
    app: &App,
    clerk: &Actor,
    services: &Arc<Vec<String>>,
    seed: u64,
) -> anyhow::Result<()> {
    let day = Shape::CENTER_DAY;
    let (a, c) = (app.clone(), clerk.clone());
    concurrently(BUILDERS, day.citizens as usize, move |i| {
        let (app, clerk) = (a.clone(), c.clone());
        async move {
            let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9));
            let citizen = workload::citizen(&mut rng, workload::national_id(0, i as u32));
            app.register_citizen(&clerk, citizen)
                .await
                .map_err(|e| anyhow::anyhow!("register_citizen {i}: {e}"))?;
            Ok(())
        }
    })
    .await?;
    let (a, c, s) = (app.clone(), clerk.clone(), services.clone());
    let citizens = day.citizens;
    concurrently(BUILDERS, day.cases as usize, move |i| {
        let (app, clerk, services) = (a.clone(), c.clone(), s.clone());
        async move {
            let nid = workload::national_id(0, i as u32 % citizens);
            let no = new_paid_case(&app, &clerk, &services[i % services.len()], &nid).await?;
            for step in steps(&nid) {
                app.advance_case(&clerk, &no, step)
                    .await
                    .map_err(|e| anyhow::anyhow!("advance_case {no}: {e}"))?;
            }
            Ok(())
        }
    })
    .await
}

/// The four steps of a paid case to its delivery.
fn steps(nid: &str) -> [CaseAction; 4] {
    [
        CaseAction::Start,
        CaseAction::Ready,
        CaseAction::Notify,
        CaseAction::Deliver {
            receiver_national_id: nid.to_string(),
        },
    ]
}

async fn new_paid_case(
    app: &App,
    clerk: &Actor,
    service: &str,
    nid: &str,
) -> anyhow::Result<String> {
    let case = app
        .create_case(
            clerk,
            NewCase {
                national_id: nid.to_string(),
                service: service.to_string(),
                fields: Default::default(),
                delivery: DeliveryInput::Pickup,
                ticket_id: None,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("create_case: {e}"))?;
    app.pay_case(clerk, &case.case_no, PaymentInput::Cash)
        .await
        .map_err(|e| anyhow::anyhow!("pay_case {}: {e}", case.case_no))?;
    Ok(case.case_no)
}

type Terminals = Vec<tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>>>;

/// One task per terminal: a ticket, then the next step of one of its cases, again and
/// again until `stop` (only tickets once its cases are delivered).
fn start_terminals(
    s: &Setup,
    groups: &[String],
    phase: usize,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Terminals {
    s.cases[phase]
        .iter()
        .enumerate()
        .map(|(t, cases)| {
            let (app, clerk, stop) = (s.app.clone(), s.clerk.clone(), stop.clone());
            let group = groups[t % groups.len()].clone();
            let mut work: Vec<(String, CaseAction)> = cases
                .iter()
                .flat_map(|(no, nid)| steps(nid).into_iter().map(move |a| (no.clone(), a)))
                .collect();
            work.reverse();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    app.issue_ticket(
                        &clerk,
                        IssueTicket {
                            group: group.clone(),
                            priority: None,
                            national_id: None,
                        },
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("issue_ticket: {e}"))?;
                    lat.push(t0.elapsed());
                    if let Some((no, action)) = work.pop() {
                        let t0 = Instant::now();
                        app.advance_case(&clerk, &no, action)
                            .await
                            .map_err(|e| anyhow::anyhow!("advance_case {no}: {e}"))?;
                        lat.push(t0.elapsed());
                    }
                }
                Ok(lat)
            })
        })
        .collect()
}

/// The terminals' figures, over the time from `started` until each ended its last
/// operation after `stop`.
async fn join_terminals(terminals: Terminals, started: Instant) -> anyhow::Result<Phase> {
    let mut all = Vec::new();
    for t in terminals {
        all.extend(t.await.context("a terminal task")??);
    }
    let secs = started.elapsed().as_secs_f64();
    let mut ms_list: Vec<f64> = all.iter().map(|d| ms(*d)).collect();
    ms_list.sort_by(f64::total_cmp);
    Ok(Phase {
        ops: ms_list.len(),
        secs,
        p50_ms: quantile(&ms_list, 0.50),
        p99_ms: quantile(&ms_list, 0.99),
        max_ms: ms_list.last().copied().unwrap_or(0.0),
        longest_job_ms: 0.0,
    })
}

/// Cases at this center that another center owns.
async fn routed_cases(app: &App) -> anyhow::Result<u64> {
    let n: i64 = app
        .db
        .readers
        .read(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM cases WHERE case_no LIKE 'BEN-%'",
                [],
                |r| r.get(0),
            )
            .map_err(markaz_node::storage::StorageError::from)
        })
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn markdown(args: &Args, runs: &[Run], command: &str) -> String {
    let med = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let base_ops = med(|r| r.baseline.ops_per_sec());
    let during_ops = med(|r| r.during.ops_per_sec());
    let p99 = med(|r| r.during.p99_ms);
    let ratio = during_ops / base_ops.max(f64::MIN_POSITIVE);
    let met = p99 < P99_TARGET_MS && ratio >= THROUGHPUT_FLOOR;
    let mut s = format!(
        "Command: `{command}`\n\nMachine: {}.\n\n\
         {} terminals issue tickets and move cases along (start, ready, notify, deliver) \
         through the node's use cases, first {:.0} s without sync, then while the node's \
         own sync session pushes a center-day backlog and merges a pull of {} routed cases \
         (six changes each) from another center. Latency is from the call to its durable \
         answer. {} run(s); the figures are per run, then medians.\n\n\
         | run | phase | ops | s | ops/s | p50 ms | p99 ms | max ms | longest writer job ms |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        machine(),
        args.terminals,
        args.secs,
        thousands(u64::from(args.routed)),
        runs.len()
    );
    for (i, r) in runs.iter().enumerate() {
        for (name, p) in [("no sync", &r.baseline), ("during sync", &r.during)] {
            s.push_str(&format!(
                "| {} | {name} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
                i + 1,
                thousands(p.ops as u64),
                p.secs,
                p.ops_per_sec(),
                p.p50_ms,
                p.p99_ms,
                p.max_ms,
                p.longest_job_ms
            ));
        }
    }
    s.push_str("\n| run | backlog changes | changes up | changes down | bytes up | bytes down | session s |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (i, r) in runs.iter().enumerate() {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.1} |\n",
            i + 1,
            thousands(r.backlog_changes),
            thousands(r.changes_up),
            thousands(r.changes_down),
            thousands(r.bytes_up),
            thousands(r.bytes_down),
            r.sync_secs
        ));
    }
    s.push_str(&format!(
        "\nMedians: {base_ops:.0} ops/s without sync, {during_ops:.0} ops/s during the sync \
         ({:.0}% of it; floor {:.0}%); p99 during the sync {p99:.1} ms (target < {P99_TARGET_MS:.0} ms); \
         the longest writer job during the sync {:.1} ms. Target **{}**.\n",
        ratio * 100.0,
        THROUGHPUT_FLOOR * 100.0,
        med(|r| r.during.longest_job_ms),
        if met { "met" } else { "NOT met" }
    ));
    s
}
