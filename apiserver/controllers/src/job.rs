//! The Job controller: runs a Job's pods until enough of them succeed (or the Job fails), and
//! the TTL-after-finished controller, which deletes finished Jobs once their
//! `ttlSecondsAfterFinished` has passed.
//!
//! Pods are created from the template (Indexed Jobs get one pod per pending completion index)
//! carrying the `batch.kubernetes.io/job-tracking` finalizer. A finished pod is counted with
//! the tracking protocol: its uid is first written to `status.uncountedTerminatedPods`, then its
//! finalizer is removed, then it moves into `status.succeeded`/`status.failed`, so counts
//! survive pod deletion and a restart of the controller never counts a pod twice.
//!
//! A Job that reaches its completions first gets `SuccessCriteriaMet`, one that fails
//! (`backoffLimit`, `activeDeadlineSeconds`) first gets `FailureTarget` and loses its active
//! pods; `Complete` or `Failed` follows once nothing is left uncounted or terminating.
//!
//! `plan` is the pure decision for one Job; `reconcile` carries it out through the API. A
//! finished Job is handled by the same reconcile: it releases leftover finalizers and, when it
//! has a TTL, deletes the Job when the TTL expires (the TTL-after-finished controller's work).
//! A second small loop over pods releases the finalizer of pods whose Job is gone, finished or
//! no longer their controller (upstream's orphan-pod queue).
//!
//! A reconcile reads its namespace's pods from the pod informer's namespace index; claiming
//! and slow-start creation are `pods`'s, and the creations, deletions and finalizer removals
//! in flight are remembered in the shared `Expectations`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{
    Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api_errors::not_found;
use crate::events::{EventRecorder, EventType};
use crate::expectations::Expectations;
use crate::informers::{self, Informer};
use crate::pods;
use crate::{ControllerContext, ReconcileError};

/// Keeps a pod until the Job controller has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The completion index of a pod of an Indexed Job (annotation and label).
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable an Indexed Job's containers read their index from.
const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// `spec.managedBy` of the Jobs this controller manages (absent means the same).
const MANAGED_BY: &str = "kubernetes.io/job-controller";

const COMPLETE: &str = "Complete";
const FAILED: &str = "Failed";
const SUSPENDED: &str = "Suspended";
const FAILURE_TARGET: &str = "FailureTarget";
const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";

/// At most this many pods are created or deleted in one reconcile (upstream's burst).
const BURST: usize = 500;
/// At most this many uids are kept in `status.uncountedTerminatedPods`.
const MAX_UNCOUNTED: usize = 500;
/// The delay before replacing a failed pod, doubled for each further failure…
const POD_BACKOFF: Duration = Duration::from_secs(10);
/// …up to this (upstream's `MaxJobPodFailureBackOff`).
const POD_BACKOFF_MAX: Duration = Duration::from_secs(600);
/// The longest `generateName` the server keeps whole (a name is at most 63 characters, and
/// five random ones are appended).
const MAX_GENERATE_NAME: usize = 58;
/// The shortest delay before looking at a Job again (upstream's sync batch period).
const MIN_REQUEUE: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// What a Job and its pods say.

fn is_condition_true(status: Option<&JobStatus>, type_: &str) -> bool {
    condition(status, type_).is_some_and(|c| c.status == "True")
}

fn condition<'a>(status: Option<&'a JobStatus>, type_: &str) -> Option<&'a JobCondition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Whether a Job has its terminal condition (`Complete` or `Failed`).
pub fn is_finished(job: &Job) -> bool {
    let status = job.status.as_ref();
    is_condition_true(status, COMPLETE) || is_condition_true(status, FAILED)
}

/// Whether another controller manages this Job (`spec.managedBy`).
fn managed_elsewhere(job: &Job) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.managed_by.as_deref())
        .is_some_and(|m| m != MANAGED_BY)
}

fn is_indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

fn is_suspended(spec: &JobSpec) -> bool {
    spec.suspend == Some(true)
}

/// Whether a terminating pod is replaced only once it has failed (podReplacementPolicy
/// `Failed`, implied by a pod failure policy) rather than as soon as it is terminating.
fn only_replace_failed(spec: &JobSpec) -> bool {
    spec.pod_replacement_policy.as_deref() == Some("Failed") || spec.pod_failure_policy.is_some()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn uid_of(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == TRACKING_FINALIZER))
}

/// Being deleted but not yet finished.
fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(phase(pod), "Succeeded" | "Failed")
}

/// A pod's completion index, if it has a valid one.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX)?
        .parse::<i32>()
        .ok()
        .filter(|i| *i >= 0)
}

/// Whether a pod counts as failed: it failed, or (unless only failed pods are replaced) it is
/// being deleted without having succeeded.
fn is_pod_failed(pod: &Pod, only_failed: bool) -> bool {
    match phase(pod) {
        "Failed" => true,
        _ if only_failed => false,
        "Succeeded" => false,
        _ => pod.metadata.deletion_timestamp.is_some(),
    }
}

/// When a pod finished: its last container's end, else when it stopped being ready, else
/// when it was deleted, else when it was created.
fn finished_time(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let containers = status.and_then(|s| s.container_statuses.as_ref());
    if let Some(cs) = containers.filter(|cs| !cs.is_empty()) {
        let ends: Option<Vec<Timestamp>> = cs
            .iter()
            .map(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .and_then(|t| t.finished_at.as_ref())
                    .map(|t| t.0)
            })
            .collect();
        if let Some(end) = ends.and_then(|e| e.into_iter().max()) {
            return end;
        }
    }
    let not_ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "Ready" && c.status == "False")
        })
        .and_then(|c| c.last_transition_time.as_ref());
    if let Some(t) = not_ready {
        return t.0;
    }
    if let Some(t) = &pod.metadata.deletion_timestamp {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return t
            .0
            .checked_sub(SignedDuration::from_secs(grace))
            .unwrap_or(t.0);
    }
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

fn stamp(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    at: &Time,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()).filter(|r: &String| !r.is_empty()),
        message: Some(message.into()).filter(|m: &String| !m.is_empty()),
        last_probe_time: Some(at.clone()),
        last_transition_time: Some(at.clone()),
    }
}

/// Sets a condition (replacing one of the same type whose status, reason or message differ);
/// a condition that does not exist is not added as False. Returns whether anything changed.
fn ensure_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    at: &Time,
) -> bool {
    let wanted = new_condition(type_, status, reason, message, at);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let same = c.status == wanted.status
                && c.reason == wanted.reason
                && c.message == wanted.message;
            if !same {
                *c = wanted;
            }
            !same
        }
        None if status != "False" => {
            conditions.push(wanted);
            true
        }
        None => false,
    }
}

/// A status as the server would store it: zero counters and empty lists omitted,
/// `uncountedTerminatedPods` always present.
fn normalized(status: Option<&JobStatus>) -> JobStatus {
    let mut s = status.cloned().unwrap_or_default();
    for counter in [&mut s.active, &mut s.succeeded, &mut s.failed] {
        if *counter == Some(0) {
            *counter = None;
        }
    }
    if s.completed_indexes.as_deref() == Some("") {
        s.completed_indexes = None;
    }
    if s.conditions.as_ref().is_some_and(Vec::is_empty) {
        s.conditions = None;
    }
    let uncounted = s
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    for list in [&mut uncounted.succeeded, &mut uncounted.failed] {
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Completion indexes as intervals ("0-2,4").

/// A set of completion indexes as ordered, disjoint, non-adjacent intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indexes(Vec<(i32, i32)>);

impl Indexes {
    /// Parses `status.completedIndexes`, ignoring malformed parts and indexes at or beyond
    /// `completions`.
    pub fn parse(text: &str, completions: i32) -> Self {
        let mut intervals = Vec::new();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
                None => (part.parse::<i32>(), part.parse::<i32>()),
            };
            let (Ok(first), Ok(last)) = (first, last) else {
                continue;
            };
            if first < 0 || first >= completions || last < first {
                continue;
            }
            intervals.push((first, last.min(completions - 1)));
        }
        Indexes::from_intervals(intervals)
    }

    fn from_intervals(mut intervals: Vec<(i32, i32)>) -> Self {
        intervals.sort_unstable();
        let mut merged: Vec<(i32, i32)> = Vec::with_capacity(intervals.len());
        for (first, last) in intervals {
            match merged.last_mut() {
                Some(prev) if first <= prev.1.saturating_add(1) => prev.1 = prev.1.max(last),
                _ => merged.push((first, last)),
            }
        }
        Indexes(merged)
    }

    /// These indexes and `more`.
    pub fn with(&self, more: impl IntoIterator<Item = i32>) -> Self {
        let mut intervals = self.0.clone();
        intervals.extend(more.into_iter().map(|i| (i, i)));
        Indexes::from_intervals(intervals)
    }

    pub fn total(&self) -> i32 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }

    pub fn contains(&self, index: i32) -> bool {
        self.0.iter().any(|(a, b)| *a <= index && index <= *b)
    }

    /// The first `count` indexes below `completions` not in this set.
    pub fn first_missing(&self, count: usize, completions: i32) -> Vec<i32> {
        let mut missing = Vec::with_capacity(count);
        let mut candidate = 0;
        let mut intervals = self.0.iter().peekable();
        while candidate < completions && missing.len() < count {
            match intervals.peek() {
                Some((_, last)) if *last < candidate => {
                    intervals.next();
                }
                Some((first, last)) if *first <= candidate => candidate = last + 1,
                _ => {
                    missing.push(candidate);
                    candidate += 1;
                }
            }
        }
        missing
    }
}

