//! `markaz`: the one binary of the system — a center node, the governorate hub, a demo
//! of both, and config checking.

mod bench;
mod logs;
mod systemd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "markaz",
    version,
    about = "Offline-first edge node for citizen service centers"
)]
struct Cli {
    /// Log lines as text or one JSON object per line (over `[logging] format`).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Pretty,
    Json,
}

impl From<LogFormatArg> for markaz_config::LogFormat {
    fn from(f: LogFormatArg) -> Self {
        match f {
            LogFormatArg::Pretty => markaz_config::LogFormat::Pretty,
            LogFormatArg::Json => markaz_config::LogFormat::Json,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a center node.
    Node {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the governorate hub (or, with a subcommand, act on its database).
    #[command(args_conflicts_with_subcommands = true)]
    Hub {
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: Option<HubCommand>,
    },
    /// Run a hub and one center on loopback with working defaults, and print the URLs.
    Demo {
        /// Where the demo keeps its data (created if missing).
        #[arg(long, default_value = "markaz-demo")]
        data_dir: PathBuf,
        /// Port of the center's web UI and API.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Port of the hub's web pages.
        #[arg(long, default_value_t = 8090)]
        hub_port: u16,
        /// Port of the hub's sync endpoint (mutual TLS).
        #[arg(long, default_value_t = 8443)]
        sync_port: u16,
    },
    /// Measure against the machine's limits and update docs/BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Check a node or hub config file; print every problem with file:line:column.
    CheckConfig { file: PathBuf },
    /// The governorate's certificates: CA, hub certificate, one per center, revocation.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
}

#[derive(Subcommand)]
enum HubCommand {
    /// Put a backup in place of the hub's database (the hub stopped) and run the
    /// after-restore step: new epoch, new actor, feeds moved on; every center repairs.
    Restore {
        #[arg(long, short)]
        config: PathBuf,
        /// The backup of markaz-hub.db (sqlite engine). With postgres, restore the
        /// database with PostgreSQL's tools first and leave this out.
        #[arg(long)]
        from: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Durable writes/s and latency with concurrent writers through group commit, versus
    /// one fsync per write, in one run.
    GroupCommit {
        #[arg(long, default_value_t = 64)]
        writers: usize,
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// The file whose group-commit section is rewritten with the figures.
        #[arg(long, default_value = "docs/BENCHMARKS.md")]
        write: PathBuf,
    },
    /// A whole center-day made offline, synced to a real hub in one session over mutual
    /// TLS through an emulated 3G link: bytes vs zstd(changes), time vs bytes/bandwidth.
    CatchUp {
        #[command(flatten)]
        common: BenchCommon,
    },
    /// A session with nothing new, on a resumed TLS session over the emulated 3G link.
    NothingNew {
        #[command(flatten)]
        common: BenchCommon,
    },
    /// Many centers' days arriving at the hub at once: apply rate vs in-memory automerge.
    Hub {
        #[command(flatten)]
        common: BenchCommon,
        #[arg(long, default_value_t = 50)]
        centers: usize,
    },
    /// A node with a million cases on disk (generated once, cached under target/): time
    /// to serve, resident memory, p99 of case lookups through the API.
    Million {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 1_000_000)]
        cases: u32,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Case lookups per run.
        #[arg(long, default_value_t = 2000)]
        lookups: usize,
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Cut the primary link: time until a sync session succeeds over the (emulated) modem,
    /// with the node's probe defaults and with a faster setting; flapping at 1-in-5 loss.
    Failover {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Probe settings measured besides the node's defaults, each
        /// `INTERVAL_MS:TIMEOUT_MS:DOWN_AFTER` (repeatable).
        #[arg(long = "setting", default_values_t = ["1000:1000:3".to_string(), "500:500:10".to_string()])]
        settings: Vec<String>,
        /// Skip the node's defaults (each of their runs takes about a minute).
        #[arg(long)]
        skip_defaults: bool,
        #[arg(long)]
        write: Option<PathBuf>,
    },
}

/// Options every workload benchmark takes.
#[derive(clap::Args, Debug, Clone)]
struct BenchCommon {
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seed of the center-day generator.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Cases per center-day (1,500 in issue 8); citizens scale with it (4:5).
    #[arg(long, default_value_t = 1500)]
    cases: u32,
    /// The file whose section is rewritten with the figures (none: print only).
    #[arg(long)]
    write: Option<PathBuf>,
}

impl BenchCommon {
    fn shape(&self) -> bench::workload::Shape {
        let day = bench::workload::Shape::CENTER_DAY;
        bench::workload::Shape {
            cases: self.cases,
            citizens: self.cases * day.citizens / day.cases,
            ..day
        }
    }

    /// The reproducing command line for `name` (with `extra` arguments).
    fn command(&self, name: &str, extra: &str) -> String {
        let mut c = format!(
            "cargo run --release -- bench {name} --runs {} --seed {} --cases {}",
            self.runs, self.seed, self.cases
        );
        if !extra.is_empty() {
            c.push(' ');
            c.push_str(extra);
        }
        c.push_str(" --write docs/BENCHMARKS.md");
        c
    }

    /// Prints the section and writes it if asked.
    fn publish(&self, name: &str, heading: &str, md: &str) -> anyhow::Result<()> {
        println!("{md}");
        if let Some(path) = &self.write {
            bench::write_section(path, name, heading, md)?;
            println!("updated {}", path.display());
        }
        Ok(())
    }
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Create the governorate CA (and an empty CRL) in DIR.
    Init {
        dir: PathBuf,
        #[arg(long, default_value = "Damascus Governorate Markaz CA")]
        name: String,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue the hub's server certificate into DIR/hub/.
    Hub {
        dir: PathBuf,
        /// A DNS name or IP address the centers use to reach the hub (repeatable).
        #[arg(long = "san", required = true)]
        sans: Vec<String>,
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Issue a center's client certificate into DIR/centers/ID/ (the bundle to copy there).
    Center {
        dir: PathBuf,
        center: String,
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Revoke a center (all its certificates) or one serial, and rewrite DIR/crl.pem.
    Revoke { dir: PathBuf, target: String },
    /// List every certificate issued, with its state.
    List { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::CheckConfig { file } = &cli.command {
        return check_config(file);
    }
    if let Command::Hub {
        command: Some(HubCommand::Restore { config, from }),
        ..
    } = &cli.command
    {
        return hub_restore(config, from.as_deref());
    }
    if let Command::Pki { command } = &cli.command {
        return match pki(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("markaz pki: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("markaz: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log_format = cli.log_format.map(markaz_config::LogFormat::from);
    match runtime.block_on(run(cli.command, log_format)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("markaz: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn hub_restore(config: &std::path::Path, from: Option<&std::path::Path>) -> ExitCode {
    let done = markaz_config::load_hub(config)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|cfg| markaz_hub::restore::restore(&cfg, from));
    match done {
        Ok(r) => {
            if let Some(dir) = &r.set_aside {
                println!("the replaced database files are in {}", dir.display());
            }
            println!(
                "restored: new epoch {}, feeds continue after {}; start the hub — every center repairs at its next sync",
                r.epoch, r.feed_floor
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("markaz hub restore: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match markaz_config::check_file(file) {
        Ok(kind) => {
            println!("{}: ok ({kind} config)", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Logging of the tools (benchmarks, demo): stderr, `format` unless the command line
/// says otherwise.
fn init_logging(format: markaz_config::LogFormat, level: &str) {
    let format = LOG_FORMAT.get().copied().flatten().unwrap_or(format);
    // Stderr cannot fail to open; the result is always Ok.
    let _ = logs::init(&logs::LogOptions::stderr(format, level));
}

/// The command line's `--log-format`.
static LOG_FORMAT: std::sync::OnceLock<Option<markaz_config::LogFormat>> =
    std::sync::OnceLock::new();

/// Cancels the token on SIGTERM or Ctrl-C.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
        }
        t.cancel();
    });
    token
}

async fn run(command: Command, log_format: Option<markaz_config::LogFormat>) -> anyhow::Result<()> {
    let _ = LOG_FORMAT.set(log_format);
    match command {
        Command::Node { config } => {
            let cfg = markaz_config::load_node(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            logs::init(&logs::LogOptions::from_config(&cfg.logging, log_format))?;
            let shutdown = shutdown_on_signal();
            let watchdog_stop = shutdown.clone();
            let result = markaz_node::center::run_with(cfg, shutdown, move |serving| {
                systemd::ready(&format!("serving on {}", serving.addr));
                let liveness = serving.liveness;
                systemd::spawn_watchdog(
                    move |timeout| {
                        let liveness = liveness.clone();
                        async move { liveness.check(timeout).await }
                    },
                    watchdog_stop,
                );
            })
            .await;
            systemd::stopping();
            result
        }
        Command::Hub {
            config: None,
            command: None,
        } => anyhow::bail!("markaz hub needs --config <hub.toml> (or a subcommand: restore)"),
        Command::Hub {
            command: Some(_), ..
        } => unreachable!("handled before the runtime starts"),
        Command::Hub {
            config: Some(config),
            command: None,
        } => {
            let cfg = markaz_config::load_hub(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            logs::init(&logs::LogOptions::from_config(&cfg.logging, log_format))?;
            let shutdown = shutdown_on_signal();
            let watchdog_stop = shutdown.clone();
            let result = markaz_hub::run_with(cfg, shutdown, move |sync_addr, web_addr| {
                systemd::ready(&format!("sync on {sync_addr}, pages on {web_addr}"));
                // The hub's liveness: its web listener answers (on the runtime that also
                // runs the sync endpoint).
                systemd::spawn_watchdog(
                    move |timeout| async move {
                        markaz_node::watchdog::http_answers(web_addr, "/healthz", timeout)
                            .await
                            .map(drop)
                    },
                    watchdog_stop,
                );
            })
            .await;
            systemd::stopping();
            result
        }
        Command::Demo {
            data_dir,
            port,
            hub_port,
            sync_port,
        } => demo(data_dir, port, hub_port, sync_port).await,
        Command::Bench {
            command:
                BenchCommand::GroupCommit {
                    writers,
                    secs,
                    runs,
                    write,
                },
        } => {
            init_logging(markaz_config::LogFormat::Pretty, "warn");
            let dir = tempfile_dir()?;
            let args = markaz_node::bench::GroupCommitArgs {
                writers,
                run_secs: secs,
                runs,
                dir: dir.clone(),
            };
            let report = markaz_node::bench::group_commit(args).await;
            let _ = std::fs::remove_dir_all(&dir);
            let report = report?;
            let command = format!(
                "cargo run --release -- bench group-commit --writers {writers} --secs {secs} --runs {runs}"
            );
            println!("{}", report.markdown(&command));
            markaz_node::bench::update_benchmarks_md(&write, &report, &command)?;
            println!("updated {}", write.display());
            Ok(())
        }
        Command::Bench {
            command: BenchCommand::CatchUp { common },
        } => {
            init_logging(markaz_config::LogFormat::Pretty, "warn");
            let args = bench::catch_up::Args {
                runs: common.runs.max(1),
                seed: common.seed,
                shape: common.shape(),
            };
            let md = bench::catch_up::catch_up(&args, &common.command("catch-up", "")).await?;
            common.publish("catch-up", "Outage catch-up over 3G", &md)
        }
        Command::Bench {
            command: BenchCommand::NothingNew { common },
        } => {
            init_logging(markaz_config::LogFormat::Pretty, "warn");
            let args = bench::catch_up::Args {
                runs: common.runs.max(1),
                seed: common.seed,
                shape: common.shape(),
            };
            let md =
                bench::catch_up::nothing_new(&args, &common.command("nothing-new", "")).await?;
            common.publish("nothing-new", "Nothing-new sync", &md)
        }
        Command::Bench {
            command: BenchCommand::Hub { common, centers },
        } => {
            init_logging(markaz_config::LogFormat::Pretty, "warn");
            let args = bench::hub_load::Args {
                runs: common.runs.max(1),
                centers: centers.max(1),
                seed: common.seed,
                shape: common.shape(),
            };
            let command = common.command("hub", &format!("--centers {centers}"));
            let md = bench::hub_load::hub(&args, &command).await?;
            common.publish("hub", "Hub throughput", &md)
        }
        Command::Bench {
            command:
                BenchCommand::Failover {
                    runs,
                    seed,
                    settings: extra,
                    skip_defaults,
                    write,
                },
        } => {
            init_logging(markaz_config::LogFormat::Pretty, "warn");
            use bench::failover::Probing;
            let defaults = Probing::node_defaults();
            let mut settings = Vec::new();
            for e in &extra {
                let parts: Vec<u64> = e
                    .split(':')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("--setting {e}: INTERVAL_MS:TIMEOUT_MS:DOWN_AFTER"))?;
                let [interval, timeout, down] = parts[..] else {
                    anyhow::bail!("--setting {e}: INTERVAL_MS:TIMEOUT_MS:DOWN_AFTER");
                };
                settings.push(Probing {
                    label: format!("{interval} ms / {timeout} ms / down {down}"),
                    interval: std::time::Duration::from_millis(interval),
                    timeout: std::time::Duration::from_millis(timeout),
                    down_after: u32::try_from(down)?,
                    up_after: defaults.up_after,
                    failback_hold: defaults.failback_hold,
                });
            }
            if !skip_defaults {
                settings.insert(0, defaults);
            }
            let args = bench::failover::Args {
                runs: runs.max(1),
                seed,
                settings,
            };
            let command = format!(
                "cargo run --release -- bench failover --runs {runs} --seed {seed}{}{} --write docs/BENCHMARKS.md",
                extra
                    .iter()
                    .map(|e| format!(" --setting {e}"))
                    .collect::<String>(),
                if skip_defaults {
                    " --skip-defaults"
                } else {
                    ""
                }
            );
            let md = bench::failover::failover(&args, &command).await?;
            println!("{md}");
            if let Some(path) = &write {
                bench::write_section(path, "failover", "Failover to the modem", &md)?;
                println!("updated {}", path.display());
            }
            Ok(())
        }
        Command::Bench {
            command:
                BenchCommand::Million {
                    runs,
                    cases,
                    seed,
                    lookups,
                    write,
                },
        } => {
            init_logging(markaz_config::LogFormat::Pretty, "warn");
            let args = bench::million::Args {
                runs: runs.max(1),
                cases: cases.max(1),
                seed,
                lookups: lookups.max(1),
            };
            let command = format!(
                "cargo run --release -- bench million --runs {runs} --cases {cases} --seed {seed} --lookups {lookups} --write docs/BENCHMARKS.md"
            );
            let md = bench::million::million(&args, &command).await?;
            println!("{md}");
            if let Some(path) = &write {
                bench::write_section(path, "million", "A million cases", &md)?;
                println!("updated {}", path.display());
            }
            Ok(())
        }
        Command::CheckConfig { .. } | Command::Pki { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
}

fn pki(command: &PkiCommand) -> anyhow::Result<()> {
    use markaz_hub::pki;
    match command {
        PkiCommand::Init { dir, name, days } => {
            let ca = pki::init(dir, name, *days)?;
            println!("created the CA: {}", ca.display());
        }
        PkiCommand::Hub { dir, sans, days } => {
            let issued = pki::hub(dir, sans, *days)?;
            println!(
                "issued the hub certificate {} (serial {})",
                issued.cert_path.display(),
                issued.serial.as_str()
            );
        }
        PkiCommand::Center { dir, center, days } => {
            let id = center
                .parse()
                .map_err(|e| anyhow::anyhow!("center id '{center}': {e}"))?;
            let issued = pki::center(dir, &id, *days)?;
            println!(
                "issued {center}'s certificate {} (serial {}); copy the folder {} to the center",
                issued.cert_path.display(),
                issued.serial.as_str(),
                pki::center_dir(dir, &id).display()
            );
        }
        PkiCommand::Revoke { dir, target } => {
            let target: pki::RevokeTarget = target.parse()?;
            let serials = pki::revoke(dir, &target)?;
            println!(
                "revoked {target}: {} certificate(s); the CRL is rewritten — reload the hub",
                serials.len()
            );
        }
        PkiCommand::List { dir } => {
            for r in pki::list(dir)? {
                let state = match r.revoked_at {
                    Some(t) => format!("revoked {t}"),
                    None => format!("valid until {}", r.not_after),
                };
                let who = r
                    .center_id
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| format!("{:?}", r.kind).to_lowercase());
                println!("{}  {who:<16}  {state}", r.serial.as_str());
            }
        }
    }
    Ok(())
}

/// A fresh directory for benchmark databases, on the same disk as the working directory
/// so the fsync figures are those of the machine's real disk.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::current_dir()?
        .join("target")
        .join(format!("bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The demo: a hub and one center ("demo") in this process, on loopback.
async fn demo(data_dir: PathBuf, port: u16, hub_port: u16, sync_port: u16) -> anyhow::Result<()> {
    init_logging(markaz_config::LogFormat::Pretty, "info,tower_http=warn");
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("while creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let shutdown = shutdown_on_signal();

    let mut hub = markaz_config::HubConfig::default();
    hub.hub.data_dir = data_dir.join("hub");
    hub.hub.web_listen = std::net::SocketAddr::from(([127, 0, 0, 1], hub_port));
    hub.hub.listen = std::net::SocketAddr::from(([127, 0, 0, 1], sync_port));
    // Certificates for the demo: a CA, the hub's, and the center's bundle.
    let pki = markaz_hub::demo::demo_pki(&data_dir.join("pki"))?;
    hub.hub.ca_cert = Some(pki.ca_cert.clone());
    hub.hub.server_cert = Some(pki.server_cert.clone());
    hub.hub.server_key = Some(pki.server_key.clone());
    hub.hub.crl = Some(pki.crl.clone());
    let mut node = markaz_config::NodeConfig::default();
    node.center.name_ar = "مركز خدمة المواطن - تجريبي".into();
    node.center.name_en = "Citizen Service Center — Demo".into();
    node.storage.data_dir = data_dir.join("center");
    node.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    node.sync.enabled = true;
    node.sync.hub_url = format!("https://127.0.0.1:{sync_port}")
        .parse()
        .map_err(|e| anyhow::anyhow!("hub url: {e:?}"))?;
    node.sync.ca_cert = Some(pki.center_bundle.join("ca.pem"));
    node.sync.client_cert = Some(pki.center_bundle.join("cert.pem"));
    node.sync.client_key = Some(pki.center_bundle.join("key.pem"));
    node.sync.interval_secs = 10;
    node.auth.initial_admin_password = Some(DEMO_PASSWORD.into());
    // Emulated modem, solar charger, battery monitor, inverter and generator on ptys.
    let _devices = markaz_node::devices::demo::emulate(&mut node, shutdown.clone())?;

    let hub_task = tokio::spawn(markaz_hub::run(hub, shutdown.clone()));
    let node_task = tokio::spawn(markaz_node::center::run(node, shutdown.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    println!(
        "\nMarkaz demo is running (data in {dir})\n\
         \n  center web UI   http://127.0.0.1:{port}/        log in as admin / {DEMO_PASSWORD}\
         \n  display board   http://127.0.0.1:{port}/display\
         \n  center API      http://127.0.0.1:{port}/api/v1/openapi.json\
         \n  hub             http://127.0.0.1:{hub_port}/        (sync over mutual TLS on 127.0.0.1:{sync_port})\
         \n\n  emulated devices: 3G modem, solar charger, battery monitor, inverter and generator\
         \n  (a Damascus day passes in 24 minutes; watch the technician page)\
         \n\nPress Ctrl-C to stop.\n",
        dir = data_dir.display()
    );
    let (h, n) = tokio::join!(hub_task, node_task);
    h.context("hub task")??;
    n.context("node task")??;
    Ok(())
}

const DEMO_PASSWORD: &str = "markaz-demo";
