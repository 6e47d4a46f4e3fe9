//! `markaz`: the one binary of the system — a center node, the governorate hub, a demo
//! of both, and config checking.

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a center node.
    Node {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the governorate hub.
    Hub {
        #[arg(long, short)]
        config: PathBuf,
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
    },
    /// Check a node or hub config file; print every problem with file:line:column.
    CheckConfig { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::CheckConfig { file } = &cli.command {
        return check_config(file);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("markaz: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("markaz: {e:#}");
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

fn init_logging(format: markaz_config::LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        markaz_config::LogFormat::Json => builder.json().init(),
        markaz_config::LogFormat::Pretty => builder.init(),
    }
}

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

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Node { config } => {
            let cfg = markaz_config::load_node(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            init_logging(cfg.logging.format, cfg.logging.level.as_str());
            markaz_node::center::run(cfg, shutdown_on_signal()).await
        }
        Command::Hub { config } => {
            let cfg = markaz_config::load_hub(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            init_logging(cfg.logging.format, cfg.logging.level.as_str());
            markaz_hub::run(cfg, shutdown_on_signal()).await
        }
        Command::Demo {
            data_dir,
            port,
            hub_port,
        } => demo(data_dir, port, hub_port).await,
        Command::CheckConfig { .. } => unreachable!("handled before the runtime starts"),
    }
}

/// The demo: a hub and one center ("demo") in this process, on loopback.
async fn demo(data_dir: PathBuf, port: u16, hub_port: u16) -> anyhow::Result<()> {
    init_logging(markaz_config::LogFormat::Pretty, "info,tower_http=warn");
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("while creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let shutdown = shutdown_on_signal();

    let mut hub = markaz_config::HubConfig::default();
    hub.hub.data_dir = data_dir.join("hub");
    hub.hub.web_listen = std::net::SocketAddr::from(([127, 0, 0, 1], hub_port));
    let mut node = markaz_config::NodeConfig::default();
    node.center.name_ar = "مركز خدمة المواطن - تجريبي".into();
    node.center.name_en = "Citizen Service Center — Demo".into();
    node.storage.data_dir = data_dir.join("center");
    node.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    node.auth.initial_admin_password = Some(DEMO_PASSWORD.into());

    let hub_task = tokio::spawn(markaz_hub::run(hub, shutdown.clone()));
    let node_task = tokio::spawn(markaz_node::center::run(node, shutdown.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    println!(
        "\nMarkaz demo is running (data in {dir})\n\
         \n  center web UI   http://127.0.0.1:{port}/        log in as admin / {DEMO_PASSWORD}\
         \n  display board   http://127.0.0.1:{port}/display\
         \n  center API      http://127.0.0.1:{port}/api/v1/openapi.json\
         \n  hub             http://127.0.0.1:{hub_port}/\
         \n\nPress Ctrl-C to stop.\n",
        dir = data_dir.display()
    );
    let (h, n) = tokio::join!(hub_task, node_task);
    h.context("hub task")??;
    n.context("node task")??;
    Ok(())
}

const DEMO_PASSWORD: &str = "markaz-demo";
