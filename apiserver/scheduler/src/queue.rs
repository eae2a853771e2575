//! The scheduling queue, as upstream's: pending pods wait in an active queue ordered by
//! priority (then age); a pod that fits nowhere goes aside as unschedulable until a cluster
//! change might let it in, then through a backoff (1 s doubling to 10 s per failed attempt)
//! back to the active queue. Pods left unschedulable for five minutes are retried anyway.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's podMaxInUnschedulablePodsDuration.
const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

/// Active-queue order: higher priority first, then older first, then by uid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    neg_priority: i64,
    created: Option<Timestamp>,
    uid: String,
}

fn rank(pod: &Pod, uid: &str) -> Rank {
    Rank {
        neg_priority: -i64::from(pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)),
        created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        uid: uid.to_owned(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    /// Waiting out its backoff until the instant.
    Backoff(Instant),
    /// Failed; waits for a cluster change (since the instant).
    Unschedulable(Instant),
    /// Handed out by `pop`, not yet returned.
    InFlight,
}

struct Entry {
    pod: Arc<Pod>,
    attempts: u32,
    last_attempt: Option<Instant>,
    place: Place,
}

#[derive(Default)]
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BTreeSet<Rank>,
    /// Pods in backoff, by when it ends.
    backing_off: BTreeSet<(Instant, String)>,
    /// Unschedulable pods, by when they were set aside.
    parked: BTreeSet<(Instant, String)>,
}

fn backoff(attempts: u32) -> Duration {
    let doubled = INITIAL_BACKOFF.saturating_mul(1 << attempts.saturating_sub(1).min(16));
    doubled.min(MAX_BACKOFF)
}

