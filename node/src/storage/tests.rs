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

async fn meta_count(db: &Db) -> i64 {
    db.readers
        .read(|c| -> Result<_, StorageError> {
            Ok(c.query_row("SELECT count(*) FROM meta", [], |r| r.get(0))?)
        })
        .await
        .unwrap()
}

/// A job that panics on the writer thread (a bug in a use case) is rolled back alone and
/// answered with an error; the thread goes on and the next write commits — no restart of
/// the process.
#[tokio::test]
async fn the_writer_survives_a_panicking_job() {
    let (_d, path) = tmp();
    let db = Db::open(&path, &StorageOptions::default()).unwrap();
    assert_eq!(db.writer.health().state, WriterState::Ok);
    let panicked = db
        .writer
        .write_sql(|c| -> Result<(), rusqlite::Error> {
            c.execute("INSERT INTO meta(key, value) VALUES ('doomed', 'v')", [])?;
            panic!("a bug in a use case");
        })
        .await;
    assert!(
        matches!(panicked, Err(StorageError::NotCommitted)),
        "{panicked:?}"
    );
    db.writer
        .write_sql(|c| c.execute("INSERT INTO meta(key, value) VALUES ('after', 'v')", []))
        .await
        .expect("the writer still commits");
    assert_eq!(db.writer.health().state, WriterState::Ok);
    assert_eq!(
        meta_count(&db).await,
        1,
        "the panicked job's row was rolled back"
    );
}

