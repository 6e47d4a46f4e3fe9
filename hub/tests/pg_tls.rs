//! The hub on a PostgreSQL server that only takes TLS (`ssl = on`, `hostssl` lines only
//! in `pg_hba.conf`), as a governorate runs it on another machine: the hub connects over
//! TLS and verifies the server against `storage.ca_cert`, a server whose certificate
//! another CA signed is refused with a message naming the CA file, a plain connection is
//! refused by the server, and a client certificate logs in a `cert` role.
//!
//! One SSL cluster for this test binary (`markaz_e2e::pg::ssl_cluster_or_skip`); skipped
//! with a printed reason without PostgreSQL unless CI is set.

use crate::support;

use std::path::Path;

use markaz_config::{HubStorage, PgSslMode, StorageEngine};
use markaz_e2e::pg::{PG_CERT_USER, PgCluster};
use markaz_hub::pki::{Ca, Validity};
use markaz_hub::storage::{PgHub, PgSettings, PgTls, StorageError};
use support::{Center, Hub};

/// `[storage]` for database `db` of the cluster, as `role`, with `query` after the path.
fn storage(cluster: &PgCluster, role: &str, db: &str, query: &str, ca: &Path) -> HubStorage {
    HubStorage {
        engine: StorageEngine::Postgres,
        url: Some(
            format!("postgres://{role}@127.0.0.1:{}/{db}{query}", cluster.port)
                .try_into()
                .expect("url"),
        ),
        pool_size: 2,
        ca_cert: Some(ca.to_path_buf()),
        ..HubStorage::default()
    }
}

fn db_name(url: &str) -> String {
    url.rsplit('/').next().expect("a database").to_string()
}

