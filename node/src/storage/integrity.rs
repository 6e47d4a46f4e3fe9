//! Is the database file sound? `PRAGMA quick_check` at start — before serving when the
//! file is small, on a thread of its own when it is large — and a look at the WAL before
//! SQLite opens it.
//!
//! Guarantees: a database found damaged is never written to again by this process: the
//! writer refuses every write ([`super::Writer::refuse`]) and `/healthz` and the
//! technician's status say why. A WAL shorter than its index (`-shm`) says it should be —
//! committed transactions cut off the end of the log, which SQLite silently ignores — is
//! logged as an error with the number of frames missing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// Files up to this size are checked before the node serves; larger ones in the
/// background (quick_check reads the whole file: about a second per 100 MB on a center's
/// SSD).
pub const INLINE_CHECK_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Problems `quick_check` reports at most.
const MAX_PROBLEMS: u32 = 20;

/// What is known of the database file's integrity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// The check is running (a large file, in the background).
    Checking,
    /// `quick_check` said `ok`.
    Ok { took: Duration },
    /// `quick_check` found damage, or could not read the file.
    Corrupt { problems: Vec<String> },
}

impl Integrity {
    pub fn as_str(&self) -> &'static str {
        match self {
            Integrity::Checking => "checking",
            Integrity::Ok { .. } => "ok",
            Integrity::Corrupt { .. } => "corrupt",
        }
    }
}

/// The integrity state shared by the check and whoever reports it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IntegrityState {
    inner: Arc<Mutex<Integrity>>,
    wal: Arc<Option<WalShortfall>>,
}

impl IntegrityState {
    pub(super) fn new(wal: Option<WalShortfall>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Integrity::Checking)),
            wal: Arc::new(wal),
        }
    }

    pub fn get(&self) -> Integrity {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn set(&self, v: Integrity) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }

    /// What the WAL check found at start, if anything was wrong.
    pub fn wal_shortfall(&self) -> Option<&WalShortfall> {
        (*self.wal).as_ref()
    }
}

/// Runs `PRAGMA quick_check` on `conn`.
pub fn quick_check(conn: &Connection) -> Integrity {
    let started = Instant::now();
    let rows = conn
        .prepare(&format!("PRAGMA quick_check({MAX_PROBLEMS})"))
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<String>, _>>()
        });
    match rows {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Integrity::Ok {
            took: started.elapsed(),
        },
        Ok(rows) => Integrity::Corrupt { problems: rows },
        // SQLITE_CORRUPT / SQLITE_NOTADB: the file cannot even be walked.
        Err(e) => Integrity::Corrupt {
            problems: vec![e.to_string()],
        },
    }
}

/// Size of the database file and its WAL.
pub fn stored_bytes(db: &Path) -> u64 {
    let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    len(db) + len(&sidecar(db, "-wal"))
}

fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// A WAL shorter than its index said at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalShortfall {
    /// Frames the index says the WAL holds (committed by the last run).
    pub expected_frames: u32,
    /// Whole frames the WAL file holds.
    pub present_frames: u64,
}

