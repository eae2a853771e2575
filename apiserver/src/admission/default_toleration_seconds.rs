//! The DefaultTolerationSeconds admission plugin: a pod that does not tolerate the
//! `node.kubernetes.io/not-ready` or `unreachable` NoExecute taints gets a five-minute
//! toleration for each, so the node lifecycle controller evicts it five minutes after its node
//! fails rather than at once.

use serde_json::{Value, json};

/// How long a pod stays on a node that is not ready or unreachable, unless it says otherwise
/// (`--default-not-ready-toleration-seconds`, `--default-unreachable-toleration-seconds`).
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

const TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

/// Adds the missing tolerations to a pod being created or updated.
pub fn admit_pod(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    let tolerations = &mut spec["tolerations"];
    if !tolerations.is_array() {
        *tolerations = json!([]);
    }
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for key in TAINTS {
        if !list.iter().any(|t| tolerates_no_execute(t, key)) {
            list.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}),
            );
        }
    }
}

/// Whether a toleration covers the NoExecute taint `key` (an empty key or effect matches all).
fn tolerates_no_execute(toleration: &Value, key: &str) -> bool {
    let empty_or = |field: &str, want: &str| {
        toleration[field]
            .as_str()
            .is_none_or(|v| v.is_empty() || v == want)
    };
    empty_or("key", key) && empty_or("effect", "NoExecute")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pod: &Value) -> Vec<(String, i64)> {
        pod["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["key"].as_str().unwrap_or("").to_owned(),
                    t["tolerationSeconds"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    }

    #[test]
    fn adds_both_tolerations_to_a_pod_without_any() {
        let mut pod = json!({"spec": {"containers": []}});
        admit_pod(&mut pod);
        assert_eq!(
            keys(&pod),
            [
                ("node.kubernetes.io/not-ready".to_owned(), 300),
                ("node.kubernetes.io/unreachable".to_owned(), 300)
            ]
        );
        let again = pod.clone();
        admit_pod(&mut pod);
        assert_eq!(pod, again, "admitting twice changes nothing");
    }

    #[test]
    fn keeps_the_pods_own_tolerations() {
        let mut pod = json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]}});
        admit_pod(&mut pod);
        assert_eq!(
            keys(&pod),
            [
                ("node.kubernetes.io/unreachable".to_owned(), 1),
                ("node.kubernetes.io/not-ready".to_owned(), -1),
                ("node.kubernetes.io/not-ready".to_owned(), 300)
            ]
        );
    }

    #[test]
    fn a_toleration_of_every_taint_needs_no_more() {
        let mut pod = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        admit_pod(&mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 1);
        let mut no_spec = json!({"metadata": {}});
        admit_pod(&mut no_spec);
        assert_eq!(no_spec, json!({"metadata": {}}));
    }
}
