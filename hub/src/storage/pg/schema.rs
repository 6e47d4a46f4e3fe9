//! The hub's tables in PostgreSQL and their versioned migrations. `hub_schema` holds one
//! row per applied version; [`MIGRATIONS`]`[i]` creates version `i + 1`, each in one
//! transaction with its row (DDL is transactional in PostgreSQL). A database whose
//! schema is newer than this program is refused before anything is written.
//!
//! The tables mirror the SQLite hub's (`changes`, `snapshots`, `doc_meta`, `incarnation`;
//! `hub_meta`, `centers`, `routes`, `feed`, `push_acks`; `sync_log`, `sync_sessions`,
//! `center_status`; `hub_counters`; the operators' tables of v3), plus `feed_heads`: each center's feed length, whose
//! row is the lock that numbers its feed. Text keys use the `C` collation, so ids sort
//! byte-wise as in SQLite (repair buckets compare ordered lists).

use postgres::Client;

use crate::storage::StorageError;

/// The session advisory lock held while a process migrates and prepares the database.
pub const SETUP_LOCK: i64 = 0x6d61_726b_617a_0001;

/// Version 1: every hub table.
const V1: &str = r#"
CREATE TABLE changes(
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    doc_id TEXT COLLATE "C" NOT NULL,
    hash BYTEA NOT NULL UNIQUE,
    actor BYTEA NOT NULL,
    local BOOLEAN NOT NULL,
    origin TEXT COLLATE "C",
    bytes BYTEA NOT NULL,
    lane SMALLINT NOT NULL DEFAULT 0);
CREATE INDEX changes_doc ON changes(doc_id, seq);
CREATE TABLE snapshots(
    doc_id TEXT COLLATE "C" PRIMARY KEY,
    bytes BYTEA NOT NULL,
    heads BYTEA NOT NULL,
    upto_seq BIGINT NOT NULL);
CREATE TABLE doc_meta(
    doc_id TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT COLLATE "C" NOT NULL,
    owner TEXT COLLATE "C" NOT NULL,
    heads BYTEA NOT NULL,
    bucket INTEGER NOT NULL,
    last_seq BIGINT NOT NULL);
CREATE INDEX doc_meta_bucket ON doc_meta(bucket);
CREATE INDEX doc_meta_kind ON doc_meta(kind, doc_id);
CREATE TABLE incarnation(
    n BIGINT GENERATED ALWAYS AS IDENTITY,
    actor_id BYTEA PRIMARY KEY,
    center TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL);
