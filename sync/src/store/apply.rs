//! The parallel path of [`DocStore::apply_remote`]: a large batch is applied to its
//! documents on a second thread while the thread that owns the connection stores the rows.
//!
//! The connection never leaves its thread. It reads what each document starts from (the
//! cached document, or its stored rows) and queues it as a job. The apply thread parses
//! every change first and reports each one's hash and actor back, so the rows are stored
//! while automerge works; then it takes jobs: builds the document, applies its changes as
//! one batch, and reads its heads and what `inspect` asks. Once the rows are stored, the
//! connection's thread takes jobs from the same queue too, so both cores finish them.
//! Documents the cache evicts afterwards are freed on a short-lived thread.
//!
//! The result is the serial path's, with one difference in *when* a change is decided:
//! the serial path asks the database about each change before it touches the document.
//! Here, so that nothing waits, the apply thread applies every change of the batch and
//! the rows are stored with `INSERT OR IGNORE`; a change already stored for the same
//! document is a no-op for automerge too. Whenever the two could differ, the rows just
//! stored are deleted again and the serial path takes the whole batch:
//! - automerge refuses a document's batch (the serial path keeps the changes before the
//!   bad one and reports exactly that one);
//! - a change's hash is already stored for *another* document;
//! - a snapshot does not load (the serial path rebuilds from every change).

use std::collections::HashMap;
use std::sync::{Mutex, mpsc};

use automerge::{ActorId, AutoCommit, Change, ChangeHash};

use super::docstore::{Cached, build_doc, still_pending};
use super::rows::{ChangeRow, DocMeta, DocRows, StoredDoc};
use super::{ApplyReport, DocStore, Result, StoreError, StoredChange, WireChange};
use crate::docs::DocId;

/// Batches from this many changes up are applied on a second thread.
pub const PARALLEL_MIN: usize = 32;

/// Most rows stored in one [`DocRows::insert_changes`] call.
const STORE_CHUNK: usize = 512;

/// Where a document of the batch starts from.
enum Start {
    /// In memory and current.
    Cached(Box<AutoCommit>),
    /// To build from its stored rows.
    Stored(StoredDoc),
    /// No rows yet.
    New,
}

/// One document of the batch: where it starts and its changes (indices into the batch,
/// in order).
struct Job {
    /// Its place in the batch's list of documents.
    k: usize,
    id: DocId,
    start: Start,
    changes: Vec<usize>,
}

/// The documents still to build and update, taken by whichever thread is free.
type Jobs = Mutex<mpsc::Receiver<Job>>;

/// The parsed changes of the batch, by index, each taken by the job of its document.
type ParsedChanges = [Mutex<Option<Change>>];

/// What the apply thread reports of one change as soon as it is parsed.
struct Parsed {
    hash: ChangeHash,
    actor: Vec<u8>,
    /// The change's own bytes when they differ from what was sent (never, for a change
    /// that parsed from exactly its bytes).
    raw: Option<Vec<u8>>,
}

/// A document after its batch.
struct Applied<R> {
    doc: AutoCommit,
    heads: Vec<ChangeHash>,
    /// Changes of the batch still waiting for their dependencies.
    pending: Vec<ChangeHash>,
    seen: Option<R>,
}

/// A job's document after its batch, with its place (`None`: take the serial path).
type Taken<R> = Option<(usize, Applied<R>)>;

/// A document as the storing side tracks it.
struct Track {
    id: DocId,
    /// Hash of its newest row (before the batch, then its newest stored change).
    last: Option<Vec<u8>>,
    /// Highest seq stored for it in this batch (0: none).
    top: u64,
}

