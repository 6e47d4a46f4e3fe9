//! A throwaway PostgreSQL cluster for tests: `initdb` in a temporary directory, listening
//! on 127.0.0.1 on a free port, one per test binary, a fresh database per test
//! ([`PgCluster::fresh_db`]). It is stopped and removed when the test binary exits (a
//! watchdog process waits for it).
//!
//! Without PostgreSQL server binaries (`/usr/lib/postgresql/<version>/bin`, or
//! `MARKAZ_PG_BIN`) a test asking for the cluster is skipped with a printed reason —
//! unless `CI` is set, where PostgreSQL is required and the test fails.
//!
//! `initdb` refuses to run as root: as root, the cluster is owned and run by the
//! `postgres` user (`runuser -u postgres`).
//!
//! ```text
//! let Some(pg) = markaz_e2e::pg::cluster_or_skip("my_test") else { return };
//! let url = pg.fresh_db()?; // postgres://markaz@127.0.0.1:PORT/t_3
//! ```
//!
//! [`ssl_cluster_or_skip`] gives a test binary a cluster with `ssl = on` instead: a CA of
//! its own ([`PgCluster::ssl_ca_cert`]) signed the server's certificate (for `127.0.0.1`
//! and `localhost`), and `pg_hba.conf` has only `hostssl` lines, so a connection without
//! TLS is refused; role [`PG_CERT_USER`] logs in with a client certificate only
//! ([`PgCluster::client_cert`]). One cluster per test binary: a binary uses one of the
//! two. The benchmarks start a cluster of their own with [`PgCluster::start`] and
//! [`PgOptions::durable`] (fsync on, as in production).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail, ensure};

use crate::hub::free_port;

/// The role the test cluster is created with (a superuser; `trust` on loopback).
pub const PG_USER: &str = "markaz";

/// On an SSL cluster, the role whose logins need a client certificate (`cert` in
/// `pg_hba.conf`, the certificate's CN is the role). The tests create it.
pub const PG_CERT_USER: &str = "pgcert";

/// How a cluster is started.
#[derive(Debug, Clone, Copy, Default)]
pub struct PgOptions {
    /// `ssl = on` with a CA of the cluster's own, and `hostssl`-only `pg_hba.conf`.
    pub ssl: bool,
    /// `fsync`, `full_page_writes` and `synchronous_commit` on, as on a production
    /// server (the tests turn them off: nothing outlives the test).
    pub durable: bool,
}

/// A running throwaway cluster.
#[derive(Debug)]
pub struct PgCluster {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    /// Run the server's programs as the `postgres` user (we are root).
    as_postgres: bool,
    next_db: AtomicU32,
    options: PgOptions,
}

/// Whether CI is set (then PostgreSQL is required).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The cluster of this test binary, started on first use; `None` (after printing why)
/// when PostgreSQL is not available and CI is not set. Panics under CI when it is not.
pub fn cluster_or_skip(test: &str) -> Option<&'static PgCluster> {
    static CLUSTER: OnceLock<std::result::Result<PgCluster, String>> = OnceLock::new();
    or_skip(test, &CLUSTER, PgOptions::default())
}

/// Like [`cluster_or_skip`], a cluster with `ssl = on` and `hostssl`-only `pg_hba.conf`.
pub fn ssl_cluster_or_skip(test: &str) -> Option<&'static PgCluster> {
    static CLUSTER: OnceLock<std::result::Result<PgCluster, String>> = OnceLock::new();
    or_skip(
        test,
        &CLUSTER,
        PgOptions {
            ssl: true,
            durable: false,
        },
    )
}

fn or_skip(
    test: &str,
    cell: &'static OnceLock<std::result::Result<PgCluster, String>>,
    options: PgOptions,
) -> Option<&'static PgCluster> {
    match cell.get_or_init(|| PgCluster::start(options).map_err(|e| format!("{e:#}"))) {
        Ok(c) => Some(c),
        Err(why) if in_ci() => panic!("{test}: PostgreSQL is required under CI: {why}"),
        Err(why) => {
            eprintln!("skipping {test}: PostgreSQL not available ({why}); set CI to require it");
            None
        }
    }
}

