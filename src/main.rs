//! `markaz`: the one binary of the system — a center node, the governorate hub, a demo
//! of both, and config checking.

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
    /// Check a node or hub config file; print every problem with file:line:column.
    CheckConfig { file: PathBuf },
    /// Back up a center's database while the node runs (SQLite's online backup), check
    /// the copy with integrity_check and write FILE.sha256 beside it.
    Backup {
        #[arg(long, short, default_value = "/etc/markaz/node.toml")]
        config: PathBuf,
        /// The backup file to create (it must not exist).
        #[arg(long)]
        to: PathBuf,
    },
    /// Rebuild a center's database (its disk died, the box was replaced) from every
    /// document the hub holds for it, before the node serves. The node must be stopped.
    Restore {
        /// A backup made by `markaz backup` (checked against FILE.sha256 when it is
        /// there): put in place of a stopped center's database; refuses a damaged backup,
        /// one of a newer markaz, and a node that runs. The replaced file is kept.
        #[arg(required_unless_present = "from_hub", conflicts_with = "from_hub")]
        file: Option<PathBuf>,
        #[arg(long, short, default_value = "/etc/markaz/node.toml")]
        config: PathBuf,
        /// Instead of a file: take the center's documents from its hub (`[sync]` of the
        /// config), on a fresh database.
        #[arg(long)]
        from_hub: bool,
        /// With --from-hub: restore even over a database that holds something (it is
        /// moved aside).
        #[arg(long)]
        force: bool,
    },
    /// The governorate's certificates: CA, hub certificate, one per center, revocation.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// The hub's operator accounts: add one (the first administrator), or give one an
    /// API token. Works while the hub runs.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Add an operator; prints a generated password (and an API token with --token).
    Add {
        /// The hub's config file (its data directory holds the accounts).
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        username: String,
        /// A role (repeatable): admin, oversight, catalog, staff, eservices, network.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        #[arg(long, default_value = "")]
        name: String,
        /// Also create an API token with this label, printed once.
        #[arg(long)]
        token: Option<String>,
    },
    /// Create an API token for an existing operator; prints it once.
    Token {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        username: String,
        #[arg(long, default_value = "")]
        label: String,
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
    /// Copy a hub's SQLite database into an empty PostgreSQL database (the hub stopped),
    /// then check the copy: every document's heads, the cursors, the sessions.
    MigrateStore {
        /// The hub's markaz-hub.db.
        #[arg(long)]
        from: PathBuf,
        /// The hub config naming the PostgreSQL database (`[storage] engine = "postgres"`).
        #[arg(long)]
        to: PathBuf,
    },
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
    /// Issue a center's HTTPS certificate for its LAN into DIR/lan/ID/ (`[server.tls]`).
    Lan {
        dir: PathBuf,
        center: String,
        /// A DNS name or IP address the terminals use to reach the box (repeatable).
        #[arg(long = "san", required = true)]
        sans: Vec<String>,
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
    if let Command::Hub {
        command: Some(HubCommand::MigrateStore { from, to }),
        ..
    } = &cli.command
    {
        return hub_migrate_store(from, to);
    }
    if let Command::Backup { config, to } = &cli.command {
        return node_backup(config, to);
    }
    if let Command::Restore {
        file: Some(file),
        config,
        ..
    } = &cli.command
    {
        return node_restore(config, file);
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
    if let Command::Operator { command } = &cli.command {
        return match operator(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("markaz operator: {e:#}");
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

fn hub_migrate_store(from: &std::path::Path, to: &std::path::Path) -> ExitCode {
    let done = markaz_config::load_hub(to)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|cfg| Ok(markaz_hub::storage::pg::copy::migrate_store(from, &cfg)?));
    match done {
        Ok(r) => {
            for (table, n) in &r.rows {
                println!("{table}: {n} rows");
            }
            for (what, n) in &r.not_copied {
                println!("not copied (PostgreSQL has no place for it): {what}, {n} rows");
            }
            println!(
                "checked: {} documents (same heads), {} centers (feeds, cursors, acknowledgements), {} sessions; start the hub with {}",
                r.docs_checked,
                r.centers_checked,
                r.sessions_checked,
                to.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("markaz hub migrate-store: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn node_backup(config: &std::path::Path, to: &std::path::Path) -> ExitCode {
    let done = markaz_config::load_node(config)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|cfg| {
            let db = cfg.storage.data_dir.join(markaz_node::center::DB_FILE);
            Ok(markaz_node::storage::backup::backup(&db, to)?)
        });
    match done {
        Ok(r) => {
            println!(
                "backed up to {} ({} bytes, schema {}, {} ms); checked with integrity_check; sha256 {} in {}",
                r.path.display(),
                r.bytes,
                r.schema_version,
                r.took.as_millis(),
                r.sha256,
                r.checksum_path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("markaz backup: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn node_restore(config: &std::path::Path, file: &std::path::Path) -> ExitCode {
    let done = markaz_config::load_node(config)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|cfg| {
            let db = cfg.storage.data_dir.join(markaz_node::center::DB_FILE);
            let now = jiff::Timestamp::now().as_millisecond();
            Ok(markaz_node::storage::backup::restore(
                file,
                &db,
                cfg.center.id.as_str(),
                now,
            )?)
        });
    match done {
        Ok(r) => {
            if let Some(kept) = &r.kept {
                println!("the replaced database is kept as {}", kept.display());
            }
            println!(
                "restored {} (schema {}); start the node — it syncs as a new incarnation and repairs with the hub",
                file.display(),
                r.schema_version
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("markaz restore: {e:#}");
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
        } => anyhow::bail!(
            "markaz hub needs --config <hub.toml> (or a subcommand: restore, migrate-store)"
        ),
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
        Command::Restore {
            config,
            force,
            file: None,
            ..
        } => {
            let cfg = markaz_config::load_node(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            init_logging(cfg.logging.format, cfg.logging.level.as_str());
            let report = markaz_node::sync::restore::from_hub(&cfg, force).await?;
            println!("{report}");
            Ok(())
        }
        Command::Demo {
            data_dir,
            port,
            hub_port,
            sync_port,
        } => demo(data_dir, port, hub_port, sync_port).await,
        Command::CheckConfig { .. }
        | Command::Pki { .. }
        | Command::Operator { .. }
        | Command::Backup { .. }
        | Command::Restore { file: Some(_), .. } => {
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
        PkiCommand::Lan {
            dir,
            center,
            sans,
            days,
        } => {
            let id = center
                .parse()
                .map_err(|e| anyhow::anyhow!("center id '{center}': {e}"))?;
            let issued = pki::lan(dir, &id, sans, *days)?;
            println!(
                "issued {center}'s LAN certificate {} (serial {}) for {}; copy cert.pem and key.pem of {} to the center's box ([server.tls]) and trust ca.pem on its terminals",
                issued.cert_path.display(),
                issued.serial.as_str(),
                sans.join(", "),
                pki::lan_dir(dir, &id).display()
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
                let kind = format!("{:?}", r.kind).to_lowercase();
                let who = match (r.center_id, r.kind) {
                    (Some(c), pki::CertKind::Lan) => format!("{c} (lan)"),
                    (Some(c), _) => c.to_string(),
                    (None, _) => kind,
                };
                println!("{}  {who:<16}  {state}", r.serial.as_str());
            }
        }
    }
    Ok(())
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
    node.sync.hub_url = Some(
        format!("https://127.0.0.1:{sync_port}")
            .parse()
            .map_err(|e| anyhow::anyhow!("hub url: {e:?}"))?,
    );
    node.sync.ca_cert = Some(pki.center_bundle.join("ca.pem"));
    node.sync.client_cert = Some(pki.center_bundle.join("cert.pem"));
    node.sync.client_key = Some(pki.center_bundle.join("key.pem"));
    node.sync.interval_secs = 10;
    node.auth.initial_admin_password = Some(DEMO_PASSWORD.into());
    // Emulated modem, solar charger, battery monitor, inverter and generator on ptys.
    let _devices = markaz_node::devices::demo::emulate(&mut node, shutdown.clone())?;

    // The hub's first operator gets the demo password (not a generated one), so the
    // printed login works at both ends.
    let admin = markaz_hub::operators::NewOperator {
        username: "admin".into(),
        full_name: "Demo administrator".into(),
        roles: vec![markaz_hub::operators::Role::Admin],
        language: "ar".into(),
    };
    match markaz_hub::add_operator(&hub, &admin, Some(DEMO_PASSWORD.into()), None) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.downcast_ref::<markaz_hub::operators::OperatorError>(),
                Some(markaz_hub::operators::OperatorError::Exists(_))
            ) => {}
        Err(e) => return Err(e.context("while creating the demo hub's administrator")),
    }
    let hub_task = tokio::spawn(markaz_hub::run(hub, shutdown.clone()));
    let node_task = tokio::spawn(markaz_node::center::run(node, shutdown.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    println!(
        "\nMarkaz demo is running (data in {dir})\n\
         \n  center web UI   http://127.0.0.1:{port}/        log in as admin / {DEMO_PASSWORD}\
         \n  display board   http://127.0.0.1:{port}/display\
         \n  center API      http://127.0.0.1:{port}/api/v1/openapi.json\
         \n  hub             http://127.0.0.1:{hub_port}/        log in as admin / {DEMO_PASSWORD}\
         \n                  (centers sync over mutual TLS on 127.0.0.1:{sync_port})\
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

/// `markaz operator …`: operator accounts in the hub's database.
fn operator(command: &OperatorCommand) -> anyhow::Result<()> {
    match command {
        OperatorCommand::Add {
            config,
            username,
            roles,
            name,
            token,
        } => {
            let cfg = markaz_config::load_hub(config).map_err(|e| anyhow::anyhow!("{e}"))?;
            let roles = markaz_hub::operators::parse_roles(&roles.join(","))?;
            let new = markaz_hub::operators::NewOperator {
                username: username.clone(),
                full_name: name.clone(),
                roles,
                language: "ar".into(),
            };
            let added = markaz_hub::add_operator(&cfg, &new, None, token.as_deref())?;
            if let Some(p) = added.password {
                println!("password: {p}");
            }
            if let Some(t) = added.token {
                println!("token: {t}");
            }
            Ok(())
        }
        OperatorCommand::Token {
            config,
            username,
            label,
        } => {
            let cfg = markaz_config::load_hub(config).map_err(|e| anyhow::anyhow!("{e}"))?;
            let t = markaz_hub::add_operator_token(&cfg, username, label)?;
            println!("token: {t}");
            Ok(())
        }
    }
}