/// Open the store with `settings` off the async runtime (the blocking client runs its own).
async fn open(settings: PgSettings) -> Result<PgHub, StorageError> {
    tokio::task::spawn_blocking(move || PgHub::open(&settings))
        .await
        .expect("open thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_serves_over_a_verified_tls_connection() -> anyhow::Result<()> {
    let Some(cluster) = markaz_e2e::pg::ssl_cluster_or_skip("pg_tls") else {
        return Ok(());
    };
    let ca = cluster.ssl_ca_cert().expect("an SSL cluster");
    let db = db_name(&cluster.fresh_db()?);
    let st = storage(cluster, "markaz", &db, "?sslmode=require", &ca);

    // A center syncs a case through the hub: every statement went over TLS.
    let hub = Hub::start_with(st.clone()).await?;
    let mut midan = Center::new(&hub, "midan")?;
    let case = midan.new_case(1)?;
    let report = midan.sync().await?;
    assert!(report.pushed > 0, "{report:?}");
    assert!(midan.has(&case));
    let (plain, encrypted) = cluster
        .psql(
            &db,
            "SELECT count(*) FILTER (WHERE NOT s.ssl), count(*) FILTER (WHERE s.ssl)
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.application_name = 'markaz-hub' AND a.datname = current_database()",
        )?
        .split_once('|')
        .map(|(p, e)| (p.to_string(), e.to_string()))
        .expect("two counts");
    assert_eq!(plain, "0", "no hub connection in the clear");
    assert!(encrypted.parse::<u32>()? >= 2, "the pool: {encrypted}");

    // Through the hub's own connection: the server says TLS 1.3 or 1.2.
    let mut store = open(PgSettings::from_config(&st)?).await?;
    let version = tokio::task::spawn_blocking(move || store.tls_version()).await??;
    assert!(
        matches!(version.as_deref(), Some("TLSv1.3" | "TLSv1.2")),
        "{version:?}"
    );
    // Without sslmode, a configured CA means TLS too; `prefer` takes it when offered.
    for query in ["", "?sslmode=prefer", "?sslmode=verify-full"] {
        let s = storage(cluster, "markaz", &db, query, &ca);
        let mut store = open(PgSettings::from_config(&s)?).await?;
        let v = tokio::task::spawn_blocking(move || store.tls_version()).await??;
        assert!(v.is_some(), "{query}: plain TCP");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_signed_by_another_ca_is_refused() -> anyhow::Result<()> {
    let Some(cluster) = markaz_e2e::pg::ssl_cluster_or_skip("pg_tls") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let other = Ca::create(&dir.path().join("other"), "another CA", Validity::days(30)?)?;
    let db = db_name(&cluster.fresh_db()?);
    let st = storage(
        cluster,
        "markaz",
        &db,
        "?sslmode=require",
        &other.cert_path(),
    );
    let err = open(PgSettings::from_config(&st)?)
        .await
        .expect_err("an unknown issuer must not be trusted");
    let msg = err.to_string();
    assert!(
        msg.contains("not signed by the CA in storage.ca_cert")
            && msg.contains(&other.cert_path().display().to_string())
            && msg.contains(&format!("127.0.0.1:{}", cluster.port)),
        "{msg}"
    );
    // The hub does not start on it either, and says why.
    let started = Hub::start_with(st).await;
    let msg = format!("{:#}", started.err().expect("the hub must not start"));
    assert!(msg.contains("not signed by the CA"), "{msg}");
    // Nothing was created in the database.
    assert_eq!(
        cluster.psql(
            &db,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )?,
        "0"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_is_refused_by_a_hostssl_server() -> anyhow::Result<()> {
    let Some(cluster) = markaz_e2e::pg::ssl_cluster_or_skip("pg_tls") else {
        return Ok(());
    };
    let url = cluster.fresh_db()?;
    let settings = PgSettings {
        url: url.try_into()?,
        password: None,
        pool_size: 1,
        tls: PgTls::Off,
    };
    let msg = open(settings)
        .await
        .expect_err("no hostssl entry")
        .to_string();
    assert!(
        msg.contains("no pg_hba.conf entry") && msg.contains("no encryption"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_logs_in_a_cert_role() -> anyhow::Result<()> {
    let Some(cluster) = markaz_e2e::pg::ssl_cluster_or_skip("pg_tls") else {
        return Ok(());
    };
    let ca = cluster.ssl_ca_cert().expect("an SSL cluster");
    let db = db_name(&cluster.fresh_db()?);
    cluster.psql(
        &db,
        &format!(
            "DO $$ BEGIN CREATE ROLE {PG_CERT_USER} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             ALTER DATABASE {db} OWNER TO {PG_CERT_USER}"
        ),
    )?;
    let dir = tempfile::tempdir()?;
    let (cert, key) = cluster.client_cert(PG_CERT_USER, dir.path())?;

    // Without a certificate the role cannot log in.
    let bare = storage(cluster, PG_CERT_USER, &db, "", &ca);
    let msg = open(PgSettings::from_config(&bare)?)
        .await
        .expect_err("cert authentication")
        .to_string();
    assert!(msg.contains("certificate"), "{msg}");

    // With it, the hub migrates and serves as that role.
    let st = HubStorage {
        client_cert: Some(cert),
        client_key: Some(key),
        ..bare
    };
    let settings = PgSettings::from_config(&st)?;
    assert!(
        matches!(
            &settings.tls,
            PgTls::On {
                mode: PgSslMode::Require,
                ..
            }
        ),
        "{:?}",
        settings.tls
    );
    let mut store = open(settings).await?;
    assert!(
        tokio::task::spawn_blocking(move || store.tls_version())
            .await??
            .is_some()
    );
    let hub = Hub::start_with(st).await?;
    let mut midan = Center::new(&hub, "midan")?;
    midan.new_case(1)?;
    midan.sync().await?;
    assert_eq!(
        cluster.psql(
            &db,
            &format!(
                "SELECT count(DISTINCT usename) FROM pg_stat_activity
                 WHERE application_name = 'markaz-hub' AND datname = '{db}'
                   AND usename = '{PG_CERT_USER}'"
            )
        )?,
        "1"
    );
    Ok(())
}