impl SchedulingQueue {
    /// Adds a pending pod, or refreshes the copy of one already queued.
    pub fn upsert(&mut self, pod: Arc<Pod>) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        match self.entries.get_mut(&uid) {
            Some(e) => {
                if e.place == Place::Active {
                    self.active.remove(&rank(&e.pod, &uid));
                    self.active.insert(rank(&pod, &uid));
                }
                e.pod = pod;
            }
            None => {
                self.active.insert(rank(&pod, &uid));
                self.entries.insert(
                    uid,
                    Entry {
                        pod,
                        attempts: 0,
                        last_attempt: None,
                        place: Place::Active,
                    },
                );
            }
        }
    }

    /// Drops a pod that is bound, gone or no longer this scheduler's.
    pub fn remove(&mut self, uid: &str) {
        if let Some(e) = self.entries.remove(uid) {
            self.unplace(uid, &e);
        }
    }

    /// Takes an entry out of whichever ordered set holds it.
    fn unplace(&mut self, uid: &str, e: &Entry) {
        match e.place {
            Place::Active => {
                self.active.remove(&rank(&e.pod, uid));
            }
            Place::Backoff(until) => {
                self.backing_off.remove(&(until, uid.to_owned()));
            }
            Place::Unschedulable(since) => {
                self.parked.remove(&(since, uid.to_owned()));
            }
            Place::InFlight => {}
        }
    }

    /// The next pod to place, if one is ready.
    pub fn pop(&mut self, now: Instant) -> Option<Arc<Pod>> {
        self.release_backoffs(now);
        let first = self.active.pop_first()?;
        let e = self.entries.get_mut(&first.uid)?;
        e.place = Place::InFlight;
        e.attempts += 1;
        e.last_attempt = Some(now);
        Some(e.pod.clone())
    }

    /// Sets aside a popped pod that fit nowhere.
    pub fn unschedulable(&mut self, uid: &str, now: Instant) {
        if let Some(e) = self.entries.get_mut(uid)
            && e.place == Place::InFlight
        {
            e.place = Place::Unschedulable(now);
            self.parked.insert((now, uid.to_owned()));
        }
    }

    /// Puts a popped pod back to be tried after its backoff (a failed binding).
    pub fn retry(&mut self, uid: &str, now: Instant) {
        if let Some(e) = self.entries.get_mut(uid)
            && e.place == Place::InFlight
        {
            let until = now + backoff(e.attempts);
            e.place = Place::Backoff(until);
            self.backing_off.insert((until, uid.to_owned()));
        }
    }

    /// A cluster change may let unschedulable pods in: they go back through their backoff.
    pub fn cluster_changed(&mut self, now: Instant) {
        for (_, uid) in std::mem::take(&mut self.parked) {
            if let Some(e) = self.entries.get_mut(&uid) {
                let until = e.last_attempt.unwrap_or(now) + backoff(e.attempts);
                e.place = Place::Backoff(until);
                self.backing_off.insert((until, uid));
            }
        }
        self.release_backoffs(now);
    }

    fn release_backoffs(&mut self, now: Instant) {
        let mut ready = Vec::new();
        while let Some((until, _)) = self.backing_off.first()
            && *until <= now
        {
            ready.extend(self.backing_off.pop_first().map(|(_, uid)| uid));
        }
        while let Some((since, _)) = self.parked.first()
            && now.saturating_duration_since(*since) >= MAX_UNSCHEDULABLE
        {
            ready.extend(self.parked.pop_first().map(|(_, uid)| uid));
        }
        for uid in ready {
            if let Some(e) = self.entries.get_mut(&uid) {
                e.place = Place::Active;
                self.active.insert(rank(&e.pod, &uid));
            }
        }
    }

    /// How long until a pod in backoff (or long unschedulable) is ready, if any waits.
    pub fn next_ready_in(&self, now: Instant) -> Option<Duration> {
        let backoff = self
            .backing_off
            .first()
            .map(|(until, _)| until.saturating_duration_since(now));
        let parked = self
            .parked
            .first()
            .map(|(since, _)| (*since + MAX_UNSCHEDULABLE).saturating_duration_since(now));
        backoff.into_iter().chain(parked).min()
    }

    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets everything (a relist refills it).
    pub fn clear(&mut self) {
        *self = SchedulingQueue::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(uid: &str, priority: i32, created: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                priority: Some(priority),
                ..PodSpec::default()
            }),
            status: None,
        })
    }

    fn uid(p: &Pod) -> &str {
        p.metadata.uid.as_deref().unwrap()
    }

    #[test]
    fn higher_priority_then_older_pods_go_first() {
        let mut q = SchedulingQueue::default();
        q.upsert(pod("young", 0, 20));
        q.upsert(pod("old", 0, 10));
        q.upsert(pod("urgent", 100, 30));
        let now = Instant::now();
        let order: Vec<String> = std::iter::from_fn(|| q.pop(now))
            .map(|p| uid(&p).to_owned())
            .collect();
        assert_eq!(order, ["urgent", "old", "young"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_change_then_their_backoff() {
        let mut q = SchedulingQueue::default();
        q.upsert(pod("p", 0, 1));
        let start = Instant::now();
        let p = q.pop(start).unwrap();
        q.unschedulable(uid(&p), start);
        assert!(q.pop(start + Duration::from_secs(60)).is_none());
        q.cluster_changed(start + Duration::from_millis(100));
        // First failure: one second of backoff from the attempt.
        assert!(q.pop(start + Duration::from_millis(500)).is_none());
        assert_eq!(
            q.next_ready_in(start + Duration::from_millis(500)),
            Some(Duration::from_millis(500))
        );
        let again = q.pop(start + Duration::from_secs(1)).unwrap();
        q.unschedulable(uid(&again), start + Duration::from_secs(1));
        q.cluster_changed(start + Duration::from_secs(1));
        // Second failure: two seconds.
        assert!(q.pop(start + Duration::from_millis(2500)).is_none());
        assert!(q.pop(start + Duration::from_secs(3)).is_some());
    }

    #[test]
    fn long_unschedulable_pods_are_retried_anyway() {
        let mut q = SchedulingQueue::default();
        q.upsert(pod("p", 0, 1));
        let start = Instant::now();
        let p = q.pop(start).unwrap();
        q.unschedulable(uid(&p), start);
        assert!(q.pop(start + Duration::from_secs(299)).is_none());
        assert!(q.pop(start + Duration::from_secs(300)).is_some());
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(9), Duration::from_secs(10));
    }
}
