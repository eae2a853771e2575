//! Revisioned key-value storage for the apiserver.
//!
//! This crate owns the storage contract: opaque byte values under string keys, a single global
//! revision that every write increments, compare-and-swap updates and deletes on the last
//! modification revision, consistent range lists at a revision (with paging), ordered and gapless
//! watches of a key prefix from a revision, and compaction of old revisions (reads and watches
//! below the compacted revision answer [`StorageError::Compacted`]).
//!
//! It knows nothing about Kubernetes types: the registry above it encodes objects to bytes.
//! Backends: [`embedded`] (fjall, the one-machine default). The [`conformance`] suite is what every
//! backend must pass.

mod compaction;
pub mod conformance;
pub mod embedded;
mod error;
mod types;

pub use compaction::{Compactor, spawn_periodic_compaction};
pub use error::{StorageError, StorageResult};
pub use types::{Event, EventKind, KeyValue, ListRequest, ListResponse, Revision, WatchStream};

use async_trait::async_trait;
use bytes::Bytes;

/// The storage contract every backend implements.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Creates `key` if absent. Fails with [`StorageError::AlreadyExists`] otherwise.
    async fn create(&self, key: &str, value: Bytes) -> StorageResult<KeyValue>;

    /// Reads the newest version of `key`.
    async fn get(&self, key: &str) -> StorageResult<Option<KeyValue>>;

    /// Lists the keys under a prefix as they were at one revision, in key order.
    async fn list(&self, request: ListRequest) -> StorageResult<ListResponse>;

    /// Replaces the value of `key` if its modification revision is still `expected`.
    /// Fails with [`StorageError::Conflict`] (carrying the current value) when it is not, and with
    /// [`StorageError::NotFound`] when the key is absent.
    async fn update(&self, key: &str, expected: Revision, value: Bytes) -> StorageResult<KeyValue>;

    /// Deletes `key`, if `expected` is given only when its modification revision still matches.
    /// Returns the deleted value with `mod_revision` set to the revision of the deletion.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> StorageResult<KeyValue>;

    /// Streams every change under `prefix` with a revision greater than `after`, in order.
    /// The stream ends with an error item if the watcher cannot keep up; it never skips events.
    async fn watch(&self, prefix: &str, after: Revision) -> StorageResult<WatchStream>;

    /// The newest revision whose write has been acknowledged.
    fn current_revision(&self) -> Revision;

    /// Revisions at or below this one can no longer be read or watched from.
    fn compacted_revision(&self) -> Revision;

    /// Drops history at or below `revision` (never the newest version of a live key).
    async fn compact(&self, revision: Revision) -> StorageResult<()>;
}