impl fmt::Display for Indexes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, (first, last)) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            match last - first {
                0 => write!(f, "{first}")?,
                1 => write!(f, "{first},{last}")?,
                _ => write!(f, "{first}-{last}")?,
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Backoff before replacing failed pods.

/// The consecutive pod failures of a Job since its last success, kept in memory as upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackoffRecord {
    pub failures_after_last_success: u32,
    pub last_failure: Option<Timestamp>,
}

impl BackoffRecord {
    /// The record after newly finished pods.
    pub fn after(self, succeeded: &[&Pod], failed: &[&Pod]) -> Self {
        let mut failed_at: Vec<Timestamp> = failed.iter().map(|p| finished_time(p)).collect();
        failed_at.sort_unstable();
        let last_success = succeeded.iter().map(|p| finished_time(p)).max();
        match last_success {
            None if failed_at.is_empty() => self,
            None => BackoffRecord {
                failures_after_last_success: self.failures_after_last_success
                    + failed_at.len() as u32,
                last_failure: failed_at.last().copied(),
            },
            Some(success) => {
                let later: Vec<Timestamp> =
                    failed_at.into_iter().filter(|t| *t > success).collect();
                BackoffRecord {
                    failures_after_last_success: later.len() as u32,
                    last_failure: later.last().copied(),
                }
            }
        }
    }

    /// How long to wait at `now` before creating a replacement pod: 10s after the first
    /// failure, doubling with each further one, at most ten minutes.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure else {
            return Duration::ZERO;
        };
        if self.failures_after_last_success == 0 {
            return Duration::ZERO;
        }
        let doublings = (self.failures_after_last_success - 1).min(16);
        let backoff = (POD_BACKOFF * 2u32.pow(doublings)).min(POD_BACKOFF_MAX);
        let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
        backoff.saturating_sub(elapsed)
    }
}

// ---------------------------------------------------------------------------------------------
// The plan.

/// What the controller knows besides the Job and its namespace's pods.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Pods whose finalizer removal was issued but not yet observed (by uid).
    pub removing: HashSet<String>,
    /// Whether the pod creations and deletions issued earlier have all been observed.
    pub settled: bool,
    pub backoff: BackoffRecord,
    pub now: Timestamp,
}

/// An event the plan asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    pub reason: &'static str,
    pub note: &'static str,
}

/// What one reconcile of an unfinished Job does.
#[derive(Debug, Default)]
pub struct Plan {
    /// Matching orphans to take (pod names); they also get the tracking finalizer.
    pub adopt: Vec<String>,
    /// Owned pods that no longer match the selector (pod names).
    pub release: Vec<String>,
    /// The pods to create: one entry each, with its completion index in an Indexed Job.
    pub create: Vec<Option<i32>>,
    /// Active pods to delete.
    pub delete: Vec<Arc<Pod>>,
    /// Whether deleted pods lose their tracking finalizer first, so they are not counted
    /// (suspension, surplus), rather than being counted as failed (a failing Job).
    pub uncount_deleted: bool,
    /// The status to write before any finalizer is removed, assuming the creations and
    /// deletions succeed.
    pub status: JobStatus,
    /// Pods whose tracking finalizer comes off once `status` is written.
    pub remove_finalizers: Vec<Arc<Pod>>,
    /// Uids of the Job's pods that carry the finalizer now.
    pub with_finalizer: HashSet<String>,
    /// The terminal condition (`Complete` or `Failed`) to add once nothing is uncounted or
    /// terminating.
    pub finish: Option<JobCondition>,
    pub events: Vec<PlannedEvent>,
    pub backoff: BackoffRecord,
    /// When to look again (the active deadline, or the end of a pod backoff).
    pub requeue_after: Option<Duration>,
}

/// The pods a Job owns (matching its selector, or all of them while it is being deleted),
/// adopting matching orphans and releasing owned pods that stopped matching.
fn claim(job: &Job, spec: &JobSpec, pods: &[Arc<Pod>], plan: &mut Plan) -> Vec<Arc<Pod>> {
    let selector = spec.selector.as_ref().and_then(pods::controller_selector);
    let claimed = pods::claim::<Pod, _>(&job.metadata, selector.as_ref(), pods, |_| true);
    plan.release = claimed.release.iter().map(|p| p.name_any()).collect();
    plan.adopt = claimed.adopt.iter().map(|p| p.name_any()).collect();
    let mut owned: Vec<Arc<Pod>> = claimed.owned.into_iter().cloned().collect();
    owned.extend(claimed.adopt.into_iter().map(|pod| {
        let mut adopted = (**pod).clone();
        if !has_tracking_finalizer(&adopted) {
            adopted
                .metadata
                .finalizers
                .get_or_insert_with(Vec::new)
                .push(TRACKING_FINALIZER.into());
        }
        Arc::new(adopted)
    }));
    owned
}

/// The sum of container restarts of running or pending pods, for `restartPolicy: OnFailure`
/// templates, where failures show as restarts: past the limit when it reaches `backoffLimit`.
fn past_backoff_limit_on_failure(spec: &JobSpec, pods: &[Arc<Pod>]) -> bool {
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    if !on_failure {
        return false;
    }
    let restarts: i64 = pods
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            let init = s.init_container_statuses.iter().flatten();
            init.chain(s.container_statuses.iter().flatten())
        })
        .map(|c| i64::from(c.restart_count))
        .sum();
    let limit = i64::from(spec.backoff_limit.unwrap_or(6));
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// Active pods to delete so that at most `at_least` remain… or more: in an Indexed Job, pods
/// without a valid index and all but the most advanced pod of a repeated index always go.
fn active_pods_for_removal(spec: &JobSpec, active: &[Arc<Pod>], at_least: usize) -> Vec<Arc<Pod>> {
    let mut remove = Vec::new();
    let mut left: Vec<Arc<Pod>> = Vec::new();
    if is_indexed(spec) {
        let completions = spec.completions.unwrap_or(0);
        let mut by_index: BTreeMap<i32, Vec<Arc<Pod>>> = BTreeMap::new();
        for pod in active {
            match completion_index(pod).filter(|i| *i < completions) {
                Some(i) => by_index.entry(i).or_default().push(pod.clone()),
                None => remove.push(pod.clone()),
            }
        }
        for (_, mut same) in by_index {
            same.sort_by(|a, b| pods::deletion_order(a, b));
            if let Some(keep) = same.pop() {
                left.push(keep);
            }
            remove.extend(same);
        }
    } else {
        left = active.to_vec();
    }
    if remove.len() < at_least {
        left.sort_by(|a, b| pods::deletion_order(a, b));
        let more = at_least - remove.len();
        remove.extend(left.into_iter().take(more));
    }
    remove
}

/// The counters `plan` and `manage` adjust as they decide.
struct Tally {
    active: Vec<Arc<Pod>>,
    active_count: usize,
    ready: usize,
    terminating: usize,
}

impl Tally {
    fn deleting(&mut self, pods: &[Arc<Pod>]) {
        self.active_count = self.active_count.saturating_sub(pods.len());
        self.terminating += pods.len();
        let ready = pods.iter().filter(|p| pods::is_ready(p)).count();
        self.ready = self.ready.saturating_sub(ready);
    }
}

