//! The center process: opens storage, builds the application from config, creates the
//! first admin, starts the supervisors and serves HTTP until shutdown.

use std::time::Duration;

use anyhow::Context;
use markaz_config::NodeConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::{App, AppSettings, Clock, CounterSettings, GroupSettings};
use crate::auth::AuthPolicy;
use crate::server::{ServeOptions, serve};
use crate::storage::{Db, StorageOptions};

/// The name of the database file inside `storage.data_dir`.
pub const DB_FILE: &str = "markaz-node.db";

/// Translates config into the use cases' settings.
pub fn settings_from(cfg: &NodeConfig) -> anyhow::Result<AppSettings> {
    let timezone = cfg.center.timezone.time_zone();
    Ok(AppSettings {
        center_id: cfg.center.id.clone(),
        center_name_ar: cfg.center.name_ar.clone(),
        center_name_en: cfg.center.name_en.clone(),
        receipt_prefix: cfg.center.receipt_prefix.to_string(),
        timezone,
        auth: AuthPolicy {
            session_ttl_ms: i64::from(cfg.auth.session_ttl_minutes) * 60_000,
            session_idle_ms: i64::from(cfg.auth.session_idle_minutes) * 60_000,
            login_max_attempts: cfg.auth.login_max_attempts,
            login_window_ms: i64::from(cfg.auth.login_window_secs) * 1000,
        },
        groups: cfg
            .queue
            .groups
            .iter()
            .map(|g| GroupSettings {
                id: g.id.to_string(),
                letter: g.letter.as_char(),
                name_ar: g.name_ar.clone(),
                name_en: g.name_en.clone(),
                target_wait_minutes: g.target_wait_minutes,
            })
            .collect(),
        counters: cfg
            .counters
            .iter()
            .map(|c| CounterSettings {
                number: u32::from(c.number),
                groups: c.groups.iter().map(|g| g.to_string()).collect(),
            })
            .collect(),
        priority_weight: cfg.queue.priority_weight,
        normal_weight: cfg.queue.normal_weight,
        initial_admin_user: cfg.auth.initial_admin_user.clone(),
        initial_admin_password: cfg.auth.initial_admin_password.clone(),
    })
}

/// The pages' defaults from `[center]`: digits and language.
pub fn web_options(cfg: &NodeConfig) -> crate::web::WebOptions {
    use crate::web::Digits;
    crate::web::WebOptions {
        digits: match cfg.center.digits {
            markaz_config::Digits::ArabicIndic => Digits::ArabicIndic,
            markaz_config::Digits::Western => Digits::Western,
        },
        default_language: cfg.center.default_language,
        kiosk_key: None,
        https: cfg.server.tls.is_some(),
    }
}

/// Opens the center's database and builds its application.
pub async fn open(cfg: &NodeConfig, clock: Clock) -> anyhow::Result<App> {
    let data_dir = cfg.storage.data_dir.as_path();
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("while creating data dir {}", data_dir.display()))?;
    let opts = StorageOptions {
        busy_timeout_ms: u64::from(cfg.storage.busy_timeout_ms),
        group_commit_max_batch: cfg.storage.group_commit_max_batch as usize,
        readers: 4,
        center: cfg.center.id.clone(),
        inline_check_max_bytes: crate::storage::integrity::INLINE_CHECK_MAX_BYTES,
    };
    let db_path = data_dir.join(DB_FILE);
    let db = Db::open(&db_path, &opts)
        .with_context(|| format!("while opening {}", db_path.display()))?;
    let app = App::new(db, settings_from(cfg)?, clock);
    match app.load_catalog_doc().await {
        Ok(true) => tracing::info!("services and fees from the hub's catalog document"),
        Ok(false) => {}
        // A damaged database refuses writes (documents load on the writer); the node
        // still starts, with the built-in catalog, to say so.
        Err(crate::error::AppError::Storage(crate::storage::StorageError::Refused(why))) => {
            tracing::error!(%why, "the stored catalog document was not read");
        }
        Err(e) => return Err(e).context("while reading the stored catalog document"),
    }
    let bootstrap = match app.bootstrap_admin().await {
        // A damaged database refuses writes; the node still starts, to say so.
        Err(crate::error::AppError::Storage(crate::storage::StorageError::Refused(why))) => {
            tracing::error!(%why, "the first account was not checked: writes are refused");
            None
        }
        other => other?,
    };
    if let Some(password) = bootstrap {
        // Shown once, on the console of whoever installed the node; never logged. An
        // unwritable stdout must not stop the node (println! would panic): the password
        // then goes to a file only the node's user can read.
        let user = &cfg.auth.initial_admin_user;
        let shown = crate::logging::try_print(&format!(
            "markaz: created the first account '{user}' with password: {password}\nmarkaz: log in and change it on the page /account/password (or set auth.initial_admin_password).\n"
        ));
        if !shown {
            let file = data_dir.join(INITIAL_PASSWORD_FILE);
            match write_private(&file, &format!("{user} {password}\n")) {
                Ok(()) => tracing::warn!(
                    file = %file.display(),
                    "stdout is not writable: the first account's password is in this file; delete it after logging in"
                ),
                Err(error) => tracing::error!(
                    %error,
                    "stdout is not writable and the first account's password could not be saved; set auth.initial_admin_password"
                ),
            }
        }
    }
    Ok(app)
}

