//! Periodic compaction, as kube-apiserver does it: every interval, compact up to the revision
//! that was current one interval ago, so clients keep one interval of history to resume from.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::{Revision, Storage, StorageResult};

/// The state of the compaction loop: the revision seen at the previous tick.
#[derive(Debug, Default)]
pub struct Compactor {
    previous: Option<Revision>,
}

impl Compactor {
    /// One tick: compacts to the revision recorded at the previous tick, then records the
    /// current one. Returns the revision compacted to, if any.
    pub async fn tick(&mut self, storage: &dyn Storage) -> StorageResult<Option<Revision>> {
        let target = self
            .previous
            .replace(storage.current_revision())
            .filter(|t| *t > storage.compacted_revision());
        if let Some(target) = target {
            storage.compact(target).await?;
        }
        Ok(target)
    }
}

/// Starts the compaction loop on the current runtime.
pub fn spawn_periodic_compaction(
    storage: Arc<dyn Storage>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut compactor = Compactor::default();
        loop {
            ticker.tick().await;
            if let Err(err) = compactor.tick(storage.as_ref()).await {
                warn!(error = %err, "periodic compaction failed");
            }
        }
    })
}