/// Creates or deletes pods toward the number the Job wants active (upstream's manageJob).
#[allow(clippy::too_many_arguments)] // reason: the inputs of one decision, named
fn manage(
    spec: &JobSpec,
    owned: &[Arc<Pod>],
    succeeded: i32,
    succeeded_indexes: &Indexes,
    tally: &mut Tally,
    backoff: &BackoffRecord,
    now: Timestamp,
    plan: &mut Plan,
) {
    let active = tally.active.len();
    if is_suspended(spec) {
        plan.delete = active_pods_for_removal(spec, &tally.active, active);
        plan.uncount_deleted = true;
        let deleted = plan.delete.clone();
        tally.deleting(&deleted);
        return;
    }
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let want = match spec.completions {
        None if succeeded > 0 => active as i32,
        None => parallelism,
        Some(c) => (c - succeeded).clamp(0, parallelism),
    };
    let surplus = (active as i32 - want).max(0) as usize;
    let mut delete = active_pods_for_removal(spec, &tally.active, surplus);
    delete.truncate(BURST);
    if !delete.is_empty() {
        plan.uncount_deleted = true;
        tally.deleting(&delete);
        plan.delete = delete;
        return;
    }
    let only_failed = only_replace_failed(spec);
    let waiting = if only_failed { tally.terminating } else { 0 };
    let missing = want - waiting as i32 - active as i32;
    if missing <= 0 {
        return;
    }
    let remaining = backoff.remaining(now);
    if !remaining.is_zero() {
        plan.requeue_after = Some(remaining.max(MIN_REQUEUE));
        return;
    }
    let missing = (missing as usize).min(BURST);
    plan.create = if is_indexed(spec) {
        let active_indexes = tally.active.iter().filter_map(|p| completion_index(p));
        let mut taken = succeeded_indexes.with(active_indexes);
        if only_failed {
            let terminating = owned
                .iter()
                .filter(|p| is_terminating(p))
                .filter_map(|p| completion_index(p));
            taken = taken.with(terminating);
        }
        taken
            .first_missing(missing, spec.completions.unwrap_or(0))
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None; missing]
    };
    tally.active_count += plan.create.len();
}

/// Decides what to do for an unfinished `job` given the pods of its namespace.
pub fn plan(job: &Job, pods: &[Arc<Pod>], seen: &Seen) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let at = stamp(seen.now);
    let deleting = job.metadata.deletion_timestamp.is_some();
    let indexed = is_indexed(&spec);
    let completions = spec.completions;
    let only_failed = only_replace_failed(&spec);
    let suspended = is_suspended(&spec);
    let mut plan = Plan::default();
    let mut status = normalized(job.status.as_ref());

    let owned = claim(job, &spec, pods, &mut plan);
    let valid_index =
        |p: &Pod| !indexed || completion_index(p).is_some_and(|i| i < completions.unwrap_or(0));
    let tracked = |p: &Pod| has_tracking_finalizer(p) && !seen.removing.contains(uid_of(p));
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let uncounted_succeeded: HashSet<String> = uncounted.succeeded.into_iter().flatten().collect();
    let uncounted_failed: HashSet<String> = uncounted.failed.into_iter().flatten().collect();

    let active: Vec<Arc<Pod>> = owned
        .iter()
        .filter(|p| pods::is_active(p))
        .cloned()
        .collect();
    let mut tally = Tally {
        active_count: active.len(),
        ready: active.iter().filter(|p| pods::is_ready(p)).count(),
        terminating: owned.iter().filter(|p| is_terminating(p)).count(),
        active,
    };
    let new_succeeded: Vec<&Pod> = owned
        .iter()
        .map(|p| &**p)
        .filter(|p| tracked(p) && valid_index(p) && phase(p) == "Succeeded")
        .filter(|p| !uncounted_succeeded.contains(uid_of(p)))
        .collect();
    let new_failed: Vec<&Pod> = owned
        .iter()
        .map(|p| &**p)
        .filter(|p| tracked(p) && valid_index(p) && is_pod_failed(p, only_failed))
        .filter(|p| !uncounted_failed.contains(uid_of(p)))
        .collect();
    let mut succeeded = status.succeeded.unwrap_or(0)
        + new_succeeded.len() as i32
        + uncounted_succeeded.len() as i32;
    let failed =
        status.failed.unwrap_or(0) + new_failed.len() as i32 + uncounted_failed.len() as i32;
    if status.start_time.is_none() && !suspended {
        status.start_time = Some(at.clone());
    }
    plan.backoff = seen.backoff.after(&new_succeeded, &new_failed);

    // Has the Job met its success criteria or failed already?
    let mut finishing = condition(Some(&status), SUCCESS_CRITERIA_MET)
        .filter(|c| c.status == "True")
        .cloned();
    if finishing.is_none() {
        let target = condition(Some(&status), FAILURE_TARGET).filter(|c| c.status == "True");
        let started = status.start_time.as_ref().map(|t| t.0);
        let deadline = spec
            .active_deadline_seconds
            .zip(started)
            // A deadline beyond the representable future is no deadline.
            .and_then(|(s, start)| start.checked_add(SignedDuration::from_secs(s)).ok())
            .filter(|_| !suspended);
        if let Some(target) = target {
            finishing = Some(new_condition(
                FAILED,
                "True",
                target.reason.as_deref().unwrap_or(""),
                target.message.as_deref().unwrap_or(""),
                &at,
            ));
        } else if failed > spec.backoff_limit.unwrap_or(6)
            || past_backoff_limit_on_failure(&spec, &owned)
        {
            finishing = Some(new_condition(
                FAILURE_TARGET,
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                &at,
            ));
        } else if deadline.is_some_and(|d| d <= seen.now) {
            finishing = Some(new_condition(
                FAILURE_TARGET,
                "True",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
                &at,
            ));
        } else if let Some(d) = deadline {
            let left = Duration::try_from(seen.now.duration_until(d)).unwrap_or(MIN_REQUEUE);
            plan.requeue_after = Some(left.max(MIN_REQUEUE));
        }
    }

    let (previous_indexes, mut succeeded_indexes) = if indexed {
        let previous = Indexes::parse(
            status.completed_indexes.as_deref().unwrap_or(""),
            completions.unwrap_or(0),
        );
        let new = owned
            .iter()
            .filter(|p| phase(p) == "Succeeded" && has_tracking_finalizer(p) && valid_index(p))
            .filter_map(|p| completion_index(p));
        let all = previous.with(new);
        succeeded = all.total();
        (previous, all)
    } else {
        (Indexes::default(), Indexes::default())
    };

    if finishing.is_some() {
        // The Job is done: its active pods go, keeping their finalizers so they are counted.
        plan.delete = tally.active.clone();
        let deleted = plan.delete.clone();
        tally.deleting(&deleted);
        if !seen.settled {
            finishing = None;
        }
    } else {
        let managed = seen.settled && !deleting;
        if managed {
            let backoff = plan.backoff;
            manage(
                &spec,
                &owned,
                succeeded,
                &succeeded_indexes,
                &mut tally,
                &backoff,
                seen.now,
                &mut plan,
            );
        }
        let complete = tally.active_count == 0
            && match completions {
                None => succeeded > 0,
                Some(c) => succeeded >= c,
            };
        if complete {
            finishing = Some(new_condition(
                SUCCESS_CRITERIA_MET,
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                &at,
            ));
        } else if managed {
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            if suspended {
                let reason = ("JobSuspended", "Job suspended");
                if ensure_condition(conditions, SUSPENDED, "True", reason.0, reason.1, &at) {
                    plan.events.push(PlannedEvent {
                        reason: "Suspended",
                        note: "Job suspended",
                    });
                }
            } else if ensure_condition(
                conditions,
                SUSPENDED,
                "False",
                "JobResumed",
                "Job resumed",
                &at,
            ) {
                plan.events.push(PlannedEvent {
                    reason: "Resumed",
                    note: "Job resumed",
                });
                // activeDeadlineSeconds counts from the resumption.
                status.start_time = Some(at.clone());
            }
        }
    }
    status.active = Some(tally.active_count as i32);
    status.ready = Some(tally.ready as i32);
    status.terminating = Some(tally.terminating as i32);

    // Tracking: finished pods enter the uncounted lists; their finalizers come off next.
    let with_finalizer: HashSet<String> = owned
        .iter()
        .filter(|p| tracked(p))
        .map(|p| uid_of(p).to_owned())
        .collect();
    count_removed(&mut status, &with_finalizer);
    let failing = finishing
        .as_ref()
        .is_some_and(|c| c.type_ != SUCCESS_CRITERIA_MET);
    let mut ordered = owned.clone();
    if indexed {
        ordered.sort_by_key(|p| completion_index(p).unwrap_or(-1));
    }
    let mut new_indexes = Vec::new();
    let mut reached_max = false;
    let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    for pod in ordered {
        if !tracked(&pod) {
            continue;
        }
        let uid = uid_of(&pod).to_owned();
        let considered_failed = is_pod_failed(&pod, only_failed);
        let succeeded_pod = phase(&pod) == "Succeeded";
        if !(deleting || finishing.is_some() || succeeded_pod || considered_failed) {
            continue;
        }
        if succeeded_pod && !uncounted_failed.contains(&uid) {
            if indexed {
                if let Some(i) = completion_index(&pod).filter(|_| valid_index(&pod))
                    && !previous_indexes.contains(i)
                {
                    new_indexes.push(i);
                }
            } else if !uncounted_succeeded.contains(&uid) {
                uncounted.succeeded.get_or_insert_with(Vec::new).push(uid);
            }
        } else if (considered_failed || failing)
            && !uncounted_failed.contains(&uid)
            && valid_index(&pod)
        {
            uncounted.failed.get_or_insert_with(Vec::new).push(uid);
        }
        plan.remove_finalizers.push(pod);
        let listed = uncounted.succeeded.as_ref().map_or(0, Vec::len)
            + uncounted.failed.as_ref().map_or(0, Vec::len)
            + new_indexes.len();
        if listed >= MAX_UNCOUNTED {
            reached_max = true;
            break;
        }
    }
    status.uncounted_terminated_pods = Some(uncounted);
    if indexed {
        succeeded_indexes = succeeded_indexes.with(new_indexes);
        status.succeeded = Some(succeeded_indexes.total());
        status.completed_indexes = Some(succeeded_indexes.to_string());
    }
    if let Some(c) = finishing.take() {
        let reason = c.reason.clone().unwrap_or_default();
        let message = c.message.clone().unwrap_or_default();
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        finishing = match c.type_.as_str() {
            FAILURE_TARGET => {
                conditions.push(c);
                Some(new_condition(FAILED, "True", &reason, &message, &at))
            }
            SUCCESS_CRITERIA_MET => {
                if !conditions.iter().any(|x| x.type_ == SUCCESS_CRITERIA_MET) {
                    conditions.push(c);
                }
                Some(new_condition(COMPLETE, "True", &reason, &message, &at))
            }
            _ => Some(c),
        };
    }
    plan.finish = finishing.filter(|_| !reached_max);
    plan.with_finalizer = with_finalizer;
    plan.status = normalized(Some(&status));
    plan
}

