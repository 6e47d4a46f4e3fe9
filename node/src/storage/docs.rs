//! The automerge document store of the writer thread.
//!
//! Documents are edited only inside write transactions, and those all run on the one
//! writer thread, which owns the [`DocStore`](markaz_sync::store::DocStore) (with its LRU
//! of loaded documents) and hands it to each job as `tx.docs` beside `tx.conn`
//! ([`super::writer::WriteTx`]). A use case stores a document's new change in the same
//! transaction as the SQL projection rows it rewrites — a query never sees a state the
//! documents don't have.

/// How many documents the writer keeps loaded (a small resident document costs ~20 KB).
pub const DOC_CACHE: usize = 256;
