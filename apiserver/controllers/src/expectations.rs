//! Pod creations and deletions a controller has issued but not yet seen through its pod
//! watch, per owner (upstream's controller expectations). A reconcile that runs on a cache
//! that has not caught up with its own writes would otherwise create or delete twice.
//!
//! Both are tracked by pod uid: a creation is seen once the pod is in the cache, a deletion
//! once the pod is gone from it or marked for deletion. Expectations older than five minutes
//! are given up, so a lost watch event cannot stall an owner for good.
//!
//! The Job controller also remembers the finalizer removals it has issued (by pod uid) until
//! the cache shows the pod gone or without the finalizer, so it never counts a finished pod
//! twice; those are not given up with age (`observe`).

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

#[derive(Default)]
struct Pending {
    created: HashSet<String>,
    deleted: HashSet<String>,
    /// Pods whose finalizer removal is in flight.
    finalizers: HashSet<String>,
    /// When the oldest creation or deletion still pending was issued.
    since: Option<Instant>,
}

impl Expectations {
    /// Whether every creation and deletion issued for `key` shows in `pods` (the owner's
    /// namespace, or more).
    pub fn satisfied(&self, key: &str, pods: &[Arc<Pod>]) -> bool {
        self.observe(key, pods, |_| false).0
    }

    /// Drops what `pods` show done (a finalizer removal is done once the pod is gone or
    /// `finalized` no longer holds for it); returns whether the creations and deletions are
    /// all observed, and the uids whose finalizer removal is still in flight.
    pub fn observe(
        &self,
        key: &str,
        pods: &[Arc<Pod>],
        finalized: impl Fn(&Pod) -> bool,
    ) -> (bool, HashSet<String>) {
        let mut map = self.pending.lock().expect("expectations lock");
        let Some(p) = map.get_mut(key) else {
            return (true, HashSet::new());
        };
        let by_uid: HashMap<&str, &Pod> = pods
            .iter()
            .filter_map(|p| Some((p.metadata.uid.as_deref()?, p.as_ref())))
            .collect();
        p.created.retain(|u| !by_uid.contains_key(u.as_str()));
        p.deleted.retain(|u| {
            by_uid
                .get(u.as_str())
                .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
        });
        p.finalizers
            .retain(|u| by_uid.get(u.as_str()).is_some_and(|p| finalized(p)));
        if p.since.is_some_and(|s| s.elapsed() > EXPECTATION_TTL) {
            p.created.clear();
            p.deleted.clear();
        }
        let settled = p.created.is_empty() && p.deleted.is_empty();
        if settled {
            p.since = None;
        }
        let removing = p.finalizers.clone();
        if settled && removing.is_empty() {
            map.remove(key);
        }
        (settled, removing)
    }

    /// Records the uids of pods just created and just deleted for `key`.
    pub fn expect(&self, key: &str, created: Vec<String>, deleted: Vec<String>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        let mut map = self.pending.lock().expect("expectations lock");
        let p = map.entry(key.to_owned()).or_default();
        p.since.get_or_insert_with(Instant::now);
        p.created.extend(created);
        p.deleted.extend(deleted);
    }

    /// Records finalizer removals just issued for `key`'s pods (by uid).
    pub fn expect_finalizers_removed(&self, key: &str, uids: impl IntoIterator<Item = String>) {
        let mut map = self.pending.lock().expect("expectations lock");
        map.entry(key.to_owned())
            .or_default()
            .finalizers
            .extend(uids);
    }

    /// Forgets a finalizer removal that failed.
    pub fn finalizer_not_removed(&self, key: &str, uid: &str) {
        if let Some(p) = self.pending.lock().expect("expectations lock").get_mut(key) {
            p.finalizers.remove(uid);
        }
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

    #[test]
    fn finalizer_removals_hold_until_the_pod_shows_them_done() {
        let e = Expectations::default();
        let p = Arc::new(pod("a", &[]));
        e.expect_finalizers_removed("k", ["uid-a".to_owned()]);
        let (settled, removing) = e.observe("k", std::slice::from_ref(&p), |_| true);
        assert!(settled);
        assert_eq!(removing, HashSet::from(["uid-a".to_owned()]));
        let (_, removing) = e.observe("k", std::slice::from_ref(&p), |_| false);
        assert!(removing.is_empty());
        e.expect_finalizers_removed("k", ["uid-a".to_owned()]);
        e.finalizer_not_removed("k", "uid-a");
        assert!(e.observe("k", &[p], |_| true).1.is_empty());
    }
}
