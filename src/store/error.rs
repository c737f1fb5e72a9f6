//! Store errors. Each message says what failed and where (the store folder, the tree,
//! the call id), because the reader is an administrator looking at a log line.

use std::io;
use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A folder or file of the store could not be created or read.
    #[error("{}: cannot {what}: {source}", .path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// Another process holds the store.
    #[error(
        "{}: the store is locked: another calltap instance is probably running on it \
         (stop it, or give this one another store path)",
        .path.display()
    )]
    Locked { path: PathBuf },
    /// sled could not open the database.
    #[error("{}: cannot open the database: {source}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    /// The database was written by a newer calltap.
    #[error(
        "{}: the store has schema version {found}, this calltap understands up to \
         {supported}: it was written by a newer calltap; run that version, or point \
         this one at another store path",
        .path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// sled failed while reading or writing a tree.
    #[error("store tree {tree}: {source}")]
    Db {
        tree: &'static str,
        #[source]
        source: sled::Error,
    },
    /// A stored value (or key) could not be decoded. The rest of the store is fine; the
    /// value is skipped by iterations and counted (see `Store::corrupt_seen`).
    #[error("store tree {tree}: corrupt value for {key:?}: {reason}")]
    Corrupt {
        tree: &'static str,
        key: String,
        reason: String,
    },
    /// The id index names a call the calls tree does not hold.
    #[error("store tree by_id: the index names call {id:?}, which is not in the calls tree")]
    Dangling { id: String },
    /// A record that cannot be stored as it is (it would not read back).
    #[error("call {id:?} cannot be stored: {reason}")]
    InvalidRecord { id: String, reason: String },
}

impl StoreError {
    pub(crate) fn db(tree: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
        move |source| StoreError::Db { tree, source }
    }
}
