//! The errors of the storage contract.

use crate::{KeyValue, Revision};

/// Result of a storage operation.
pub type StorageResult<T> = Result<T, StorageError>;

/// What can go wrong in a storage operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    /// The compare-and-swap failed; `current` is the value that won.
    #[error("key {key} was modified concurrently")]
    Conflict {
        key: String,
        current: Option<Box<KeyValue>>,
    },
    #[error("required revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// A watcher fell too far behind the writers and was closed; it must list again.
    #[error("watcher fell behind and was closed")]
    WatcherLagged,
    #[error("storage is closed")]
    Closed,
    #[error("storage backend failure: {0}")]
    Backend(String),
}

impl StorageError {
    pub(crate) fn backend(err: impl std::fmt::Display) -> Self {
        StorageError::Backend(err.to_string())
    }
}