/// Moves the uids in `status.uncountedTerminatedPods` whose pods no longer carry the finalizer
/// (or are gone) into the succeeded and failed counters. Returns whether anything moved.
pub fn count_removed(status: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    let mut moved = false;
    for (list, counter) in [
        (&mut uncounted.succeeded, &mut status.succeeded),
        (&mut uncounted.failed, &mut status.failed),
    ] {
        let Some(uids) = list.as_mut() else {
            continue;
        };
        let before = uids.len();
        uids.retain(|u| with_finalizer.contains(u));
        let counted = (before - uids.len()) as i32;
        if counted > 0 {
            moved = true;
            *counter = Some(counter.unwrap_or(0) + counted);
        }
        if uids.is_empty() {
            *list = None;
        }
    }
    moved
}

/// Adds the terminal condition `finish` once no pod is left uncounted or terminating (and
/// the completion time with `Complete`). Returns whether the Job is now finished.
pub fn enact_finish(status: &mut JobStatus, finish: &JobCondition) -> bool {
    let uncounted = status.uncounted_terminated_pods.as_ref();
    let pending = uncounted.map_or(0, |u| {
        u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len)
    });
    if pending > 0 || status.terminating.unwrap_or(0) > 0 {
        return false;
    }
    let at = finish
        .last_transition_time
        .clone()
        .unwrap_or(Time(Timestamp::UNIX_EPOCH));
    ensure_condition(
        status.conditions.get_or_insert_with(Vec::new),
        &finish.type_,
        &finish.status,
        finish.reason.as_deref().unwrap_or(""),
        finish.message.as_deref().unwrap_or(""),
        &at,
    );
    if finish.type_ == COMPLETE {
        status.completion_time = Some(at);
    }
    true
}

/// When a finished Job with `ttlSecondsAfterFinished` is to be deleted: that long after its
/// terminal condition turned true.
pub fn ttl_expiry(job: &Job) -> Option<Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let status = job.status.as_ref()?;
    let finished = status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == COMPLETE || c.type_ == FAILED) && c.status == "True")?;
    let at = finished.last_transition_time.as_ref()?.0;
    Some(at + SignedDuration::from_secs(i64::from(ttl)))
}

/// What to do about a pod's tracking finalizer outside its Job's reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphan {
    /// Nothing: no finalizer, or its live Job will handle it.
    Keep,
    /// Its Job is gone, finished or no longer its controller: remove the finalizer.
    Release,
    /// Its Job is alive but the pod is being deleted: look again in a while.
    Recheck,
}

/// Decides about a pod's finalizer given its controller Job as the store has it.
pub fn orphan_verdict(pod: &Pod, job: Option<&Job>) -> Orphan {
    if !has_tracking_finalizer(pod) {
        return Orphan::Keep;
    }
    if let Some(r) = pods::controller_of(&pod.metadata) {
        if r.kind != "Job" || r.api_version != "batch/v1" {
            return Orphan::Keep;
        }
        if let Some(job) = job.filter(|j| j.metadata.uid.as_deref() == Some(r.uid.as_str())) {
            if managed_elsewhere(job) {
                return Orphan::Keep;
            }
            if !is_finished(job) {
                return if pod.metadata.deletion_timestamp.is_some() {
                    Orphan::Recheck
                } else {
                    Orphan::Keep
                };
            }
        }
    }
    Orphan::Release
}

/// The pod to create for `index` (or for a NonIndexed Job) from the Job's template.
pub fn pod_for(job: &Job, index: Option<i32>, owner: OwnerReference) -> Pod {
    let name = job.name_any();
    let namespace = job.namespace().unwrap_or_default();
    let mut template: PodTemplateSpec = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.get_or_insert_with(Default::default);
    let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    let mut generate_name = format!("{name}-");
    if let Some(i) = index {
        let value = i.to_string();
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(COMPLETION_INDEX.into(), value.clone());
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(COMPLETION_INDEX.into(), value);
        let spec = template.spec.get_or_insert_with(Default::default);
        spec.hostname = Some(format!("{name}-{i}"));
        for c in spec
            .init_containers
            .iter_mut()
            .flatten()
            .chain(spec.containers.iter_mut())
        {
            add_index_env(c);
        }
        generate_name = generate_name_with_index(&name, i);
    }
    pods::pod_from_template(&template, &namespace, &generate_name, owner)
}

fn add_index_env(container: &mut Container) {
    let env = container.env.get_or_insert_with(Vec::new);
    if env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
        return;
    }
    env.push(EnvVar {
        name: COMPLETION_INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
            }),
            ..EnvVarSource::default()
        }),
    });
}

/// `<job>-<index>-`, the Job name shortened so the whole stays a keepable `generateName`.
fn generate_name_with_index(job: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let keep = MAX_GENERATE_NAME.saturating_sub(suffix.len());
    let mut base: String = job.to_owned();
    if base.len() + suffix.len() > MAX_GENERATE_NAME {
        let mut cut = keep.min(base.len());
        while !base.is_char_boundary(cut) {
            cut -= 1;
        }
        base.truncate(cut);
    }
    base + &suffix
}

// ---------------------------------------------------------------------------------------------
// The controller.

/// The state shared by the Job reconciles and the orphan-pod loop.
pub struct JobContext {
    pub ctx: ControllerContext,
    pub pods: Store<Pod>,
    /// The pods by namespace (what a Job may own or adopt).
    pub pods_by_namespace: informers::Indexes<Pod>,
    pub jobs: Store<Job>,
    pub expectations: Expectations,
    /// Pod failure backoff per Job (`namespace/name`), kept in memory as upstream does.
    pub backoff: Mutex<HashMap<String, BackoffRecord>>,
    pub recorder: EventRecorder,
}

