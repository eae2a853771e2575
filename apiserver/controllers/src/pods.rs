//! What workload controllers know about pods: readiness and availability, which pods a
//! controller owns, making a pod from a template, and the order in which surplus pods go.
//!
//! Pure functions over k8s-openapi types; no API calls.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

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

/// Whether `labels` satisfy a label selector. An empty selector matches nothing here, as a
/// controller's selector never selects everything.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let exprs = selector.match_expressions.as_deref().unwrap_or(&[]);
    let map = selector.match_labels.as_ref();
    if map.is_none_or(BTreeMap::is_empty) && exprs.is_empty() {
        return false;
    }
    if let Some(map) = map
        && !map.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    exprs.iter().all(|e| {
        let values = e.values.as_deref().unwrap_or(&[]);
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    })
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
        assert!(selector_matches(&by_label, &labels));
        assert!(!selector_matches(&by_label, &BTreeMap::new()));
        assert!(!selector_matches(&LabelSelector::default(), &labels));
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
