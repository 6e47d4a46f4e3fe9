//! `bench disk` (issue 20, target 5): bytes on disk per case, at the node and at the hub.
//!
//! A node's database is made by the node's own code (`Db::open`: its migrations and the
//! sync store) and filled through its use cases, 16 concurrent callers through the
//! group-commit writer: citizens registered (4 for every 5 cases, as in the center-day),
//! then each case through its whole lifecycle — `App::create_case`, `App::pay_case` (cash
//! with a receipt, one in three by e-payment), `App::advance_case` start, ready, notify,
//! deliver. So the database holds what a center keeps for a case: its projection rows
//! (case, events, payment, audit), its automerge document's changes, the citizen and the
//! indexes of all of them.
//!
//! Measured: the database file after a WAL checkpoint, then after `VACUUM` (the node has
//! no other compaction: changes are kept for shipping, and document snapshots are not
//! written by the node), each minus the same measure of the database before the cases —
//! divided by the cases. Then every change is pushed to a real hub (the bench rig,
//! `markaz_hub::run` on SQLite), the hub stopped, and its database measured the same
//! way against a hub that received nothing. `dbstat` gives the share of each table and
//! index.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use anyhow::Context;
use markaz_node::app::cases::{CaseAction, DeliveryInput, NewCase, PaymentInput};
use markaz_node::app::staff::{Grant, NewStaff};
use markaz_node::app::{App, Clock};
use markaz_node::storage::{Db, StorageOptions};
use markaz_sync::model::case::Bank;
use markaz_sync::model::catalog::default_catalog;
use markaz_sync::model::ids::CenterId;
use markaz_sync::model::staff::Role;
use rusqlite::Connection;

use crate::million;
use crate::rig::HubRig;
use crate::workload::{self, Rng};
use crate::{machine, thousands};

/// Arguments of `bench disk`.
#[derive(Debug, Clone)]
pub struct Args {
    pub cases: u32,
    pub seed: u64,
}

/// Size of a SQLite database: after a WAL checkpoint, and after `VACUUM`; and the
/// largest tables and indexes after the vacuum (name, bytes).
#[derive(Debug, Clone, Default)]
struct Size {
    checkpointed: u64,
    vacuumed: u64,
    objects: Vec<(String, u64)>,
}