CREATE TABLE hub_meta(key TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE centers(center TEXT COLLATE "C" PRIMARY KEY);
CREATE TABLE routes(
    doc_id TEXT COLLATE "C" NOT NULL,
    center TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY(doc_id, center));
CREATE INDEX routes_center ON routes(center, doc_id);
CREATE TABLE feed_heads(center TEXT COLLATE "C" PRIMARY KEY, len BIGINT NOT NULL);
CREATE TABLE feed(
    center TEXT COLLATE "C" NOT NULL,
    fseq BIGINT NOT NULL,
    change_seq BIGINT NOT NULL,
    snapshot_doc TEXT COLLATE "C",
    PRIMARY KEY(center, fseq));
CREATE TABLE push_acks(
    center TEXT COLLATE "C" NOT NULL,
    actor BYTEA NOT NULL,
    acked BIGINT NOT NULL,
    PRIMARY KEY(center, actor));
CREATE TABLE sync_sessions(
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    center TEXT COLLATE "C" NOT NULL, session TEXT NOT NULL, uplink TEXT NOT NULL,
    started_ms BIGINT NOT NULL, last_ms BIGINT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0, errors BIGINT NOT NULL DEFAULT 0,
    bytes_up BIGINT NOT NULL DEFAULT 0, bytes_down BIGINT NOT NULL DEFAULT 0,
    docs_up BIGINT NOT NULL DEFAULT 0, docs_down BIGINT NOT NULL DEFAULT 0,
    changes_up BIGINT NOT NULL DEFAULT 0, changes_down BIGINT NOT NULL DEFAULT 0,
    refused BIGINT NOT NULL DEFAULT 0,
    last_result TEXT NOT NULL DEFAULT 'ok', last_error TEXT,
    skew_ms BIGINT, closed BOOLEAN NOT NULL DEFAULT false,
    UNIQUE(center, session));
CREATE INDEX sync_sessions_center ON sync_sessions(center, id);
CREATE TABLE sync_log(
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    center TEXT COLLATE "C" NOT NULL, uplink TEXT NOT NULL, kind TEXT NOT NULL,
    started_ms BIGINT NOT NULL, ended_ms BIGINT NOT NULL,
    bytes_up BIGINT NOT NULL, bytes_down BIGINT NOT NULL,
    docs_up BIGINT NOT NULL, docs_down BIGINT NOT NULL,
    changes_up BIGINT NOT NULL, changes_down BIGINT NOT NULL,
    refused BIGINT NOT NULL, result TEXT NOT NULL, error TEXT,
    skew_ms BIGINT, cursor BIGINT,
    session_id BIGINT REFERENCES sync_sessions(id) ON DELETE SET NULL);
CREATE INDEX sync_log_center ON sync_log(center, id);
CREATE INDEX sync_log_session ON sync_log(session_id, id);
CREATE TABLE center_status(
    center TEXT COLLATE "C" PRIMARY KEY,
    last_sync_ms BIGINT NOT NULL,
    last_ok_ms BIGINT,
    uplink TEXT NOT NULL,
    cursor BIGINT NOT NULL DEFAULT 0,
    skew_ms BIGINT);
CREATE TABLE hub_counters(name TEXT COLLATE "C" PRIMARY KEY, value BIGINT NOT NULL);
"#;

/// The migrations, in order: entry `i` creates schema version `i + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// v2: what a restore needs (see `markaz_sync::protocol::restore`): the epochs this
/// database has had, the feed floors (every center's feed continues above the highest),
/// and when each center's reported cursor last moved (a backlog that does not drain).
const V2: &str = r#"
CREATE TABLE hub_epochs(epoch TEXT COLLATE "C" PRIMARY KEY);
CREATE TABLE feed_floors(floor BIGINT PRIMARY KEY);
ALTER TABLE center_status ADD COLUMN cursor_ms BIGINT;
INSERT INTO hub_epochs(epoch) SELECT value FROM hub_meta WHERE key='epoch'
    ON CONFLICT DO NOTHING;
"#;

/// v3: operator accounts, their sessions and API tokens, login limits per (username,
/// address) and the audit log ([`super::operators`]).
const V3: &str = r#"
CREATE TABLE hub_operators(
    username TEXT COLLATE "C" PRIMARY KEY,
    full_name TEXT NOT NULL,
    roles TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    language TEXT NOT NULL,
    created_ms BIGINT NOT NULL);
CREATE TABLE hub_operator_sessions(
    token_hash TEXT COLLATE "C" PRIMARY KEY,
    username TEXT COLLATE "C" NOT NULL REFERENCES hub_operators(username) ON DELETE CASCADE,
    created_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL);
CREATE INDEX hub_operator_sessions_user ON hub_operator_sessions(username);
CREATE TABLE hub_api_tokens(
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash TEXT COLLATE "C" NOT NULL UNIQUE,
    username TEXT COLLATE "C" NOT NULL REFERENCES hub_operators(username) ON DELETE CASCADE,
    label TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    last_used_ms BIGINT);
CREATE TABLE hub_login_failures(
    username TEXT COLLATE "C" NOT NULL,
    address TEXT COLLATE "C" NOT NULL,
    failures BIGINT NOT NULL,
    last_ms BIGINT NOT NULL,
    PRIMARY KEY(username, address));
CREATE TABLE hub_audit(
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    operator TEXT COLLATE "C" NOT NULL,
    address TEXT NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    center TEXT COLLATE "C",
    target TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT);
CREATE INDEX hub_audit_operator ON hub_audit(operator, id);
CREATE INDEX hub_audit_center ON hub_audit(center, id);
"#;

/// v4: retention (`[hub] sync_log_days`) deletes by age without reading whole tables.
const V4: &str = r#"
CREATE INDEX sync_log_ended ON sync_log(ended_ms);
CREATE INDEX sync_sessions_last ON sync_sessions(last_ms);
"#;

/// The schema version this program writes.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// The schema version of the database (0: a new database). Writes nothing.
pub fn found_version(client: &mut Client) -> Result<i64, StorageError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('hub_schema') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = client
        .query_one("SELECT max(version) FROM hub_schema", &[])?
        .get(0);
    Ok(i64::from(v.unwrap_or(0)))
}

/// Bring the database to [`schema_version`]; refuse (untouched) a newer one. A new
/// database gets a fresh epoch. Call under [`SETUP_LOCK`].
pub fn migrate(client: &mut Client) -> Result<(), StorageError> {
    let found = found_version(client)?;
    let ours = schema_version();
    if found > ours {
        return Err(StorageError::SchemaTooNew { found, ours });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= found {
            continue;
        }
        let mut tx = client.transaction()?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS hub_schema(
                version INTEGER PRIMARY KEY,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )?;
        tx.batch_execute(sql)?;
        if version == 1 {
            tx.execute(
                "INSERT INTO hub_meta(key, value) VALUES ('epoch', $1)",
                &[&markaz_sync::protocol::new_epoch()],
            )?;
        }
        tx.execute(
            "INSERT INTO hub_schema(version) VALUES ($1)",
            &[&(version as i32)],
        )?;
        tx.commit()?;
        tracing::info!(version, "hub PostgreSQL schema migrated");
    }
    Ok(())
}

/// The hub's actor id on this database: the newest incarnation, or a new one (`hub/` and
/// 16 random bytes) on a new database. Call under [`SETUP_LOCK`].
pub fn incarnation(client: &mut Client, now_ms: i64) -> Result<automerge::ActorId, StorageError> {
    let existing = client.query_opt(
        "SELECT actor_id FROM incarnation ORDER BY created_at_ms DESC, n DESC LIMIT 1",
        &[],
    )?;
    if let Some(r) = existing {
        return Ok(automerge::ActorId::from(r.get::<_, Vec<u8>>(0)));
    }
    let mut bytes = b"hub/".to_vec();
    bytes.extend_from_slice(&rand::random::<[u8; 16]>());
    client.execute(
        "INSERT INTO incarnation(actor_id, center, created_at_ms) VALUES ($1, 'hub', $2)",
        &[&bytes, &now_ms],
    )?;
    Ok(automerge::ActorId::from(bytes))
}
