//! `markaz-bench`: the benchmarks, measured against the limits of the machine and written
//! to docs/BENCHMARKS.md. A development tool, not part of the shipped `markaz` binary:
//! run it as `cargo xtask bench <name> …` (the alias in `.cargo/config.toml` builds it in
//! release mode).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "markaz-bench",
    about = "Markaz benchmarks (docs/BENCHMARKS.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: Tool,
}

#[derive(Subcommand)]
enum Tool {
    /// Measure against the machine's limits and update docs/BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
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
    /// Many centers' days arriving at the hub at once, on SQLite, on PostgreSQL with one
    /// and with two hub instances, and applied in memory: apply rate, bytes on disk, CPU.
    Hub {
        #[command(flatten)]
        common: BenchCommon,
        #[arg(long, default_value_t = 50)]
        centers: usize,
        /// `storage.pool_size` of each PostgreSQL hub.
        #[arg(long, default_value_t = 4)]
        pool_size: u32,
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
    /// A center of `--cases` cases (`million`'s data set) restored from the hub into an
    /// empty box: wall time, bytes on the wire, database size (issue 18.6).
    Restore {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 450_000)]
        cases: u32,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Terminals issuing tickets and moving cases while the node pushes a center-day and
    /// merges a large pull: their p99 and throughput against a run without sync (issue
    /// 20.2).
    NoWait {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 64)]
        terminals: usize,
        /// Another center's cases routed to this one (the large pull).
        #[arg(long, default_value_t = 20_000)]
        routed: u32,
        /// Seconds of the run without sync.
        #[arg(long, default_value_t = 15.0)]
        secs: f64,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Bytes on disk per case after its whole lifecycle, at the node and at the hub,
    /// after a WAL checkpoint and after `VACUUM` (issue 20.5).
    Disk {
        #[arg(long, default_value_t = 2000)]
        cases: u32,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
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
    fn shape(&self) -> markaz_bench::workload::Shape {
        let day = markaz_bench::workload::Shape::CENTER_DAY;
        markaz_bench::workload::Shape {
            cases: self.cases,
            citizens: self.cases * day.citizens / day.cases,
            ..day
        }
    }

    /// The reproducing command line for `name` (with `extra` arguments).
    fn command(&self, name: &str, extra: &str) -> String {
        let mut c = format!(
            "cargo xtask bench {name} --runs {} --seed {} --cases {}",
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
            markaz_bench::write_section(path, name, heading, md)?;
            println!("updated {}", path.display());
        }
        Ok(())
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let Tool::Bench { command } = Cli::parse().command;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("markaz-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("markaz-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::GroupCommit {
            writers,
            secs,
            runs,
            write,
        } => {
            init_logging();
            let dir = tempfile_dir()?;
            let args = markaz_bench::group_commit::GroupCommitArgs {
                writers,
                run_secs: secs,
                runs,
                dir: dir.clone(),
            };
            let report = markaz_bench::group_commit::group_commit(args).await;
            let _ = std::fs::remove_dir_all(&dir);
            let report = report?;
            let command = format!(
                "cargo xtask bench group-commit --writers {writers} --secs {secs} --runs {runs}"
            );
            println!("{}", report.markdown(&command));
            markaz_bench::group_commit::update_benchmarks_md(&write, &report, &command)?;
            println!("updated {}", write.display());
            Ok(())
        }
        BenchCommand::CatchUp { common } => {
            init_logging();
            let args = markaz_bench::catch_up::Args {
                runs: common.runs.max(1),
                seed: common.seed,
                shape: common.shape(),
            };
            let md =
                markaz_bench::catch_up::catch_up(&args, &common.command("catch-up", "")).await?;
            common.publish("catch-up", "Outage catch-up over 3G", &md)
        }
        BenchCommand::NothingNew { common } => {
            init_logging();
            let args = markaz_bench::catch_up::Args {
                runs: common.runs.max(1),
                seed: common.seed,
                shape: common.shape(),
            };
            let md = markaz_bench::catch_up::nothing_new(&args, &common.command("nothing-new", ""))
                .await?;
            common.publish("nothing-new", "Nothing-new sync", &md)
        }
        BenchCommand::Hub {
            common,
            centers,
            pool_size,
        } => {
            init_logging();
            let args = markaz_bench::hub_load::Args {
                runs: common.runs.max(1),
                centers: centers.max(1),
                seed: common.seed,
                shape: common.shape(),
                pool_size: pool_size.clamp(1, 64),
            };
            let command = common.command(
                "hub",
                &format!("--centers {centers} --pool-size {pool_size}"),
            );
            let md = markaz_bench::hub_load::hub(&args, &command).await?;
            common.publish("hub", "Hub throughput", &md)
        }
        BenchCommand::Failover {
            runs,
            seed,
            settings: extra,
            skip_defaults,
            write,
        } => {
            init_logging();
            use markaz_bench::failover::Probing;
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
            let args = markaz_bench::failover::Args {
                runs: runs.max(1),
                seed,
                settings,
            };
            let command = format!(
                "cargo xtask bench failover --runs {runs} --seed {seed}{}{} --write docs/BENCHMARKS.md",
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
            let md = markaz_bench::failover::failover(&args, &command).await?;
            println!("{md}");
            if let Some(path) = &write {
                markaz_bench::write_section(path, "failover", "Failover to the modem", &md)?;
                println!("updated {}", path.display());
            }
            Ok(())
        }
        BenchCommand::Million {
            runs,
            cases,
            seed,
            lookups,
            write,
        } => {
            init_logging();
            let args = markaz_bench::million::Args {
                runs: runs.max(1),
                cases: cases.max(1),
                seed,
                lookups: lookups.max(1),
            };
            let command = format!(
                "cargo xtask bench million --runs {runs} --cases {cases} --seed {seed} --lookups {lookups} --write docs/BENCHMARKS.md"
            );
            let md = markaz_bench::million::million(&args, &command).await?;
            println!("{md}");
            if let Some(path) = &write {
                markaz_bench::write_section(path, "million", "A million cases", &md)?;
                println!("updated {}", path.display());
            }
            Ok(())
        }
        BenchCommand::Disk { cases, seed, write } => {
            init_logging();
            let args = markaz_bench::disk::Args {
                cases: cases.max(1),
                seed,
            };
            let command = format!(
                "cargo xtask bench disk --cases {cases} --seed {seed} --write docs/BENCHMARKS.md"
            );
            let md = markaz_bench::disk::disk(&args, &command).await?;
            println!("{md}");
            if let Some(path) = &write {
                markaz_bench::write_section(path, "disk", "Disk per case", &md)?;
                println!("updated {}", path.display());
            }
            Ok(())
        }
        BenchCommand::NoWait {
            runs,
            terminals,
            routed,
            secs,
            seed,
            write,
        } => {
            init_logging();
            let args = markaz_bench::no_wait::Args {
                runs: runs.max(1),
                seed,
                terminals: terminals.max(1),
                routed,
                secs,
            };
            let command = format!(
                "cargo xtask bench no-wait --runs {runs} --terminals {terminals} --routed {routed} --secs {secs} --seed {seed} --write docs/BENCHMARKS.md"
            );
            let md = markaz_bench::no_wait::no_wait(&args, &command).await?;
            println!("{md}");
            if let Some(path) = &write {
                markaz_bench::write_section(path, "no-wait", "Clerks never wait on sync", &md)?;
                println!("updated {}", path.display());
            }
            Ok(())
        }
        BenchCommand::Restore {
            runs,
            cases,
            seed,
            write,
        } => {
            init_logging();
            let args = markaz_bench::restore::Args {
                runs: runs.max(1),
                cases: cases.max(1),
                seed,
            };
            let command = format!(
                "cargo xtask bench restore --runs {runs} --cases {cases} --seed {seed} --write docs/BENCHMARKS.md"
            );
            let md = markaz_bench::restore::restore(&args, &command).await?;
            println!("{md}");
            if let Some(path) = &write {
                markaz_bench::write_section(path, "restore", "Restore from the hub", &md)?;
                println!("updated {}", path.display());
            }
            Ok(())
        }
    }
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
