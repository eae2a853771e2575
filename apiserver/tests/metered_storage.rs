//! The metered storage decorator keeps the storage contract: the whole conformance suite runs
//! through it.

use std::sync::Arc;

use apiserver::metrics::{MeteredStorage, Metrics};
use apiserver_storage::embedded::EmbeddedStorage;

async fn metered() -> (MeteredStorage, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(EmbeddedStorage::open(dir.path()).unwrap());
    (
        MeteredStorage::new(inner, Arc::new(Metrics::default())),
        dir,
    )
}

apiserver_storage::storage_conformance_tests!(metered());
