//! The automerge document store of the writer thread.
//!
//! Documents are edited only inside write transactions, and those all run on the one
//! writer thread; so the [`DocStore`] (with its LRU of loaded documents) lives in a
//! thread-local of that thread. A use case's write closure reaches it with [`with_docs`]
//! and stores a document's new change in the same transaction as the SQL projection rows
//! it rewrites — a query never sees a state the documents don't have.

use std::cell::RefCell;

use markaz_sync::store::DocStore;

use super::StorageError;

/// How many documents the writer keeps loaded (a small resident document costs ~20 KB).
pub const DOC_CACHE: usize = 256;

thread_local! {
    static DOCS: RefCell<Option<DocStore>> = const { RefCell::new(None) };
}

/// Installs the store on the current (writer) thread.
pub(super) fn install(store: DocStore) {
    DOCS.with(|d| *d.borrow_mut() = Some(store));
}

/// Runs `f` with the writer's document store. Only valid inside a write closure.
pub fn with_docs<R>(f: impl FnOnce(&mut DocStore) -> R) -> Result<R, StorageError> {
    DOCS.with(|d| match d.borrow_mut().as_mut() {
        Some(store) => Ok(f(store)),
        None => Err(StorageError::NotWriterThread),
    })
}