/// Compares the WAL file with the WAL index (`-shm`) the last run left, before anything
/// opens the database (SQLite would rebuild the index from the short WAL and say
/// nothing). Logs and returns a shortfall.
pub fn check_wal(db: &Path) -> Option<WalShortfall> {
    let shm = std::fs::read(sidecar(db, "-shm")).ok()?;
    let wal_len = std::fs::metadata(sidecar(db, "-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    let short = wal_shortfall(&shm, wal_len)?;
    tracing::error!(
        db = %db.display(),
        expected_frames = short.expected_frames,
        present_frames = short.present_frames,
        "the WAL is shorter than its index says: the last committed writes before the stop are lost; \
         compare with the last backup (docs/OPERATIONS.md, \"A damaged database\")"
    );
    Some(short)
}

/// The pure part of [`check_wal`]: `shm` is the start of the WAL index, `wal_len` the
/// WAL file's length. `None` when the index is absent, inconsistent, or satisfied.
///
/// The index header (SQLite's `WalIndexHdr`, native byte order) is stored twice, at 0
/// and 48; `mxFrame` (offset 16) is the last valid frame, `szPage` (offset 14) the page
/// size (1 meaning 65536). A frame is a 24-byte header plus a page, after the WAL's
/// 32-byte header.
pub fn wal_shortfall(shm: &[u8], wal_len: u64) -> Option<WalShortfall> {
    if shm.len() < 96 || shm[..48] != shm[48..96] {
        return None; // no index, or one caught mid-update: nothing to trust
    }
    let u32_at = |o: usize| u32::from_ne_bytes([shm[o], shm[o + 1], shm[o + 2], shm[o + 3]]);
    let is_init = shm[12];
    let sz_page = u16::from_ne_bytes([shm[14], shm[15]]);
    let mx_frame = u32_at(16);
    if is_init == 0 || mx_frame == 0 || sz_page == 0 {
        return None;
    }
    let page = if sz_page == 1 {
        65536
    } else {
        u64::from(sz_page)
    };
    let frame = 24 + page;
    let expected = 32 + u64::from(mx_frame) * frame;
    if wal_len >= expected {
        return None;
    }
    Some(WalShortfall {
        expected_frames: mx_frame,
        present_frames: wal_len.saturating_sub(32) / frame,
    })
}

/// Flips the bits of the first bytes of the page in the middle of the file (a test's
/// damage: a b-tree page whose header no longer parses).
#[cfg(test)]
pub(crate) fn flip_middle_page(path: &Path) {
    let mut bytes = std::fs::read(path).expect("the database file");
    let page = 4096;
    let middle = (bytes.len() / page / 2) * page;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0xA5;
    }
    std::fs::write(path, bytes).expect("writing the damaged file");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database left as a power cut leaves it: WAL and index on disk, not checkpointed.
    fn crashed_db(dir: &Path, rows: usize) -> PathBuf {
        let path = dir.join("crash.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x TEXT);",
        )
        .unwrap();
        for i in 0..rows {
            conn.execute("INSERT INTO t VALUES (?1)", [format!("row {i}")])
                .unwrap();
        }
        // No close, no checkpoint: the files stay as a crash leaves them.
        std::mem::forget(conn);
        path
    }

    #[test]
    fn a_truncated_wal_is_found_and_an_intact_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = crashed_db(dir.path(), 40);
        assert_eq!(check_wal(&db), None, "the WAL as written is whole");

        let wal = sidecar(&db, "-wal");
        let len = std::fs::metadata(&wal).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
        f.set_len(len / 2).unwrap();
        let short = check_wal(&db).expect("a WAL cut in half is reported");
        assert!(short.expected_frames >= 40, "{short:?}");
        assert!(short.present_frames < u64::from(short.expected_frames));

        std::fs::remove_file(&wal).unwrap();
        let gone = check_wal(&db).expect("a deleted WAL is reported");
        assert_eq!(gone.present_frames, 0);
    }

    #[test]
    fn no_index_or_a_torn_index_says_nothing() {
        assert_eq!(wal_shortfall(&[], 0), None);
        let mut shm = vec![0u8; 136];
        shm[12] = 1;
        shm[14..16].copy_from_slice(&4096u16.to_ne_bytes());
        shm[16..20].copy_from_slice(&3u32.to_ne_bytes());
        let copy = shm[..48].to_vec();
        shm[48..96].copy_from_slice(&copy);
        assert_eq!(
            wal_shortfall(&shm, 32 + 2 * (24 + 4096)),
            Some(WalShortfall {
                expected_frames: 3,
                present_frames: 2
            })
        );
        assert_eq!(wal_shortfall(&shm, 32 + 3 * (24 + 4096)), None);
        shm[60] ^= 1; // the second copy differs: an update was torn
        assert_eq!(wal_shortfall(&shm, 0), None);
    }

    #[test]
    fn quick_check_finds_flipped_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flip.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE t(x TEXT); CREATE INDEX t_x ON t(x);")
                .unwrap();
            let txn = conn.unchecked_transaction().unwrap();
            for i in 0..3000 {
                txn.execute("INSERT INTO t VALUES (?1)", [format!("row {i:06} padding")])
                    .unwrap();
            }
            txn.commit().unwrap();
            assert!(matches!(quick_check(&conn), Integrity::Ok { .. }));
        }
        flip_middle_page(&path);
        let conn = Connection::open(&path).unwrap();
        match quick_check(&conn) {
            Integrity::Corrupt { problems } => assert!(!problems.is_empty()),
            other => panic!("flipped bytes not found: {other:?}"),
        }
    }
}
