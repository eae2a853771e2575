//! Values that cross the storage contract.

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

use crate::StorageError;

/// A global, increasing write counter; the Kubernetes resourceVersion.
pub type Revision = u64;

/// One version of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created the key (kept across updates).
    pub create_revision: Revision,
    /// Revision of the write that produced this version.
    pub mod_revision: Revision,
}

/// What a watch event did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created (when `prev` is `None`) or updated.
    Put,
    /// Deleted; `kv` holds the last value with `mod_revision` = the deletion's revision.
    Delete,
}

/// One change to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The version this change replaced, if any.
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A range read under a key prefix.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub prefix: String,
    /// Read as of this revision; `None` reads the newest acknowledged state.
    pub revision: Option<Revision>,
    /// Only keys strictly after this one (the continue point of a paged list).
    pub start_after: Option<String>,
    /// At most this many items; `None` or `Some(0)` means no limit.
    pub limit: Option<usize>,
}

/// The answer to a [`ListRequest`].
#[derive(Debug, Clone, Default)]
pub struct ListResponse {
    pub items: Vec<KeyValue>,
    /// The revision the list was read at (use it for the next page and for a following watch).
    pub revision: Revision,
    /// Whether more keys follow the last item.
    pub more: bool,
}

/// A stream of changes; an `Err` item is always the last one.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, StorageError>> + Send>>;