impl DocStore {
    /// Apply `changes` with the document work on a second thread. `None` means "take the
    /// serial path" (see the module docs): the rows this call stored are deleted again.
    pub(super) fn apply_parallel<R: Send>(
        &mut self,
        conn: &dyn DocRows,
        changes: &[WireChange],
        inspect: fn(&DocId, &AutoCommit) -> Option<R>,
    ) -> Result<Option<(ApplyReport, HashMap<DocId, R>)>> {
        // The batch's documents in first-seen order, with their changes.
        let mut index: HashMap<&DocId, usize> = HashMap::new();
        let mut groups: Vec<(&DocId, Vec<usize>)> = Vec::new();
        for (i, wc) in changes.iter().enumerate() {
            let k = *index.entry(&wc.doc_id).or_insert_with(|| {
                groups.push((&wc.doc_id, Vec::new()));
                groups.len() - 1
            });
            groups[k].1.push(i);
        }
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let jobs: Jobs = Mutex::new(job_rx);
        let parsed: Vec<Mutex<Option<Change>>> = changes.iter().map(|_| Mutex::new(None)).collect();
        let (parsed_tx, parsed_rx) = mpsc::channel::<(usize, Result<Parsed, String>)>();
        let actor = self.actor.clone();
        std::thread::scope(|s| {
            let (jobs, parsed, actor) = (&jobs, &parsed[..], &actor);
            let Ok(worker) = std::thread::Builder::new()
                .name("doc-apply".into())
                .spawn_scoped(s, move || {
                    if !parse_all(changes, parsed, parsed_tx) {
                        return Ok(vec![None]);
                    }
                    take_jobs(jobs, parsed, inspect, actor, true)
                })
            else {
                return Ok(None);
            };
            // Each document's starting point, handed over as soon as it is read.
            let mut tracks: Vec<Track> = Vec::with_capacity(groups.len());
            for (id, idx) in groups {
                let last = conn.last_hash(id)?;
                let start = match self.cache.pop(id) {
                    Some(c) if c.last == last => Start::Cached(Box::new(c.doc)),
                    _ if last.is_none() => Start::New,
                    _ => Start::Stored(conn.stored_doc(id, true)?),
                };
                tracks.push(Track {
                    id: id.clone(),
                    last,
                    top: 0,
                });
                let job = Job {
                    k: tracks.len() - 1,
                    id: id.clone(),
                    start,
                    changes: idx,
                };
                if job_tx.send(job).is_err() {
                    break;
                }
            }
            drop(job_tx);
            // Store the rows as the apply thread parses them (in batch order).
            let mut report = ApplyReport::default();
            report.stored.reserve(changes.len());
            let mut other_doc = false;
            while let Ok(first) = parsed_rx.recv() {
                // What has been parsed by now, stored in one call (one statement on an
                // engine with costly round trips); the rest is parsed meanwhile.
                let mut chunk = vec![first];
                while chunk.len() < STORE_CHUNK {
                    match parsed_rx.try_recv() {
                        Ok(next) => chunk.push(next),
                        Err(_) => break,
                    }
                }
                let mut rows = Vec::with_capacity(chunk.len());
                let mut at = Vec::with_capacity(chunk.len());
                for (i, parsed) in &chunk {
                    let wc = &changes[*i];
                    match parsed {
                        Ok(p) => {
                            rows.push(ChangeRow {
                                doc_id: &wc.doc_id,
                                hash: &p.hash,
                                actor: &p.actor,
                                local: false,
                                origin: self.origin(),
                                bytes: p.raw.as_deref().unwrap_or(&wc.bytes),
                            });
                            at.push((*i, p.hash));
                        }
                        Err(why) => {
                            report.rejected.push((wc.doc_id.to_string(), why.clone()));
                            report.rejected_hashes.push(String::new());
                        }
                    }
                }
                let seqs = conn.insert_changes(&rows)?;
                drop(rows);
                for ((i, hash), seq) in at.into_iter().zip(seqs) {
                    let wc = &changes[i];
                    let Some(seq) = seq else {
                        report.duplicates += 1;
                        let owner = conn.change_doc(&hash)?;
                        other_doc |= owner.as_deref() != Some(wc.doc_id.as_str());
                        continue;
                    };
                    let t = &mut tracks[index[&wc.doc_id]];
                    if t.top == 0 {
                        report.touched.push(wc.doc_id.clone());
                    }
                    t.top = seq;
                    t.last = Some(hash.0.to_vec());
                    report.stored.push(StoredChange {
                        seq,
                        doc_id: wc.doc_id.clone(),
                        hash,
                    });
                }
            }
            // Every change is parsed by now: help with the documents left.
            let mine = take_jobs(jobs, parsed, inspect, actor, false)?;
            let theirs = worker
                .join()
                .map_err(|_| StoreError::Corrupt("the document apply thread panicked".into()))??;
            let mut applied: Vec<Option<Applied<R>>> = tracks.iter().map(|_| None).collect();
            for (k, a) in mine.into_iter().chain(theirs).flatten() {
                applied[k] = Some(a);
            }
            let applied: Option<Vec<Applied<R>>> = applied.into_iter().collect();
            let (Some(applied), false) = (applied, other_doc) else {
                // Nothing else was written yet: the rows go, the documents taken from
                // the cache are dropped, and the serial path starts from the database.
                let seqs: Vec<u64> = report.stored.iter().map(|s| s.seq).collect();
                conn.delete_changes(&seqs)?;
                return Ok(None);
            };
            let mut seen = HashMap::new();
            let mut evicted: Vec<Cached> = Vec::new();
            let mut metas: Vec<(DocId, Vec<ChangeHash>, u64)> = Vec::new();
            for (t, a) in tracks.into_iter().zip(applied) {
                let Applied {
                    mut doc,
                    heads,
                    pending,
                    seen: s,
                } = a;
                // Counted as the serial path does: only changes stored by this batch.
                report.pending += pending
                    .iter()
                    .filter(|h| report.stored.iter().any(|s| s.hash == **h))
                    .count();
                if t.top > 0 {
                    metas.push((t.id.clone(), heads, t.top));
                    if let Some(s) = s {
                        seen.insert(t.id.clone(), s);
                    }
                }
                doc.set_actor(self.actor.clone());
                if let Some((_, old)) = self.cache.push(t.id, Cached { doc, last: t.last }) {
                    evicted.push(old);
                }
            }
            let metas: Vec<DocMeta<'_>> = metas
                .iter()
                .map(|(id, heads, seq)| DocMeta {
                    doc_id: id,
                    heads,
                    seq: *seq,
                })
                .collect();
            conn.put_meta(&metas)?;
            // Freeing a thousand documents takes the writer a good part of a batch's
            // time: another thread does it.
            if !evicted.is_empty() {
                let _ = std::thread::Builder::new()
                    .name("doc-drop".into())
                    .spawn(move || drop(evicted));
            }
            #[cfg(test)]
            tests::PARALLEL_DONE.with(|n| n.set(n.get() + 1));
            Ok(Some((report, seen)))
        })
    }
}

