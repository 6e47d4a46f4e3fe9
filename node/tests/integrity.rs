//! A database file with bytes flipped in the middle (issue 17.6): the node still starts,
//! refuses every write with a clear JSON error, `/healthz` fails with what was found and
//! the way back, and the login page tells whoever tries to log in.

use crate::support;

use std::time::Duration;

use markaz_node::app::Clock;
use support::{ADMIN_PASSWORD, TestNode};

/// A node's database with an admin, a table of junk making up most of its pages, and the
/// page in the middle of the file overwritten — while the node is stopped.
async fn damaged_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = markaz_config::NodeConfig::default();
    cfg.storage.data_dir = dir.path().to_path_buf();
    cfg.auth.initial_admin_password = Some(ADMIN_PASSWORD.into());
    let app = markaz_node::center::open(&cfg, Clock::System)
        .await
        .unwrap();
    drop(app);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let path = dir.path().join(markaz_node::center::DB_FILE);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE junk(x TEXT);").unwrap();
    let txn = conn.unchecked_transaction().unwrap();
    for i in 0..20_000 {
        txn.execute(
            "INSERT INTO junk VALUES (?1)",
            [format!(
                "junk row {i:08} with some padding to fill pages ................"
            )],
        )
        .unwrap();
    }
    txn.commit().unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    drop(conn);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = (bytes.len() / 4096 / 2) * 4096;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0xA5;
    }
    std::fs::write(&path, bytes).unwrap();
    dir
}

#[tokio::test]
async fn a_damaged_database_refuses_writes_and_says_so() {
    let data = damaged_data_dir().await;
    let db_path = data.path().join(markaz_node::center::DB_FILE);
    let before = std::fs::read(&db_path).unwrap();
    let node = TestNode::start_with(|c| c.storage.data_dir = data.path().to_path_buf()).await;

    let (s, h) = node.raw("GET", "/healthz", None, None).await;
    assert_eq!(s, 503, "{h}");
    assert_eq!(h["status"], "unhealthy");
    assert_eq!(h["integrity"]["state"], "corrupt", "{h}");
    assert!(
        h["integrity"]["problems"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );
    assert!(
        h["integrity"]["what_to_do"]
            .as_str()
            .unwrap()
            .contains("backup")
    );
    assert_eq!(h["writer"]["state"], "refusing", "{h}");

    // Logging in writes a session: refused, with the API's JSON error.
    let (s, b) = node
        .raw(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(s, 503, "{b}");
    assert_eq!(b["error"]["code"], "storage_refused", "{b}");

    let page = reqwest::get(format!("{}/login", node.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"storage-damaged\""),
        "the login page warns"
    );

    drop(node);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        std::fs::read(&db_path).unwrap(),
        before,
        "the damaged file was not written to"
    );
}
