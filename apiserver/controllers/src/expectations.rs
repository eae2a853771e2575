//! Pod creations and deletions a controller has issued but not yet seen through its pod
//! watch, per owner (upstream's controller expectations). A reconcile that runs on a cache
//! that has not caught up with its own writes would otherwise create or delete twice.
//!
//! Both are tracked by pod uid: a creation is seen once the pod is in the cache, a deletion
//! once the pod is gone from it or marked for deletion. Expectations older than five minutes
//! are given up, so a lost watch event cannot stall an owner for good.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

/// Pending expectations older than this are given up (upstream's five minutes).
const EXPECTATION_TTL: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    created: HashSet<String>,
    deleted: HashSet<String>,
    since: Instant,
}

impl Expectations {
    /// Whether everything issued for `key` shows in `pods` (the owner's namespace, or more).
    pub fn satisfied(&self, key: &str, pods: &[Arc<Pod>]) -> bool {
        let mut map = self.pending.lock().expect("expectations lock");
        let Some(p) = map.get_mut(key) else {
            return true;
        };
        let seen: HashMap<&str, bool> = pods
            .iter()
            .filter_map(|p| {
                let uid = p.metadata.uid.as_deref()?;
                Some((uid, p.metadata.deletion_timestamp.is_some()))
            })
            .collect();
        p.created.retain(|u| !seen.contains_key(u.as_str()));
        p.deleted
            .retain(|u| seen.get(u.as_str()).is_some_and(|terminating| !terminating));
        let done =
            (p.created.is_empty() && p.deleted.is_empty()) || p.since.elapsed() > EXPECTATION_TTL;
        if done {
            map.remove(key);
        }
        done
    }

    /// Records the uids of pods just created and just deleted for `key`.
    pub fn expect(&self, key: &str, created: Vec<String>, deleted: Vec<String>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        let mut map = self.pending.lock().expect("expectations lock");
        let p = map.entry(key.to_owned()).or_insert_with(|| Pending {
            created: HashSet::new(),
            deleted: HashSet::new(),
            since: Instant::now(),
        });
        p.created.extend(created);
        p.deleted.extend(deleted);
    }

    /// Drops what is pending for an owner that is gone.
    pub fn forget(&self, key: &str) {
        self.pending.lock().expect("expectations lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::fixtures::pod;

    #[test]
    fn creations_hold_until_the_pod_is_seen() {
        let e = Expectations::default();
        e.expect("k", vec!["uid-web-1".into()], vec![]);
        assert!(!e.satisfied("k", &[]));
        assert!(e.satisfied("k", &[Arc::new(pod("web-1", &[]))]));
    }

    #[test]
    fn deletions_hold_until_the_pod_is_gone_or_terminating() {
        let e = Expectations::default();
        let doomed = Arc::new(pod("a", &[]));
        e.expect("k", vec![], vec!["uid-a".into()]);
        assert!(!e.satisfied("k", std::slice::from_ref(&doomed)));
        let mut terminating = (*doomed).clone();
        terminating.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        assert!(e.satisfied("k", &[Arc::new(terminating)]));
        e.expect("k", vec![], vec!["uid-a".into()]);
        assert!(e.satisfied("k", &[]));
    }
}