/// Parse every change of the batch into `parsed`, reporting each (in order) to the
/// storing side. `false` when that side stopped listening (its error is the answer).
fn parse_all(
    changes: &[WireChange],
    parsed: &ParsedChanges,
    parsed_tx: mpsc::Sender<(usize, Result<Parsed, String>)>,
) -> bool {
    for (i, wc) in changes.iter().enumerate() {
        let msg = match Change::try_from(wc.bytes.as_slice()) {
            Ok(c) => {
                let raw = (c.raw_bytes() != wc.bytes.as_slice()).then(|| c.raw_bytes().to_vec());
                let p = Parsed {
                    hash: c.hash(),
                    actor: c.actor_id().to_bytes().to_vec(),
                    raw,
                };
                *lock(&parsed[i]) = Some(c);
                Ok(p)
            }
            Err(e) => Err(format!("undecodable change: {e}")),
        };
        if parsed_tx.send((i, msg)).is_err() {
            return false;
        }
    }
    true
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere poisons nothing this code relies on: the data is plain.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Build and update documents from the shared queue until it is empty (`wait`: also
/// while more may come). `None` in the list: automerge refused a batch or a snapshot did
/// not load, so the whole batch takes the serial path.
fn take_jobs<R>(
    jobs: &Jobs,
    parsed: &ParsedChanges,
    inspect: fn(&DocId, &AutoCommit) -> Option<R>,
    actor: &ActorId,
    wait: bool,
) -> Result<Vec<Taken<R>>> {
    let mut out = Vec::new();
    loop {
        let job = {
            let rx = lock(jobs);
            if wait {
                rx.recv().ok()
            } else {
                rx.try_recv().ok()
            }
        };
        let Some(job) = job else {
            return Ok(out);
        };
        let k = job.k;
        match apply_job(job, parsed, inspect, actor)? {
            Some(a) => out.push(Some((k, a))),
            None => {
                out.push(None);
                return Ok(out);
            }
        }
    }
}

/// Build one document and apply its changes as one batch.
fn apply_job<R>(
    job: Job,
    parsed: &ParsedChanges,
    inspect: fn(&DocId, &AutoCommit) -> Option<R>,
    actor: &ActorId,
) -> Result<Option<Applied<R>>> {
    let mut doc = match job.start {
        Start::Cached(d) => *d,
        Start::New => AutoCommit::new().with_actor(actor.clone()),
        Start::Stored(rows) => match build_doc(&job.id, rows)? {
            Some(d) => d,
            None => return Ok(None),
        },
    };
    let batch: Vec<Change> = job
        .changes
        .iter()
        .filter_map(|&i| lock(&parsed[i]).take())
        .collect();
    let mut hashes: Vec<ChangeHash> = batch.iter().map(Change::hash).collect();
    // A change sent twice is stored once.
    hashes.sort_unstable();
    hashes.dedup();
    if doc.apply_changes(batch).is_err() {
        return Ok(None);
    }
    let heads = doc.get_heads();
    let pending = still_pending(&mut doc, &hashes);
    let seen = inspect(&job.id, &doc);
    Ok(Some(Applied {
        doc,
        heads,
        pending,
        seen,
    }))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use automerge::{ActorId, AutoCommit};
    use proptest::prelude::*;
    use rusqlite::Connection;

    use super::super::tests::db;
    use super::super::{ApplyReport, DocStore, WireChange, decode_heads, incarnation};
    use crate::docs::{self, DocId, DocKind};

    thread_local! {
        /// Batches this thread finished on the parallel path.
        pub static PARALLEL_DONE: Cell<usize> = const { Cell::new(0) };
    }

    fn day(k: usize) -> jiff::civil::Date {
        jiff::civil::date(2026, 1, 1 + k as i8)
    }

    /// `docs` metrics documents of one source, each created then changed `edits` times.
    fn source(docs_n: usize, edits: usize) -> Vec<(DocId, Vec<WireChange>)> {
        let c: crate::model::ids::CenterId = "midan".parse().unwrap();
        (0..docs_n)
            .map(|k| {
                let id = DocId::stats(&c, day(k));
                let mut d = AutoCommit::new().with_actor(ActorId::from(b"midan/1".to_vec()));
                docs::create_metrics(&mut d, DocKind::Stats, &c, day(k)).unwrap();
                let mut out = Vec::new();
                for e in 0..=edits {
                    if e > 0 {
                        docs::set_metric(&mut d, "tickets", e as i64).unwrap();
                    }
                    d.commit();
                    out.push(WireChange {
                        doc_id: id.clone(),
                        bytes: d.get_last_local_change().unwrap().raw_bytes().to_vec(),
                    });
                }
                (id, out)
            })
            .collect()
    }

    fn rows(c: &Connection, sql: &str) -> Vec<Vec<rusqlite::types::Value>> {
        let mut st = c.prepare(sql).unwrap();
        let n = st.column_count();
        st.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[derive(Debug, Clone)]
    struct Case {
        docs: usize,
        edits: usize,
        /// Changes of each document already stored before the batch.
        history: usize,
        /// Compact the documents with a history first.
        snapshot: bool,
        /// Keep the documents in memory between history and batch.
        warm: bool,
        /// Interleaving of the batch.
        order: Vec<u32>,
        junk: Option<usize>,
        dup: Option<usize>,
        /// A change sent again under another document's id.
        foreign: Option<usize>,
        /// A second change with an existing (actor, seq): automerge refuses it.
        refused: bool,
        /// A change left out: its document's later changes wait for it.
        missing: Option<usize>,
    }

    prop_compose! {
        fn case()(
            docs in 4usize..8,
            edits in 10usize..16,
            history in 0usize..4,
            snapshot in any::<bool>(),
            warm in any::<bool>(),
            order in proptest::collection::vec(any::<u32>(), 100),
            junk in proptest::option::of(0usize..200),
            dup in proptest::option::of(0usize..200),
            foreign in proptest::option::weighted(0.2, 0usize..200),
            refused in proptest::bool::weighted(0.2),
            missing in proptest::option::of(0usize..200),
        ) -> Case {
            Case { docs, edits, history, snapshot, warm, order, junk, dup, foreign, refused, missing }
        }
    }

    /// The database (history stored) and the batch of a case.
    fn setup(case: &Case) -> (Connection, DocStore, Vec<WireChange>) {
        let conn = db();
        let mut store = DocStore::new(incarnation(&conn, "hub", 0).unwrap(), 64);
        let src = source(case.docs, case.edits);
        let mut batch = Vec::new();
        for (id, changes) in &src {
            let (old, new) = changes.split_at(case.history.min(changes.len()));
            if !old.is_empty() {
                store.apply_serial(&conn, old).unwrap();
                if case.snapshot {
                    store.compact(&conn, id).unwrap();
                }
            }
            batch.extend(new.iter().map(|w| WireChange {
                doc_id: w.doc_id.clone(),
                bytes: w.bytes.clone(),
            }));
        }
        if !case.warm {
            store.clear_cache();
        }
        // A deterministic interleaving (a change may come before its dependencies).
        let mut keyed: Vec<(u32, WireChange)> = batch
            .into_iter()
            .enumerate()
            .map(|(i, w)| (case.order[i % case.order.len()].wrapping_add(i as u32), w))
            .collect();
        keyed.sort_by_key(|(k, _)| *k);
        let mut batch: Vec<WireChange> = keyed.into_iter().map(|(_, w)| w).collect();
        if let Some(i) = case.missing {
            batch.remove(i % batch.len());
        }
        let n = batch.len();
        if let Some(i) = case.dup {
            let w = &batch[i % n];
            let again = WireChange {
                doc_id: w.doc_id.clone(),
                bytes: w.bytes.clone(),
            };
            batch.push(again);
        }
        if let Some(i) = case.foreign {
            let w = &batch[i % n];
            let other = src
                .iter()
                .map(|(id, _)| id)
                .find(|id| **id != w.doc_id)
                .unwrap();
            let moved = WireChange {
                doc_id: other.clone(),
                bytes: w.bytes.clone(),
            };
            batch.insert((i % n) + 1, moved);
        }
        if let Some(i) = case.junk {
            batch.insert(
                i % n,
                WireChange {
                    doc_id: src[0].0.clone(),
                    bytes: vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3],
                },
            );
        }
        if case.refused {
            // The first change again, with other content: same actor and seq.
            let c: crate::model::ids::CenterId = "midan".parse().unwrap();
            let mut d = AutoCommit::new().with_actor(ActorId::from(b"midan/1".to_vec()));
            docs::create_metrics(&mut d, DocKind::Stats, &c, day(0)).unwrap();
            docs::set_metric(&mut d, "other", 7).unwrap();
            d.commit();
            batch.push(WireChange {
                doc_id: src[0].0.clone(),
                bytes: d.get_last_local_change().unwrap().raw_bytes().to_vec(),
            });
        }
        (conn, store, batch)
    }

    fn outcome(
        conn: &Connection,
        store: &mut DocStore,
        r: &ApplyReport,
        ids: &[DocId],
    ) -> (
        String,
        Vec<Vec<rusqlite::types::Value>>,
        Vec<Vec<rusqlite::types::Value>>,
    ) {
        let mut heads = Vec::new();
        for id in ids {
            heads.push(store.heads(conn, id).unwrap());
        }
        store.clear_cache();
        for (id, h) in ids.iter().zip(&heads) {
            assert_eq!(
                &store.heads(conn, id).unwrap(),
                h,
                "{id} reloads to its heads"
            );
        }
        for row in rows(conn, "SELECT doc_id, heads FROM doc_meta") {
            let (rusqlite::types::Value::Text(id), rusqlite::types::Value::Blob(h)) =
                (&row[0], &row[1])
            else {
                panic!("doc_meta row {row:?}");
            };
            let id: DocId = id.parse().unwrap();
            assert_eq!(
                decode_heads(h).unwrap(),
                store.heads(conn, &id).unwrap(),
                "doc_meta of {id}"
            );
        }
        (
            format!("{r:?} {heads:?}"),
            rows(
                conn,
                "SELECT seq, doc_id, hex(hash), hex(actor), local, origin, hex(bytes), lane FROM changes ORDER BY seq",
            ),
            rows(conn, "SELECT * FROM doc_meta ORDER BY doc_id"),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// A batch applied on two threads gives what the serial path gives: the same
        /// report, the same rows in the same order, the same `doc_meta`, the same heads
        /// in memory and after a reload; and it really took the parallel path unless a
        /// change forces the serial one.
        #[test]
        fn the_parallel_path_gives_the_serial_result(case in case()) {
            let (a, mut sa, batch) = setup(&case);
            let (b, mut sb, batch_b) = setup(&case);
            prop_assume!(batch.len() >= super::PARALLEL_MIN);
            let ids: Vec<DocId> = (0..case.docs)
                .map(|k| DocId::stats(&"midan".parse().unwrap(), day(k)))
                .collect();
            let before = PARALLEL_DONE.with(Cell::get);
            a.execute_batch("BEGIN").unwrap();
            let ra = sa.apply_remote(&a, &batch).unwrap();
            a.execute_batch("COMMIT").unwrap();
            let took = PARALLEL_DONE.with(Cell::get) - before;
            let rb = sb.apply_serial(&b, &batch_b).unwrap();
            // A change under another document's id always takes the serial path; a
            // refused one does unless the change it collides with was left out.
            if case.foreign.is_some() {
                prop_assert_eq!(took, 0);
            } else if !case.refused {
                prop_assert_eq!(took, 1);
            }
            prop_assert_eq!(&ra.stored, &rb.stored);
            prop_assert_eq!(
                (ra.duplicates, &ra.rejected, &ra.rejected_hashes, ra.pending, &ra.touched),
                (rb.duplicates, &rb.rejected, &rb.rejected_hashes, rb.pending, &rb.touched)
            );
            let (oa, ob) = (outcome(&a, &mut sa, &ra, &ids), outcome(&b, &mut sb, &rb, &ids));
            prop_assert_eq!(oa.0, ob.0, "heads");
            prop_assert_eq!(oa.1, ob.1, "changes rows");
            prop_assert_eq!(oa.2, ob.2, "doc_meta rows");
            if case.junk.is_some() {
                prop_assert!(ra.rejected.iter().any(|(_, why)| why.starts_with("undecodable")));
            }
            if case.refused && case.missing.is_none() {
                prop_assert_eq!(ra.rejected.len(), 1 + usize::from(case.junk.is_some()));
            }
        }
    }
}
