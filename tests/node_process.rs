//! A real `markaz node` process: what it acknowledged survives SIGKILL, it stops cleanly on
//! SIGTERM, and it refuses a database newer than itself.

use std::time::Duration;

use markaz_e2e::NodeProcess;
use serde_json::json;

#[tokio::test]
async fn acknowledged_tickets_survive_kill_9() {
    let mut node = NodeProcess::start("midan").await.unwrap();
    let api = node.login_admin().await.unwrap();
    // Many terminals issue tickets at once; we kill the process mid-stream.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for _ in 0..200 {
                match api
                    .post(
                        "/tickets",
                        json!({"group": if t % 2 == 0 { "civil" } else { "judicial" }}),
                    )
                    .await
                {
                    Ok((201, b)) => acked.push(b["number"].as_str().unwrap().to_string()),
                    _ => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    node.kill9().await.unwrap();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(
        acked.len() > 10,
        "some writes were acknowledged before the kill ({})",
        acked.len()
    );

    node.spawn().await.unwrap();
    let api = node.login_admin().await.unwrap();
    let (s, waiting) = api.get("/tickets").await.unwrap();
    assert_eq!(s, 200);
    let present: std::collections::HashSet<String> = waiting
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["number"].as_str().unwrap().to_string())
        .collect();
    for n in &acked {
        assert!(
            present.contains(n),
            "acknowledged ticket {n} lost after kill -9"
        );
    }
    // The series continues after the highest stored number, with no duplicates.
    let (_, next) = api
        .post("/tickets", json!({"group": "civil"}))
        .await
        .unwrap();
    assert!(!present.contains(next["number"].as_str().unwrap()));
    let status = node.stop().await.unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}

#[tokio::test]
async fn a_database_newer_than_the_binary_is_refused_and_left_alone() {
    let mut node = NodeProcess::start("qanawat").await.unwrap();
    node.stop().await.unwrap();
    let db = node.dir.path().join("data").join("markaz-node.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA user_version = 9999;").unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let Err(err) = node.spawn().await else {
        panic!("must refuse to start")
    };
    let msg = format!("{err:#}");
    assert!(msg.contains("newer than this markaz supports"), "{msg}");
    assert_eq!(std::fs::read(&db).unwrap(), before);
}