/// Where the first account's password goes when stdout cannot show it.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Runs the center node until `shutdown` is cancelled.
pub async fn run(cfg: NodeConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with(cfg, shutdown, |_| {}).await
}

/// A node that serves: what its supervisor (systemd's watchdog) checks.
pub struct Serving {
    /// The address the HTTP server is bound to.
    pub addr: std::net::SocketAddr,
    /// The node's liveness, for the watchdog.
    pub liveness: crate::watchdog::Liveness,
}

/// Like [`run`]; `on_serving` is called once the HTTP server accepts connections (the
/// database open, migrated and checked; the supervisors started).
pub async fn run_with(
    cfg: NodeConfig,
    shutdown: CancellationToken,
    on_serving: impl FnOnce(Serving) + Send + 'static,
) -> anyhow::Result<()> {
    // Before anything starts: an unreadable metrics token stops the node at once.
    let metrics = crate::server::MetricsServe::from_config(&cfg.metrics)?;
    // And so does an unreadable or weak kiosk key.
    let kiosk_key = crate::web::kiosk_key(&cfg.kiosk).context("while reading kiosk.key_file")?;
    // And so does a LAN certificate or key that does not load.
    let tls = cfg
        .server
        .tls
        .as_ref()
        .map(crate::server::ServeTls::from_config)
        .transpose()?;
    // One node per data directory; `markaz restore` refuses while this is held.
    let _lock = crate::storage::backup::DataDirLock::take(&cfg.storage.data_dir)
        .context("while locking the data directory")?;
    let app = open(&cfg, Clock::System).await?;
    let tracker = TaskTracker::new();
    if let (true, Some(folder)) = (cfg.backup.enabled, cfg.backup.folder.clone()) {
        let schedule = crate::storage::backup::Schedule {
            folder,
            minute_of_day: cfg.backup.time.minute_of_day(),
            keep: cfg.backup.keep as usize,
            tz: cfg.center.timezone.time_zone(),
        };
        tracker.spawn(crate::storage::backup::run_daily(
            app.db.clone(),
            schedule,
            shutdown.clone(),
        ));
    }
    crate::devices::start(&app, &cfg, &tracker, &shutdown)
        .context("while starting the device supervisors")?;
    crate::sync::start(&app, &cfg, &tracker, &shutdown)
        .context("while starting the sync client")?;
    tracker.spawn(crate::app::wallclock::watch(app.clone(), shutdown.clone()));
    let opts = ServeOptions {
        listen: cfg.server.listen.to_string(),
        max_body_bytes: cfg.server.max_body_bytes as usize,
        request_timeout: Duration::from_secs(u64::from(cfg.server.request_timeout_secs)),
        addr_file: Some(cfg.storage.data_dir.join("listen.addr")),
        web: crate::web::WebOptions {
            kiosk_key,
            ..web_options(&cfg)
        },
        limits: markaz_web::listen::Limits {
            max_connections: cfg.server.max_connections as usize,
            max_per_client: cfg.server.max_connections_per_client as usize,
            header_read_timeout: Duration::from_secs(u64::from(
                cfg.server.header_read_timeout_secs,
            )),
            ..markaz_web::listen::Limits::default()
        },
        on_bound: Some({
            let app = app.clone();
            Box::new(move |addr| {
                on_serving(Serving {
                    addr,
                    liveness: crate::watchdog::Liveness::new(app, addr),
                });
            })
        }),
        metrics,
        tls,
    };
    let result = serve(app.clone(), opts, shutdown.clone()).await;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    tracing::info!(center = %app.settings.center_id, "node stopped");
    result
}