/// Jobs batched with panicking ones are not lost: each is answered, every one answered
/// `Ok` is on disk, and only the panicking ones are not.
#[tokio::test]
async fn jobs_around_a_panic_are_answered_and_none_acknowledged_is_lost() {
    let (_d, path) = tmp();
    let db = Db::open(&path, &StorageOptions::default()).unwrap();
    let mut handles = Vec::new();
    for i in 0..60i64 {
        let w = db.writer.clone();
        handles.push(tokio::spawn(async move {
            w.write_sql(move |c| {
                c.execute(
                    "INSERT INTO meta(key, value) VALUES (?1, 'x')",
                    [format!("k{i}")],
                )?;
                if i % 20 == 7 {
                    panic!("job {i} panics");
                }
                Ok(())
            })
            .await
            .map(|_| i)
        }));
    }
    let mut acknowledged = Vec::new();
    for h in handles {
        match h.await.unwrap() {
            Ok(i) => acknowledged.push(format!("k{i}")),
            Err(StorageError::NotCommitted) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(acknowledged.len(), 57, "all but the 3 panicking jobs");
    let stored: Vec<String> = db
        .readers
        .read(|c| -> Result<_, StorageError> {
            let mut st = c.prepare("SELECT key FROM meta ORDER BY key")?;
            let keys = st
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(keys)
        })
        .await
        .unwrap();
    acknowledged.sort();
    assert_eq!(
        stored, acknowledged,
        "exactly the acknowledged rows are stored"
    );
    assert_eq!(db.writer.health().state, WriterState::Ok);
}

/// A writer told to refuse (a corrupt database) answers every write with `Refused` and
/// writes nothing.
#[tokio::test]
async fn a_refusing_writer_writes_nothing() {
    let (_d, path) = tmp();
    let db = Db::open(&path, &StorageOptions::default()).unwrap();
    db.writer.refuse("the database is corrupt");
    let r = db
        .writer
        .write_sql(|c| c.execute("INSERT INTO meta(key, value) VALUES ('x', 'v')", []))
        .await;
    assert!(matches!(r, Err(StorageError::Refused(_))), "{r:?}");
    assert_eq!(db.writer.health().state, WriterState::Refusing);
    assert_eq!(meta_count(&db).await, 0);
}

/// A database file with a table of junk rows making up most of its pages, checkpointed
/// and closed; then the page in the middle of the file is overwritten.
fn corrupt_db(path: &Path) {
    {
        let db = Db::open(path, &StorageOptions::default()).unwrap();
        drop(db);
        // The writer thread closes its connection once its handles are gone.
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let conn = Connection::open(path).unwrap();
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
    integrity::flip_middle_page(path);
}

#[tokio::test]
async fn a_damaged_file_found_before_serving_refuses_every_write() {
    let (_d, path) = tmp();
    corrupt_db(&path);
    let db = Db::open(&path, &StorageOptions::default()).expect("a damaged file still opens");
    assert!(
        matches!(db.integrity.get(), integrity::Integrity::Corrupt { .. }),
        "{:?}",
        db.integrity.get()
    );
    let before = std::fs::read(&path).unwrap();
    let r = db
        .writer
        .write_sql(|c| c.execute("INSERT INTO meta(key, value) VALUES ('x', 'v')", []))
        .await;
    assert!(matches!(r, Err(StorageError::Refused(_))), "{r:?}");
    assert_eq!(db.writer.health().state, WriterState::Refusing);
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing written");
}

#[tokio::test]
async fn a_large_file_is_checked_in_the_background_and_then_refuses_writes() {
    let (_d, path) = tmp();
    corrupt_db(&path);
    let opts = StorageOptions {
        inline_check_max_bytes: 0,
        ..StorageOptions::default()
    };
    let db = Db::open(&path, &opts).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !matches!(db.integrity.get(), integrity::Integrity::Corrupt { .. }) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            db.integrity.get()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let r = db
        .writer
        .write_sql(|c| c.execute("INSERT INTO meta(key, value) VALUES ('x', 'v')", []))
        .await;
    assert!(matches!(r, Err(StorageError::Refused(_))), "{r:?}");
}

#[tokio::test]
async fn a_sound_file_checks_ok() {
    let (_d, path) = tmp();
    let db = Db::open(&path, &StorageOptions::default()).unwrap();
    assert!(matches!(
        db.integrity.get(),
        integrity::Integrity::Ok { .. }
    ));
}

/// The actor id of the incarnation the writer uses.
async fn actor_of(db: &Db) -> Vec<u8> {
    db.writer
        .write(|tx| Ok::<_, StorageError>(tx.docs.actor().to_bytes().to_vec()))
        .await
        .unwrap()
}

/// A copy of a database file (a backup put back) is a new incarnation whose numbers are
/// unconfirmed, even with no hub to tell; the original reopened is the same one.
#[tokio::test]
async fn a_copy_of_the_file_is_a_new_incarnation() {
    let (dir, path) = tmp();
    let first = {
        let db = Db::open(&path, &StorageOptions::default()).unwrap();
        let actor = actor_of(&db).await;
        // Numbers this database handed out were confirmed (a legacy database, say).
        db.writer
            .write_sql(|c| {
                c.execute(
                    "INSERT INTO meta(key, value) VALUES ('numbering.confirmed', 'legacy')",
                    [],
                )
            })
            .await
            .unwrap();
        drop(db);
        std::thread::sleep(std::time::Duration::from_millis(300));
        actor
    };
    let backup = dir.path().join("backup.db");
    std::fs::copy(&path, &backup).unwrap();
    {
        let db = Db::open(&path, &StorageOptions::default()).unwrap();
        assert_eq!(
            actor_of(&db).await,
            first,
            "the same file, the same incarnation"
        );
        drop(db);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // The disk is replaced; the backup is put back as the database.
    std::fs::remove_file(&path).unwrap();
    std::fs::copy(&backup, &path).unwrap();
    let db = Db::open(&path, &StorageOptions::default()).unwrap();
    assert_ne!(actor_of(&db).await, first, "a copy is a new incarnation");
    let (confirmed, logged): (i64, i64) = db
        .readers
        .read(|c| -> Result<_, StorageError> {
            Ok((
                c.query_row(
                    "SELECT count(*) FROM meta WHERE key = 'numbering.confirmed'",
                    [],
                    |r| r.get(0),
                )?,
                c.query_row(
                    "SELECT count(*) FROM node_log WHERE source = 'storage' AND level = 'warn'",
                    [],
                    |r| r.get(0),
                )?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(confirmed, 0, "a copy's numbers are not confirmed");
    assert_eq!(logged, 1, "the node log says why");
}

/// Each job is timed on its own: a long job shows as the longest (what the others waited
/// behind), and taking it starts the measure again.
#[tokio::test]
async fn the_writer_times_each_job_and_keeps_the_longest() {
    let (_d, path) = tmp();
    let db = Db::open(&path, &StorageOptions::default()).unwrap();
    db.writer
        .write_sql(|c| c.execute("INSERT INTO meta(key, value) VALUES ('quick', 'v')", []))
        .await
        .unwrap();
    let _ = db.writer.metrics().take_longest_job();
    db.writer
        .write_sql(|c| {
            std::thread::sleep(std::time::Duration::from_millis(40));
            c.execute("INSERT INTO meta(key, value) VALUES ('slow', 'v')", [])
        })
        .await
        .unwrap();
    let longest = db.writer.metrics().take_longest_job();
    assert!(
        longest >= std::time::Duration::from_millis(40),
        "{longest:?}"
    );
    assert!(
        db.writer.metrics().take_longest_job() < std::time::Duration::from_millis(40),
        "taken: the measure starts again"
    );
}