/// The PostgreSQL server binaries: `MARKAZ_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` holding `initdb`.
fn find_bin() -> Result<PathBuf> {
    if let Some(b) = std::env::var_os("MARKAZ_PG_BIN") {
        return Ok(PathBuf::from(b));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql (install Debian's `postgresql`)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .context("no /usr/lib/postgresql/<version>/bin/initdb")
}

impl PgCluster {
    /// Start a cluster (stopped and removed when this process exits).
    pub fn start(options: PgOptions) -> Result<PgCluster> {
        let bin = find_bin()?;
        use std::os::unix::fs::MetadataExt;
        let as_postgres = std::fs::metadata("/proc/self")?.uid() == 0;
        let dir = tempfile::Builder::new()
            .prefix("markaz-pg-")
            .tempdir()?
            .keep();
        if as_postgres {
            let status = Command::new("chown")
                .arg("postgres")
                .arg(&dir)
                .status()
                .context("while running chown")?;
            ensure!(
                status.success(),
                "running as root, and the cluster cannot be given to a `postgres` user \
                 (initdb refuses root)"
            );
        }
        let mut cluster = PgCluster {
            dir,
            port: 0,
            bin,
            as_postgres,
            next_db: AtomicU32::new(0),
            options,
        };
        cluster.watch_parent()?;
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-A",
                "trust",
                "-U",
                PG_USER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        if options.ssl {
            cluster.make_ssl()?;
        }
        let mut last = None;
        for _ in 0..3 {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start() {
                Ok(()) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("pg_ctl start failed")))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command running one of the server's programs (as `postgres` when we are root).
    fn command(&self, prog: &str) -> Command {
        let path = self.bin.join(prog);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, prog: &str, args: &[&str]) -> Result<String> {
        let out = self
            .command(prog)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("while running {prog}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(out.status.success(), "{prog} {args:?} failed: {text}");
        Ok(text)
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let mut opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=200",
            self.port,
            self.dir.display()
        );
        if self.options.durable {
            opts.push_str(" -c shared_buffers=128MB");
        } else {
            opts.push_str(" -c shared_buffers=32MB -c fsync=off -c full_page_writes=off");
        }
        if self.options.ssl {
            let ssl = self.ssl_dir();
            opts.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={} -c ssl_ca_file={}",
                ssl.join("server.pem").display(),
                ssl.join("server.key").display(),
                ssl.join("ca.pem").display()
            ));
        }
        let data = self.data_dir();
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
        )
        .map(|_| ())
        .with_context(|| {
            format!(
                "server log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
    }

    /// Stop the server (`immediate`: as if the machine lost power) and start it again on
    /// the same port.
    pub fn restart(&self) -> Result<()> {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["-D", path_str(&data)?, "-m", "immediate", "-w", "stop"],
        )?;
        self.pg_ctl_start()
    }

    /// A watchdog that stops the cluster and removes its directory once this test
    /// process has exited.
    fn watch_parent(&self) -> Result<()> {
        let data = self.data_dir();
        let mut stop = vec![];
        if self.as_postgres {
            stop.extend(["runuser", "-u", "postgres", "--"].map(String::from));
        }
        stop.push(self.bin.join("pg_ctl").display().to_string());
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             {stop} -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            stop = stop.join(" "),
            data = data.display(),
            dir = self.dir.display(),
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("while starting the cluster's watchdog")?;
        Ok(())
    }

    fn ssl_dir(&self) -> PathBuf {
        self.dir.join("ssl")
    }

    /// The CA (`ssl/ca.pem`, `ssl/ca.key`), the server's certificate for `127.0.0.1` and
    /// `localhost` signed by it, and a `pg_hba.conf` with `hostssl` lines only.
    fn make_ssl(&self) -> Result<()> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let dir = self.ssl_dir();
        std::fs::create_dir_all(&dir)?;
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name
            .push(DnType::CommonName, "markaz test PostgreSQL CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key)?;
        std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
        std::fs::write(dir.join("ca.key"), ca_key.serialize_pem())?;
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate()?;
        let mut server = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = server.signed_by(&key, &issuer)?;
        std::fs::write(dir.join("server.pem"), cert.pem())?;
        let key_path = dir.join("server.key");
        std::fs::write(&key_path, key.serialize_pem())?;
        // The server refuses a key that others can read, and runs as `postgres`.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
        if self.as_postgres {
            let status = Command::new("chown")
                .arg("postgres")
                .arg(&key_path)
                .status()
                .context("while running chown")?;
            ensure!(status.success(), "chown postgres {}", key_path.display());
        }
        std::fs::write(
            self.data_dir().join("pg_hba.conf"),
            format!(
                "local all all trust\n\
                 hostssl all {PG_CERT_USER} 127.0.0.1/32 cert\n\
                 hostssl all all 127.0.0.1/32 trust\n"
            ),
        )?;
        Ok(())
    }

    /// The CA that signed this cluster's server certificate (an SSL cluster only).
    pub fn ssl_ca_cert(&self) -> Option<PathBuf> {
        self.options.ssl.then(|| self.ssl_dir().join("ca.pem"))
    }

    /// A client certificate for role `user` (its CN) signed by the cluster's CA, with its
    /// key, written under `dir`: (certificate, key).
    pub fn client_cert(&self, user: &str, dir: &Path) -> Result<(PathBuf, PathBuf)> {
        use rcgen::{CertificateParams, DnType, Issuer, KeyPair};
        ensure!(self.options.ssl, "not an SSL cluster");
        let ssl = self.ssl_dir();
        let ca_key = KeyPair::from_pem(&std::fs::read_to_string(ssl.join("ca.key"))?)?;
        let issuer =
            Issuer::from_ca_cert_pem(&std::fs::read_to_string(ssl.join("ca.pem"))?, ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, user);
        let cert = params.signed_by(&key, &issuer)?;
        let (c, k) = (
            dir.join(format!("{user}.pem")),
            dir.join(format!("{user}.key")),
        );
        std::fs::write(&c, cert.pem())?;
        std::fs::write(&k, key.serialize_pem())?;
        Ok((c, k))
    }

    /// The URL of database `dbname` on this cluster (no password: `trust`).
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{dbname}", self.port)
    }

    /// Create a new, empty database; its URL.
    pub fn fresh_db(&self) -> Result<String> {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        let name = format!("t_{n}");
        let port = self.port.to_string();
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", PG_USER, &name])
            .stdin(Stdio::null())
            .output()
            .context("while running createdb")?;
        if !out.status.success() {
            bail!(
                "createdb {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(self.url(&name))
    }

    /// Run a client program (`pg_dump`, `pg_restore`, `dropdb`, …) against this cluster
    /// with `args` after the connection options; its output.
    fn client(&self, prog: &str, args: &[&str]) -> Result<String> {
        let port = self.port.to_string();
        let out = Command::new(self.bin.join(prog))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", PG_USER])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("while running {prog}"))?;
        ensure!(
            out.status.success(),
            "{prog} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// A logical backup of `dbname` (`pg_dump -Fc`) into `to`, as an operator takes it
    /// while the hub runs.
    pub fn dump(&self, dbname: &str, to: &Path) -> Result<()> {
        self.client("pg_dump", &["-Fc", "-f", path_str(to)?, dbname])
            .map(|_| ())
    }

    /// The database `dbname` lost and put back from `dump` (`dropdb`, `createdb`,
    /// `pg_restore`); nothing may be connected to it.
    pub fn restore_db(&self, dbname: &str, dump: &Path) -> Result<()> {
        self.client("dropdb", &["--force", dbname])?;
        self.client("createdb", &[dbname])?;
        self.client("pg_restore", &["-d", dbname, path_str(dump)?])
            .map(|_| ())
    }

    /// Run SQL with `psql` on a database of this cluster; its output (unaligned, tuples
    /// only).
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String> {
        let port = self.port.to_string();
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                PG_USER,
                "-d",
                dbname,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .context("while running psql")?;
        ensure!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}