fn measure(db: &Path) -> anyhow::Result<Size> {
    let conn = Connection::open(db).with_context(|| format!("while opening {}", db.display()))?;
    let bytes = |c: &Connection| -> anyhow::Result<u64> {
        let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((pages * size) as u64)
    };
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let checkpointed = bytes(&conn)?;
    conn.execute_batch("VACUUM")?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let vacuumed = bytes(&conn)?;
    let objects = conn
        .prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
        .and_then(|mut st| {
            st.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_default();
    Ok(Size {
        checkpointed,
        vacuumed,
        objects,
    })
}

/// A node on `data` with its staff: returns the app.
async fn node(data: &Path, dir: &Path) -> anyhow::Result<(App, Arc<AtomicI64>)> {
    let config = dir.join("node.toml");
    std::fs::write(&config, million::config_toml(data))?;
    let cfg = markaz_config::load_node(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let settings = markaz_node::center::settings_from(&cfg)?;
    let db = Db::open(&data.join("markaz-node.db"), &StorageOptions::default())?;
    let start: jiff::Timestamp = "2026-03-01T06:00:00Z".parse()?;
    let at = Arc::new(AtomicI64::new(start.as_millisecond()));
    let app = App::new(db, settings, Clock::Manual(at.clone()));
    let admin = million::actor("admin", vec![Role::Admin]);
    app.create_staff(
        &admin,
        NewStaff {
            username: "bench".into(),
            full_name: "Bench Clerk".into(),
            password: million::PASSWORD.into(),
            roles: vec![Role::Clerk, Role::Reception],
            language: None,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("create_staff: {e}"))?;
    let mut authorities: Vec<_> = default_catalog().iter().map(|s| s.authority).collect();
    authorities.sort();
    authorities.dedup();
    for authority in authorities {
        app.grant_permission(
            &admin,
            "bench",
            Grant {
                authority,
                expires_on: jiff::civil::date(2030, 12, 31),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("grant_permission: {e}"))?;
    }
    Ok((app, at))
}

/// Citizens, then `cases` cases each through its whole lifecycle.
async fn fill(app: &App, at: &Arc<AtomicI64>, args: &Args) -> anyhow::Result<u32> {
    let clerk = million::actor("bench", vec![Role::Clerk, Role::Reception]);
    let citizens = (args.cases * 4 / 5).max(1);
    let services: Arc<Vec<String>> = Arc::new(
        default_catalog()
            .iter()
            .filter(|s| s.fields.iter().all(|f| !f.required))
            .map(|s| s.code.clone())
            .collect(),
    );
    anyhow::ensure!(!services.is_empty(), "a service without required fields");
    let writers = 16;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let (app, clerk, next) = (app.clone(), clerk.clone(), next.clone());
        let seed = args.seed;
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= citizens as usize {
                    return anyhow::Ok(());
                }
                let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9));
                let c = workload::citizen(&mut rng, workload::national_id(0, i as u32));
                app.register_citizen(&clerk, c)
                    .await
                    .map_err(|e| anyhow::anyhow!("register_citizen {i}: {e}"))?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let next = Arc::new(AtomicUsize::new(0));
    let total = args.cases as usize;
    for _ in 0..writers {
        let (app, clerk, next, at, services) = (
            app.clone(),
            clerk.clone(),
            next.clone(),
            at.clone(),
            services.clone(),
        );
        let seed = args.seed;
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return anyhow::Ok(());
                }
                let mut rng = Rng::new(seed ^ 0xD15C ^ (i as u64).wrapping_mul(0x9E37_79B9));
                let who = workload::national_id(0, rng.below(u64::from(citizens)) as u32);
                // A few minutes between the steps of a day at the counter.
                let step = || at.fetch_add(60_000 + rng_ms(i), Ordering::Relaxed);
                step();
                let case = app
                    .create_case(
                        &clerk,
                        NewCase {
                            national_id: who.clone(),
                            service: rng.pick(&services).clone(),
                            fields: Default::default(),
                            delivery: DeliveryInput::Pickup,
                            ticket_id: None,
                        },
                    )
                    .await
                    .map_err(|err| anyhow::anyhow!("create_case {i}: {err}"))?;
                let no = case.case_no;
                step();
                let payment = if rng.below(3) == 0 {
                    PaymentInput::Epayment {
                        reference: format!("EP-{:08}", rng.below(100_000_000)),
                        bank: Bank::CommercialBank,
                    }
                } else {
                    PaymentInput::Cash
                };
                app.pay_case(&clerk, &no, payment)
                    .await
                    .map_err(|err| anyhow::anyhow!("pay_case {i}: {err}"))?;
                for action in [
                    CaseAction::Start,
                    CaseAction::Ready,
                    CaseAction::Notify,
                    CaseAction::Deliver {
                        receiver_national_id: who.clone(),
                    },
                ] {
                    step();
                    app.advance_case(&clerk, &no, action)
                        .await
                        .map_err(|err| anyhow::anyhow!("advance_case {i}: {err}"))?;
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(citizens)
}

/// A deterministic jitter of up to a minute, so events are not evenly spaced.
fn rng_ms(i: usize) -> i64 {
    (Rng::new(i as u64).next_u64() % 60_000) as i64
}

/// Runs `bench disk`; returns the markdown section.
pub async fn disk(args: &Args, command: &str) -> anyhow::Result<String> {
    let machine = machine();
    let root = crate::scratch_dir("disk")?;
    let r = disk_in(&root, args).await;
    let _ = std::fs::remove_dir_all(&root);
    let (citizens, node0, node1, hub0, hub1, changes) = r?;
    let cases = f64::from(args.cases);
    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / cases;
    let node_ckpt = per(node0.checkpointed, node1.checkpointed);
    let node_vac = per(node0.vacuumed, node1.vacuumed);
    let hub_ckpt = per(hub0.checkpointed, hub1.checkpointed);
    let hub_vac = per(hub0.vacuumed, hub1.vacuumed);
    let verdict = if node_vac <= 2048.0 { "met" } else { "NOT met" };
    let top = |s: &Size, base: &Size| -> String {
        s.objects
            .iter()
            .take(8)
            .map(|(name, b)| {
                let before = base
                    .objects
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0, |x| x.1);
                format!("{name} {:.0}", per(before, *b))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut md = String::new();
    md.push_str(&format!(
        "Command: `{command}` — one run (sizes are deterministic up to page fill); machine: {machine}.\n\n"
    ));
    md.push_str(&format!(
        "Data: {} cases, each created, paid (cash with a receipt, or e-payment), started, \
         ready, notified and delivered through the node's use cases, and {} citizens: {} \
         local changes pushed to the hub.\n\n",
        thousands(u64::from(args.cases)),
        thousands(u64::from(citizens)),
        thousands(changes as u64),
    ));
    md.push_str("| where | database before → after the cases, vacuumed | bytes per case, WAL checkpointed | bytes per case after `VACUUM` | target |\n| --- | --- | ---: | ---: | --- |\n");
    md.push_str(&format!(
        "| node (`markaz-node.db`) | {} → {} | {:.0} | **{:.0}** | ≤ 2,048: **{verdict}** |\n",
        thousands(node0.vacuumed),
        thousands(node1.vacuumed),
        node_ckpt,
        node_vac,
    ));
    md.push_str(&format!(
        "| hub (`markaz-hub.db`, SQLite) | {} → {} | {:.0} | **{:.0}** | — |\n\n",
        thousands(hub0.vacuumed),
        thousands(hub1.vacuumed),
        hub_ckpt,
        hub_vac,
    ));
    md.push_str(&format!(
        "Largest tables and indexes per case after `VACUUM` (`dbstat`), node: {}.\n\n",
        top(&node1, &node0)
    ));
    md.push_str(&format!(
        "Hub: {}.\n\nTen years of a center (4.5 million cases) at the node: {:.1} GB.\n",
        top(&hub1, &hub0),
        node_vac * 4.5e6 / 1e9
    ));
    Ok(md)
}

type DiskResult = (u32, Size, Size, Size, Size, usize);

async fn disk_in(root: &Path, args: &Args) -> anyhow::Result<DiskResult> {
    let data = root.join("data");
    std::fs::create_dir_all(&data)?;
    let db = data.join("markaz-node.db");
    let (app, at) = node(&data, root).await?;
    // The database as the node keeps it before any case: migrations, staff, catalog.
    let node0 = {
        let copy = root.join("before.db");
        let conn = Connection::open(&db)?;
        conn.execute("VACUUM INTO ?1", [copy.to_string_lossy()])?;
        drop(conn);
        measure(&copy)?
    };
    let t = std::time::Instant::now();
    let citizens = fill(&app, &at, args).await?;
    eprintln!(
        "disk: {} cases through their lifecycle in {:.0} s",
        args.cases,
        t.elapsed().as_secs_f64()
    );
    drop(app);
    let node1 = measure(&db)?;
    // An empty hub, then one that received every change of the node.
    let empty = root.join("empty-hub");
    std::fs::create_dir_all(&empty)?;
    let hub = HubRig::start(&empty).await?;
    let hub_db0 = hub.data_dir().join("markaz-hub.db");
    hub.stop().await?;
    let hub0 = measure(&hub_db0)?;
    let full = root.join("hub");
    std::fs::create_dir_all(&full)?;
    let hub = HubRig::start(&full).await?;
    let center: CenterId = "midan".parse()?;
    let bundle = hub.bundle(&center)?;
    let (changes, secs) = crate::restore::push_all(&hub, &db, &bundle).await?;
    eprintln!("disk: {changes} changes pushed to the hub in {secs:.0} s");
    let hub_db = hub.data_dir().join("markaz-hub.db");
    hub.stop().await?;
    let hub1 = measure(&hub_db)?;
    Ok((citizens, node0, node1, hub0, hub1, changes))
}
