//! What workload controllers know about pods: readiness and availability, which pods a
//! controller owns, making a pod from a template, and the order in which surplus pods go.
//!
//! Pure functions over k8s-openapi types; no API calls.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::core::labels::{Selector, SelectorExt};

/// Whether a pod is being deleted or has finished (it no longer counts as a replica).
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// When the pod's Ready condition turned True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then(|| {
        ready
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH)
    })
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since + jiff::SignedDuration::from_secs(min_ready_seconds as i64) <= now,
    }
}

/// The controller owner reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// The owner reference a controller puts on what it makes or adopts.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The merge patch that adopts an object for `owner` (adding its controller reference) or
/// releases it (removing it). The object's uid rides along so the write lands on this object.
pub fn ownership_patch(
    meta: &ObjectMeta,
    owner: &OwnerReference,
    adopt: bool,
) -> serde_json::Value {
    let mut refs: Vec<OwnerReference> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner.uid)
        .cloned()
        .collect();
    if adopt {
        refs.push(owner.clone());
    }
    serde_json::json!({"metadata": {"ownerReferences": refs, "uid": meta.uid}})
}

/// A controller's selector, ready to match labels (kube-core's `Selector`). An empty or
/// malformed selector gives `None`: a controller never selects everything.
pub fn controller_selector(selector: &LabelSelector) -> Option<Selector> {
    let empty = selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty);
    if empty {
        return None;
    }
    Selector::try_from(selector.clone()).ok()
}

/// Whether `labels` match a compiled controller selector.
pub fn selects(selector: Option<&Selector>, labels: &BTreeMap<String, String>) -> bool {
    selector.is_some_and(|s| s.matches(labels))
}

/// A pod for `template`, named `<prefix><random>` by the server, owned by `owner`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    generate_name: &str,
    owner: OwnerReference,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The order in which surplus pods are deleted: the ones that cost least to lose come first
/// (unscheduled before scheduled, pending before running, not ready before ready, more
/// restarts before fewer, newer before older).
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase_rank = |p: &Pod| match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
            .unwrap_or(0)
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then(restarts(b).cmp(&restarts(a)))
        .then(created(b).cmp(&created(a)))
}

#[cfg(test)]
pub mod fixtures {
    //! Builders for pods in controller tests.
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    pub fn pod(name: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                ),
                creation_timestamp: Some(Time(Timestamp::UNIX_EPOCH)),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                ..PodStatus::default()
            }),
        }
    }

    pub fn ready(mut pod: Pod, since: Timestamp) -> Pod {
        let status = pod.status.get_or_insert_with(PodStatus::default);
        status.phase = Some("Running".into());
        status.conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time(since)),
            ..PodCondition::default()
        }]);
        pod
    }

    pub fn owned_by(mut pod: Pod, owner: &OwnerReference) -> Pod {
        pod.metadata.owner_references = Some(vec![owner.clone()]);
        pod
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let p = ready(pod("a", &[]), t0);
        assert!(is_available(&p, 0, t0));
        assert!(!is_available(
            &p,
            10,
            t0 + jiff::SignedDuration::from_secs(9)
        ));
        assert!(is_available(
            &p,
            10,
            t0 + jiff::SignedDuration::from_secs(10)
        ));
        assert!(!is_available(&pod("b", &[]), 0, t0));
    }

    #[test]
    fn selectors_match_labels_and_expressions_and_empty_matches_nothing() {
        let labels: BTreeMap<String, String> = [("app".to_owned(), "web".to_owned())].into();
        let by_label = LabelSelector {
            match_labels: Some(labels.clone()),
            ..LabelSelector::default()
        };
        let compiled = controller_selector(&by_label);
        assert!(selects(compiled.as_ref(), &labels));
        assert!(!selects(compiled.as_ref(), &BTreeMap::new()));
        assert!(controller_selector(&LabelSelector::default()).is_none());
    }

    #[test]
    fn unready_and_unscheduled_pods_are_deleted_first() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let mut scheduled = ready(pod("running", &[]), t0);
        scheduled.spec.as_mut().unwrap().node_name = Some("n1".into());
        let pending = pod("pending", &[]);
        let mut pods = [scheduled, pending];
        pods.sort_by(deletion_order);
        assert_eq!(pods[0].metadata.name.as_deref(), Some("pending"));
    }
}
