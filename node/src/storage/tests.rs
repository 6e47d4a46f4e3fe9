use super::*;

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    (dir, path)
}

#[tokio::test]
async fn opens_in_wal_with_full_sync_and_latest_schema() {
    let (_d, path) = tmp();
    let db = Db::open(&path, &StorageOptions::default()).unwrap();
    let (mode, version): (String, i64) = db
        .readers
        .read(|c| -> Result<_, StorageError> {
            Ok((
                c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                c.query_row("PRAGMA user_version", [], |r| r.get(0))?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(version, LATEST_VERSION);
    let sync: i64 = db
        .writer
        .write_sql(|c| c.query_row("PRAGMA synchronous", [], |r| r.get(0)))
        .await
        .unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
}

#[tokio::test]
async fn refuses_a_newer_database_and_leaves_it_untouched() {
    let (_d, path) = tmp();
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE x(a); PRAGMA user_version = 999;")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Db::open(&path, &StorageOptions::default())
        .err()
        .expect("must refuse");
    assert!(
        matches!(err, StorageError::TooNew { found: 999, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer than this markaz supports"));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "file must be untouched"
    );
    assert!(!path.with_extension("db-wal").exists());
}

#[tokio::test]
async fn a_failing_request_rolls_back_alone_inside_a_batch() {
    let (_d, path) = tmp();
    let db = Db::open(&path, &StorageOptions::default()).unwrap();
    let mut handles = Vec::new();
    for i in 0..50i64 {
        let w = db.writer.clone();
        handles.push(tokio::spawn(async move {
            w.write(move |tx| -> Result<(), String> {
                let c = tx.conn;
                c.execute(
                    "INSERT INTO meta(key, value) VALUES (?1, 'x')",
                    [format!("k{i}")],
                )
                .map_err(|e| e.to_string())?;
                if i % 5 == 0 {
                    Err("refused".into())
                } else {
                    Ok(())
                }
            })
            .await
        }));
    }
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(()) => ok += 1,
            Err(WriteError::Work(m)) => assert_eq!(m, "refused"),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 40);
    let n: i64 = db
        .readers
        .read(|c| -> Result<_, StorageError> {
            Ok(c.query_row("SELECT count(*) FROM meta", [], |r| r.get(0))?)
        })
        .await
        .unwrap();
    assert_eq!(
        n, 40,
        "the refused requests' rows were rolled back, the others kept"
    );
}

#[tokio::test]
async fn acknowledged_writes_survive_reopen() {
    let (_d, path) = tmp();
    {
        let db = Db::open(&path, &StorageOptions::default()).unwrap();
        for i in 0..10 {
            db.writer
                .write_sql(move |c| {
                    c.execute(
                        "INSERT INTO meta(key, value) VALUES (?1, 'v')",
                        [format!("a{i}")],
                    )
                })
                .await
                .unwrap();
        }
    }
    let db = Db::open(&path, &StorageOptions::default()).unwrap();
    let n: i64 = db
        .readers
        .read(|c| -> Result<_, StorageError> {
            Ok(c.query_row("SELECT count(*) FROM meta", [], |r| r.get(0))?)
        })
        .await
        .unwrap();
    assert_eq!(n, 10);
}

#[tokio::test]
async fn readers_do_not_wait_for_an_open_write_transaction() {
    let (_d, path) = tmp();
    let db = Db::open(&path, &StorageOptions::default()).unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let w = db.writer.clone();
    let slow = tokio::spawn(async move {
        w.write_sql(move |c| {
            c.execute("INSERT INTO meta(key, value) VALUES ('slow', 'v')", [])?;
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            Ok(())
        })
        .await
    });
    tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
        .await
        .unwrap();
    // The writer holds an open transaction; a read still completes and sees the old state.
    let n: i64 = db
        .readers
        .read(|c| -> Result<_, StorageError> {
            Ok(c.query_row("SELECT count(*) FROM meta", [], |r| r.get(0))?)
        })
        .await
        .unwrap();
    assert_eq!(n, 0);
    release_tx.send(()).unwrap();
    slow.await.unwrap().unwrap();
}