/// Runs the Job controller (with the TTL-after-finished cleanup and the orphan-pod loop)
/// until the streams end.
pub fn run(
    ctx: ControllerContext,
    jobs: &mut Informer<Job>,
    pods: &mut Informer<Pod>,
) -> impl std::future::Future<Output = ()> + use<> {
    let recorder = ctx.recorder("job-controller");
    let state = Arc::new(JobContext {
        ctx,
        pods: pods.store(),
        pods_by_namespace: pods.indexes(),
        jobs: jobs.store(),
        expectations: Expectations::default(),
        backoff: Mutex::new(HashMap::new()),
        recorder,
    });
    let job_controller = Controller::for_shared_stream(jobs.subscribe(), jobs.store())
        .owns_shared_stream(pods.subscribe());
    let pod_loop = Controller::for_shared_stream(pods.subscribe(), pods.store());
    async move {
        // Deciding on partial lists would create pods that exist, or release finalizers of
        // pods whose Job is not known yet.
        if crate::informers::synced("jobs", &state.jobs).await.is_err()
            || crate::informers::synced("pods", &state.pods).await.is_err()
        {
            return;
        }
        state.pods_by_namespace.wait_until_ready().await;
        let jobs = job_controller
            .run(reconcile, error_policy, state.clone())
            .for_each(|_| futures::future::ready(()));
        let orphans = pod_loop
            .run(release_orphan, orphan_error_policy, state)
            .for_each(|_| futures::future::ready(()));
        futures::future::join(jobs, orphans).await;
    }
}

fn error_policy(job: Arc<Job>, err: &ReconcileError, _state: Arc<JobContext>) -> Action {
    crate::retry_after_failure(&format!("job {} reconcile failed", job.name_any()), err)
}

fn orphan_error_policy(pod: Arc<Pod>, err: &ReconcileError, _state: Arc<JobContext>) -> Action {
    crate::retry_after_failure(
        &format!(
            "releasing the job-tracking finalizer of pod {} failed",
            pod.name_any()
        ),
        err,
    )
}

fn ignore_not_found<T>(r: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn remove_finalizer_patch() -> Patch<serde_json::Value> {
    Patch::Strategic(json!({
        "metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}
    }))
}

async fn remove_finalizer(api: &Api<Pod>, name: &str) -> Result<(), kube::Error> {
    ignore_not_found(
        api.patch(name, &PatchParams::default(), &remove_finalizer_patch())
            .await,
    )
    .map(|_| ())
}

/// Releases the finalizer of a pod whose Job no longer tracks it.
async fn release_orphan(pod: Arc<Pod>, state: Arc<JobContext>) -> Result<Action, ReconcileError> {
    let namespace = pod.namespace().unwrap_or_default();
    let job = pods::controller_of(&pod.metadata)
        .and_then(|r| state.jobs.get(&ObjectRef::new(&r.name).within(&namespace)));
    match orphan_verdict(&pod, job.as_deref()) {
        Orphan::Keep => Ok(Action::await_change()),
        Orphan::Recheck => Ok(Action::requeue(Duration::from_secs(10))),
        Orphan::Release => {
            let api: Api<Pod> = Api::namespaced(state.ctx.client.clone(), &namespace);
            remove_finalizer(&api, &pod.name_any()).await?;
            Ok(Action::await_change())
        }
    }
}

async fn reconcile(job: Arc<Job>, state: Arc<JobContext>) -> Result<Action, ReconcileError> {
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    // In-memory state (expectations, backoff) is keyed by uid, so a same-named successor
    // starts afresh.
    let key = job.uid().unwrap_or_else(|| format!("{namespace}/{name}"));
    if managed_elsewhere(&job) {
        return Ok(Action::await_change());
    }
    let reference = job.object_ref(&());
    let mode = job.spec.as_ref().and_then(|s| s.completion_mode.as_deref());
    if !matches!(mode, None | Some("NonIndexed" | "Indexed")) {
        state
            .recorder
            .record(
                &reference,
                EventType::Warning,
                "UnknownCompletionMode",
                "Sync",
                "Skipped Job sync because completion mode is unknown".into(),
            )
            .await;
        return Ok(Action::await_change());
    }
    let client = state.ctx.client.clone();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let job_api: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let in_namespace: Vec<Arc<Pod>> = state.pods_by_namespace.in_namespace(&namespace);

    if is_finished(&job) {
        state.expectations.forget(&key);
        state.backoff.lock().expect("backoff lock").remove(&key);
        return finished(&job, &in_namespace, &pod_api, &job_api).await;
    }

    let (settled, removing) =
        state
            .expectations
            .observe(&key, &in_namespace, has_tracking_finalizer);
    let backoff = state
        .backoff
        .lock()
        .expect("backoff lock")
        .get(&key)
        .copied()
        .unwrap_or_default();
    let now = Timestamp::now();
    let seen = Seen {
        removing,
        settled,
        backoff,
        now,
    };
    let mut plan = plan(&job, &in_namespace, &seen);
    let owner = pods::controller_ref("batch/v1", "Job", &job.metadata);
    let named = |names: &[String]| -> Vec<&Pod> {
        names
            .iter()
            .filter_map(|n| in_namespace.iter().find(|p| &p.name_any() == n))
            .map(AsRef::as_ref)
            .collect()
    };
    // An adopted pod gets the tracking finalizer with its controller reference.
    let with_finalizer = |pod: &Pod, patch: &mut serde_json::Value| {
        if !has_tracking_finalizer(pod) {
            let mut finalizers = pod.metadata.finalizers.clone().unwrap_or_default();
            finalizers.push(TRACKING_FINALIZER.into());
            patch["metadata"]["finalizers"] = json!(finalizers);
        }
    };
    let (_, mut failure) = pods::adopt_and_release(
        &pod_api,
        &owner,
        named(&plan.adopt),
        named(&plan.release),
        with_finalizer,
    )
    .await;

    let created = create_pods(&job, &plan.create, &owner, &pod_api, &state, &reference).await;
    let not_created = plan.create.len() - created.pods.len();
    if not_created > 0 {
        let active = plan.status.active.unwrap_or(0) - not_created as i32;
        plan.status.active = Some(active).filter(|a| *a > 0);
    }
    if let Some(e) = created.error {
        failure.get_or_insert(e);
    }

    let mut deleted = Vec::new();
    let mut undeleted = 0;
    for pod in &plan.delete {
        let pod_name = pod.name_any();
        let result = async {
            if plan.uncount_deleted && has_tracking_finalizer(pod) {
                remove_finalizer(&pod_api, &pod_name).await?;
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            ignore_not_found(pod_api.delete(&pod_name, &params).await)
        }
        .await;
        match result {
            Ok(_) => {
                deleted.push(uid_of(pod).to_owned());
                state
                    .recorder
                    .record(
                        &reference,
                        EventType::Normal,
                        "SuccessfulDelete",
                        "Delete",
                        format!("Deleted pod: {pod_name}"),
                    )
                    .await;
            }
            Err(e) => {
                undeleted += 1;
                state
                    .recorder
                    .record(
                        &reference,
                        EventType::Warning,
                        "FailedDelete",
                        "Delete",
                        format!("Error deleting: {e}"),
                    )
                    .await;
                failure.get_or_insert(e);
            }
        }
    }
    let created_uids = created.pods.iter().map(|p| uid_of(p).to_owned()).collect();
    state.expectations.expect(&key, created_uids, deleted);
    if undeleted > 0 {
        if !plan.uncount_deleted {
            // A failing Job is declared failed only once all its active pods are going.
            return Err(failure.map(ReconcileError::Api).unwrap_or_else(|| {
                ReconcileError::Retry("deleting the active pods of a failing Job failed".into())
            }));
        }
        let s = &mut plan.status;
        s.active = Some(s.active.unwrap_or(0) + undeleted);
        s.terminating = Some((s.terminating.unwrap_or(0) - undeleted).max(0));
    }
    let plan_status = normalized(Some(&plan.status));

    // First write: the new uncounted pods and any interim condition, before finalizers go.
    let mut current = (*job).clone();
    if normalized(job.status.as_ref()) != plan_status {
        current.status = Some(plan_status);
        current = write_status(&job_api, &current).await?;
    }
    state
        .backoff
        .lock()
        .expect("backoff lock")
        .insert(key.clone(), plan.backoff);

    // Then the finalizers of the counted pods.
    let mut with_finalizer = plan.with_finalizer.clone();
    if !plan.remove_finalizers.is_empty() {
        let uids = plan.remove_finalizers.iter().map(|p| uid_of(p).to_owned());
        state.expectations.expect_finalizers_removed(&key, uids);
        let removals = plan.remove_finalizers.iter().map(|p| {
            let api = pod_api.clone();
            async move { (p, remove_finalizer(&api, &p.name_any()).await) }
        });
        for (pod, result) in futures::future::join_all(removals).await {
            match result {
                Ok(()) => {
                    with_finalizer.remove(uid_of(pod));
                }
                Err(e) => {
                    state.expectations.finalizer_not_removed(&key, uid_of(pod));
                    failure.get_or_insert(e);
                }
            }
        }
    }

    // Second write: the counted pods, and the terminal condition when it is time.
    let mut status = normalized(current.status.as_ref());
    let moved = count_removed(&mut status, &with_finalizer);
    let done = plan
        .finish
        .as_ref()
        .is_some_and(|f| enact_finish(&mut status, f));
    if moved || done {
        current.status = Some(normalized(Some(&status)));
        current = write_status(&job_api, &current).await?;
    }
    for e in &plan.events {
        state
            .recorder
            .record(
                &reference,
                EventType::Normal,
                e.reason,
                "Sync",
                e.note.into(),
            )
            .await;
    }
    if done {
        record_finished(&state.recorder, &reference, &current, plan.finish.as_ref()).await;
    }
    if let Some(e) = failure {
        return Err(ReconcileError::Api(e));
    }
    if done {
        // The Job's own status update brings it back for the TTL.
        return Ok(Action::await_change());
    }
    let waiting = !settled
        || plan.finish.is_some()
        || current
            .status
            .as_ref()
            .and_then(|s| s.terminating)
            .unwrap_or(0)
            > 0;
    Ok(match plan.requeue_after {
        _ if waiting => Action::requeue(MIN_REQUEUE),
        Some(after) => Action::requeue(after),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

/// Creates the pods for `indexes` (slow start, stopping at the first failing batch).
async fn create_pods(
    job: &Job,
    indexes: &[Option<i32>],
    owner: &OwnerReference,
    api: &Api<Pod>,
    state: &JobContext,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
) -> pods::Created {
    let pods: Vec<Pod> = indexes
        .iter()
        .map(|index| pod_for(job, *index, owner.clone()))
        .collect();
    pods::create_slow_start(api, pods, &state.recorder, reference, |_| false).await
}

async fn record_finished(
    recorder: &EventRecorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    job: &Job,
    finish: Option<&JobCondition>,
) {
    let Some(finish) = finish else {
        return;
    };
    if finish.type_ == COMPLETE {
        let succeeded = job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0);
        let completions = job.spec.as_ref().and_then(|s| s.completions);
        if completions.is_some_and(|c| succeeded > c) {
            recorder
                .record(
                    reference,
                    EventType::Warning,
                    "TooManySucceededPods",
                    "Sync",
                    "Too many succeeded pods running after completion count reached".into(),
                )
                .await;
        }
        recorder
            .record(
                reference,
                EventType::Normal,
                "Completed",
                "Sync",
                "Job completed".into(),
            )
            .await;
    } else {
        let reason = finish.reason.clone().unwrap_or_default();
        recorder
            .record(
                reference,
                EventType::Warning,
                &reason,
                "Sync",
                finish.message.clone().unwrap_or_default(),
            )
            .await;
    }
}

/// A finished Job: its pods' leftover finalizers go, and with a TTL the Job goes when it
/// expires (the TTL-after-finished controller).
async fn finished(
    job: &Job,
    in_namespace: &[Arc<Pod>],
    pod_api: &Api<Pod>,
    job_api: &Api<Job>,
) -> Result<Action, ReconcileError> {
    let uid = job.metadata.uid.as_deref().unwrap_or("");
    let leftovers = in_namespace.iter().filter(|p| {
        has_tracking_finalizer(p) && pods::controller_of(&p.metadata).is_some_and(|r| r.uid == uid)
    });
    for pod in leftovers {
        remove_finalizer(pod_api, &pod.name_any()).await?;
    }
    let Some(expiry) = ttl_expiry(job) else {
        return Ok(Action::await_change());
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    if expiry > now {
        let left = Duration::try_from(now.duration_until(expiry)).unwrap_or(MIN_REQUEUE);
        return Ok(Action::requeue(left.max(MIN_REQUEUE)));
    }
    // The cached TTL may be stale: decide on a fresh read.
    let Some(fresh) = job_api.get_opt(&job.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if fresh.metadata.uid != job.metadata.uid || fresh.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    match ttl_expiry(&fresh) {
        Some(at) if at <= now => {
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Foreground),
                preconditions: Some(Preconditions {
                    uid: fresh.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            ignore_not_found(job_api.delete(&fresh.name_any(), &params).await)?;
            Ok(Action::await_change())
        }
        Some(at) => {
            let left = Duration::try_from(now.duration_until(at)).unwrap_or(MIN_REQUEUE);
            Ok(Action::requeue(left.max(MIN_REQUEUE)))
        }
        None => Ok(Action::await_change()),
    }
}

/// Replaces the Job's status, conditional on the resource version it was read at (a stale
/// read must not undo counts).
async fn write_status(api: &Api<Job>, job: &Job) -> Result<Job, ReconcileError> {
    Ok(api
        .replace_status(&job.name_any(), &PostParams::default(), job)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::fixtures::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    const UID: &str = "job-uid";

    fn job(completions: i32, parallelism: i32) -> Job {
        let labels: BTreeMap<String, String> = [(
            "batch.kubernetes.io/controller-uid".to_owned(),
            UID.to_owned(),
        )]
        .into();
        Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                namespace: Some("default".into()),
                uid: Some(UID.into()),
                ..ObjectMeta::default()
            },
            spec: Some(JobSpec {
                completions: Some(completions),
                parallelism: Some(parallelism),
                backoff_limit: Some(6),
                completion_mode: Some("NonIndexed".into()),
                suspend: Some(false),
                selector: Some(LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..LabelSelector::default()
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        restart_policy: Some("Never".into()),
                        containers: vec![Container {
                            name: "pi".into(),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                },
                ..JobSpec::default()
            }),
            status: None,
        }
    }

    fn indexed(mut job: Job) -> Job {
        if let Some(s) = job.spec.as_mut() {
            s.completion_mode = Some("Indexed".into());
        }
        job
    }

    /// A pod of the test Job, carrying the tracking finalizer, in `phase`.
    fn job_pod(name: &str, phase: &str) -> Arc<Pod> {
        let owner = OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "pi".into(),
            uid: UID.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let mut p = owned_by(
            pod(name, &[("batch.kubernetes.io/controller-uid", UID)]),
            &owner,
        );
        p.metadata.finalizers = Some(vec![TRACKING_FINALIZER.into()]);
        if let Some(s) = p.status.as_mut() {
            s.phase = Some(phase.into());
        }
        Arc::new(p)
    }

    fn with_index(pod: Arc<Pod>, index: i32) -> Arc<Pod> {
        let mut p = (*pod).clone();
        p.metadata.annotations = Some([(COMPLETION_INDEX.to_owned(), index.to_string())].into());
        Arc::new(p)
    }

    fn seen(now: Timestamp) -> Seen {
        Seen {
            removing: HashSet::new(),
            settled: true,
            backoff: BackoffRecord::default(),
            now,
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn types(status: &JobStatus) -> Vec<&str> {
        status
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect()
    }

    #[test]
    fn creates_up_to_parallelism_within_remaining_completions() {
        let p = plan(&job(5, 3), &[], &seen(t(0)));
        assert_eq!(p.create, vec![None; 3]);
        assert_eq!(p.status.active, Some(3));
        assert_eq!(p.status.start_time, Some(stamp(t(0))));

        // Four succeeded (counted) and one running: nothing more to create.
        let mut j = job(5, 3);
        j.status = Some(JobStatus {
            succeeded: Some(4),
            ..JobStatus::default()
        });
        let p = plan(&j, &[job_pod("a", "Running")], &seen(t(0)));
        assert!(p.create.is_empty());
        assert_eq!(p.status.active, Some(1));
    }

    #[test]
    fn nothing_is_created_before_earlier_creations_are_seen() {
        let mut s = seen(t(0));
        s.settled = false;
        let p = plan(&job(3, 3), &[], &s);
        assert!(p.create.is_empty());
    }

    #[test]
    fn surplus_pods_go_without_being_counted() {
        let pods = [job_pod("a", "Running"), job_pod("b", "Pending")];
        let p = plan(&job(1, 1), &pods, &seen(t(0)));
        assert_eq!(p.delete.len(), 1);
        assert_eq!(p.delete[0].name_any(), "b");
        assert!(p.uncount_deleted);
        assert_eq!(p.status.active, Some(1));
        assert_eq!(p.status.terminating, Some(1));
    }

    #[test]
    fn a_finished_pod_is_uncounted_then_released_then_counted() {
        let j = job(2, 1);
        let done = job_pod("a", "Succeeded");
        let p = plan(&j, std::slice::from_ref(&done), &seen(t(0)));
        let uncounted = p.status.uncounted_terminated_pods.clone().unwrap();
        assert_eq!(uncounted.succeeded, Some(vec!["uid-a".to_owned()]));
        assert_eq!(p.status.succeeded, None);
        assert_eq!(p.remove_finalizers.len(), 1);
        // One more completion needed: a replacement is created in the same pass.
        assert_eq!(p.create.len(), 1);
        assert!(p.finish.is_none());

        // The finalizer is gone: the uid moves into the counter.
        let mut status = p.status.clone();
        assert!(count_removed(&mut status, &HashSet::new()));
        assert_eq!(status.succeeded, Some(1));
        assert_eq!(
            normalized(Some(&status))
                .uncounted_terminated_pods
                .unwrap()
                .succeeded,
            None
        );

        // A later pass over the released pod counts nothing twice.
        let mut j2 = j.clone();
        j2.status = Some(status);
        let mut released = (*done).clone();
        released.metadata.finalizers = None;
        let p = plan(&j2, &[Arc::new(released)], &seen(t(1)));
        assert_eq!(p.status.succeeded, Some(1));
        assert!(p.remove_finalizers.is_empty());
    }

    #[test]
    fn a_removal_in_flight_is_not_counted_again() {
        let mut j = job(2, 1);
        j.status = Some(JobStatus {
            succeeded: Some(1),
            ..JobStatus::default()
        });
        // The watch still shows the finalizer the controller already removed.
        let mut s = seen(t(0));
        s.removing.insert("uid-a".into());
        let p = plan(&j, &[job_pod("a", "Succeeded")], &s);
        assert_eq!(p.status.succeeded, Some(1));
        assert!(p.remove_finalizers.is_empty());
        assert_eq!(p.create.len(), 1);
    }

    #[test]
    fn the_last_completion_completes_the_job() {
        let p = plan(&job(1, 1), &[job_pod("a", "Succeeded")], &seen(t(5)));
        assert_eq!(types(&p.status), [SUCCESS_CRITERIA_MET]);
        let c = &p.status.conditions.as_ref().unwrap()[0];
        assert_eq!(c.reason.as_deref(), Some("CompletionsReached"));
        assert_eq!(
            c.message.as_deref(),
            Some("Reached expected number of succeeded pods")
        );
        let finish = p.finish.clone().unwrap();
        assert_eq!(finish.type_, COMPLETE);

        // Not while the pod is uncounted…
        let mut status = p.status.clone();
        assert!(!enact_finish(&mut status, &finish));
        // …but once its finalizer is off.
        count_removed(&mut status, &HashSet::new());
        assert!(enact_finish(&mut status, &finish));
        assert_eq!(types(&status), [SUCCESS_CRITERIA_MET, COMPLETE]);
        assert_eq!(status.completion_time, Some(stamp(t(5))));
        assert_eq!(status.succeeded, Some(1));
    }

    #[test]
    fn too_many_failures_fail_the_job_and_stop_its_pods() {
        let mut j = job(3, 2);
        if let Some(s) = j.spec.as_mut() {
            s.backoff_limit = Some(1);
        }
        let pods = [
            job_pod("a", "Failed"),
            job_pod("b", "Failed"),
            job_pod("c", "Running"),
        ];
        let p = plan(&j, &pods, &seen(t(0)));
        assert_eq!(types(&p.status), [FAILURE_TARGET]);
        let target = &p.status.conditions.as_ref().unwrap()[0];
        assert_eq!(target.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(
            target.message.as_deref(),
            Some("Job has reached the specified backoff limit")
        );
        assert_eq!(p.delete.len(), 1);
        assert!(!p.uncount_deleted);
        assert!(p.create.is_empty());
        // The running pod counts as failed too.
        let failed = p.status.uncounted_terminated_pods.clone().unwrap().failed;
        assert_eq!(failed.map(|f| f.len()), Some(3));
        let finish = p.finish.clone().unwrap();
        assert_eq!(finish.type_, FAILED);

        // Failed only once the deleted pod is gone.
        let mut status = p.status.clone();
        count_removed(&mut status, &HashSet::new());
        assert!(!enact_finish(&mut status, &finish));
        status.terminating = Some(0);
        assert!(enact_finish(&mut status, &finish));
        assert_eq!(types(&status), [FAILURE_TARGET, FAILED]);
        assert_eq!(status.failed, Some(3));
        assert_eq!(status.completion_time, None);
    }

    #[test]
    fn within_the_backoff_limit_failed_pods_are_replaced_after_a_delay() {
        let mut failed = (*job_pod("a", "Failed")).clone();
        failed.metadata.creation_timestamp = Some(Time(t(0)));
        let mut j = job(1, 1);
        j.status = Some(JobStatus {
            start_time: Some(Time(t(0))),
            ..JobStatus::default()
        });
        let p = plan(&j, &[Arc::new(failed)], &seen(t(3)));
        assert!(p.finish.is_none());
        assert!(p.create.is_empty());
        assert_eq!(p.requeue_after, Some(Duration::from_secs(7)));
        assert_eq!(p.backoff.failures_after_last_success, 1);
        assert_eq!(p.remove_finalizers.len(), 1);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let record = |n| BackoffRecord {
            failures_after_last_success: n,
            last_failure: Some(t(0)),
        };
        assert_eq!(record(0).remaining(t(0)), Duration::ZERO);
        assert_eq!(record(1).remaining(t(4)), Duration::from_secs(6));
        assert_eq!(record(3).remaining(t(0)), Duration::from_secs(40));
        assert_eq!(record(20).remaining(t(0)), POD_BACKOFF_MAX);
        assert_eq!(record(1).remaining(t(60)), Duration::ZERO);
    }

    #[test]
    fn restarts_count_toward_the_backoff_limit_with_on_failure() {
        let mut j = job(1, 1);
        if let Some(s) = j.spec.as_mut() {
            s.backoff_limit = Some(2);
            s.template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
        }
        let mut restarting = (*job_pod("a", "Running")).clone();
        restarting.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "pi".into(),
            restart_count: 2,
            ..ContainerStatus::default()
        }]);
        let p = plan(&j, &[Arc::new(restarting)], &seen(t(0)));
        assert_eq!(types(&p.status), [FAILURE_TARGET]);
    }

    #[test]
    fn the_active_deadline_fails_the_job() {
        let mut j = job(1, 1);
        if let Some(s) = j.spec.as_mut() {
            s.active_deadline_seconds = Some(30);
        }
        j.status = Some(JobStatus {
            start_time: Some(Time(t(0))),
            ..JobStatus::default()
        });
        let running = [job_pod("a", "Running")];
        let early = plan(&j, &running, &seen(t(10)));
        assert!(early.finish.is_none());
        assert_eq!(early.requeue_after, Some(Duration::from_secs(20)));
        let late = plan(&j, &running, &seen(t(30)));
        let target = &late.status.conditions.as_ref().unwrap()[0];
        assert_eq!(target.reason.as_deref(), Some("DeadlineExceeded"));
        assert_eq!(
            target.message.as_deref(),
            Some("Job was active longer than specified deadline")
        );
        assert_eq!(late.delete.len(), 1);
    }

    #[test]
    fn indexed_jobs_create_the_missing_indexes() {
        let mut j = indexed(job(5, 3));
        j.status = Some(JobStatus {
            completed_indexes: Some("0".into()),
            succeeded: Some(1),
            ..JobStatus::default()
        });
        let pods = [with_index(job_pod("a", "Running"), 2)];
        let p = plan(&j, &pods, &seen(t(0)));
        assert_eq!(p.create, [Some(1), Some(3)]);

        let pod = pod_for(
            &j,
            Some(3),
            pods::controller_ref("batch/v1", "Job", &j.metadata),
        );
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-3-"));
        let annotations = pod.metadata.annotations.clone().unwrap();
        assert_eq!(
            annotations.get(COMPLETION_INDEX).map(String::as_str),
            Some("3")
        );
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels.get(COMPLETION_INDEX).map(String::as_str), Some("3"));
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-3"));
        let env = spec.containers[0].env.clone().unwrap();
        assert!(env.iter().any(|e| e.name == COMPLETION_INDEX_ENV));
        assert_eq!(
            pod.metadata.finalizers,
            Some(vec![TRACKING_FINALIZER.to_owned()])
        );
    }

    #[test]
    fn indexed_jobs_report_completed_indexes_as_intervals() {
        let j = indexed(job(6, 6));
        let pods: Vec<Arc<Pod>> = [0, 1, 2, 4]
            .into_iter()
            .map(|i| with_index(job_pod(&format!("p{i}"), "Succeeded"), i))
            .chain([with_index(job_pod("p5", "Running"), 5)])
            .collect();
        let p = plan(&j, &pods, &seen(t(0)));
        assert_eq!(p.status.completed_indexes.as_deref(), Some("0-2,4"));
        assert_eq!(p.status.succeeded, Some(4));
        assert_eq!(p.create, [Some(3)]);
        assert_eq!(p.remove_finalizers.len(), 4);
        // Succeeded indexes are tracked by index, not by uid.
        assert_eq!(
            p.status
                .uncounted_terminated_pods
                .clone()
                .unwrap()
                .succeeded,
            None
        );
    }

    #[test]
    fn repeated_indexes_are_removed() {
        let j = indexed(job(3, 3));
        let pods = [
            with_index(job_pod("a", "Running"), 0),
            with_index(job_pod("b", "Pending"), 0),
            with_index(job_pod("c", "Running"), 7),
        ];
        let p = plan(&j, &pods, &seen(t(0)));
        let mut gone: Vec<String> = p.delete.iter().map(|p| p.name_any()).collect();
        gone.sort();
        assert_eq!(gone, ["b", "c"]);
        assert!(p.create.is_empty());
    }

    #[test]
    fn intervals_parse_merge_and_print() {
        let i = Indexes::parse("0-2,4,9-12", 11);
        assert_eq!(i.to_string(), "0-2,4,9,10");
        assert_eq!(i.with([3]).to_string(), "0-4,9,10");
        assert_eq!(i.total(), 6);
        assert!(i.contains(10) && !i.contains(5));
        assert_eq!(i.first_missing(3, 11), [3, 5, 6]);
        assert_eq!(Indexes::parse("x,1", 5).to_string(), "1");
        assert_eq!(Indexes::default().first_missing(2, 1), [0]);
    }

    #[test]
    fn suspending_deletes_active_pods_and_resuming_restarts_the_clock() {
        let mut j = job(3, 2);
        if let Some(s) = j.spec.as_mut() {
            s.suspend = Some(true);
        }
        j.status = Some(JobStatus {
            start_time: Some(Time(t(0))),
            ..JobStatus::default()
        });
        let pods = [job_pod("a", "Running"), job_pod("b", "Running")];
        let p = plan(&j, &pods, &seen(t(10)));
        assert_eq!(p.delete.len(), 2);
        assert!(p.uncount_deleted);
        assert!(p.create.is_empty());
        assert_eq!(p.status.active, None);
        let suspended = &p.status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (suspended.type_.as_str(), suspended.status.as_str()),
            (SUSPENDED, "True")
        );
        assert_eq!(suspended.reason.as_deref(), Some("JobSuspended"));
        assert_eq!(p.events[0].reason, "Suspended");

        let mut resumed = j.clone();
        if let Some(s) = resumed.spec.as_mut() {
            s.suspend = Some(false);
        }
        resumed.status = Some(p.status.clone());
        let p = plan(&resumed, &[], &seen(t(20)));
        let c = &p.status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some("JobResumed"))
        );
        assert_eq!(p.events[0].reason, "Resumed");
        assert_eq!(p.status.start_time, Some(stamp(t(20))));
        assert_eq!(p.create.len(), 2);
    }

    #[test]
    fn a_suspended_job_never_starts_its_clock() {
        let mut j = job(1, 1);
        if let Some(s) = j.spec.as_mut() {
            s.suspend = Some(true);
        }
        let p = plan(&j, &[], &seen(t(0)));
        assert_eq!(p.status.start_time, None);
        assert!(p.create.is_empty());
    }

    #[test]
    fn deleted_running_pods_count_as_failed_unless_only_failed_are_replaced() {
        let mut deleting = (*job_pod("a", "Running")).clone();
        deleting.metadata.deletion_timestamp = Some(Time(t(0)));
        let deleting = Arc::new(deleting);
        let p = plan(&job(1, 1), std::slice::from_ref(&deleting), &seen(t(30)));
        let failed = p.status.uncounted_terminated_pods.clone().unwrap().failed;
        assert_eq!(failed, Some(vec!["uid-a".to_owned()]));
        assert_eq!(p.status.terminating, Some(1));

        let mut j = job(1, 1);
        if let Some(s) = j.spec.as_mut() {
            s.pod_replacement_policy = Some("Failed".into());
        }
        let p = plan(&j, &[deleting], &seen(t(30)));
        assert_eq!(
            p.status.uncounted_terminated_pods.clone().unwrap().failed,
            None
        );
        // The replacement waits for the terminating pod.
        assert!(p.create.is_empty());
    }

    #[test]
    fn ttl_counts_from_the_terminal_condition() {
        let mut j = job(1, 1);
        if let Some(s) = j.spec.as_mut() {
            s.ttl_seconds_after_finished = Some(100);
        }
        assert_eq!(ttl_expiry(&j), None);
        j.status = Some(JobStatus {
            conditions: Some(vec![
                new_condition(SUCCESS_CRITERIA_MET, "True", "", "", &Time(t(0))),
                new_condition(COMPLETE, "True", "", "", &Time(t(5))),
            ]),
            ..JobStatus::default()
        });
        assert!(is_finished(&j));
        assert_eq!(ttl_expiry(&j), Some(t(105)));
        if let Some(s) = j.spec.as_mut() {
            s.ttl_seconds_after_finished = None;
        }
        assert_eq!(ttl_expiry(&j), None);
    }

    #[test]
    fn orphaned_finalizers_are_released() {
        let pod = job_pod("a", "Running");
        let mut j = job(1, 1);
        assert_eq!(orphan_verdict(&pod, Some(&j)), Orphan::Keep);
        assert_eq!(orphan_verdict(&pod, None), Orphan::Release);
        j.status = Some(JobStatus {
            conditions: Some(vec![new_condition(FAILED, "True", "", "", &Time(t(0)))]),
            ..JobStatus::default()
        });
        assert_eq!(orphan_verdict(&pod, Some(&j)), Orphan::Release);
        let mut orphan = (*pod).clone();
        orphan.metadata.owner_references = None;
        assert_eq!(orphan_verdict(&orphan, None), Orphan::Release);
        orphan.metadata.finalizers = None;
        assert_eq!(orphan_verdict(&orphan, None), Orphan::Keep);
    }

    #[test]
    fn matching_orphans_are_adopted_with_the_finalizer() {
        let stray = Arc::new(pod("stray", &[("batch.kubernetes.io/controller-uid", UID)]));
        let p = plan(&job(1, 1), &[stray], &seen(t(0)));
        assert_eq!(p.adopt, ["stray"]);
        assert!(p.create.is_empty());
        assert!(p.with_finalizer.contains("uid-stray"));
    }

    #[test]
    fn long_job_names_are_cut_for_indexed_pod_names() {
        let long = "x".repeat(70);
        let name = generate_name_with_index(&long, 12);
        assert_eq!(name.len(), MAX_GENERATE_NAME);
        assert!(name.ends_with("-12-"));
    }
}
